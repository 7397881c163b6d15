"""Incremental load of one dataset: window from the watermark, validate, upsert, quarantine, advance.

Every batch commits on its own (bounded memory and lock time); the watermark moves only after the last
batch, so a crash re-reads the interval and the idempotent upserts make that harmless.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

from smarketing_tasks import bulk
from smarketing_tasks.db import copy_frame
from smarketing_tasks.sources.base import Source, Window

if TYPE_CHECKING:
    import pandas as pd

    from smarketing_tasks.ingest.check import CheckedWindow
    from smarketing_tasks.ingest.landing import CopyLanding

Progress = Callable[[str], None]


@dataclass(frozen=True)
class IngestResult:
    source: str
    dataset: str
    window_start: datetime | None
    window_end: datetime
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    seconds: float
    high_watermark: datetime | None

    def as_dict(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}


# Per dataset: target table, columns loaded, conflict key, and extra statements run from the stage.
_TARGETS: dict[str, dict] = {
    "customers": {
        "table": "smarketing.customers",
        "columns": ("customer_id", "country", "time_zone", "accepts_marketing", "accepts_sms", "created_at",
                    "updated_at"),
        "key": ("customer_id",),
    },
    "orders": {
        "table": "smarketing.orders",
        "columns": ("order_id", "customer_id", "ordered_at", "status", "shipped_at", "delivered_at", "total_amount",
                    "currency", "discount_code", "updated_at"),
        "key": ("order_id",),
    },
    "order_items": {
        "table": "smarketing.order_items",
        "columns": ("order_id", "line_no", "sku", "product_name", "quantity", "unit_price"),
        "key": ("order_id", "line_no"),
    },
}

def _upsert_sql(dataset: str, source_name: str, into_empty: bool = False) -> list[str]:
    """Statements that upsert the clean rows of ``dataset`` (see ``check.clean_rows``) into the warehouse.

    ``into_empty``: the target tables are empty and locked against writers, so the clean rows (unique by
    key after the duplicate check) go in with a plain INSERT, which skips the speculative-insertion work of
    ON CONFLICT (a first load of a million orders)."""
    from smarketing_tasks.ingest.check import clean_rows

    target = _TARGETS[dataset]
    table, columns, key = target["table"], target["columns"], target["key"]
    stage = f"({clean_rows(dataset)}) as stage"
    column_list = ", ".join(columns)
    updates = [c for c in columns if c not in key]
    has_updated_at = "updated_at" in columns
    set_clause = ", ".join(f"{c} = excluded.{c}" for c in updates)
    changed = f"({', '.join(f't.{c}' for c in updates)}) is distinct from ({', '.join(f'excluded.{c}' for c in updates)})"
    guard = f"t.updated_at <= excluded.updated_at and {changed}" if has_updated_at else changed
    extra_cols = ", source" if has_updated_at else ""
    quoted_source = source_name.replace("'", "''")
    extra_vals = f", '{quoted_source}'" if has_updated_at else ""
    extra_set = ", source = excluded.source, loaded_at = now()" if has_updated_at else ""
    insert = f"insert into {table} as t ({column_list}{extra_cols}) select {column_list}{extra_vals} from {stage}"
    statements = [insert if into_empty else
                  f"{insert} on conflict ({', '.join(key)}) do update set {set_clause}{extra_set} where {guard}"]
    if dataset == "customers":
        contacts = ("insert into smarketing.customer_contacts as t (customer_id, email, first_name, phone, updated_at) "
                    f"select customer_id, email, first_name, phone, updated_at from {stage}")
        statements.append(contacts if into_empty else
            f"{contacts} "
            "on conflict (customer_id) do update set email = excluded.email, first_name = excluded.first_name, "
            "phone = excluded.phone, updated_at = excluded.updated_at "
            "where t.updated_at <= excluded.updated_at "
            "and (t.email, t.first_name, t.phone) is distinct from (excluded.email, excluded.first_name, excluded.phone)"
        )
    if dataset == "orders":
        # Only returns and cancellations: the no-ask rules need them even if a later update hides them, while
        # shipped_at and delivered_at already live on the order. (Recording every status cost more than the
        # upsert itself: ~2.5 history rows per order.)
        statements.append(
            "insert into smarketing.order_status_history (order_id, status, observed_at) "
            f"select order_id, status, updated_at from {stage} where status in ('returned', 'cancelled') "
            "on conflict (order_id, status) do nothing"
        )
    return statements


def quarantine_rows(conn: sa.Connection, dataset: str, source_name: str, rejects: pd.DataFrame, run_id: str) -> int:
    """Record rejected rows; the same raw row breaking the same rule is recorded once, across reruns."""
    if rejects.empty:
        return 0
    conn.exec_driver_sql(
        "create temporary table stage_quarantine (record_key text, rule text, reason text, raw jsonb, raw_hash text) "
        "on commit drop"
    )
    copy_frame(conn, "stage_quarantine", rejects, ["record_key", "rule", "reason", "raw", "raw_hash"])
    conn.execute(
        sa.text(
            "insert into smarketing.quarantine (dataset, source, record_key, rule, reason, raw, raw_hash, run_id) "
            "select :dataset, :source, record_key, rule, reason, raw, raw_hash, :run_id from stage_quarantine "
            "on conflict (dataset, raw_hash, rule) do nothing"
        ),
        {"dataset": dataset, "source": source_name, "run_id": run_id},
    )
    conn.exec_driver_sql("drop table stage_quarantine")
    return int(rejects["_row"].nunique())


def read_watermark(conn: sa.Connection, source_name: str, dataset: str) -> datetime | None:
    return conn.execute(
        sa.text("select high_watermark from smarketing.watermarks where source = :s and dataset = :d"),
        {"s": source_name, "d": dataset},
    ).scalar()


def _bulk_tables(dataset: str) -> list[str]:
    tables = [_TARGETS[dataset]["table"]]
    if dataset == "customers":
        tables.append("smarketing.customer_contacts")
    return tables


def defer_indexes_if_empty(warehouse: sa.Engine, dataset: str) -> list[str]:
    """For a first load into an empty table, drop its secondary indexes (recorded for rebuilding)."""
    return bulk.defer_indexes_if_empty(warehouse, _TARGETS[dataset]["table"], _bulk_tables(dataset))


def finish_run(warehouse: sa.Engine, result: IngestResult, run_id: str) -> None:
    """Advance the watermark (only ever forward) and record the run in smarketing.ingest_runs, together."""
    with warehouse.begin() as conn:
        if result.high_watermark is not None:
            conn.execute(
                sa.text(
                    "insert into smarketing.watermarks (source, dataset, high_watermark) values (:s, :d, :h) "
                    "on conflict (source, dataset) do update set high_watermark = "
                    "excluded.high_watermark, updated_at = now() "
                    "where excluded.high_watermark > smarketing.watermarks.high_watermark"
                ),
                {"s": result.source, "d": result.dataset, "h": result.high_watermark},
            )
        conn.execute(
            sa.text(
                "insert into smarketing.ingest_runs (run_id, source, dataset, window_start, window_end, rows_read, "
                "rows_loaded, rows_quarantined, seconds) values (:run_id, :source, :dataset, :start, :end, :read, "
                ":loaded, :quarantined, :seconds) on conflict (run_id, source, dataset) do update set "
                "window_start = excluded.window_start, window_end = excluded.window_end, rows_read = excluded.rows_read, "
                "rows_loaded = excluded.rows_loaded, rows_quarantined = excluded.rows_quarantined, "
                "seconds = excluded.seconds, finished_at = now()"
            ),
            {"run_id": run_id, "source": result.source, "dataset": result.dataset, "start": result.window_start,
             "end": result.window_end, "read": result.rows_read, "loaded": result.rows_loaded,
             "quarantined": result.rows_quarantined, "seconds": result.seconds},
        )


def ingest_dataset(
    source: Source,
    dataset: str,
    warehouse: sa.Engine,
    *,
    until: datetime,
    run_id: str,
    overlap: timedelta = timedelta(minutes=15),
    batch_rows: int = 100_000,
    progress: Progress = lambda _: None,
) -> IngestResult:
    """Load rows of ``dataset`` changed after the watermark (minus ``overlap``) and up to ``until``.

    The window lands in a temporary table (straight from the source's COPY when it speaks PostgreSQL, the
    columns it stores typed in binary; ``batch_rows`` at a time from files, as text), the row rules run there in SQL, rejects go to
    ``smarketing.quarantine`` and the clean rows are upserted — all in one transaction, so a crash leaves
    nothing half-done and a rerun re-reads the window. A first load into an empty table drops its
    secondary indexes and rebuilds them at the end.
    """
    from smarketing_tasks.ingest.check import check_landed
    from smarketing_tasks.ingest.landing import CopySource, create_landing, land_frames

    started = time.perf_counter()
    bulk.rebuild_deferred_indexes(warehouse, _bulk_tables(dataset))  # left over by a crashed bulk load
    with warehouse.connect() as conn:
        watermark = read_watermark(conn, source.name, dataset)
    since = None if watermark is None else min(watermark - overlap, until)
    window = Window(since=since, until=until)
    progress(f"{dataset}: reading {source.name} changes in ({since or 'the beginning'}, {until}]")
    deferred = defer_indexes_if_empty(warehouse, dataset)
    if deferred:
        progress(f"{dataset}: first load into an empty table; indexes {', '.join(deferred)} are built at the end")

    with warehouse.begin() as conn:
        conn.exec_driver_sql("set local time zone 'UTC'")
        conn.exec_driver_sql("set local datestyle to 'ISO'")  # typed values quoted in the quarantine print as ISO
        _give_memory_to_the_load(conn)
        typed = source.typed_source_columns(dataset) if isinstance(source, CopySource) else frozenset()
        copied = _land_by_copy(conn, source, dataset, window, typed, progress) \
            if isinstance(source, CopySource) else None
        if copied is None:
            create_landing(conn, dataset)
            landed = land_frames(conn, dataset, source.read(dataset, window, batch_rows), progress)
            cannot_break, typed = frozenset(), frozenset()
        else:
            landed, cannot_break = copied.rows, copied.rules_it_cannot_break()
        progress(f"{dataset}: {landed:,} rows landed; checking the row rules")
        into_empty = _lock_if_empty(conn, dataset)
        checked = check_landed(conn, dataset, until, cannot_break, settle_duplicates=not into_empty,
                               landed_typed=typed)
        if into_empty:
            checked = _load_into_empty(conn, dataset, source.name, checked)
        else:
            for statement in _upsert_sql(dataset, source.name):
                conn.exec_driver_sql(statement)
        rows_quarantined = _quarantine_landed(conn, dataset, source.name, run_id) if checked.rows_rejected else 0
    if deferred:
        bulk.rebuild_deferred_indexes(warehouse, _bulk_tables(dataset))
        with warehouse.begin() as conn:  # statistics now, so the next stages do not plan on an "empty" table
            for table in _bulk_tables(dataset):
                conn.exec_driver_sql(f"analyze {table}")
        progress(f"{dataset}: indexes rebuilt, statistics taken")
    progress(f"{dataset}: {checked.rows_clean:,} loaded, {rows_quarantined:,} quarantined")

    high = checked.max_change if watermark is None or (checked.max_change and checked.max_change > watermark) \
        else watermark
    result = IngestResult(source.name, dataset, since, until, checked.rows_landed, checked.rows_clean,
                          rows_quarantined, time.perf_counter() - started, high)
    finish_run(warehouse, result, run_id)
    return result


# Memory for one load's sorts and hashes (duplicate keys, anti-joins) and for its temporary tables, so a
# million-row window is checked in memory instead of spilling to disk. work_mem is set for this transaction
# only; temp_buffers can only be set before a session first uses a temporary table, and then holds for it.
LOAD_WORK_MEM = "256MB"
LOAD_TEMP_BUFFERS = "512MB"


def _give_memory_to_the_load(conn: sa.Connection) -> None:
    conn.exec_driver_sql(f"set local work_mem = '{LOAD_WORK_MEM}'")
    savepoint = conn.begin_nested()
    try:  # refused once the session has used a temporary table; then the session's setting stays
        conn.exec_driver_sql(f"set temp_buffers = '{LOAD_TEMP_BUFFERS}'")  # session-wide by nature
    except sa.exc.DBAPIError:
        savepoint.rollback()
    else:
        savepoint.commit()


def _lock_if_empty(conn: sa.Connection, dataset: str) -> bool:
    """True when every target table of ``dataset`` is empty; they stay locked against other writers until
    this transaction ends, so they are still empty when the rows go in."""
    tables = _bulk_tables(dataset)
    for table in tables:
        conn.exec_driver_sql(f"lock table {table} in share row exclusive mode")
    return not any(conn.exec_driver_sql(f"select exists (select 1 from {table})").scalar() for table in tables)


def _load_into_empty(conn: sa.Connection, dataset: str, source_name: str, checked: CheckedWindow) -> CheckedWindow:
    """Insert a first load without ON CONFLICT, its foreign keys checked once, set-based, instead of one
    lookup per row; duplicate keys are not looked for first, because the primary key finds them for free:
    if it does, the insert is undone and they are settled as on any other run."""
    import psycopg

    from smarketing_tasks.ingest.check import settle_duplicate_keys

    foreign_keys = _drop_constraints(conn, dataset, "f")
    # With the foreign keys gone no constraint needs the primary keys while the rows go in: building one
    # afterwards by a single sort costs less than a btree insertion per row (2M order lines: 2.5 -> 1.4 s).
    primary_keys = _drop_constraints(conn, dataset, "p")
    conn.exec_driver_sql(f"set local maintenance_work_mem = '{bulk.REBUILD_MAINTENANCE_WORK_MEM}'")
    savepoint = conn.begin_nested()
    try:
        _insert_into_empty(conn, dataset, source_name, primary_keys)
    except sa.exc.IntegrityError as error:
        if not isinstance(error.orig, psycopg.errors.UniqueViolation):
            raise
        savepoint.rollback()
        checked = settle_duplicate_keys(conn, dataset, checked)
        _insert_into_empty(conn, dataset, source_name, primary_keys)
    else:
        savepoint.commit()
    for table, name, definition in foreign_keys:
        conn.exec_driver_sql(f"alter table {table} add constraint {name} {definition}")
    return checked


def _insert_into_empty(conn: sa.Connection, dataset: str, source_name: str,
                       primary_keys: list[tuple[str, str, str]]) -> None:
    """Insert the clean rows, then build the primary keys (which refuse the window's duplicate keys)."""
    for statement in _upsert_sql(dataset, source_name, into_empty=True):
        conn.exec_driver_sql(statement)
    for table, name, definition in primary_keys:
        conn.exec_driver_sql(f"alter table {table} add constraint {name} {definition}")


def _drop_constraints(conn: sa.Connection, dataset: str, kind: str) -> list[tuple[str, str, str]]:
    """Drop the foreign keys (``kind`` 'f') or primary keys ('p') of ``dataset``'s target tables inside this
    transaction; returns what re-adds them. A primary key that a foreign key of another table still needs is
    kept. Re-adding checks every row at once, and a failure rolls the whole load back."""
    dropped = []
    for table in _bulk_tables(dataset):
        for name, definition in conn.execute(sa.text(
                "select c.conname, pg_get_constraintdef(c.oid) from pg_constraint c "
                "where c.conrelid = cast(:t as regclass) and c.contype = :kind and (c.contype = 'f' or not exists ("
                "  select 1 from pg_constraint f where f.contype = 'f' and f.conindid = c.conindid)) "
                "order by 1"), {"t": table, "kind": kind}).all():
            conn.exec_driver_sql(f"alter table {table} drop constraint {name}")
            dropped.append((table, name, definition))
    return dropped


def _land_by_copy(conn: sa.Connection, source, dataset: str, window: Window, typed: frozenset[str],
                  progress: Progress) -> CopyLanding | None:
    """Create the landing table and stream the source's COPY into it (the ``typed`` columns in binary);
    None, with no landing table, when the source's bytes are not valid UTF-8 (a SQL_ASCII database can hold
    anything), so the caller reads it through the decoding path instead, where each bad value is kept as
    U+FFFD and its row quarantined."""
    import psycopg

    from smarketing_tasks.ingest.landing import create_landing, land_copy

    savepoint = conn.begin_nested()
    try:
        create_landing(conn, dataset, typed)
        landed = land_copy(conn, source, dataset, window, progress, typed)
    except psycopg.DataError as error:
        savepoint.rollback()
        progress(f"{dataset}: the source's COPY is not valid UTF-8 ({error.diag.message_primary}); "
                 "reading it row by row instead")
        return None
    savepoint.commit()
    return landed


def _quarantine_landed(conn: sa.Connection, dataset: str, source_name: str, run_id: str) -> int:
    """Record the checked window's rejects; the same raw row breaking the same rule is recorded once,
    across reruns. Returns the rows quarantined by this run."""
    conn.execute(
        sa.text(
            "insert into smarketing.quarantine (dataset, source, record_key, rule, reason, raw, raw_hash, run_id) "
            f"select :dataset, :source, record_key, rule, reason, raw, raw_hash, :run_id from rejects_{dataset} "
            "on conflict (dataset, raw_hash, rule) do nothing"
        ),
        {"dataset": dataset, "source": source_name, "run_id": run_id},
    )
    return int(conn.exec_driver_sql(f"select count(distinct _row) from rejects_{dataset}").scalar())
