"""Build every mart into a staging schema, audit it, then publish all of them in one transaction.

Write → audit → publish: the marts are built in schema ``marketing_build`` (committed, invisible to BI: the
read-only role has no privilege there), audited (grain enforced by primary keys, no contact data), and then
swapped into schema ``marketing`` inside one short transaction. Readers see either the whole previous
version or the whole new one, never a half-built mart; a failure anywhere leaves the last good version.
A session advisory lock serialises concurrent publishers (a backfill and a scheduled run, say).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from statistics import NormalDist

import sqlalchemy as sa

from smarketing_tasks.marts.catalog import MARTS_DIR, Mart, load_catalog
from smarketing_tasks.marts.review_signals import (
    EMAIL_PATTERN,
    PHONE_PATTERN,
    SignalRules,
    refresh_review_signals,
)
from smarketing_tasks.marts.settings import MartSettings

PUBLISH_SCHEMA = "marketing"
BUILD_SCHEMA = "marketing_build"
BI_ROLE = "smarketing_bi"
_LOCK_KEY = 0x5EA4_0007  # one publisher at a time per warehouse
_BIND = re.compile(r"(?<![:\w]):(\w+)")

Progress = Callable[[str], None]
# Called after the build is committed and audited, before the swap: raise to stop publishing (a GX gate).
BeforePublish = Callable[[sa.Connection, str], None]


class MartBuildError(RuntimeError):
    """A mart could not be built or failed its audit; the published marts are unchanged."""


@dataclass
class PublishResult:
    as_of: datetime
    rows: dict[str, int] = field(default_factory=dict)
    build_seconds: float = 0.0
    publish_seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"as_of": self.as_of.isoformat(), "rows": dict(self.rows),
                "build_seconds": round(self.build_seconds, 3), "publish_seconds": round(self.publish_seconds, 3)}


def publish_marts(engine: sa.Engine, as_of: datetime, settings: MartSettings | None = None, *,
                  catalog: list[Mart] | None = None, marts_dir: Path = MARTS_DIR,
                  progress: Progress | None = None, before_publish: BeforePublish | None = None) -> dict:
    """Rebuild all marts as of ``as_of`` (the run's logical time) and publish them atomically.

    Returns ``{"as_of", "rows": {mart: rows}, "build_seconds", "publish_seconds"}`` (small: fit for XCom).
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware (the run's logical time in UTC)")
    settings = settings or MartSettings()
    catalog = catalog or load_catalog()
    say = progress or (lambda _message: None)
    result = PublishResult(as_of=as_of)
    with engine.connect() as conn:
        conn.execute(sa.text("select pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
        conn.commit()
        try:
            started = time.perf_counter()
            with conn.begin():  # committed on its own: signals stay computed even if the build fails
                refreshed = refresh_review_signals(conn, SignalRules.from_settings(settings))
            say(f"review signals: {refreshed:,} new or stale reviews scored for tone, lukewarm answers and quotes")
            with conn.begin():
                result.rows = _build(conn, as_of, settings, catalog, marts_dir, say)
                _audit(conn, catalog)
            result.build_seconds = time.perf_counter() - started
            if before_publish is not None:
                before_publish(conn, BUILD_SCHEMA)
                conn.commit()
            started = time.perf_counter()
            with conn.begin():
                _swap(conn, catalog, settings, say)
            result.publish_seconds = time.perf_counter() - started
        finally:
            _unlock(conn)
    say(f"published {len(result.rows)} marts as of {as_of:%Y-%m-%d %H:%M} UTC in "
        f"{result.build_seconds + result.publish_seconds:.1f}s")
    return result.as_dict()


def _unlock(conn: sa.Connection) -> None:
    try:
        if conn.in_transaction():
            conn.rollback()
        conn.execute(sa.text("select pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
        conn.commit()
    except sa.exc.DBAPIError:
        conn.invalidate()  # a session lock dies with its session


def _parameters(as_of: datetime, settings: MartSettings) -> dict:
    return {
        "as_of": as_of,
        "z": NormalDist().inv_cdf(0.5 + settings.funnel_confidence / 2),
        "confidence": settings.funnel_confidence,
        "min_rating": settings.testimonial_min_rating,
        "word_of_mouth_reach": settings.word_of_mouth_reach,
        "email_pattern": EMAIL_PATTERN,
        "phone_pattern": PHONE_PATTERN,
    }


def executable_sql(text: str) -> str:
    """The SQL without its comment lines (bind names in comments would otherwise become parameters)."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


def _bound(sql: str, parameters: dict) -> dict:
    names = set(_BIND.findall(sql))
    unknown = names - parameters.keys()
    if unknown:
        raise MartBuildError(f"mart SQL uses unknown parameters {sorted(unknown)}")
    return {k: v for k, v in parameters.items() if k in names}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _build(conn: sa.Connection, as_of: datetime, settings: MartSettings, catalog: list[Mart],
           marts_dir: Path, say: Progress) -> dict[str, int]:
    conn.exec_driver_sql("set local timezone = 'UTC'")
    # JIT compiles each big CTE chain for seconds and saves far less: loop_kpis_daily spent 9.9 s in LLVM for
    # a 0.7 s query (20,000 customers, docs/benchmarks/marts.md)
    conn.exec_driver_sql("set local jit = off")
    if not conn.execute(sa.text("select 1 from pg_roles where rolname = :r"), {"r": BI_ROLE}).scalar():
        raise MartBuildError(f"role {BI_ROLE} is missing: apply the warehouse migrations first")
    conn.exec_driver_sql(f"drop schema if exists {BUILD_SCHEMA} cascade")
    conn.exec_driver_sql(f"create schema {BUILD_SCHEMA}")
    parameters = _parameters(as_of, settings)
    rows: dict[str, int] = {}
    for mart in catalog:
        started = time.perf_counter()
        sql = executable_sql(mart.sql(marts_dir))
        params = _bound(sql, parameters)
        returned = list(conn.execute(sa.text(f"select * from ({sql}) as mart limit 0"), params).keys())
        if sorted(returned) != sorted(mart.column_names):
            raise MartBuildError(
                f"{mart.sql_file} returns columns that differ from sql/marts/schema.yml: "
                f"undocumented {sorted(set(returned) - set(mart.column_names))}, "
                f"missing {sorted(set(mart.column_names) - set(returned))}")
        table = f"{BUILD_SCHEMA}.{mart.name}"
        columns = ", ".join(f"{c.name} {c.type}" for c in mart.columns)
        conn.exec_driver_sql(f"create table {table} ({columns}, primary key ({', '.join(mart.key)}))")
        names = ", ".join(mart.column_names)
        try:
            inserted = conn.execute(sa.text(f"insert into {table} ({names}) select {names} from ({sql}) as mart"),
                                    params).rowcount
        except sa.exc.IntegrityError as error:
            raise MartBuildError(f"{mart.name} breaks its grain ({mart.grain}): {error.orig}") from error
        _redact_free_text(conn, table, mart)
        _comment(conn, table, mart, as_of)
        conn.exec_driver_sql(f"grant select on {table} to {BI_ROLE}")
        rows[mart.name] = inserted
        say(f"built {mart.name}: {inserted:,} rows in {time.perf_counter() - started:.2f}s")
    return rows


def _redact_free_text(conn: sa.Connection, table: str, mart: Mart) -> None:
    """Customers and staff write contact details into free text; replace them before anyone can read it."""
    for column in (c.name for c in mart.columns if c.free_text):
        conn.execute(sa.text(
            f"""update {table}
                set {column} = regexp_replace(regexp_replace({column}, :email, '[email]', 'g'), :phone, '[phone]', 'g')
                where {column} ~ :email or {column} ~ :phone"""),
            {"email": EMAIL_PATTERN, "phone": PHONE_PATTERN})


def _comment(conn: sa.Connection, table: str, mart: Mart, as_of: datetime) -> None:
    conn.exec_driver_sql(f"comment on table {table} is " + _literal(
        f"{mart.description} Grain: {mart.grain}. Data as of {as_of:%Y-%m-%d %H:%M} UTC."))
    for column in mart.columns:
        conn.exec_driver_sql(f"comment on column {table}.{column.name} is {_literal(column.description)}")


def _audit(conn: sa.Connection, catalog: list[Mart]) -> None:
    """Marts never carry contact data: no value of a text column may look like an email address."""
    problems = []
    for mart in catalog:
        text_columns = [c for c in mart.columns if c.type == "text"]
        if not text_columns:
            continue
        checks = ", ".join(
            f"count(*) filter (where {c.name} ~ :email"
            + (f" or {c.name} ~ :phone" if c.free_text else "") + f") as {c.name}" for c in text_columns)
        counts = conn.execute(sa.text(f"select {checks} from {BUILD_SCHEMA}.{mart.name}"),
                              {"email": EMAIL_PATTERN, "phone": PHONE_PATTERN}).one()._asdict()
        problems += [f"{mart.name}.{name}: {n} values look like contact data" for name, n in counts.items() if n]
    if problems:
        raise MartBuildError("audit failed, nothing published: " + "; ".join(problems))


def _swap(conn: sa.Connection, catalog: list[Mart], settings: MartSettings, say: Progress) -> None:
    conn.exec_driver_sql(f"set local lock_timeout = '{int(settings.publish_lock_timeout_seconds)}s'")
    for mart in catalog:
        conn.exec_driver_sql(f"drop table if exists {PUBLISH_SCHEMA}.{mart.name}")
        conn.exec_driver_sql(f"alter table {BUILD_SCHEMA}.{mart.name} set schema {PUBLISH_SCHEMA}")
        say(f"published {mart.name}")
    conn.exec_driver_sql(f"drop schema {BUILD_SCHEMA}")
