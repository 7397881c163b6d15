"""Benchmark: scale-out on Celery workers — mapped scoring partitions and the mapped send tasks of one run,
on one worker or two, under a real scheduler.

    .venv/bin/python benchmarks/bench_scaleout.py --customers 150000 --configs 1x1 2x1 1x2
    .venv/bin/python benchmarks/bench_scaleout.py --customers 150000 --configs        # only build
    .venv/bin/python benchmarks/bench_scaleout.py --reuse --configs 1x1 2x1 1x2       # only measure

1. **Build** (once; ``--reuse`` skips it): a demo shop of N customers (``generate`` + ``generate_responses``),
   ingested into a fresh warehouse with the stages' own code (``smarketing_tasks.benchmark.run_stage``:
   purchases, then reviews, posts and email events), then outreach planned at the shop's end with SMS as the
   preferred channel (customers with SMS consent get an SMS, the others an email), so that both send
   tasks have work.
2. **Per configuration** (``WxC``: W Celery workers of concurrency C; ``WxC/S``: with ``SMARKETING_SEND_SHARDS=S``): a fresh Airflow deployment
   (tests/integration/airflow_stack.py: api-server, scheduler, dag-processor, triggerer as processes,
   CeleryExecutor on the Redis at 127.0.0.1:6379 with a queue of its own), the outbox's sent messages
   made due again, then one run of ``smarketing_score`` and one of ``smarketing_outreach``, each triggered
   through the REST API and executed by the workers.
3. **Figures** from the metadata database's ``task_instance`` rows: per map index the worker
   (``hostname``) and seconds; the span of the mapped tasks (first start to last end) and the sum of their
   durations (sum/span: how many ran at the same time on average, a figure the machine's load moves much
   less than seconds); the run's wall time; the speed-up of each configuration's span over the first's.

Email goes to an aiosmtpd server and SMS to a JSON webhook, both started by the script in a process of
their own, each waiting ``--smtp-delay-ms`` / ``--webhook-delay-ms`` per message (loopback costs nothing;
a real relay or SMS API answers in tens of milliseconds).
Uses the embedded PostgreSQL under .data/bench-postgres unless --pg-url names another server.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]  # the project and its Airflow plugin package

from tests.integration.airflow_stack import (  # noqa: E402 (after the path is set)
    AirflowStack,
    celery_env,
    forget_queue,
    loop_connections,
    metadata_url,
    redis_available,
)

REDIS_URL = "redis://127.0.0.1:6379/12"  # a database of its own on the shared Redis
DATABASES = ("shop", "warehouse")
MAPPED = {"smarketing_score": "score_partition", "smarketing_outreach": "send"}
RUN_TIMEOUT_S = 1200
# The loop's settings for this benchmark, the same for the build (planning) and the DAG runs.
SETTINGS_ENV = {
    "SMARKETING_PREFERRED_CHANNEL": "sms",  # SMS consent → SMS, else email: both send tasks get work
    "SMARKETING_SMS_START_HOUR": "0",  # SMS at any local hour but 23-24 (the run happens now, whatever
    "SMARKETING_SMS_END_HOUR": "23",  # the hour in the customers' time zones)
    "SMARKETING_WEBHOOK_RATE_PER_SECOND": "0",  # the webhook server's delay is the limit
    "SMARKETING_WEBHOOK_SECRET": "bench",
    "SMARKETING_LINK_SIGNING_KEY": "bench",
    "SMARKETING_FULL_RESCORE": "true",  # every configuration scores every customer, not only the changed ones
}

_SERVERS = """
import asyncio, json, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from aiosmtpd.controller import Controller
smtp_delay, webhook_delay = float(sys.argv[1]) / 1000, float(sys.argv[2]) / 1000
counts = {"email": 0, "sms": 0}
class Smtp:
    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(smtp_delay)  # a relay's time to accept a message
        counts["email"] += 1
        return "250 OK"
class Webhook(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection per sender lane
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(webhook_delay)
        counts["sms"] += 1
        reply = json.dumps({"id": json.loads(body).get("message_id")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
    def log_message(self, *args):
        pass
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()
smtp = Controller(Smtp(), hostname="127.0.0.1", port=port)
smtp.start()
http = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
threading.Thread(target=http.serve_forever, daemon=True).start()
print("ready", port, http.server_address[1], flush=True)
for line in sys.stdin:  # each line asks for the counts so far
    print(json.dumps(counts), flush=True)
smtp.stop()
http.shutdown()
"""


class Receivers:
    """aiosmtpd and the SMS webhook in a process of their own (not sharing a GIL with anything measured)."""

    def __init__(self, smtp_delay_ms: float, webhook_delay_ms: float) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", _SERVERS, str(smtp_delay_ms), str(webhook_delay_ms)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready, smtp_port, http_port = self.process.stdout.readline().split()
        assert ready == "ready"
        self.smtp_port, self.webhook_url = int(smtp_port), f"http://127.0.0.1:{http_port}/sms"

    def counts(self) -> dict[str, int]:
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@dataclass(frozen=True)
class Config:
    """``WxC``: W Celery workers, each of concurrency C; ``WxC/S``: and S send shards per channel."""

    workers: int
    concurrency: int
    send_shards: int = 1

    @classmethod
    def parse(cls, text: str) -> Config:
        shape, _, shards = text.lower().partition("/")
        workers, _, concurrency = shape.partition("x")
        try:
            config = cls(int(workers), int(concurrency or 1), int(shards or 1))
        except ValueError:
            config = cls(0, 0)
        if not (1 <= config.workers <= 26 and config.concurrency >= 1 and config.send_shards >= 1):
            raise argparse.ArgumentTypeError(f"bad configuration {text!r}: WxC or WxC/S, e.g. 1x1, 2x1, 1x2, 2x1/2")
        return config

    @property
    def name(self) -> str:
        shards = f", {self.send_shards} send shards" if self.send_shards > 1 else ""
        return f"{self.workers} worker{'s' if self.workers > 1 else ''} × concurrency {self.concurrency}{shards}"

    def worker_names(self) -> dict[str, int]:
        return {f"worker-{chr(ord('a') + i)}": self.concurrency for i in range(self.workers)}


def _say(text: str) -> None:
    print(text, flush=True)


def _urls(admin: str) -> dict[str, str]:
    from smarketing_tasks.db import with_database

    return {name: with_database(admin, f"scaleout_{name}") for name in DATABASES}


def _outreach_settings():
    from smarketing_tasks.config import load
    from smarketing_tasks.outreach import OutreachSettings

    return load(OutreachSettings, SETTINGS_ENV)


def build(admin: str, customers: int, days: int, end: datetime, seed: int) -> dict[str, str]:
    """A shop of ``customers`` ingested into a fresh warehouse, responses included, outreach planned at ``end``."""
    from smarketing_tasks.benchmark import fresh_database, run_stage
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.demo_shop import ShopSpec, generate, generate_responses, write_shop
    from smarketing_tasks.outreach import plan_outreach

    urls = {name: fresh_database(admin, f"scaleout_{name}") for name in DATABASES}
    started = time.perf_counter()
    spec = ShopSpec(customers=customers, days=days, end=end, seed=seed)
    tables = generate(spec)
    tables.update(generate_responses(tables, spec))
    counts = write_shop(make_engine(urls["shop"]), tables)
    _say("shop: " + ", ".join(f"{n:,} {t}" for t, n in counts.items()) + f" ({time.perf_counter() - started:.0f}s)")
    for stage in ("ingest", "responses"):
        result = run_stage(stage, urls["shop"], urls["warehouse"], end)
        _say(f"{stage}: {result['rows']:,} rows in {result['seconds']:.0f}s")
    warehouse = make_engine(urls["warehouse"])
    planned = plan_outreach(warehouse, end, _outreach_settings(), run_id="bench-scaleout-plan")
    warehouse.dispose()
    _say(f"outreach planned at {end:%Y-%m-%d %H:%M}: {planned.planned:,} planned, {planned.skipped:,} skipped")
    return urls


def make_due_again(warehouse_url: str) -> dict[str, int]:
    """Messages sent by an earlier configuration become planned again (as in bench_outreach), so that every
    configuration sends the same ones, and the text signals an earlier scoring run stored are forgotten, so
    that every configuration analyses the same texts; returns the due messages per channel."""
    import sqlalchemy as sa

    from smarketing_tasks.db import make_engine

    engine = make_engine(warehouse_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("truncate smarketing.text_signals")
        conn.execute(sa.text(
            "update smarketing.outreach_messages set status = 'planned', attempts = 0, claimed_at = null,"
            " claimed_by = null, sent_at = null, lease_expires_at = null, provider_message_id = null"
            " where status in ('sent', 'sending')"))
        due = dict(conn.execute(sa.text(
            "select channel, count(*) from smarketing.outreach_messages where status = 'planned'"
            " group by channel")).all())
    engine.dispose()
    return due


def mapped_figures(airflow_url: str, dag_id: str, run_id: str) -> dict:
    """What the metadata database says about a run: its wall time, and per map index worker and seconds."""
    import sqlalchemy as sa

    from smarketing_tasks.db import make_engine

    engine = make_engine(airflow_url)
    with engine.connect() as conn:
        run = conn.execute(sa.text("select start_date, end_date from dag_run where dag_id = :d and run_id = :r"),
                           {"d": dag_id, "r": run_id}).one()
        rows = conn.execute(sa.text(
            "select map_index, rendered_map_index, hostname, start_date, end_date, state from task_instance"
            " where dag_id = :d and run_id = :r and task_id = :t order by map_index"),
            {"d": dag_id, "r": run_id, "t": MAPPED[dag_id]}).all()
    engine.dispose()
    tasks = [{"map_index": r.map_index, "name": r.rendered_map_index, "worker": r.hostname, "state": r.state,
              "start": r.start_date, "seconds": (r.end_date - r.start_date).total_seconds()} for r in rows]
    span = (max(r.end_date for r in rows) - min(r.start_date for r in rows)).total_seconds()
    first = min(r.start_date for r in rows)
    for task in tasks:
        task["offset"] = (task.pop("start") - first).total_seconds()
    return {"dag_id": dag_id, "run_id": run_id, "run_seconds": (run.end_date - run.start_date).total_seconds(),
            "mapped_span": span, "mapped_sum": sum(t["seconds"] for t in tasks), "tasks": tasks}


def _print_run(figures: dict) -> None:
    _say(f"  {figures['dag_id']}: run {figures['run_seconds']:.1f}s; {MAPPED[figures['dag_id']]} x{len(figures['tasks'])}: "
         f"span {figures['mapped_span']:.1f}s, sum {figures['mapped_sum']:.1f}s")
    for task in figures["tasks"]:
        _say(f"    [{task['map_index']}] {task['name'] or '':<12} {task['worker']:<9} +{task['offset']:5.1f}s "
             f"{task['seconds']:6.1f}s {task['state']}")


def run_config(config: Config, admin: str, urls: dict[str, str], receivers: Receivers, partitions: int,
               home: Path) -> dict:
    """One fresh Airflow deployment with ``config``'s workers; one score run and one outreach run."""
    from smarketing_airflow.defaults import SMTP_POOL, SMTP_POOL_SLOTS

    from smarketing_tasks.benchmark import fresh_database

    load_at_start = os.getloadavg()
    airflow_url = fresh_database(admin, "scaleout_airflow")
    queue = f"smarketing_scaleout_{uuid.uuid4().hex[:8]}"
    workers = config.worker_names()
    stack = AirflowStack(
        home=home, metadata_url=metadata_url(airflow_url), executor="CeleryExecutor",
        connections=loop_connections(urls, receivers.smtp_port),
        extra_env={"SMARKETING_DATA_DIR": str(home / "data"), "SMARKETING_PARTITIONS": str(partitions),
                   "SMARKETING_WEBHOOK_URL": receivers.webhook_url, **SETTINGS_ENV,
                   "SMARKETING_SEND_SHARDS": str(config.send_shards),
                   **celery_env(REDIS_URL, airflow_url, queue, config.concurrency),
                   # room for every worker slot (the stack's default of 4 would cap 2x4)
                   "AIRFLOW__CORE__PARALLELISM": str(max(4, config.workers * config.concurrency))})
    try:
        started = time.monotonic()
        stack.airflow("db", "migrate", timeout_s=600)
        stack.start_core()
        stack.start_celery_workers(workers, queue)
        stack.wait_until_serving()
        stack.set_pool(SMTP_POOL, SMTP_POOL_SLOTS, "Concurrent connections to the SMTP server")
        stack.wait_for_dags(set(MAPPED))
        _say(f"  deployment ready in {time.monotonic() - started:.0f}s ({', '.join(workers)} on queue {queue})")
        due = make_due_again(urls["warehouse"])
        received_before = receivers.counts()

        now = datetime.now(UTC).isoformat()
        stack.unpause("smarketing_score")
        score_run = stack.trigger("smarketing_score", now)["dag_run_id"]
        stack.wait_for_run("smarketing_score", RUN_TIMEOUT_S, run_id=score_run)
        # Outreach is also scheduled hourly: triggered for the interval the scheduler would run on unpausing.
        outreach_run = stack.trigger_next_interval("smarketing_outreach")["dag_run_id"]
        stack.unpause("smarketing_outreach")
        stack.wait_for_run("smarketing_outreach", RUN_TIMEOUT_S, run_id=outreach_run)
        stack.api.patch("/api/v2/dags/smarketing_outreach", json={"is_paused": True})  # no hourly run after
        received = {k: v - received_before[k] for k, v in receivers.counts().items()}
    finally:
        survivors = stack.stop()
        forget_queue(REDIS_URL, queue)
    if survivors:
        _say(f"  WARNING: processes outlived the deployment: {survivors}")
    result = {"config": config.name, "workers": config.workers, "concurrency": config.concurrency,
              "load_average_start": load_at_start, "load_average": os.getloadavg(), "due": due, "received": received,
              "runs": [mapped_figures(airflow_url, "smarketing_score", score_run),
                       mapped_figures(airflow_url, "smarketing_outreach", outreach_run)]}
    for figures in result["runs"]:
        _print_run(figures)
    _say(f"  due {due}, received {received}; load average {' '.join(f'{x:.2f}' for x in result['load_average'])}")
    return result


def summary(results: list[dict]) -> str:
    base = {run["dag_id"]: run for run in results[0]["runs"]}
    lines = ["| configuration | DAG | mapped tasks | workers used | span s | sum s | sum/span | run s "
             "| speed-up (span) | load 1 min (start → end) |", "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for result in results:
        for run in result["runs"]:
            used = sorted({t["worker"] for t in run["tasks"]})
            speed_up = base[run["dag_id"]]["mapped_span"] / run["mapped_span"]
            lines.append(f"| {result['config']} | {run['dag_id']} | {len(run['tasks'])} | {', '.join(used)} | "
                         f"{run['mapped_span']:.1f} | {run['mapped_sum']:.1f} | "
                         f"{run['mapped_sum'] / run['mapped_span']:.2f} | {run['run_seconds']:.1f} | "
                         f"{speed_up:.2f}× | {result.get('load_average_start', [float('nan')])[0]:.1f} → "
                         f"{result['load_average'][0]:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=150_000)
    parser.add_argument("--days", type=int, default=365, help="the shop's history (fewer: more asks due now)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--partitions", type=int, default=4, help="scoring partitions (the setting's default: 4)")
    parser.add_argument("--configs", type=Config.parse, nargs="*", default=[Config(1, 1), Config(2, 1)],
                        help="WxC: W workers of concurrency C; WxC/S: with S send shards per channel "
                             "(first = the baseline of the speed-up); "
                             "none: only build")
    parser.add_argument("--smtp-delay-ms", type=float, default=20.0, help="the SMTP server's time per message")
    parser.add_argument("--webhook-delay-ms", type=float, default=20.0, help="the SMS webhook's time per message")
    parser.add_argument("--channel", choices=("sms", "email"), default="sms",
                        help="preferred channel of the build's planning and the runs: sms (SMS consent gets an SMS, "
                             "the others an email: both channels have work) or email (every message is an email); "
                             "give --reuse the build's")
    parser.add_argument("--pg-url", help="an admin URL of another PostgreSQL server")
    parser.add_argument("--reuse", action="store_true", help="keep the shop and warehouse of the last build")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args()
    SETTINGS_ENV["SMARKETING_PREFERRED_CHANNEL"] = args.channel
    if not redis_available():
        sys.exit("needs the Redis at 127.0.0.1:6379 (the CeleryExecutor's broker)")

    from smarketing_tasks.benchmark import bench_server

    admin = bench_server(args.pg_url)
    # The shop ends an hour before now: the runs of a real scheduler take the wall clock as their time.
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    urls = _urls(admin) if args.reuse else build(admin, args.customers, args.days, end, args.seed)
    if not args.configs:
        return
    receivers = Receivers(args.smtp_delay_ms, args.webhook_delay_ms)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as scratch:
            for number, config in enumerate(args.configs):
                _say(f"{config.name} (load average {os.getloadavg()[0]:.2f}) ...")
                results.append(run_config(config, admin, urls, receivers, args.partitions,
                                          Path(scratch) / f"airflow-{number}"))
    finally:
        receivers.close()
    _say("\n" + summary(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
