"""A real Airflow deployment in processes: api-server, scheduler, dag-processor, triggerer (and Celery workers).

What the docker-compose stack runs in containers, started here as separate OS processes on the test
PostgreSQL, so that the loop's DAGs are exercised by the real scheduler instead of ``dag.test()``:
Asset events from one DAG start the next, tasks run in the executor's own subprocesses, and the REST
API is the only way the test talks to Airflow.

Every process is started in its own session (process group); ``stop()`` terminates each group by its
id, waits, kills what is left, and reports any process that survived so the test can fail on leaks.

Used by tests/integration/test_real_scheduler.py and by benchmarks/bench_scaleout.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def loop_connections(urls: dict[str, str], smtp_port: int) -> dict[str, str]:
    """The loop's Airflow connections (``AirflowStack.connections``): the ``warehouse`` and ``shop`` database
    URLs of ``urls``, and a plain SMTP server on 127.0.0.1 at ``smtp_port``."""
    postgres = {conn_id: urls[name].replace("postgresql://", "postgres://")
                for conn_id, name in (("smarketing_warehouse", "warehouse"), ("smarketing_shop", "shop"))}
    smtp = json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port, "login": "", "password": "",
                       "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "loop@shop.test"}})
    return {**postgres, "smarketing_smtp": smtp}


def metadata_url(url: str) -> str:
    """A ``postgresql://`` URL as Airflow's metadata connection (the psycopg 3 driver)."""
    return url.replace("postgresql://", "postgresql+psycopg://")


def redis_available(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def celery_env(broker_url: str, result_backend_url: str, queue: str, concurrency: int = 1) -> dict[str, str]:
    """``extra_env`` of a CeleryExecutor deployment: its tasks go to ``queue`` (a queue of its own, so that
    nothing else on the broker takes them), results to the PostgreSQL ``result_backend_url``, and each worker
    records its own name (``SMARKETING_WORKER_NAME``) in ``task_instance.hostname``."""
    return {
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + result_backend_url,
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
        # Workers on one machine share its hostname; each names itself instead.
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.integration.worker_identity.worker_name",
    }


def forget_queue(broker_url: str, queue: str) -> int:
    """Delete the broker's keys of ``queue`` (bindings, leftovers), leaving every other key; returns how many."""
    import redis

    client = redis.Redis.from_url(broker_url)
    try:
        keys = list(client.scan_iter(match=f"*{queue}*"))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


def wait_for(what: str, check: Callable[[], Any], timeout_s: float, every_s: float = 1.0,
             on_timeout: Callable[[], str] | None = None) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` (and diagnostics) on timeout."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, OSError) as error:  # component still starting
            last_error = error
        time.sleep(every_s)
    details = on_timeout() if on_timeout else ""
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what} (last error: {last_error})\n{details}")


@dataclass
class AirflowStack:
    """One Airflow deployment: its environment, its processes and a REST client."""

    home: Path
    metadata_url: str
    executor: str
    connections: dict[str, str]
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stack_id = secrets.token_hex(8)
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        self.env = self._environment()
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def _environment(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
        env = {
            **base,
            "PATH": f"{VENV_BIN}{os.pathsep}{base.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"), str(ROOT / "dags")]),
            "PYTHONWARNINGS": "ignore",
            "AIRFLOW_HOME": str(self.home),
            "SMARKETING_STACK_ID": self.stack_id,  # inherited by every child: how stop() finds orphans
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
            # Every component signs and checks task tokens with the same secret.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            # The test unpauses the DAGs itself, as an operator would after deploying.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            # (use_job_schedule must stay on: turning it off stops Asset-triggered runs too. So unpausing a
            # time-scheduled DAG also starts its latest interval, as in production.)
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            **{f"AIRFLOW_CONN_{conn_id.upper()}": uri for conn_id, uri in self.connections.items()},
        }
        env.update(self.extra_env)
        return env

    # -- processes ---------------------------------------------------------------------------------

    def airflow(self, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess:
        """Run an ``airflow`` CLI command to completion in this deployment's environment."""
        result = subprocess.run([AIRFLOW, *args], env=self.env, cwd=ROOT, capture_output=True, text=True,
                                timeout=timeout_s)
        if result.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = (self.home / "logs" / f"{name}.log").open("w")
        process = subprocess.Popen([AIRFLOW, *args], env={**self.env, **(env or {})}, cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = process
        return process

    def start_core(self) -> None:
        self.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.port))
        self.start("scheduler", "scheduler")
        self.start("dag-processor", "dag-processor")
        self.start("triggerer", "triggerer")

    def start_celery_workers(self, workers: dict[str, int], queue: str, timeout_s: float = 120) -> None:
        """Start one Celery worker per name in ``workers`` (name → concurrency) on ``queue``; wait until all
        are ready. Each records its name as the hostname of the task instances it runs."""
        for name, concurrency in workers.items():
            self.start(name, "celery", "worker", "--queues", queue, "--concurrency", str(concurrency),
                       "--celery-hostname", f"{name}@%h", "--skip-serve-logs", env={"SMARKETING_WORKER_NAME": name})
        wait_for(f"Celery workers {sorted(workers)} to be ready", lambda: all(
            " ready." in (self.home / "logs" / f"{name}.log").read_text(errors="replace") for name in workers),
            timeout_s, on_timeout=self.log_tails)

    def assert_running(self) -> None:
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"components exited early: {dead}\n{self.log_tails()}")

    def log_tails(self, lines: int = 25) -> str:
        out = []
        for name in self.processes:
            path = self.home / "logs" / f"{name}.log"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            out.append(f"--- {name} ---\n" + "\n".join(text))
        return "\n".join(out)

    def _members(self) -> list:
        """Every live process of this stack: the ones started here, their descendants, and any orphaned
        descendant (found by the stack's marker in its environment, which every child inherits)."""
        import psutil

        found = {}
        for process in self.processes.values():
            try:
                parent = psutil.Process(process.pid)
                for member in (parent, *parent.children(recursive=True)):
                    found[member.pid] = member
            except psutil.NoSuchProcess:
                pass
        for candidate in psutil.process_iter():
            try:
                if candidate.pid not in found and candidate.environ().get("SMARKETING_STACK_ID") == self.stack_id:
                    found[candidate.pid] = candidate
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        return list(found.values())

    def stop(self, grace_s: float = 30) -> list[str]:
        """Stop every process of the stack: SIGTERM each (components stop cleanly), then SIGKILL what is left.
        Returns descriptions of processes still alive afterwards (a leak the test should fail on)."""
        import psutil

        members = self._members()
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for member in members:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.terminate()
        _, alive = psutil.wait_procs(members, timeout=grace_s)
        alive += [m for m in self._members() if m.pid not in {a.pid for a in alive}]
        for member in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.kill()
        psutil.wait_procs(alive, timeout=10)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        survivors = []
        for member in self._members():
            with contextlib.suppress(psutil.NoSuchProcess):
                if member.status() != psutil.STATUS_ZOMBIE:
                    survivors.append(f"{member.pid} {' '.join(member.cmdline()[:4])}")
        self.api.close()
        return survivors

    # -- REST API ----------------------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> dict:
        response = self.api.get(f"/api/v2{path}", params=params)
        response.raise_for_status()
        return response.json()

    def wait_until_serving(self, timeout_s: float = 120) -> None:
        def healthy():
            self.assert_running()
            health = self.api.get("/api/v2/monitor/health").json()
            return health["metadatabase"]["status"] == "healthy" and health["scheduler"]["status"] == "healthy"

        wait_for("the api-server and a healthy scheduler", healthy, timeout_s, on_timeout=self.log_tails)

    def wait_for_dags(self, required: set[str], timeout_s: float = 120) -> dict[str, dict]:
        """Wait until the dag-processor has serialised every DAG in ``required``; return all smarketing DAGs."""
        def parsed():
            self.assert_running()
            dags = {d["dag_id"]: d for d in self.get("/dags", limit=100)["dags"]}
            return dags if required <= set(dags) else None

        return wait_for(f"DAGs {sorted(required)} to be parsed", parsed, timeout_s, on_timeout=self.log_tails)

    def dag_details(self, dag_id: str) -> dict:
        return self.get(f"/dags/{dag_id}/details")

    def set_pool(self, name: str, slots: int, description: str) -> None:
        response = self.api.post("/api/v2/pools", json={"name": name, "slots": slots, "description": description})
        if response.status_code == 409:
            response = self.api.patch(f"/api/v2/pools/{name}", json={"name": name, "slots": slots})
        response.raise_for_status()

    def unpause(self, dag_id: str) -> None:
        self.api.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()

    def trigger(self, dag_id: str, logical_date: str | None, conf: dict | None = None,
                data_interval: tuple[str, str] | None = None) -> dict:
        body = {"logical_date": logical_date, "run_after": logical_date, "conf": conf or {}}
        if data_interval:
            body["data_interval_start"], body["data_interval_end"] = data_interval
        response = self.api.post(f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        response.raise_for_status()
        return response.json()

    def trigger_next_interval(self, dag_id: str, conf: dict | None = None) -> dict:
        """Trigger a paused time-scheduled DAG for the interval the scheduler would run on unpausing.

        The scheduler skips creating a run whose logical date already exists, so unpausing afterwards
        does not run the same latest interval a second time."""
        dag = self.get(f"/dags/{dag_id}")
        return self.trigger(dag_id, dag["next_dagrun_logical_date"], conf=conf, data_interval=(
            dag["next_dagrun_data_interval_start"], dag["next_dagrun_data_interval_end"]))

    def runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns", limit=100)["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=1000)["task_instances"]

    def upstream_runs(self, dag_id: str, run_id: str) -> set[tuple[str, str]]:
        """The runs (dag id, run id) whose Asset events started this run."""
        events = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents")["asset_events"]
        return {(event["source_dag_id"], event["source_run_id"]) for event in events}

    def wait_for_run(self, dag_id: str, timeout_s: float, run_id: str | None = None,
                     run_type: str | None = None, started_by: set[tuple[str, str]] | None = None) -> dict:
        """Wait until a run of ``dag_id`` has finished (a given run; or any of ``run_type``, consuming
        Asset events of a run in ``started_by``, as (dag id, run id)); fail unless it succeeded."""
        def finished():
            self.assert_running()
            for run in self.runs(dag_id):
                if (run_id and run["dag_run_id"] != run_id) or (run_type and run["run_type"] != run_type):
                    continue
                if run["state"] not in ("success", "failed"):
                    continue
                if started_by and not started_by & self.upstream_runs(dag_id, run["dag_run_id"]):
                    continue
                return run
            return None

        run = wait_for(f"a finished run of {dag_id}", finished, timeout_s, every_s=2,
                       on_timeout=lambda: self.describe_runs(dag_id))
        if run["state"] != "success":
            raise AssertionError(f"{dag_id} run {run['dag_run_id']} {run['state']}:\n{self.describe_runs(dag_id)}")
        return run

    def timeline(self) -> str:
        """Every run of every DAG with its type, state and times: where the minutes went."""
        lines = []
        for dag in self.get("/dags", limit=100)["dags"]:
            for run in self.runs(dag["dag_id"]):
                lines.append(f"{run.get('start_date') or '-':<34} {run.get('end_date') or '-':<34} "
                             f"{dag['dag_id']:<22} {run['run_type']:<16} {run['state']}")
        return "\n".join(sorted(lines))

    def describe_runs(self, dag_id: str) -> str:
        lines = []
        try:
            for run in self.runs(dag_id):
                lines.append(f"{dag_id} {run['dag_run_id']} {run['run_type']} {run['state']}")
                for ti in self.task_instances(dag_id, run["dag_run_id"]):
                    lines.append(f"    {ti['task_id']}[{ti['map_index']}] {ti['state']} on {ti.get('hostname')}")
        except httpx.HTTPError as error:
            lines.append(f"(API error: {error})")
        return "\n".join(lines) + "\n" + self.log_tails(15)
