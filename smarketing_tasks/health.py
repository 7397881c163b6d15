"""Health of a deployment, for `smarketing health`, container healthchecks and monitoring.

Each check returns ``ok``, ``warn`` or ``fail`` with a sentence; the command exits non-zero on any
``fail``. Checks run only for what is configured: the warehouse (reachable, migrations applied, data
fresh, outbox not stuck), the shop, the SMTP server, Airflow's metadata database and the api-server's
health endpoint (scheduler, triggerer and dag-processor heartbeats). Connections are read from the same
``AIRFLOW_CONN_*`` variables Airflow uses (URI or JSON), without importing Airflow.
"""

from __future__ import annotations

import json
import smtplib
import ssl
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, unquote, urlsplit

import sqlalchemy as sa

OK, WARN, FAIL = "ok", "warn", "fail"
CHECKS = ("warehouse", "shop", "smtp", "metadata", "api")


@dataclass(frozen=True)
class HealthSettings:
    """Thresholds of `smarketing health`."""

    health_max_ingest_age_hours: float = 3.0  # warn when the last successful ingestion is older than this
    health_max_failed_messages: int = 0  # warn when more outbox messages than this are in status failed
    health_timeout_seconds: float = 5.0  # per check: connect/answer within this long


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status.upper():<4}  {self.name:<10} {self.detail}"


@dataclass(frozen=True)
class ConnectionInfo:
    conn_type: str
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = None
    schema: str | None = None
    extra: dict | None = None

    def sqlalchemy_url(self) -> str:
        return sa.URL.create("postgresql+psycopg", username=self.login or None, password=self.password or None,
                             host=self.host, port=self.port, database=self.schema or None).render_as_string(
                                 hide_password=False)


def parse_connection(value: str) -> ConnectionInfo:
    """An ``AIRFLOW_CONN_*`` value (URI or JSON) without Airflow; extras from the URI query or JSON."""
    if value.lstrip().startswith("{"):
        data = json.loads(value)
        extra = data.get("extra") or {}
        return ConnectionInfo(conn_type=data.get("conn_type", ""), host=data.get("host"), port=data.get("port"),
                              login=data.get("login"), password=data.get("password"), schema=data.get("schema"),
                              extra=json.loads(extra) if isinstance(extra, str) else extra)
    parts = urlsplit(value)
    return ConnectionInfo(conn_type=parts.scheme.replace("-", "_"), host=unquote(parts.hostname or "") or None,
                          port=parts.port, login=unquote(parts.username) if parts.username else None,
                          password=unquote(parts.password) if parts.password else None,
                          schema=unquote(parts.path.lstrip("/")) or None, extra=dict(parse_qsl(parts.query)))


def _flag(extra: Mapping, name: str) -> bool:
    value = extra.get(name, False)
    return value if isinstance(value, bool) else str(value).lower() in {"1", "true", "yes"}


def _postgres_url(value: str) -> str:
    info = parse_connection(value)
    if value.lstrip().startswith("{"):
        return info.sqlalchemy_url()
    return value.split("?", 1)[0] if info.conn_type in ("postgres", "postgresql") else value


def _describe(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def _guard(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    try:
        return check()
    except Exception as error:  # a health check reports, it does not crash
        return CheckResult(name, FAIL, _describe(error))


def check_warehouse(url: str, now: datetime, settings: HealthSettings) -> list[CheckResult]:
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.migrations import discover

    engine = make_engine(url, poolclass=sa.pool.NullPool,
                         connect_args={"connect_timeout": int(settings.health_timeout_seconds)})
    results = []
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
            results.append(CheckResult("warehouse", OK, "reachable"))
            applied = set(conn.execute(sa.text(
                "select version from smarketing.schema_migrations")).scalars()) if conn.execute(sa.text(
                    "select to_regclass('smarketing.schema_migrations')")).scalar() else set()
            pending = [m.path.name for m in discover() if m.version not in applied]
            results.append(CheckResult("migrations", WARN if pending else OK,
                                       f"pending: {', '.join(pending)} (the next smarketing_ingest run applies them)"
                                       if pending else f"{len(applied)} applied, none pending"))
            if applied:
                last = conn.execute(sa.text("select max(finished_at) from smarketing.ingest_runs")).scalar()
                limit = timedelta(hours=settings.health_max_ingest_age_hours)
                if last is None:
                    results.append(CheckResult("freshness", WARN, "no ingestion has run yet"))
                else:
                    age = now - last
                    results.append(CheckResult("freshness", WARN if age > limit else OK,
                                               f"last ingestion {age.total_seconds() / 3600:.1f} h ago "
                                               f"(limit {settings.health_max_ingest_age_hours:g} h)"))
                failed = conn.execute(sa.text(
                    "select count(*) from smarketing.outreach_messages where status = 'failed'")).scalar_one()
                results.append(CheckResult("outbox", WARN if failed > settings.health_max_failed_messages else OK,
                                           f"{failed} message(s) failed"))
    finally:
        engine.dispose()
    return results


def check_postgres(name: str, url: str, settings: HealthSettings) -> CheckResult:
    from smarketing_tasks.db import make_engine

    engine = make_engine(url, poolclass=sa.pool.NullPool,
                         connect_args={"connect_timeout": int(settings.health_timeout_seconds)})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
            if name == "metadata":
                version = conn.execute(sa.text(
                    "select version_num from alembic_version")).scalar() if conn.execute(
                        sa.text("select to_regclass('alembic_version')")).scalar() else None
                if version is None:
                    return CheckResult(name, FAIL, "reachable but not migrated (run `airflow db migrate`)")
                return CheckResult(name, OK, f"reachable, schema revision {version}")
        return CheckResult(name, OK, "reachable")
    finally:
        engine.dispose()


def check_smtp(value: str, settings: HealthSettings) -> CheckResult:
    """Connect, greet and NOOP with the SMTP provider's reading of the connection (SSL unless disable_ssl)."""
    info = parse_connection(value)
    extra = info.extra or {}
    use_ssl = not _flag(extra, "disable_ssl")
    port = info.port or (465 if use_ssl else 25)
    timeout = settings.health_timeout_seconds
    client = (smtplib.SMTP_SSL(info.host, port, timeout=timeout, context=ssl.create_default_context()) if use_ssl
              else smtplib.SMTP(info.host, port, timeout=timeout))
    with client:
        client.ehlo()
        code, _ = client.noop()
    return CheckResult("smtp", OK if code == 250 else FAIL, f"{info.host}:{port} answered NOOP with {code}")


def check_api(base_url: str, settings: HealthSettings) -> CheckResult:
    """The api-server's /api/v2/monitor/health: metadatabase, scheduler, triggerer and dag-processor."""
    import httpx

    response = httpx.get(base_url.rstrip("/") + "/api/v2/monitor/health", timeout=settings.health_timeout_seconds)
    response.raise_for_status()
    body = response.json()
    states = {name: (part or {}).get("status") for name, part in body.items()}
    bad = {name: state for name, state in states.items() if state not in ("healthy", None)}
    detail = ", ".join(f"{name} {state or 'not reported'}" for name, state in sorted(states.items()))
    return CheckResult("api", FAIL if bad or states.get("scheduler") is None else OK, detail)


def run_checks(environ: Mapping[str, str], now: datetime, settings: HealthSettings,
               only: set[str] | None = None, api_url: str | None = None) -> list[CheckResult]:
    """Every configured check (or those in ``only``); an ``only`` check that is not configured fails."""
    wanted = set(CHECKS) if only is None else only
    results: list[CheckResult] = []
    sources = {
        "warehouse": environ.get("AIRFLOW_CONN_SMARKETING_WAREHOUSE"),
        "shop": environ.get("AIRFLOW_CONN_SMARKETING_SHOP"),
        "smtp": environ.get("AIRFLOW_CONN_SMARKETING_SMTP"),
        "metadata": environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"),
        "api": api_url or environ.get("SMARKETING_HEALTH_API_URL"),
    }
    for name in CHECKS:
        if name not in wanted:
            continue
        value = sources[name]
        if not value:
            if only is not None:
                results.append(CheckResult(name, FAIL, "not configured"))
            continue
        if name == "warehouse":
            try:
                results += check_warehouse(_postgres_url(value), now, settings)
            except Exception as error:  # unreachable: one clear line
                results.append(CheckResult("warehouse", FAIL, _describe(error)))
        elif name == "shop":
            info = parse_connection(value)
            if info.conn_type in ("postgres", "postgresql"):
                results.append(_guard(name, lambda v=value: check_postgres("shop", _postgres_url(v), settings)))
            else:
                results.append(CheckResult(name, OK, f"{(info.extra or {}).get('source', info.conn_type)} source "
                                                     "(files are checked when read)"))
        elif name == "smtp":
            results.append(_guard(name, lambda v=value: check_smtp(v, settings)))
        elif name == "metadata":
            results.append(_guard(name, lambda v=value: check_postgres("metadata", v, settings)))
        elif name == "api":
            results.append(_guard(name, lambda v=value: check_api(v, settings)))
    return results


def worst(results: list[CheckResult]) -> str:
    statuses = {r.status for r in results}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else OK


def as_json(results: list[CheckResult]) -> str:
    return json.dumps({"status": worst(results), "checks": [asdict(r) for r in results]}, indent=2)
