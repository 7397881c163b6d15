"""docker-compose.yaml, Dockerfile and .env.example checked offline (no Docker engine on these machines).

The compose file is validated against the Compose specification's JSON schema (tests/data/compose_spec.json,
see tests/data/compose_spec.ORIGIN.md for where it comes from), both as written and after interpolating .env.example
the way `docker compose` does, then checked for what the stack needs to work: the services, the shared
x-airflow-common settings, healthchecks, start order, and that the image is built from the lock.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "tests" / "data" / "compose_spec.json").read_text())
AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-worker"}
LONG_RUNNING = {"postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                "airflow-triggerer", "airflow-worker", "smarketing-links", "metabase"}
_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip().strip("'\"")
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: $$, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}."""
    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        if op in (":-", "-"):
            return value if (value if op == ":-" else value is not None) else arg
        if op in (":?", "?"):
            if value is None or (op == ":?" and value == ""):
                raise KeyError(f"required variable {name} is not set: {arg}")
            return value
        return value or ""

    return _VARIABLE.sub(substitute, text)


@pytest.fixture(scope="module")
def raw_text() -> str:
    return (ROOT / "docker-compose.yaml").read_text()


@pytest.fixture(scope="module")
def compose(raw_text) -> dict:
    return yaml.safe_load(raw_text)


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return env_file(ROOT / ".env.example")


@pytest.fixture(scope="module")
def resolved(raw_text, example_env) -> dict:
    return yaml.safe_load(interpolate(raw_text, example_env))


def _validator():
    import jsonschema

    cls = jsonschema.validators.validator_for(SCHEMA)
    cls.check_schema(SCHEMA)
    return cls(SCHEMA)


def test_schema_is_the_compose_specification():
    assert SCHEMA["$schema"].startswith("http://json-schema.org/draft/2019-09")
    assert {"services", "volumes", "networks"} <= set(SCHEMA["properties"])


def test_schema_rejects_a_broken_file():
    errors = list(_validator().iter_errors({"services": {"web": {"image": "x", "healthcheck": {"tst": "x"}}}}))
    assert errors, "the schema must catch an unknown healthcheck key"


def test_compose_file_matches_the_specification(compose):
    errors = sorted(_validator().iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_interpolated_file_matches_the_specification(resolved):
    errors = list(_validator().iter_errors(resolved))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_env_example_sets_every_required_variable(raw_text, example_env):
    required = {m.group("name") for m in _VARIABLE.finditer(raw_text) if m.group("op") in (":?", "?")}
    assert required, "the compose file should refuse to start without its secrets"
    assert required <= set(example_env), f"missing from .env.example: {sorted(required - set(example_env))}"
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(raw_text, {k: v for k, v in example_env.items() if k != "POSTGRES_PASSWORD"})


def test_services_of_the_stack(compose):
    assert set(compose["services"]) >= {"postgres", "redis", *AIRFLOW_SERVICES, "smarketing-links", "metabase"}
    assert compose["services"]["metabase"]["profiles"] == ["bi"], "BI is optional"


def test_airflow_services_share_the_common_anchor(compose):
    common = compose["x-airflow-common"]
    assert common["build"] == "." and common["image"]
    assert common["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    for name in AIRFLOW_SERVICES | {"smarketing-links"}:
        service = compose["services"][name]
        assert service["image"] == common["image"], name
        env = service["environment"]
        for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__API_AUTH__JWT_SECRET",
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "AIRFLOW__CELERY__BROKER_URL"):
            assert env[key] == common["environment"][key], f"{name} differs in {key}"


def test_long_running_services_have_healthchecks(compose):
    for name in LONG_RUNNING:
        check = compose["services"][name].get("healthcheck")
        assert check and check["test"], f"{name} has no healthcheck"


def test_start_order_waits_for_health_and_init(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            expected = "service_completed_successfully" if dependency == "airflow-init" else "service_healthy"
            assert rule["condition"] == expected, f"{name} -> {dependency}"
            if rule["condition"] == "service_healthy":
                assert services[dependency].get("healthcheck"), f"{dependency} cannot become healthy"
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert "airflow-init" in services[name]["depends_on"], name

    def reaches(start: str, seen: tuple[str, ...] = ()) -> None:
        assert start not in seen, f"dependency cycle: {' -> '.join((*seen, start))}"
        for dependency in services[start].get("depends_on") or {}:
            reaches(dependency, (*seen, start))

    for name in services:
        reaches(name)


def test_every_component_points_at_the_api_server_and_postgres(resolved):
    env = resolved["x-airflow-common"]["environment"]
    services = resolved["services"]
    api_host = re.match(r"http://([^:/]+):8080/execution/", env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).group(1)
    assert api_host in services and services[api_host]["command"] == "api-server"
    assert "@postgres:5432/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://") and "@redis:" in env["AIRFLOW__CELERY__BROKER_URL"]


def test_init_prepares_warehouse_pool_and_bi_login(compose):
    script = "\n".join(compose["services"]["airflow-init"]["command"])
    for step in ("airflow db migrate", "smarketing migrate", "airflow pools set smarketing_smtp",
                 "grant smarketing_bi to smarketing_bi_reader", "smarketing health"):
        assert step in script, step


def test_env_example_connections_are_valid_airflow_connections(example_env):
    from airflow.models.connection import Connection

    kinds = {}
    for name, value in example_env.items():
        if name.startswith("AIRFLOW_CONN_"):
            conn_id = name.removeprefix("AIRFLOW_CONN_").lower()
            conn = Connection.from_json(value, conn_id=conn_id) if value.startswith("{") else Connection(conn_id=conn_id, uri=value)
            kinds[conn_id] = conn.conn_type
    assert kinds["smarketing_warehouse"] == "postgres"
    assert kinds["smarketing_shop"] == "postgres"
    assert kinds["smarketing_smtp"] == "smtp"
    assert "smarketing_alerts" in kinds


def test_dockerfile_installs_from_the_lock_and_copies_existing_paths():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "uv sync --frozen" in dockerfile and "uv.lock" in dockerfile
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for match in re.finditer(r"^COPY (?!--from)(?:--\S+ )*(.+) \S+$", dockerfile, flags=re.MULTILINE):
        for source in match.group(1).split():
            assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
            assert source not in ignored, f".dockerignore hides {source} from the build"


def test_init_script_is_valid_bash_and_python(resolved, tmp_path):
    """The init command as the container gets it (after interpolation): bash syntax, and each embedded
    Python block compiles."""
    import subprocess
    import textwrap

    command = resolved["services"]["airflow-init"]["command"]
    assert command[0] == "-c"
    script = command[1]
    (tmp_path / "init.sh").write_text(script)
    checked = subprocess.run(["bash", "-n", str(tmp_path / "init.sh")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    blocks = re.findall(r"python - <<'PY'\n(.*?)\n\s*PY\n", script, flags=re.DOTALL)
    assert len(blocks) == 2
    for block in blocks:
        compile(textwrap.dedent(block), "airflow-init", "exec")
