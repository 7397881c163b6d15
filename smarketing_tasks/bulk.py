"""Bulk loads into an empty table: drop its secondary indexes first, build them once at the end.

Building an index once over a loaded table is several times cheaper than maintaining it row by row
(PostgreSQL's "Populating a Database"). The definitions are kept in ``smarketing.deferred_indexes`` until
they are rebuilt, so a crash mid-load cannot lose an index: a loader calls ``rebuild_deferred_indexes``
for its tables before it starts. Unique indexes and the primary key stay: upserts and rules need them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa

# Enough sort memory for PostgreSQL to build with parallel workers when cores are free.
REBUILD_MAINTENANCE_WORK_MEM = "256MB"


def secondary_indexes(conn: sa.Connection, table: str, partial: bool = True) -> list[tuple[str, str]]:
    """(name, definition) of the indexes of ``table`` that no constraint needs (so not the primary key);
    without the partial ones (those with a WHERE) when ``partial`` is false."""
    return [tuple(row) for row in conn.execute(sa.text(
        "select c.relname, pg_get_indexdef(i.indexrelid) from pg_index i join pg_class c on c.oid = i.indexrelid "
        "where i.indrelid = cast(:t as regclass) and not i.indisprimary and not i.indisunique "
        "and (:partial or i.indpred is null) order by 1"),
        {"t": table, "partial": partial})]


@contextmanager
def _while_empty(warehouse: sa.Engine, target: str) -> Iterator[sa.Connection | None]:
    """A transaction holding a lock that stops ``target``'s writers, if ``target`` is empty (else ``None``), so
    no row can arrive between "empty" and what the caller then drops.

    Whether it has rows is read first, in a transaction of its own and without that lock: every run but the
    first finds rows, and the lock would wait for the table's writers in flight (the sender marking messages)
    and for an autovacuum, which it then cancels. In the locking transaction the lock comes first: a read
    before it would hold a lock the drop must wait for, and two loaders doing so at once deadlock."""
    with warehouse.connect() as conn:
        if conn.exec_driver_sql(f"select exists (select 1 from {target})").scalar():
            yield None
            return
    with warehouse.begin() as conn:
        conn.exec_driver_sql(f"lock table {target} in share row exclusive mode")
        yield None if conn.exec_driver_sql(f"select exists (select 1 from {target})").scalar() else conn


def defer_indexes_if_empty(warehouse: sa.Engine, target: str, tables: Sequence[str] | None = None,
                           partial: bool = True) -> list[str]:
    """If ``target`` is empty, drop the secondary indexes of ``tables`` (default: the target), recorded.

    The check and the drops are one transaction holding a lock that stops writers, so no row can
    arrive between "empty" and the drop. Returns the names dropped (empty when the target has rows).
    ``partial=False`` keeps the partial indexes: when the load's rows fall outside their predicate,
    keeping them costs a test per row, rebuilding them a scan and a transaction each.
    """
    deferred: list[str] = []
    with _while_empty(warehouse, target) as conn:
        if conn is None:
            return deferred
        for table in tables or [target]:
            for name, definition in secondary_indexes(conn, table, partial):
                schema = table.split(".")[0] if "." in table else "public"
                conn.execute(sa.text(
                    "insert into smarketing.deferred_indexes (index_name, table_name, definition) "
                    "values (:n, :t, :d) on conflict do nothing"), {"n": name, "t": table, "d": definition})
                conn.exec_driver_sql(f"drop index {schema}.{name}")
                deferred.append(name)
    return deferred


def rebuild_deferred_indexes(warehouse: sa.Engine, tables: Sequence[str] | None = None) -> list[str]:
    """Recreate indexes recorded in smarketing.deferred_indexes (all, or those of ``tables``)."""
    rebuilt = []
    with warehouse.connect() as conn:
        pending = conn.execute(sa.text(
            "select index_name, table_name, definition from smarketing.deferred_indexes order by 1")).all()
    for name, table, definition in pending:
        if tables is not None and table not in tables:
            continue
        schema = table.split(".")[0] if "." in table else "public"
        with warehouse.begin() as conn:
            # Self-conflicting (CREATE INDEX's own lock is not): of two loaders rebuilding at once, the second
            # waits and then finds the index built, instead of building it too and failing on its name.
            conn.exec_driver_sql(f"lock table {table} in share row exclusive mode")
            exists = conn.execute(sa.text("select to_regclass(:n)"), {"n": f"{schema}.{name}"}).scalar()
            if exists is None:
                conn.exec_driver_sql(f"set local maintenance_work_mem = '{REBUILD_MAINTENANCE_WORK_MEM}'")
                conn.exec_driver_sql(definition)
            conn.execute(sa.text("delete from smarketing.deferred_indexes where index_name = :n"), {"n": name})
        rebuilt.append(name)
    return rebuilt


def defer_foreign_keys_if_empty(warehouse: sa.Engine, target: str, referencing: Sequence[str]) -> list[str]:
    """If ``target`` is empty, drop the foreign keys of the ``referencing`` tables that point at it, recorded
    in ``smarketing.deferred_foreign_keys``; returns their names. Every such row would otherwise be checked
    on insert (a lookup and a lock of the row it names); ``restore_deferred_foreign_keys`` checks them all
    with one join. A table that references an empty one holds no row naming it, so nothing goes unchecked.
    """
    deferred: list[str] = []
    with _while_empty(warehouse, target) as conn:
        if conn is None:
            return deferred
        for table in referencing:
            keys = conn.execute(sa.text(
                "select conname, pg_get_constraintdef(oid) from pg_constraint where contype = 'f' "
                "and conrelid = cast(:t as regclass) and confrelid = cast(:target as regclass) order by 1"),
                {"t": table, "target": target}).all()
            for name, definition in keys:
                conn.execute(sa.text(
                    "insert into smarketing.deferred_foreign_keys (table_name, constraint_name, definition) "
                    "values (:t, :n, :d) on conflict do nothing"), {"t": table, "n": name, "d": definition})
                conn.exec_driver_sql(f'alter table {table} drop constraint "{name}"')
                deferred.append(name)
    return deferred


def restore_deferred_foreign_keys(warehouse: sa.Engine, tables: Sequence[str] | None = None) -> list[str]:
    """Add back the foreign keys recorded in smarketing.deferred_foreign_keys (all, or those of ``tables``).

    Adding a key checks every row in one join; a row naming a missing row fails it loudly (and the key stays
    recorded), as the key itself would have refused that row."""
    restored = []
    with warehouse.connect() as conn:
        pending = conn.execute(sa.text(
            "select table_name, constraint_name, definition from smarketing.deferred_foreign_keys order by 1, 2")).all()
    for table, name, definition in pending:
        if tables is not None and table not in tables:
            continue
        with warehouse.begin() as conn:
            # The lock first: a concurrent run restoring the same key waits here, then finds it present.
            conn.exec_driver_sql(f"lock table {table} in share row exclusive mode")
            present = conn.execute(sa.text(
                "select 1 from pg_constraint where conrelid = cast(:t as regclass) and conname = :n"),
                {"t": table, "n": name}).scalar()
            if present is None:
                conn.exec_driver_sql(f"set local maintenance_work_mem = '{REBUILD_MAINTENANCE_WORK_MEM}'")
                conn.exec_driver_sql(f'alter table {table} add constraint "{name}" {definition}')
            conn.execute(sa.text("delete from smarketing.deferred_foreign_keys where table_name = :t "
                                 "and constraint_name = :n"), {"t": table, "n": name})
        restored.append(name)
    return restored
