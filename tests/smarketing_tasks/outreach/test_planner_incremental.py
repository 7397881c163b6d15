"""Incremental planning: a run reads the asks whose moment came since the last run and the orders the ingest
loaded since, yet plans exactly what a run re-reading the whole ask window would (issue 9).

The check used throughout: right after an incremental run, a full run at the same moment (which re-reads
the whole window) must find nothing left to write. Orders are loaded as the ingest loads them: the row with
its source ``updated_at``, then the orders watermark moved forward.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.outreach import OutreachSettings, plan_outreach
from smarketing_tasks.outreach import planner as planner_module
from tests.explain import index_names, plan_text
from tests.smarketing_tasks.outreach.helpers import AS_OF

pytestmark = pytest.mark.integration
S = OutreachSettings()
FULL = replace(S, plan_incremental=False)
START = AS_OF - timedelta(days=30)


def _load_order(engine: sa.Engine, order_id: str, customer_id: str, *, delivered_at: datetime | None,
                updated_at: datetime, shipped_at: datetime | None = None, status: str = "delivered",
                watermark: datetime | None = None) -> None:
    """Upsert an order as the ingest does and move the orders watermark (to ``watermark``, default the row's
    ``updated_at``), only forward."""
    ordered_at = (delivered_at or shipped_at or updated_at) - timedelta(days=3)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "insert into smarketing.orders (order_id, customer_id, ordered_at, status, shipped_at, delivered_at,"
            " total_amount, currency, updated_at, source) values (:o, :c, :oa, :st, :sa, :da, 10, 'EUR', :u, 'shop')"
            " on conflict (order_id) do update set status = excluded.status, shipped_at = excluded.shipped_at,"
            " delivered_at = excluded.delivered_at, updated_at = excluded.updated_at, loaded_at = now()"),
            {"o": order_id, "c": customer_id, "oa": ordered_at, "st": status, "sa": shipped_at or delivered_at,
             "da": delivered_at, "u": updated_at})
        if status in ("returned", "cancelled"):
            conn.execute(sa.text("insert into smarketing.order_status_history values (:o, :s, :t) "
                                 "on conflict do nothing"), {"o": order_id, "s": status, "t": updated_at})
        conn.execute(sa.text(
            "insert into smarketing.watermarks (source, dataset, high_watermark) values ('shop', 'orders', :h) "
            "on conflict (source, dataset) do update set high_watermark = excluded.high_watermark "
            "where excluded.high_watermark > smarketing.watermarks.high_watermark"),
            {"h": watermark or updated_at})


def _mark_sent(engine: sa.Engine, until: datetime) -> None:
    """The sender: planned messages due by ``until`` went out when due."""
    with engine.begin() as conn:
        conn.execute(sa.text("update smarketing.outreach_messages set status = 'sent', sent_at = due_at "
                             "where status = 'planned' and due_at <= :t"), {"t": until})


def _outbox(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "select idempotency_key, status, coalesce(status_reason, '') from smarketing.outreach_messages "
            "order by idempotency_key"))]


def _full_run_finds_nothing(engine: sa.Engine, as_of: datetime) -> None:
    """A full run at the same moment writes nothing new; its bookkeeping row is removed again so that the
    next run continues from the incremental one."""
    result = plan_outreach(engine, as_of, FULL, run_id="full-check")
    assert result.mode == "full"
    assert (result.planned, result.skipped) == (0, 0), f"the incremental run missed {dict(result.counts)}"
    with engine.begin() as conn:
        conn.execute(sa.text("delete from smarketing.outreach_plan_runs where run_id = 'full-check'"))


def _customers(shop, n: int) -> list[str]:
    return [shop.customer(f"c{i}") for i in range(n)]


def test_daily_incremental_runs_plan_what_full_runs_would(shop):
    """Thirty days of deliveries, returns, late delivery events and repeat buyers, planned once a day."""
    rng = random.Random(7)
    customers = _customers(shop, 40)
    modes = []
    for day in range(30):
        as_of = START + timedelta(days=day)
        for n in range(rng.randint(3, 8)):  # delivered today, loaded today
            _load_order(shop.engine, f"d{day}-{n}", rng.choice(customers),
                        delivered_at=as_of - timedelta(hours=rng.randint(1, 23)), updated_at=as_of - timedelta(minutes=5))
        if day >= 12:
            # a delivery that happened 10 days ago, known only now: its ask (3 days ago) precedes the last run
            _load_order(shop.engine, f"late{day}", rng.choice(customers),
                        delivered_at=as_of - timedelta(days=10), updated_at=as_of - timedelta(minutes=3))
            # an order without any delivery event: asked on the shipping fallback
            _load_order(shop.engine, f"ship{day}", rng.choice(customers), delivered_at=None, status="shipped",
                        shipped_at=as_of - timedelta(days=rng.randint(9, 12)), updated_at=as_of - timedelta(minutes=2))
        if day % 5 == 4:  # an order of nine days ago returned today, before its ask
            _load_order(shop.engine, f"d{day - 1}-0", "c0", delivered_at=as_of - timedelta(days=1),
                        status="returned", updated_at=as_of - timedelta(minutes=1))
        result = plan_outreach(shop.engine, as_of, S, run_id=f"day{day}")
        modes.append(result.mode)
        _full_run_finds_nothing(shop.engine, as_of)
        _mark_sent(shop.engine, as_of)
    assert modes[0] == "full" and set(modes[1:]) == {"incremental"}
    kinds = {key.split(":")[2] for key, _, _ in _outbox(shop.engine)}
    assert kinds == {"review_request", "review_reminder", "share_ask"}, "the scenario exercises every ask"
    late_asked = {key.split(":")[1] for key, _, _ in _outbox(shop.engine) if key.split(":")[2] == "review_request"}
    assert {f"late{day}" for day in range(12, 30)} <= late_asked, "every late delivery got its review ask"


def test_a_late_delivery_event_is_planned_from_the_changed_orders(shop):
    shop.customer("c1")
    shop.customer("c2")
    _load_order(shop.engine, "o-early", "c1", delivered_at=AS_OF - timedelta(days=8), updated_at=AS_OF - timedelta(days=8))
    first = plan_outreach(shop.engine, AS_OF - timedelta(days=1), S, run_id="yesterday")
    assert first.mode == "full" and shop.by_order() == {"o-early": ("planned", None)}
    # Delivered 10 days ago (ask due 3 days ago, before yesterday's run), but the event reached the shop today.
    _load_order(shop.engine, "o-late", "c2", delivered_at=AS_OF - timedelta(days=10), updated_at=AS_OF - timedelta(hours=2))
    result = plan_outreach(shop.engine, AS_OF, S, run_id="today")
    assert result.mode == "incremental"
    assert result.moments_from > AS_OF - timedelta(days=3), "the ask's moment lies before the moments read"
    assert shop.by_order() == {"o-early": ("planned", None), "o-late": ("planned", None)}
    (late,) = [m for m in shop.messages() if m.order_id == "o-late"]
    assert late.due_at == AS_OF - timedelta(days=3)


def test_an_order_loaded_late_by_a_lagging_ingest_is_still_planned(shop):
    """The ingest ran behind the planner: the row's source updated_at is older than the last planning run,
    but above the orders watermark that run saw, so the next run reads it."""
    shop.customer("c1")
    _load_order(shop.engine, "o-seen", "c1", delivered_at=AS_OF - timedelta(days=9),
                updated_at=AS_OF - timedelta(days=9))
    with shop.engine.begin() as conn:  # the ingest had loaded up to six hours before yesterday's run
        conn.execute(sa.text("update smarketing.watermarks set high_watermark = :h"),
                     {"h": AS_OF - timedelta(days=1, hours=6)})
    plan_outreach(shop.engine, AS_OF - timedelta(days=1), S, run_id="yesterday")
    shop.customer("c2")
    _load_order(shop.engine, "o-lagging", "c2", delivered_at=AS_OF - timedelta(days=12),
                updated_at=AS_OF - timedelta(days=1, hours=3))
    result = plan_outreach(shop.engine, AS_OF, S, run_id="today")
    assert result.mode == "incremental"
    assert shop.by_order()["o-lagging"] == ("planned", None)
    _full_run_finds_nothing(shop.engine, AS_OF)


def test_a_repeat_buyers_earlier_order_arriving_late_makes_the_later_one_a_share_ask(shop):
    shop.customer("c1")
    # Delivered 12 days ago: its share ask (review delay 7 + share delay 3) came 2 days ago, when the customer
    # had one known order, so yesterday's run planned no share ask.
    _load_order(shop.engine, "o-second", "c1", delivered_at=AS_OF - timedelta(days=12), updated_at=AS_OF - timedelta(days=12))
    plan_outreach(shop.engine, AS_OF - timedelta(days=1), S, run_id="yesterday")
    assert shop.by_order("share_ask") == {}
    # An earlier delivered order of the same customer reaches the warehouse today.
    _load_order(shop.engine, "o-first", "c1", delivered_at=AS_OF - timedelta(days=40), updated_at=AS_OF - timedelta(hours=1))
    result = plan_outreach(shop.engine, AS_OF, S, run_id="today")
    assert result.mode == "incremental"
    assert set(shop.by_order("share_ask")) == {"o-second"}
    _full_run_finds_nothing(shop.engine, AS_OF)


def test_a_repeat_buyer_is_asked_to_share_once_an_unhappy_review_stops_counting(shop):
    shop.customer("c1")
    _load_order(shop.engine, "o-a", "c1", delivered_at=AS_OF - timedelta(days=60), updated_at=AS_OF - timedelta(days=60))
    _load_order(shop.engine, "o-b", "c1", delivered_at=AS_OF - timedelta(days=14), updated_at=AS_OF - timedelta(days=14))
    # written 30.5 days ago: it holds back the share ask (due 4 days ago) until a day of 30 days after it
    shop.review("r-unhappy", "o-a", "c1", rating=2, created_at=AS_OF - timedelta(days=30, hours=12))
    shop.customer("c2")  # the ingest went on loading other orders: c1's orders are not among the changed ones
    _load_order(shop.engine, "o-other", "c2", delivered_at=AS_OF - timedelta(days=2), updated_at=AS_OF - timedelta(days=1, hours=2))
    plan_outreach(shop.engine, AS_OF - timedelta(days=1), S, run_id="yesterday")
    assert shop.by_order("share_ask") == {}
    result = plan_outreach(shop.engine, AS_OF, S, run_id="today")
    assert result.mode == "incremental"
    assert set(shop.by_order("share_ask")) == {"o-b"}
    _full_run_finds_nothing(shop.engine, AS_OF)


def test_a_share_ask_by_review_does_not_replace_a_later_repeat_ask_already_made(shop):
    """Per customer only the latest due share ask counts. Yesterday that was the repeat-buyer ask; today's run
    re-reads the review's ask (reviews are read over the whole window) and must weigh it against that one."""
    shop.customer("c1")
    _load_order(shop.engine, "o-old", "c1", delivered_at=AS_OF - timedelta(days=60), updated_at=AS_OF - timedelta(days=60))
    _load_order(shop.engine, "o-new", "c1", delivered_at=AS_OF - timedelta(days=12), updated_at=AS_OF - timedelta(days=12))
    shop.review("r-happy", "o-old", "c1", rating=5, created_at=AS_OF - timedelta(days=6))  # share ask due 3 days ago
    shop.score("c1", sentiment=0.8)
    shop.customer("c2")  # the ingest went on loading other orders: c1's orders are not among the changed ones
    _load_order(shop.engine, "o-other", "c2", delivered_at=AS_OF - timedelta(days=2), updated_at=AS_OF - timedelta(days=1, hours=2))
    plan_outreach(shop.engine, AS_OF - timedelta(days=1), S, run_id="yesterday")
    asked = shop.by_order("share_ask")
    assert asked == {"o-new": ("planned", None)}  # due 2 days ago, after the review's ask
    result = plan_outreach(shop.engine, AS_OF, S, run_id="today")
    assert result.mode == "incremental"
    assert shop.by_order("share_ask") == asked


def test_reruns_and_backfills_write_no_duplicate(shop):
    customers = _customers(shop, 6)
    for n, customer in enumerate(customers):
        _load_order(shop.engine, f"o{n}", customer, delivered_at=AS_OF - timedelta(days=7, hours=n * 4),
                    updated_at=AS_OF - timedelta(days=7, hours=n * 4))
    plan_outreach(shop.engine, AS_OF - timedelta(days=1), S, run_id="yesterday")
    first = plan_outreach(shop.engine, AS_OF, S, run_id="today")
    written = _outbox(shop.engine)
    assert first.mode == "incremental" and len(written) == 6
    rerun = plan_outreach(shop.engine, AS_OF, S, run_id="today")  # a retry of the same run
    backfill = plan_outreach(shop.engine, AS_OF - timedelta(days=2), S, run_id="backfill")
    assert (rerun.planned, rerun.skipped, backfill.planned, backfill.skipped) == (0, 0, 0, 0)
    assert _outbox(shop.engine) == written
    # the backfill is incremental against the runs before it only; the next normal run still starts from today's
    assert backfill.mode == "full"
    after = plan_outreach(shop.engine, AS_OF + timedelta(hours=1), S, run_id="next hour")
    assert after.mode == "incremental" and after.moments_from == AS_OF - timedelta(hours=S.plan_overlap_hours)
    assert _outbox(shop.engine) == written


def test_a_run_that_fails_midway_records_nothing_and_the_next_run_plans_its_asks(shop, monkeypatch):
    shop.customer("c1")
    shop.customer("c2")
    _load_order(shop.engine, "o1", "c1", delivered_at=AS_OF - timedelta(days=9), updated_at=AS_OF - timedelta(days=9))
    plan_outreach(shop.engine, AS_OF - timedelta(days=2), S, run_id="two days ago")
    _load_order(shop.engine, "o2", "c2", delivered_at=AS_OF - timedelta(days=8, hours=12),
                updated_at=AS_OF - timedelta(days=8, hours=12))  # asked a day and a half ago
    monkeypatch.setattr(planner_module, "_CAP", "select no_such_column from outreach_candidates")
    with pytest.raises(sa.exc.ProgrammingError):
        plan_outreach(shop.engine, AS_OF - timedelta(days=1), S, run_id="yesterday, failed")
    monkeypatch.undo()
    with shop.engine.connect() as conn:
        runs = conn.execute(sa.text("select run_id from smarketing.outreach_plan_runs order by plan_id")).scalars().all()
    assert runs == ["two days ago"]
    result = plan_outreach(shop.engine, AS_OF, S, run_id="today")
    assert result.mode == "incremental" and result.moments_from < AS_OF - timedelta(days=1, hours=12)
    assert shop.by_order() == {"o1": ("planned", None), "o2": ("planned", None)}


def test_full_runs_when_there_is_nothing_to_continue_from(shop):
    shop.customer("c1")
    shop.order("o-direct", "c1")  # written straight into the warehouse: no ingest watermark
    first = plan_outreach(shop.engine, AS_OF - timedelta(hours=1), S, run_id="a")
    second = plan_outreach(shop.engine, AS_OF, S, run_id="b")
    assert (first.mode, first.reason) == ("full", "no earlier planning run")
    assert (second.mode, second.reason) == ("full", "orders were loaded without an ingest watermark the last run saw")
    _load_order(shop.engine, "o-ingested", "c1", delivered_at=AS_OF - timedelta(days=8), updated_at=AS_OF)
    third = plan_outreach(shop.engine, AS_OF + timedelta(hours=1), S, run_id="c")
    assert third.mode == "full"  # the previous run saw no watermark yet
    fourth = plan_outreach(shop.engine, AS_OF + timedelta(hours=2), S, run_id="d")
    assert fourth.mode == "incremental"
    changed = plan_outreach(shop.engine, AS_OF + timedelta(hours=3), replace(S, review_delay_days=6), run_id="e")
    assert (changed.mode, changed.reason) == ("full", "the ask timing or share settings changed since the last run")
    gap = plan_outreach(shop.engine, AS_OF + timedelta(days=8), replace(S, review_delay_days=6), run_id="f")
    assert gap.mode == "full" and gap.reason.startswith("the last run")
    forced = plan_outreach(shop.engine, AS_OF + timedelta(days=8, hours=1), replace(FULL, review_delay_days=6), run_id="g")
    assert (forced.mode, forced.reason) == ("full", "SMARKETING_PLAN_INCREMENTAL is off")


def test_every_lookup_by_order_uses_the_kind_order_index(warehouse):
    """Migration 0021 dropped outreach_messages_order_idx (order_id): its one column leads
    outreach_messages_kind_order_idx, which serves a lookup by order alone."""
    with warehouse.begin() as conn:
        indexes = index_names(conn, "outreach_messages")
        assert "outreach_messages_order_idx" not in indexes and "outreach_messages_kind_order_idx" in indexes
        conn.exec_driver_sql("set local enable_seqscan = off")
        plan = plan_text(conn, "select message_id from smarketing.outreach_messages where order_id = 'o1'")
    assert "outreach_messages_kind_order_idx" in plan


def test_every_lookup_by_customer_uses_another_index(warehouse):
    """Migration 0024 dropped outreach_messages_customer_idx (customer_id, sent_at): on an outbox of a few
    thousand messages, a lookup by customer alone reads outreach_messages_customer_due_idx, and the window
    attribution of responses and referrals (a customer's sent asks of some kinds, latest send first) reads
    outreach_messages_customer_kind_sent_idx."""
    kinds = "(array['review_request', 'review_reminder', 'share_ask'])[1 + i % 3]"
    with warehouse.begin() as conn:
        conn.execute(sa.text(f"""
            insert into smarketing.outreach_messages (message_id, idempotency_key, customer_id, order_id, kind, step,
                channel, template_variant, status, due_at, expires_at, planned_at, planned_run_id, sent_at)
            select 'm' || i, 'k' || i, 'c' || (i % 600), 'o' || i, {kinds}, 1, 'email', 'a',
                   case when i % 4 = 0 then 'planned' else 'sent' end, :at - make_interval(hours => i),
                   :at, :at, 'r', case when i % 4 <> 0 then :at - make_interval(hours => i) end
            from generate_series(1, 4000) i"""), {"at": AS_OF})
        conn.exec_driver_sql("analyze smarketing.outreach_messages")
        indexes = index_names(conn, "outreach_messages")
        by_customer = plan_text(conn, "select message_id from smarketing.outreach_messages where customer_id = any(:ids)",
                                {"ids": ["c1", "c2"]})
        window_pick = plan_text(
            conn, "select m.message_id from smarketing.outreach_messages m "
                  "where m.customer_id = 'c1' and m.status = 'sent' and m.kind in ('share_ask', 'referral_ask') "
                  "and m.sent_at <= :at and m.sent_at > :at - interval '30 days' "
                  "order by m.sent_at desc, m.message_id limit 1", {"at": AS_OF})
    assert "outreach_messages_customer_idx" not in indexes
    assert "outreach_messages_customer_due_idx" in by_customer, by_customer
    assert "outreach_messages_customer_kind_sent_idx" in window_pick, window_pick
