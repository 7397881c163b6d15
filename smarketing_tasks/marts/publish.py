"""Build every mart into a staging schema, audit it, then publish all of them in one transaction.

Write → audit → publish: the marts are built in schema ``marketing_build`` (committed, invisible to BI: the
read-only role has no privilege there), audited (grain enforced by primary keys, no contact data), and then
published into schema ``marketing`` inside one short transaction. Readers see either the whole previous
version or the whole new one, never a half-built mart; a failure anywhere leaves the last good version.
A session advisory lock serialises concurrent publishers (a backfill and a scheduled run, say).

Full or incremental (issue 9). A full publish rebuilds every mart from the whole history and swaps the
tables in. An incremental one recomputes only what changed since the last publish, as logged by the
triggers of migration 0018 in ``smarketing.mart_changes``: the build schema then holds, per mart's
``refresh`` (sql/marts/schema.yml), the changed customers' rows (merged into the published table: delete
and insert of those customers), every day with the changed days recomputed (swapped in), or the whole mart
(small ones, swapped in). The same SQL files build both: ``:full`` or the changed keys restrict the sources.
A publish is full when forced (``full=True``, setting ``full_rebuild``), the first time, when the mart SQL,
catalog or settings changed since the last publish, or when its as-of lies before an earlier publish's (a
backfill: the next publish is then full too, since the change log was claimed up to that later as-of).
A full publish sums the product sales (``smarketing.mart_sku_days``) on a second connection while the first
builds the customer marts; the publishing transaction takes those rows, so a failure still changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from statistics import NormalDist

import sqlalchemy as sa

from smarketing_tasks.marts.catalog import MARTS_DIR, Mart, load_catalog
from smarketing_tasks.marts.review_signals import (
    EMAIL_PATTERN,
    PHONE_PATTERN,
    PHONE_PRESENCE,
    SignalRules,
    refresh_review_signals,
)
from smarketing_tasks.marts.settings import MartSettings

PUBLISH_SCHEMA = "marketing"
BUILD_SCHEMA = "marketing_build"
BI_ROLE = "smarketing_bi"
_LOCK_KEY = 0x5EA4_0007  # one publisher at a time per warehouse
_BIND = re.compile(r"(?<![:\w]):(\w+)")
SKU_DAYS_SQL = "refresh_mart_sku_days.sql"  # the per-product-and-day partials product marts are summed from
SKU_DAYS = "smarketing.mart_sku_days"
SKU_DAYS_COLUMNS = ("sku, day, orders_count, units, revenue, last_ordered_at, last_name, last_named_at, "
                    "last_named_name")
# a full publish's product sales, computed on a second connection while the first builds the customer marts,
# then copied into SKU_DAYS by the publishing transaction
SKU_DAYS_FULL = "smarketing.mart_sku_days_full"
# the change log entries a publish consumes: noted before its build, deleted when it commits (session-local)
CLAIMED = "pg_temp.mart_claimed_changes"
ROWS_SCHEMA = "smarketing"  # rows of a mart published as a view (read-time columns); BI cannot read here
LAST_AS_OF = ("(select as_of from smarketing.mart_publishes where state = 'published' "
              "order by publish_id desc limit 1)")

Progress = Callable[[str], None]
# Called after the build is committed and audited, before the swap, with the build schema and the marts whose
# build table holds only the changed customers' rows (incremental): raise to stop publishing (a GX gate).
BeforePublish = Callable[[sa.Connection, str, frozenset[str]], None]


class MartBuildError(RuntimeError):
    """A mart could not be built or failed its audit; the published marts are unchanged."""


@dataclass
class Scope:
    """What this publish recomputes: everything (``full``) or the changed customers and days."""

    full: bool
    reason: str                      # why full, or "changes since <as-of>"
    publish_id: int = 0
    customers: list[str] = field(default_factory=list)
    days: list[date] = field(default_factory=list)        # activity days (loop_kpis_daily)
    send_days: list[date] = field(default_factory=list)   # days messages were sent (outreach_funnel)
    sku_days: list[date] = field(default_factory=list)   # order days whose product partials are refreshed
    known_first_day: date | None = None                  # loop_kpis_daily's published range
    known_last_day: date | None = None

    def parameters(self) -> dict:
        return {"full": self.full, "changed_customers": self.customers, "changed_days": self.days,
                "changed_send_days": self.send_days,
                "known_first_day": self.known_first_day, "known_last_day": self.known_last_day}


@dataclass
class PublishResult:
    as_of: datetime
    mode: str = "full"
    reason: str = ""
    rows: dict[str, int] = field(default_factory=dict)      # rows of each published mart
    written: dict[str, int] = field(default_factory=dict)   # rows this publish computed per mart
    changed: dict[str, int] = field(default_factory=dict)   # changed customers and days (incremental)
    build_seconds: float = 0.0
    publish_seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"as_of": self.as_of.isoformat(), "mode": self.mode, "reason": self.reason, "rows": dict(self.rows),
                "written": dict(self.written), "changed": dict(self.changed),
                "build_seconds": round(self.build_seconds, 3), "publish_seconds": round(self.publish_seconds, 3)}


def publish_marts(engine: sa.Engine, as_of: datetime, settings: MartSettings | None = None, *,
                  catalog: list[Mart] | None = None, marts_dir: Path = MARTS_DIR,
                  progress: Progress | None = None, before_publish: BeforePublish | None = None,
                  full: bool = False) -> dict:
    """Bring all marts up to ``as_of`` (the run's logical time) and publish them atomically.

    Incremental unless ``full`` (or the setting ``full_rebuild``) or a full rebuild is due (module doc).
    Returns ``{"as_of", "mode", "reason", "rows": {mart: rows}, "written", "changed", "build_seconds",
    "publish_seconds"}`` (small: fit for XCom).
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
        side: _SideSkuDays | None = None
        try:
            started = time.perf_counter()
            parameters, rules = _parameters(as_of, settings), SignalRules.from_settings(settings)
            with conn.begin():  # committed first: it switches the change log on before the first build reads
                scope = _plan(conn, as_of, _digest(catalog, marts_dir, parameters, rules.version),
                              full or settings.full_rebuild, catalog)
            result.mode, result.reason = ("full" if scope.full else "incremental"), scope.reason
            say(f"{result.mode} publish: {scope.reason}")
            refreshed = 0
            if scope.full:
                with conn.begin():  # committed on its own: signals stay computed even if the build fails
                    refreshed = refresh_review_signals(conn, rules)
            with conn.begin():
                _prepare_build(conn)
                if not scope.full:
                    # an incremental build reads a few days' and customers' rows by index, from a warehouse
                    # whose pages are mostly cached: with the default cost the planner preferred scanning all
                    # 200,272 order lines to 592 index probes for the product partials of two days
                    conn.exec_driver_sql("set local random_page_cost = 1.1")
                _claim(conn, scope, as_of)
                if scope.full:  # started after the claim: it reads every order the claimed changes name
                    side = _SideSkuDays(engine, as_of, marts_dir)
                # the reviews changed since the last publish (some may have changed since the refresh above)
                refreshed += refresh_review_signals(conn, rules, review_ids_from=(
                    f"(select key as review_id from {CLAIMED} where entity = 'review') as changed"))
                say(f"review signals: {refreshed:,} new or stale reviews scored for tone, lukewarm answers and quotes")
                if not scope.full:
                    result.changed = {"customers": len(scope.customers), "days": len(scope.days),
                                      "send_days": len(scope.send_days)}
                    say(f"changed since the last publish: {len(scope.customers):,} customers, "
                        f"{len(scope.days):,} days, {len(scope.send_days):,} send days")
                if not scope.full:
                    _refresh_changed_sku_days(conn, as_of, scope, marts_dir)
                result.written = _build(conn, {**parameters, **scope.parameters()}, scope, catalog, marts_dir, say,
                                        side)
                if side is not None:  # no mart read the product sales: they are still brought up to date
                    side.copy_into(conn)
                _audit(conn, catalog)
            result.build_seconds = time.perf_counter() - started
            if before_publish is not None:
                before_publish(conn, BUILD_SCHEMA, frozenset(
                    () if scope.full else (m.name for m in catalog if m.refresh == "customers")))
                conn.commit()
            started = time.perf_counter()
            with conn.begin():
                result.rows = _publish(conn, as_of, scope, catalog, settings, say)
                _finish(conn, scope, result.rows)
            result.publish_seconds = time.perf_counter() - started
        finally:
            if side is not None:  # before the lock is released: another publisher would drop its table
                side.wait()
            _unlock(conn)
    say(f"published {len(result.rows)} marts as of {as_of:%Y-%m-%d %H:%M} UTC ({result.mode}) in "
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
    """A SQL string literal for exec_driver_sql, whose driver reads % as a placeholder even without parameters."""
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


def _digest(catalog: list[Mart], marts_dir: Path, parameters: dict, signal_rules: str) -> str:
    """What the published marts were built with: a change means their rows may all differ (a full rebuild)."""
    digest = hashlib.sha256()
    for mart in catalog:
        digest.update(repr(mart).encode())
        digest.update(mart.sql(marts_dir).encode())
    digest.update((marts_dir / SKU_DAYS_SQL).read_bytes())
    digest.update(repr(sorted((k, v) for k, v in parameters.items() if k != "as_of")).encode())
    digest.update(signal_rules.encode())  # quotes and lukewarm flags of testimonials and product_feedback
    return digest.hexdigest()


def _plan(conn: sa.Connection, as_of: datetime, digest: str, forced: bool, catalog: list[Mart]) -> Scope:
    """Full or incremental (module doc); records the publish as started, which switches the change log on."""
    last = conn.execute(sa.text(
        "select as_of, digest, max(as_of) over () as latest from smarketing.mart_publishes "
        "where state = 'published' order by publish_id desc limit 1")).one_or_none()
    present = conn.execute(sa.text("select count(to_regclass(name)) from unnest(cast(:names as text[])) as name"),
                           {"names": [f"{PUBLISH_SCHEMA}.{m.name}" for m in catalog]}).scalar()
    if forced:
        reason = "forced"
    elif last is None:
        reason = "first publish"
    elif last.digest != digest:
        reason = "the mart SQL, catalog or settings changed since the last publish"
    elif as_of < last.as_of:
        reason = f"a backfill: as of {as_of:%Y-%m-%d %H:%M}, before the last publish"
    elif last.as_of < last.latest:
        reason = "the last publish was a backfill"
    elif present < len(catalog):
        reason = "a published mart is missing"
    else:
        reason = ""
    full = bool(reason)
    publish_id = conn.execute(sa.text(
        "insert into smarketing.mart_publishes (as_of, mode, digest, state) values (:a, :m, :d, 'started') "
        "returning publish_id"), {"a": as_of, "m": "full" if full else "incremental", "d": digest}).scalar()
    return Scope(full=full, reason=reason or f"changes since {last.as_of:%Y-%m-%d %H:%M} UTC",
                 publish_id=publish_id)


def _prepare_build(conn: sa.Connection) -> None:
    _build_settings(conn)
    if not conn.execute(sa.text("select 1 from pg_roles where rolname = :r"), {"r": BI_ROLE}).scalar():
        raise MartBuildError(f"role {BI_ROLE} is missing: apply the warehouse migrations first")
    conn.exec_driver_sql(f"drop schema if exists {BUILD_SCHEMA} cascade")
    conn.exec_driver_sql(f"create schema {BUILD_SCHEMA}")


def _build_settings(conn: sa.Connection) -> None:
    """The build's transaction settings (days are UTC days)."""
    conn.exec_driver_sql("set local timezone = 'UTC'")
    # JIT compiles each big CTE chain for seconds and saves far less: loop_kpis_daily spent 9.9 s in LLVM for
    # a 0.7 s query (20,000 customers, docs/benchmarks/marts.md)
    conn.exec_driver_sql("set local jit = off")
    # marts are created by `create table ... as`, which may plan parallel workers: partial sums of a double
    # precision column add up in another order (product_feedback.avg_sentiment differed in its last digits)
    conn.exec_driver_sql("set local max_parallel_workers_per_gather = 0")


def _claim(conn: sa.Connection, scope: Scope, as_of: datetime) -> None:
    """Note the change log entries effective by ``as_of`` (deleted when this publish commits) and, for an
    incremental publish, the customers and days they name. Read before the build, so a change committed in
    between is both built and left for the next publish (built twice, never missed)."""
    conn.exec_driver_sql(f"drop table if exists {CLAIMED}")  # left by a publish that failed in this session
    conn.execute(sa.text(
        f"create temporary table {CLAIMED.removeprefix('pg_temp.')} as "
        "select change_id, entity, key, day from smarketing.mart_changes where effective_at <= :as_of"),
        {"as_of": as_of})
    conn.exec_driver_sql(f"analyze {CLAIMED}")  # the scope queries below join it
    if scope.full:
        # rows dated after the as-of (loaded early, or before the log was on) are logged anew, so that the
        # first incremental publish that reaches their time recomputes what they touch
        conn.execute(sa.text("delete from smarketing.mart_changes where effective_at > :as_of"), {"as_of": as_of})
        conn.execute(sa.text("select smarketing.log_future_mart_changes(:as_of)"), {"as_of": as_of})
        return
    claimed = CLAIMED
    scope.customers = list(conn.execute(sa.text(
        f"select distinct key from {claimed} where entity = 'customer' order by 1")).scalars())
    # a scoring date D sets the customer-base columns of the days from D-1 until the next scoring date's eve
    scope.days = list(conn.execute(sa.text(f"""
        with last as (select (cast(:as_of as timestamptz) - interval '1 microsecond')::date as day)
        select day from {claimed} where entity = 'day' and day is not null
        union
        select generate_series(changed.day - 1,
                               least(coalesce((select min(runs.score_date) from smarketing.score_runs as runs
                                               where runs.score_date > changed.day) - 2, last.day), last.day),
                               interval '1 day')::date
        from {claimed} as changed cross join last
        where changed.entity = 'score_date'
        order by 1"""), {"as_of": as_of}).scalars())
    scope.send_days, scope.sku_days = (list(conn.execute(sa.text(
        f"select distinct day from {claimed} where entity = :e order by 1"), {"e": entity}).scalars())
        for entity in ("send_day", "sku_day"))
    scope.known_first_day, scope.known_last_day = conn.execute(sa.text(
        f"select min(day), max(day) from {PUBLISH_SCHEMA}.loop_kpis_daily")).one()


def _refresh_changed_sku_days(conn: sa.Connection, as_of: datetime, scope: Scope, marts_dir: Path) -> None:
    """Order lines per product and day (smarketing.mart_sku_days) up to ``as_of`` for the changed days."""
    if not scope.sku_days:
        return
    conn.execute(sa.text(f"delete from {SKU_DAYS} where day = any(:days)"), {"days": scope.sku_days})
    _insert_sku_days(conn, SKU_DAYS, as_of, scope.sku_days, marts_dir)


def _insert_sku_days(conn: sa.Connection, table: str, as_of: datetime, changed_days: list[date] | None,
                     marts_dir: Path) -> None:
    """The product sales of every day (``changed_days`` None) or of the changed days, inserted into ``table``."""
    sql = executable_sql((marts_dir / SKU_DAYS_SQL).read_text())
    conn.execute(sa.text(f"insert into {table} ({SKU_DAYS_COLUMNS}) {sql}"),
                 {"as_of": as_of, "full": changed_days is None, "changed_days": changed_days or []})


class _SideSkuDays:
    """A full publish's product sales (smarketing.mart_sku_days), computed on a second connection meanwhile.

    Summing 2M order lines at 1M purchases costs as much as building advocates, and neither reads the other:
    on a second core they run at once. The rows go to an unlogged table of their own (committed there), and
    the publishing transaction replaces mart_sku_days' rows with them (``copy_into``), so a failed publish
    leaves mart_sku_days as it was, like everything else it builds.
    """

    def __init__(self, engine: sa.Engine, as_of: datetime, marts_dir: Path) -> None:
        self._engine = engine
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mart-sku-days")
        self._done = self._pool.submit(self._compute, engine, as_of, marts_dir)
        self._copied = False

    @staticmethod
    def _compute(engine: sa.Engine, as_of: datetime, marts_dir: Path) -> None:
        with engine.begin() as side:
            _build_settings(side)
            side.exec_driver_sql(f"drop table if exists {SKU_DAYS_FULL}")
            side.exec_driver_sql(f"create unlogged table {SKU_DAYS_FULL} (like {SKU_DAYS})")
            _insert_sku_days(side, SKU_DAYS_FULL, as_of, None, marts_dir)

    def copy_into(self, conn: sa.Connection) -> None:
        """In the publishing transaction: mart_sku_days becomes the computed rows (waits for them)."""
        if self._copied:
            return
        self._done.result()  # its error, if it failed
        conn.exec_driver_sql(f"delete from {SKU_DAYS}")
        conn.exec_driver_sql(f"insert into {SKU_DAYS} ({SKU_DAYS_COLUMNS}) select {SKU_DAYS_COLUMNS} from {SKU_DAYS_FULL}")
        conn.exec_driver_sql(f"drop table {SKU_DAYS_FULL}")
        self._copied = True

    def wait(self) -> None:
        """Let the second connection finish and, if the publish failed (then its own error is not the news),
        drop the rows it computed for nothing (best effort: the next full publish drops them too)."""
        self._pool.shutdown(wait=True)
        with contextlib.suppress(sa.exc.DBAPIError), self._engine.begin() as conn:
            conn.exec_driver_sql(f"drop table if exists {SKU_DAYS_FULL}")  # dropped already by a publish


def _build(conn: sa.Connection, parameters: dict, scope: Scope, catalog: list[Mart], marts_dir: Path,
           say: Progress, side: _SideSkuDays | None = None) -> dict[str, int]:
    """Build each mart's rows into the staging schema; returns the rows computed per mart. A mart that reads
    the product sales waits for ``side`` (a full publish's, computed meanwhile) to have written them."""
    written: dict[str, int] = {}
    for mart in catalog:
        started = time.perf_counter()
        sql = executable_sql(mart.sql(marts_dir))
        if side is not None and SKU_DAYS in sql:
            side.copy_into(conn)
        params = _bound(sql, parameters)
        returned = list(conn.execute(sa.text(f"select * from ({sql}) as mart limit 0"), params).keys())
        if sorted(returned) != sorted(mart.column_names):
            raise MartBuildError(
                f"{mart.sql_file} returns columns that differ from sql/marts/schema.yml: "
                f"undocumented {sorted(set(returned) - set(mart.column_names))}, "
                f"missing {sorted(set(mart.column_names) - set(returned))}")
        table = f"{BUILD_SCHEMA}.{mart.name}"
        # created from the query in the catalog's types, contact data redacted as the rows are written (not by
        # an update of every row), the key's index built once after the rows (not maintained row by row)
        selected = ", ".join(f"cast({_redacted(f'mart.{c.name}') if c.free_text else f'mart.{c.name}'} as {c.type}) "
                             f"as {c.name}" for c in mart.columns)
        inserted = conn.execute(sa.text(f"create table {table} as select {selected} from ({sql}) as mart"),
                                {**params, "email_pattern": EMAIL_PATTERN, "phone_pattern": PHONE_PATTERN,
                                 "phone_presence": PHONE_PRESENCE}).rowcount
        names = ", ".join(mart.column_names)
        if not scope.full and mart.refresh in ("days", "send_days"):  # the unchanged days as published
            keys = " and ".join(f"built.{k} = published.{k}" for k in mart.key)
            conn.execute(sa.text(
                f"insert into {table} ({names}) select {names} from {PUBLISH_SCHEMA}.{mart.name} as published "
                f"where not (published.day = any(:days)) "
                f"and not exists (select from {table} as built where {keys})"),
                {"days": scope.days if mart.refresh == "days" else scope.send_days})
        try:
            conn.exec_driver_sql(f"alter table {table} add primary key ({', '.join(mart.key)})")
        except sa.exc.IntegrityError as error:
            raise MartBuildError(f"{mart.name} breaks its grain ({mart.grain}): {error.orig}") from error
        if scope.full or mart.refresh != "customers":  # changed customers' rows are merged, this table dropped
            _comment(conn, table, mart, parameters["as_of"])
            conn.exec_driver_sql(f"grant select on {table} to {BI_ROLE}")
        written[mart.name] = inserted
        kind = "" if scope.full or mart.refresh == "whole" else f" (changed {mart.refresh})"
        say(f"built {mart.name}: {inserted:,} rows{kind} in {time.perf_counter() - started:.2f}s")
    return written


def _redacted(column: str) -> str:
    """Customers and staff write contact details into free text: the column with them replaced by placeholders."""
    email = f"regexp_replace({column}, :email_pattern, '[email]', 'g')"
    without_email = f"case when {_may_hold_email(column)} then {email} else {column} end"
    # the replacement only where a phone number is (replacing emails by '[email]' never makes one): the
    # presence test costs less than a replacement that finds nothing
    return (f"case when {column} ~ :phone_presence "
            f"then regexp_replace({without_email}, :phone_pattern, '[phone]', 'g') else {without_email} end")


def _may_hold_email(column: str) -> str:
    """A cheap test before the email pattern (which needs an '@'): most text skips the regular expression."""
    return f"strpos({column}, '@') > 0"


def _comment_table(conn: sa.Connection, table: str, mart: Mart, as_of: datetime, kind: str = "table") -> None:
    conn.exec_driver_sql(f"comment on {kind} {table} is " + _literal(
        f"{mart.description} Grain: {mart.grain}. Data as of {as_of:%Y-%m-%d %H:%M} UTC."))


def _comment(conn: sa.Connection, table: str, mart: Mart, as_of: datetime, kind: str = "table") -> None:
    _comment_table(conn, table, mart, as_of, kind)
    # one round trip for all columns (up to 40 statements a mart)
    conn.exec_driver_sql("; ".join(f"comment on column {table}.{column.name} is {_literal(column.description)}"
                                   for column in mart.columns))


def _audit(conn: sa.Connection, catalog: list[Mart]) -> None:
    """Marts never carry contact data: no value of a text column may look like an email address, and no
    value of a free-text column like a phone number."""
    problems = []
    for mart in catalog:
        text_columns = [c for c in mart.columns if c.type == "text"]
        if not text_columns:
            continue
        checks = ", ".join(
            f"count(*) filter (where ({_may_hold_email(c.name)} and {c.name} ~ :email)"
            + (f" or {c.name} ~ :phone" if c.free_text else "") + f") as {c.name}"
            for c in text_columns)
        # the presence test finds a phone in the same values as PHONE_PATTERN, for less CPU (a value each)
        counts = conn.execute(sa.text(f"select {checks} from {BUILD_SCHEMA}.{mart.name}"),
                              {"email": EMAIL_PATTERN, "phone": PHONE_PRESENCE}).one()._asdict()
        problems += [f"{mart.name}.{name}: {n} values look like contact data" for name, n in counts.items() if n]
    if problems:
        raise MartBuildError("audit failed, nothing published: " + "; ".join(problems))


def _publish(conn: sa.Connection, as_of: datetime, scope: Scope, catalog: list[Mart], settings: MartSettings,
             say: Progress) -> dict[str, int]:
    """Swap the built marts in (merge the changed customers' rows when incremental); returns rows per mart."""
    conn.exec_driver_sql(f"set local lock_timeout = '{int(settings.publish_lock_timeout_seconds)}s'")
    rows: dict[str, int] = {}
    for mart in catalog:
        built, published = f"{BUILD_SCHEMA}.{mart.name}", f"{PUBLISH_SCHEMA}.{mart.name}"
        stored = f"{ROWS_SCHEMA}.mart_{mart.name}" if mart.read_time_columns else published
        if scope.full or mart.refresh != "customers":
            _drop_relation(conn, published)
            if mart.read_time_columns:
                conn.exec_driver_sql(f"drop table if exists {stored}")
                conn.exec_driver_sql(f"alter table {built} rename to mart_{mart.name}")
                conn.exec_driver_sql(f"alter index {BUILD_SCHEMA}.{mart.name}_pkey rename to mart_{mart.name}_pkey")
                conn.exec_driver_sql(f"alter table {BUILD_SCHEMA}.mart_{mart.name} set schema {ROWS_SCHEMA}")
                _create_view(conn, mart, stored, as_of)
            else:
                conn.exec_driver_sql(f"alter table {built} set schema {PUBLISH_SCHEMA}")
        else:  # only the changed customers' rows: the others stay as they are
            names = ", ".join(mart.column_names)
            conn.execute(sa.text(f"delete from {stored} where customer_id = any(:customers)"),
                         {"customers": scope.customers})
            conn.exec_driver_sql(f"insert into {stored} ({names}) select {names} from {built}")
            conn.exec_driver_sql(f"drop table {built}")
            _comment_table(conn, published, mart, as_of, "view" if mart.read_time_columns else "table")
        rows[mart.name] = conn.execute(sa.text(f"select count(*) from {stored}")).scalar()
        say(f"published {mart.name}")
    return rows


def _drop_relation(conn: sa.Connection, name: str) -> None:
    kind = conn.execute(sa.text("select relkind from pg_class where oid = to_regclass(:n)"), {"n": name}).scalar()
    if kind:
        conn.exec_driver_sql(f"drop {'view' if kind == 'v' else 'table'} {name}")


def _create_view(conn: sa.Connection, mart: Mart, stored: str, as_of: datetime) -> None:
    """The published mart as a view over its stored rows: read-time columns computed from the last publish's
    as-of (recorded in the same transaction), so they never go stale and no publish rewrites every row."""
    columns = ", ".join(
        f"{c.as_of.replace(':as_of', LAST_AS_OF)} as {c.name}" if c.as_of else f"rows.{c.name}" for c in mart.columns)
    view = f"{PUBLISH_SCHEMA}.{mart.name}"
    conn.exec_driver_sql(f"create view {view} as select {columns} from {stored} as rows")
    _comment(conn, view, mart, as_of, "view")
    conn.exec_driver_sql(f"grant select on {view} to {BI_ROLE}")


def _finish(conn: sa.Connection, scope: Scope, rows: dict[str, int]) -> None:
    """Delete the change log entries this publish consumed and record it as published."""
    conn.exec_driver_sql(f"delete from smarketing.mart_changes where change_id in (select change_id from {CLAIMED})")
    conn.exec_driver_sql(f"drop table {CLAIMED}")
    conn.exec_driver_sql(f"drop schema {BUILD_SCHEMA}")
    conn.execute(sa.text("update smarketing.mart_publishes set state = 'published', rows = cast(:rows as jsonb) "
                         "where publish_id = :p"), {"rows": json.dumps(rows), "p": scope.publish_id})
