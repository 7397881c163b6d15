"""A day's responses read that day's rows of the warehouse, whatever its history (issue 9, incremental cost;
docs/benchmarks/loop.md): products, customers, orders, asks and earlier reviews are looked up by index for
the batch's keys only.

The warehouse holds a year-old history of thousands of customers, orders of the same two products, asks and
reviews; a day brings three reviews. What each table gave the load's transaction is read from
``pg_stat_xact_user_tables`` as it begins and just before it commits (rows fetched by sequential and index
scans), so the figures are those of the pipeline's own statements.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.responses import ResponseSqlSource, ResponsesSettings, ingest_responses
from smarketing_tasks.responses.pipeline import KNOWN_SKUS_SQL, _index_scans_only
from tests.explain import index_names, plan_text, rows_read
from tests.smarketing_tasks.responses.helpers import (
    KEY,
    T0,
    add_customer,
    add_order,
    add_sent_message,
    shop_insert,
)

pytestmark = pytest.mark.integration
HISTORY = 3_000
UNTIL = T0 + timedelta(days=3)
LOOKED_UP = ("order_items", "orders", "customers", "customer_contacts", "outreach_messages", "reviews",
             "review_signals")


def _history(conn: sa.Connection) -> None:
    """A year ago: HISTORY customers with an order of the tee (half also of the hoodie), an ask and a review."""
    params = {"n": HISTORY, "t": T0 - timedelta(days=365)}
    conn.execute(sa.text("""
        insert into smarketing.customers (customer_id, country, accepts_marketing, created_at, updated_at, source)
        select 'old-c' || n, 'DE', true, :t, :t, 'test' from generate_series(1, :n) n"""), params)
    conn.execute(sa.text("""
        insert into smarketing.customer_contacts (customer_id, email, first_name, updated_at)
        select 'old-c' || n, 'old' || n || '@example.com', 'Ann', :t from generate_series(1, :n) n"""), params)
    conn.execute(sa.text("""
        insert into smarketing.orders (order_id, customer_id, ordered_at, status, delivered_at, total_amount, currency,
                                       updated_at, source)
        select 'old-o' || n, 'old-c' || n, :t, 'delivered', :t, 40, 'EUR', :t, 'test' from generate_series(1, :n) n"""),
        params)
    conn.execute(sa.text("""
        insert into smarketing.order_items (order_id, line_no, sku, product_name, quantity, unit_price)
        select 'old-o' || n, 1, 'SKU-TEE-001', 'Organic cotton tee', 1, 40 from generate_series(1, :n) n
        union all
        select 'old-o' || n, 2, 'SKU-HOO-001', 'Recycled fleece hoodie', 1, 60 from generate_series(1, :n, 2) n"""),
        params)
    conn.execute(sa.text("""
        insert into smarketing.outreach_messages (message_id, idempotency_key, customer_id, order_id, kind, step,
            channel, template_variant, consent_basis, status, due_at, expires_at, planned_at, sent_at)
        select 'old-m' || n, 'old-m' || n, 'old-c' || n, 'old-o' || n, 'review_request', 1, 'email', 'A',
               'marketing_consent', 'sent', :t, :t + interval '30 days', :t, :t from generate_series(1, :n) n"""),
        params)
    conn.execute(sa.text("""
        insert into smarketing.reviews (review_id, order_id, customer_id, sku, rating, title, body, consent_to_publish,
                                        incentivized, created_at, message_id, attribution, source)
        select 'old-r' || n, 'old-o' || n, 'old-c' || n, 'SKU-TEE-001', 1 + n % 5, null, 'Good.', true, false,
               :t + interval '3 days', 'old-m' || n, 'window', 'test' from generate_series(1, :n) n"""), params)


@pytest.fixture
def a_year_and_a_day(shop, warehouse):
    with warehouse.begin() as conn:
        _history(conn)
        for n in (1, 2, 3):
            add_customer(conn, f"C{n}", f"new{n}@example.com")
            add_order(conn, f"O{n}", f"C{n}", T0 - timedelta(days=5))
            add_sent_message(conn, f"C{n}", f"O{n}", "review_request", T0)
        conn.exec_driver_sql("analyze")
    with shop.begin() as conn:
        for n, customer in ((1, "C1"), (2, "C2"), (3, None)):  # the third names only the reviewer's email
            shop_insert(conn, "reviews", review_id=f"R{n}", customer_id=customer, order_id=f"O{n}", sku="SKU-TEE-001",
                        rating=5, title=None, body="Lovely soft tee, fits perfectly and washes well.",
                        consent_to_publish=True, incentivized=False, created_at=T0 + timedelta(days=1),
                        reviewer_email=f"new{n}@example.com")


def test_a_days_reviews_read_only_their_own_rows(shop, warehouse, a_year_and_a_day):
    reads: list[dict[str, tuple[int, int]]] = []

    def counts(conn: sa.Connection) -> dict[str, tuple[int, int]]:
        # On the driver's connection, inside the transaction: the counters are the backend's since its last
        # flush, which only happens between transactions, so begin and commit bracket this transaction's work.
        rows = conn.connection.driver_connection.execute(
            "select relname, seq_tup_read + coalesce(idx_tup_fetch, 0), n_tup_ins from pg_stat_xact_user_tables "
            "where schemaname = 'smarketing'").fetchall()
        return {name: (int(read), int(inserted)) for name, read, inserted in rows}

    def after_begin(conn: sa.Connection) -> None:
        conn.info["counts_at_begin"] = counts(conn)

    def before_commit(conn: sa.Connection) -> None:
        start, end = conn.info.pop("counts_at_begin", {}), counts(conn)
        reads.append({t: (r - start.get(t, (0, 0))[0], i - start.get(t, (0, 0))[1]) for t, (r, i) in end.items()})

    sa.event.listen(warehouse, "begin", after_begin)
    sa.event.listen(warehouse, "commit", before_commit)
    try:
        result = ingest_responses(ResponseSqlSource(shop), "reviews", warehouse, until=UNTIL, run_id="day",
                                  settings=ResponsesSettings(), keys=[KEY])
    finally:
        sa.event.remove(warehouse, "begin", after_begin)
        sa.event.remove(warehouse, "commit", before_commit)

    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (3, 3, 0)
    with warehouse.connect() as conn:
        loaded = dict(conn.exec_driver_sql(
            "select r.review_id, r.customer_id || '/' || r.sku || '/' || r.message_id || '/' || (s.review_id is not null) "
            "from smarketing.reviews r left join smarketing.review_signals s using (review_id) "
            "where r.review_id not like 'old-%%'").all())
    assert loaded == {f"R{n}": f"C{n}/SKU-TEE-001/{_message(n)}/true" for n in (1, 2, 3)}

    (batch,) = [r for r in reads if r.get("reviews", (0, 0))[1] == 3]
    read = {table: batch.get(table, (0, 0))[0] for table in LOOKED_UP}
    # A few index entries per review and table, against thousands of rows of history in each.
    assert all(n <= 30 for n in read.values()), read


def _message(n: int) -> str:
    from tests.smarketing_tasks.responses.helpers import message_id_for

    return message_id_for(f"C{n}", f"O{n}", "review_request")


def test_known_skus_probe_one_line_per_sku_even_for_a_sku_never_sold(warehouse):
    """Few distinct skus make a sequential scan look cheap to the planner; for a sku the shop never sold it
    reads every order line. The probe stays on the sku index."""
    with warehouse.begin() as conn:
        _history(conn)
        conn.exec_driver_sql("analyze")
    with warehouse.connect() as conn, conn.begin() as transaction:
        conn.exec_driver_sql("create temporary table stage_reviews (sku text)")
        conn.exec_driver_sql("insert into stage_reviews values ('SKU-TEE-001'), ('SKU-TEE-001'), ('SKU-HOO-001'), "
                             "('NEVER-SOLD'), (null)")
        conn.exec_driver_sql("analyze stage_reviews")
        with _index_scans_only(conn):
            (plan,) = conn.exec_driver_sql("explain (analyze, format json) " + KNOWN_SKUS_SQL).scalar()
            found = dict(conn.exec_driver_sql(KNOWN_SKUS_SQL).all())
        still_on = conn.exec_driver_sql("show enable_seqscan").scalar()
        transaction.rollback()
    assert found == {"SKU-TEE-001": "organic-cotton-tee", "SKU-HOO-001": "recycled-fleece-hoodie"}
    # One index probe per distinct sku (before PostgreSQL 18 a loop's rows are rounded: 3 probes, 2 rows, read 3).
    assert rows_read(plan["Plan"], "order_items") <= 3
    assert still_on == "on"  # the rest of the load's transaction plans as usual


def test_reviews_by_customer_read_the_customer_order_sku_index(warehouse):
    """Migration 0025 dropped reviews_customer_idx (customer_id): on a few thousand reviews, a lookup by
    customer alone (scoring's changed customers, erasure) reads reviews_customer_order_sku_idx instead."""
    with warehouse.begin() as conn:
        conn.exec_driver_sql("""
            insert into smarketing.reviews (review_id, order_id, customer_id, sku, rating, created_at, source)
            select 'r' || i, 'o' || i, 'c' || mod(i, 700), 'SKU-' || mod(i, 40), 1 + mod(i, 5),
                   timestamptz '2026-01-01' + make_interval(hours => i), 'test'
            from generate_series(1, 5000) i""")
        conn.exec_driver_sql("analyze smarketing.reviews")
        indexes = index_names(conn, "reviews")
        plan = plan_text(conn, "select review_id from smarketing.reviews where customer_id = any(:ids)",
                         {"ids": ["c1", "c2"]})
    assert "reviews_customer_idx" not in indexes
    assert "reviews_customer_order_sku_idx" in plan, plan
