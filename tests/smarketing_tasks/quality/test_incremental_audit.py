"""A day's purchases audit reads that day's rows, whatever the history: the batch and the referential checks
are found by index (issue 9, incremental cost; docs/benchmarks/loop.md).

The warehouse holds thousands of rows from a year ago and a handful changed in the window. Each batch the
audit recorded, and each referential query of its suite, is run again under EXPLAIN ANALYZE with sequential
scans disabled, so that a read the indexes cannot bound shows up as reading every row.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.quality import audit_purchases
from smarketing_tasks.quality.suites import load_suite
from tests.explain import rows_read

pytestmark = pytest.mark.integration
END = datetime(2026, 11, 22, tzinfo=UTC)
SINCE = END - timedelta(days=1)
OLD = 3_000


def _history_and_a_day(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for prefix, count, changed in (("old", OLD, END - timedelta(days=300)), ("new", 5, END - timedelta(hours=6))):
            params = {"n": count, "t": changed, "p": prefix}
            conn.execute(sa.text("""
                insert into smarketing.customers (customer_id, country, time_zone, accepts_marketing, accepts_sms,
                                                  created_at, updated_at, source)
                select :p || '-c' || n, 'DE', 'Europe/Berlin', true, false, :t, :t, 'test'
                from generate_series(1, :n) n"""), params)
            conn.execute(sa.text("""
                insert into smarketing.customer_contacts (customer_id, email, first_name, updated_at)
                select :p || '-c' || n, :p || n || '@example.com', 'Ann', :t from generate_series(1, :n) n"""), params)
            conn.execute(sa.text("""
                insert into smarketing.orders (order_id, customer_id, ordered_at, status, total_amount, currency,
                                               updated_at, source)
                select :p || '-o' || n, :p || '-c' || n, :t, 'placed', 10, 'EUR', :t, 'test'
                from generate_series(1, :n) n"""), params)
            conn.execute(sa.text("""
                insert into smarketing.order_items (order_id, line_no, sku, product_name, quantity, unit_price)
                select :p || '-o' || n, line, 'SKU-1', 'Mug', 1, 10
                from generate_series(1, :n) n, generate_series(1, 2) line"""), params)
        conn.exec_driver_sql("analyze")


def _read_without_seq_scans(engine: sa.Engine, query: str) -> dict[str, int]:
    with engine.connect() as conn, conn.begin() as transaction:
        conn.exec_driver_sql("set local enable_seqscan = off")
        (plan,) = conn.exec_driver_sql("explain (analyze, format json) " + query).scalar()
        transaction.rollback()
    return {table: rows_read(plan["Plan"], table) for table in ("customers", "orders", "order_items")}


def test_a_days_audit_checks_and_reads_only_the_rows_changed_that_day(warehouse):
    _history_and_a_day(warehouse)
    windows = [{"dataset": d, "window_start": SINCE.isoformat(), "window_end": END.isoformat()}
               for d in ("customers", "orders", "order_items")]

    audited = audit_purchases(warehouse, windows, run_id="day", run_time=END, say=lambda _: None)

    assert {a["suite"]: a["rows_checked"] for a in audited} == {"customers": 5, "orders": 5, "order_items": 10}
    assert all(a["success"] for a in audited)
    with warehouse.connect() as conn:
        batches = dict(conn.execute(sa.text(
            "select suite, batch from smarketing.validation_runs where run_id = 'day'")).all())
    for suite, batch in batches.items():
        table, condition = batch.split(" where ", 1)
        batch_query = f"select t.* from {table} t where {condition}"
        read = _read_without_seq_scans(warehouse, batch_query)
        assert max(read.values()) <= 20, f"the {suite} batch read {read} rows for a day of 5 orders"
        for spec in load_suite(suite).expectations:
            referential = spec.kwargs.get("unexpected_rows_query")
            if referential:
                read = _read_without_seq_scans(warehouse, referential.replace("{batch}", f"({batch_query})"))
                assert max(read.values()) <= 40, f"{suite}: the referential check read {read} rows"
