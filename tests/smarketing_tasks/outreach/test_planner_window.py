"""The planner's candidate scans read the orders, requests and reviews of the planning window, not the history.

Nor the rows whose ask is still ahead (delivered yesterday, reviewed an hour ago): on a growing shop those are
more than a day's worth, so each window is bounded on both sides.

A day's run with a year loaded must cost about what the first day's did (issue 9, docs/benchmarks/loop.md):
each scan is measured with EXPLAIN ANALYZE over a warehouse holding thousands of old rows and a few due ones,
with sequential scans disabled so that a scan the indexes cannot bound shows up as reading every row.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.outreach import OutreachSettings, plan_outreach
from smarketing_tasks.outreach.planner import _REMINDERS, _REVIEW_REQUESTS, _SETUP, _SHARE_ASKS, _params
from tests.explain import rows_read
from tests.smarketing_tasks.outreach.helpers import AS_OF

pytestmark = pytest.mark.integration
S = OutreachSettings()
OLD = 3_000  # rows per table from a year ago, none of them due
VARIANTS = {"review_request": ["A"], "review_reminder": ["A"], "share_ask": ["A"]}


def _old_history(engine: sa.Engine) -> None:
    """A year of orders in every state, sent requests and glowing reviews: all long past their asks."""
    with engine.begin() as conn:
        conn.execute(sa.text("""
            insert into smarketing.orders (order_id, customer_id, ordered_at, status, shipped_at, delivered_at,
                                           total_amount, currency, updated_at, source)
            select 'old-' || n, 'old-c' || n, t - interval '3 days',
                   (array['delivered', 'shipped', 'placed'])[n % 3 + 1],
                   case when n % 3 < 2 then t - interval '2 days' end, case when n % 3 = 0 then t end,
                   10, 'EUR', t, 'test'
            from generate_series(1, :n) n, lateral (select :as_of - interval '200 days' - n * interval '1 minute' as t) x
        """), {"n": OLD, "as_of": AS_OF})
        # every old order's status changes: what the closed-order test probes per candidate, never as a whole
        conn.execute(sa.text("""
            insert into smarketing.order_status_history (order_id, status, observed_at)
            select 'old-' || n, s, :as_of - interval '200 days'
            from generate_series(1, :n) n, unnest(array['placed', 'shipped', 'delivered']) s
        """), {"n": OLD, "as_of": AS_OF})
        conn.execute(sa.text("""
            insert into smarketing.outreach_messages (message_id, idempotency_key, customer_id, order_id, kind, step,
                channel, template_variant, status, due_at, expires_at, planned_at, sent_at)
            select 'm' || n, concat_ws(:sep, 'old-c' || n, 'old-' || n, 'review_request', 1), 'old-c' || n,
                   'old-' || n, 'review_request', 1, 'email', 'A', 'sent', t, t + interval '7 days', t,
                   t + interval '1 hour'
            from generate_series(1, :n) n, lateral (select :as_of - interval '190 days' - n * interval '1 minute' as t) x
        """), {"n": OLD, "as_of": AS_OF, "sep": ":"})
        conn.execute(sa.text("""
            insert into smarketing.reviews (review_id, order_id, customer_id, sku, rating, body, created_at, source)
            select 'r' || n, 'old-' || n, 'old-c' || n, 'SKU-1', 5, 'Love it', :as_of - interval '180 days', 'test'
            from generate_series(1, :n) n
        """), {"n": OLD, "as_of": AS_OF})
        conn.execute(sa.text("""
            insert into smarketing.advocate_scores (customer_id, score_date, advocate_score, segment, is_lukewarm,
                                                    sentiment, scored_at)
            select 'old-c' || n, cast(:as_of as date), 90, 'champion', false, 0.9, :as_of
            from generate_series(1, :n) n
        """), {"n": OLD, "as_of": AS_OF})
        conn.exec_driver_sql("analyze")


def _not_yet_due(engine: sa.Engine) -> None:
    """As many rows whose ask is still ahead: delivered, asked and reviewed within the last day."""
    with engine.begin() as conn:
        conn.execute(sa.text("""
            insert into smarketing.orders (order_id, customer_id, ordered_at, status, shipped_at, delivered_at,
                                           total_amount, currency, updated_at, source)
            select 'new-' || n, 'new-c' || n, t - interval '3 days', 'delivered', t - interval '2 days', t, 10, 'EUR',
                   t, 'test'
            from generate_series(1, :n) n, lateral (select :as_of - n * interval '10 seconds' as t) x
        """), {"n": OLD, "as_of": AS_OF})
        conn.execute(sa.text("""
            insert into smarketing.outreach_messages (message_id, idempotency_key, customer_id, order_id, kind, step,
                channel, template_variant, status, due_at, expires_at, planned_at, sent_at)
            select 'new-m' || n, concat_ws(:sep, 'new-c' || n, 'new-' || n, 'review_request', 1), 'new-c' || n,
                   'new-' || n, 'review_request', 1, 'email', 'A', 'sent', t, t + interval '7 days', t, t
            from generate_series(1, :n) n, lateral (select :as_of - n * interval '10 seconds' as t) x
        """), {"n": OLD, "as_of": AS_OF, "sep": ":"})
        conn.execute(sa.text("""
            insert into smarketing.reviews (review_id, order_id, customer_id, sku, rating, body, created_at, source)
            select 'new-r' || n, 'new-' || n, 'new-c' || n, 'SKU-1', 5, 'Love it', :as_of - n * interval '10 seconds',
                   'test'
            from generate_series(1, :n) n
        """), {"n": OLD, "as_of": AS_OF})
        conn.exec_driver_sql("analyze")


def _explain(engine: sa.Engine, statement: str, settings: OutreachSettings = S) -> dict:
    params = _params(settings, AS_OF, "t", VARIANTS)
    with engine.connect() as conn, conn.begin() as transaction:
        for setup in _SETUP.split(";"):
            if setup.strip():
                conn.exec_driver_sql(setup)
        conn.exec_driver_sql("set local enable_seqscan = off")
        text = sa.text("explain (analyze, format json) " + statement)
        used = {name for name in text._bindparams}
        (plan,) = conn.execute(text, {k: v for k, v in params.items() if k in used}).scalar()
        transaction.rollback()
    return plan["Plan"] if isinstance(plan, dict) else json.loads(plan)[0]["Plan"]


def test_review_requests_read_only_orders_whose_ask_can_be_due(shop):
    _old_history(shop.engine)
    for n, kind in enumerate(("delivered_at", "shipped_at", "ordered_at")):
        delay = {"delivered_at": S.review_delay_days, "shipped_at": S.ship_fallback_days,
                 "ordered_at": S.order_fallback_days}[kind]
        shop.customer(f"c{n}")
        shop.order(f"due-{kind}", f"c{n}", status={"ordered_at": "placed", "shipped_at": "shipped"}.get(kind, "delivered"),
                   **{kind: AS_OF - timedelta(days=delay)})
    _not_yet_due(shop.engine)
    plan = _explain(shop.engine, _REVIEW_REQUESTS)
    read = rows_read(plan, "orders")
    assert read <= 10, f"the review-ask scan read {read} orders for 3 due ones among {2 * OLD} old and new ones"
    assert rows_read(plan, "order_status_history") <= 10
    assert rows_read(plan, "reviews") <= 10
    plan_outreach(shop.engine, AS_OF, S, run_id="t")
    assert {o for o, (status, _) in shop.by_order().items() if status == "planned"} == {
        "due-delivered_at", "due-shipped_at", "due-ordered_at"}


def test_reminders_read_only_requests_whose_reminder_can_be_due(shop):
    _old_history(shop.engine)
    shop.customer("c1")
    shop.order("o1", "c1", delivered_at=AS_OF - timedelta(days=S.review_delay_days + S.reminder_delay_days))
    shop.message("c1", "review_request", AS_OF - timedelta(days=S.reminder_delay_days), order_id="o1")
    _not_yet_due(shop.engine)
    plan = _explain(shop.engine, _REMINDERS)
    read = rows_read(plan, "outreach_messages")
    assert read <= 10, f"the reminder scan read {read} outbox rows for 1 due reminder among {2 * OLD} other requests"
    assert rows_read(plan, "order_status_history") <= 10
    assert rows_read(plan, "reviews") <= 10
    plan_outreach(shop.engine, AS_OF, S, run_id="t")
    assert shop.by_order("review_reminder") == {"o1": ("planned", None)}


def test_share_asks_read_only_recent_reviews_and_deliveries(shop):
    _old_history(shop.engine)
    shop.customer("happy")
    shop.order("h1", "happy", delivered_at=AS_OF - timedelta(days=30))
    shop.review("rh", "h1", "happy", 5, created_at=AS_OF - timedelta(days=S.share_delay_days))
    shop.score("happy", sentiment=0.8)
    _not_yet_due(shop.engine)
    plan = _explain(shop.engine, _SHARE_ASKS)
    assert rows_read(plan, "reviews") <= 10
    assert rows_read(plan, "orders") <= 10
    assert rows_read(plan, "order_status_history") <= 10
    plan_outreach(shop.engine, AS_OF, S, run_id="t")
    assert {m.customer_id for m in shop.messages() if m.kind == "share_ask"} == {"happy"}


def test_repeat_buyer_counts_orders_from_before_the_window_but_not_closed_ones(shop):
    settings = replace(S, share_repeat_orders=3)
    due = AS_OF - timedelta(days=S.review_delay_days + S.share_delay_days)
    shop.customer("three")  # two old orders and a due one: the third delivered order
    shop.order("t1", "three", delivered_at=AS_OF - timedelta(days=300))
    shop.order("t2", "three", delivered_at=AS_OF - timedelta(days=200))
    shop.order("t3", "three", delivered_at=due)
    shop.customer("returned")  # one of the old orders came back: the due one is only the second that counts
    shop.order("x1", "returned", delivered_at=AS_OF - timedelta(days=300))
    shop.order("x2", "returned", delivered_at=AS_OF - timedelta(days=200), history=["returned"])
    shop.order("x3", "returned", delivered_at=due)
    shop.customer("tied")  # delivered at the same moment: the order id breaks the tie, as the rank did
    shop.order("y1", "tied", delivered_at=AS_OF - timedelta(days=300))
    shop.order("y2", "tied", delivered_at=due)
    shop.order("y3", "tied", delivered_at=due)
    plan_outreach(shop.engine, AS_OF, settings, run_id="t")
    shares = {m.customer_id: m.order_id for m in shop.messages() if m.kind == "share_ask"}
    assert shares == {"three": "t3", "tied": "y3"}


def test_share_asks_planned_by_an_earlier_run_are_dropped_before_the_recipient_is_read(shop):
    """A daily run sees the window's asks again, most of them planned the day before: those cost an outbox
    probe each, not a look-up of the customer, contacts and suppressions."""
    due = AS_OF - timedelta(days=S.review_delay_days + S.share_delay_days)
    with shop.engine.begin() as conn:
        conn.execute(sa.text("""
            insert into smarketing.customers (customer_id, accepts_marketing, updated_at, source)
            select 'rb' || n, true, :t, 'test' from generate_series(1, :n) n
        """), {"n": OLD, "t": AS_OF})
        conn.execute(sa.text("""
            insert into smarketing.orders (order_id, customer_id, ordered_at, status, shipped_at, delivered_at,
                                           total_amount, currency, updated_at, source)
            select 'rb' || n || '-' || k, 'rb' || n, d - interval '3 days', 'delivered', d - interval '2 days', d,
                   10, 'EUR', d, 'test'
            from generate_series(1, :n) n, generate_series(1, 2) k,
                 lateral (select case k when 1 then :due - interval '200 days' else :due end as d) x
        """), {"n": OLD, "due": due})
        conn.execute(sa.text("""
            insert into smarketing.outreach_messages (message_id, idempotency_key, customer_id, order_id, kind, step,
                channel, template_variant, status, due_at, expires_at, planned_at)
            select 'rbm' || n, concat_ws(':', 'rb' || n, 'rb' || n || '-2', 'share_ask', 1), 'rb' || n,
                   'rb' || n || '-2', 'share_ask', 1, 'email', 'A', 'planned', :due, :due + interval '7 days', :due
            from generate_series(1, :n) n
        """), {"n": OLD, "due": AS_OF - timedelta(hours=1)})
        conn.exec_driver_sql("analyze")
    shop.customer("new-repeat")
    shop.order("nr1", "new-repeat", delivered_at=AS_OF - timedelta(days=200))
    shop.order("nr2", "new-repeat", delivered_at=due)
    plan = _explain(shop.engine, _SHARE_ASKS)
    looked_up = rows_read(plan, "customers")
    assert looked_up <= 10, f"{looked_up} customers looked up for 1 new share ask among {OLD} planned ones"
    plan_outreach(shop.engine, AS_OF, S, run_id="t")
    assert {m.customer_id for m in shop.messages() if m.kind == "share_ask" and m.status == "planned"} == {
        "new-repeat", *(f"rb{n}" for n in range(1, OLD + 1))}  # the earlier ones, and one new
