"""The planner against a real PostgreSQL: every rule of DESIGN.md section 2 that decides who is asked."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.outreach import OutreachSettings, plan_outreach
from smarketing_tasks.outreach.eligibility import idempotency_key, message_id_for
from tests.smarketing_tasks.outreach.helpers import AS_OF

pytestmark = pytest.mark.integration
S = OutreachSettings()


def _plan(shop, settings=S, as_of=AS_OF):
    return plan_outreach(shop.engine, as_of, settings, run_id="t")


def test_review_ask_exactly_n_days_after_delivery_and_not_a_second_before(shop):
    shop.customer("c1")
    shop.customer("c2")
    shop.order("o-exact", "c1", delivered_at=AS_OF - timedelta(days=7))
    shop.order("o-early", "c2", delivered_at=AS_OF - timedelta(days=7) + timedelta(seconds=1))
    result = _plan(shop)
    assert shop.by_order() == {"o-exact": ("planned", None)}
    assert result.planned == 1
    (message,) = shop.messages()
    assert message.due_at == AS_OF
    assert message.expires_at == AS_OF + timedelta(days=S.request_ttl_days)
    assert message.consent_basis == "marketing_consent"


def test_message_id_and_key_follow_the_interface(shop):
    shop.customer("c1")
    shop.order("o1", "c1")
    _plan(shop)
    (message,) = shop.messages()
    assert message.idempotency_key == idempotency_key("c1", "o1", "review_request", 1) == "c1:o1:review_request:1"
    assert message.message_id == message_id_for(message.idempotency_key)
    assert message.template_variant in {"A", "B"}


def test_fallback_after_shipping_then_ordering_when_no_delivery_event(shop):
    shop.customer("c1")
    shop.customer("c2")
    shop.customer("c3")
    shop.order("shipped", "c1", shipped_at=AS_OF - timedelta(days=S.ship_fallback_days), status="shipped")
    shop.order("placed", "c2", ordered_at=AS_OF - timedelta(days=S.order_fallback_days), status="placed")
    # Shipped 8 days ago: a delivery event would be due, but the shipping fallback (10 days) is not yet.
    shop.order("shipped-recent", "c3", shipped_at=AS_OF - timedelta(days=8), status="shipped")
    _plan(shop)
    assert shop.by_order() == {"shipped": ("planned", None), "placed": ("planned", None)}


def test_no_ask_after_return_cancel_or_review(shop):
    for c in ("c1", "c2", "c3", "c4"):
        shop.customer(c)
    shop.order("returned", "c1", status="returned")
    shop.order("cancelled", "c2", status="cancelled")
    shop.order("returned-then-redelivered", "c3", history=["delivered", "returned"])
    shop.order("reviewed", "c4")
    shop.review("r1", "reviewed", "c4", 5)
    _plan(shop)
    assert shop.by_order() == {
        "returned": ("skipped", "order returned or cancelled"),
        "cancelled": ("skipped", "order returned or cancelled"),
        "returned-then-redelivered": ("skipped", "order returned or cancelled"),
        "reviewed": ("skipped", "already reviewed"),
    }


def test_consent_basis_required_and_recorded(shop):
    shop.customer("consented", marketing=True)
    shop.customer("no-consent", marketing=False)
    shop.order("o1", "consented")
    shop.order("o2", "no-consent")
    _plan(shop)
    assert shop.by_order() == {"o1": ("planned", None), "o2": ("skipped", "no consent")}

    soft = replace(S, soft_opt_in=True)
    shop.order("o3", "no-consent", delivered_at=AS_OF - timedelta(days=7) + timedelta(hours=1))
    _plan(shop, soft, AS_OF + timedelta(days=200))  # past the cooldown; o3 is then out of the ask window
    with shop.engine.begin() as conn:
        conn.execute(sa.text("delete from smarketing.outreach_messages"))
    _plan(shop, soft)
    rows = {m.order_id: (m.status, m.consent_basis) for m in shop.messages()}
    assert rows["o1"] == ("planned", "marketing_consent")
    assert rows["o2"] == ("planned", "soft_opt_in")


def test_suppression_always_wins(shop):
    shop.customer("by-email", marketing=True)
    shop.customer("by-id", marketing=True)
    shop.customer("bounced", marketing=True, email="Mixed.Case@Example.com")
    for c in ("by-email", "by-id", "bounced"):
        shop.order(f"o-{c}", c)
    shop.suppress("by-email@example.com", "unsubscribe")
    shop.suppress("other@example.com", "complaint", customer_id="by-id")
    shop.suppress("mixed.case@example.com", "hard_bounce")
    _plan(shop, replace(S, soft_opt_in=True))
    assert shop.by_order() == {
        "o-by-email": ("skipped", "suppressed: unsubscribe"),
        "o-by-id": ("skipped", "suppressed: complaint"),
        "o-bounced": ("skipped", "suppressed: hard_bounce"),
    }


def test_global_cap_reached_on_the_same_day(shop):
    """Two messages this morning; today a review ask and a share ask fall due: the third goes, the fourth not."""
    shop.customer("c1")
    shop.message("c1", "thank_you", AS_OF - timedelta(hours=3))
    shop.message("c1", "thank_you", AS_OF - timedelta(hours=2), order_id="x")
    shop.order("o1", "c1", delivered_at=AS_OF - timedelta(days=7, hours=1))  # review ask due 11:00 today
    shop.order("o0", "c1", delivered_at=AS_OF - timedelta(days=60))
    shop.order("o2", "c1", delivered_at=AS_OF - timedelta(days=S.review_delay_days + S.share_delay_days))
    shop.review("r2", "o2", "c1", 5, "great", created_at=AS_OF - timedelta(days=2))  # no review ask for o2
    _plan(shop)
    asks = {(m.kind, m.order_id): (m.status, m.status_reason) for m in shop.messages() if m.kind != "thank_you"}
    assert asks[("review_request", "o1")] == ("planned", None)
    assert asks[("share_ask", "o2")] == ("skipped", "global cap: 3 messages in 30 days")
    # Exactly 30 days later the morning messages no longer count.
    shop.customer("c2")
    shop.message("c2", "thank_you", AS_OF - timedelta(days=S.cap_window_days))
    shop.message("c2", "thank_you", AS_OF - timedelta(days=3), order_id="y")
    shop.message("c2", "thank_you", AS_OF - timedelta(days=2), order_id="z")
    shop.order("o3", "c2")
    _plan(shop)
    assert shop.by_order()["o3"] == ("planned", None)


def test_global_cap_counts_across_flows(shop):
    shop.customer("c1")
    for hours in (1, 2, 3):
        shop.message("c1", "share_ask", AS_OF - timedelta(days=1, hours=hours), order_id=f"s{hours}")
    shop.order("o1", "c1")
    _plan(shop)
    assert shop.by_order() == {"o1": ("skipped", "global cap: 3 messages in 30 days")}


def test_cooldown_120_days_between_review_asks(shop):
    shop.customer("c1")
    shop.customer("c2")
    shop.message("c1", "review_request", AS_OF - timedelta(days=119), order_id="old1")
    shop.message("c2", "review_request", AS_OF - timedelta(days=120), order_id="old2")
    shop.order("o1", "c1")
    shop.order("o2", "c2")
    _plan(shop)
    assert shop.by_order()["o1"] == ("skipped", "cooldown: asked within 120 days")
    assert shop.by_order()["o2"] == ("planned", None)


def test_rerun_and_backfill_plan_nothing_twice(shop):
    shop.customer("c1")
    shop.order("o1", "c1")
    first = _plan(shop)
    again = _plan(shop)
    later = _plan(shop, as_of=AS_OF + timedelta(days=1))
    assert (first.planned, again.planned, later.planned) == (1, 0, 0)
    assert len(shop.messages()) == 1


def test_asks_older_than_the_window_are_never_planned(shop):
    shop.customer("c1")
    shop.order("old", "c1", delivered_at=AS_OF - timedelta(days=7 + S.ask_window_days))
    _plan(shop)
    assert shop.messages() == []


def test_one_reminder_at_most_and_cancelled_by_a_review(shop):
    shop.customer("c1")
    shop.customer("c2")
    shop.order("o1", "c1", delivered_at=AS_OF - timedelta(days=12))
    shop.order("o2", "c2", delivered_at=AS_OF - timedelta(days=12))
    _plan(shop, as_of=AS_OF - timedelta(days=5))
    with shop.engine.begin() as conn:
        conn.execute(sa.text("update smarketing.outreach_messages set status = 'sent', sent_at = due_at"))
    shop.review("r2", "o2", "c2", 2, "meh")
    _plan(shop)
    reminders = shop.by_order("review_reminder")
    assert reminders == {"o1": ("planned", None), "o2": ("skipped", "cancelled: order reviewed")}
    (reminder,) = [m for m in shop.messages() if m.kind == "review_reminder" and m.order_id == "o1"]
    assert reminder.step == 2 and reminder.due_at == AS_OF
    _plan(shop, as_of=AS_OF + timedelta(days=5))
    assert len([m for m in shop.messages() if m.kind == "review_reminder"]) == 2


def test_no_reminder_for_a_request_that_was_not_sent(shop):
    shop.customer("c1", marketing=False)
    shop.order("o1", "c1", delivered_at=AS_OF - timedelta(days=12))
    _plan(shop, as_of=AS_OF - timedelta(days=5))
    _plan(shop)
    assert [m.kind for m in shop.messages()] == ["review_request"]


def test_sms_only_with_consent_and_moved_into_the_local_window(shop):
    sms = replace(S, preferred_channel="sms")
    shop.customer("tokyo", sms=True, phone="+81 90 1234 5678", time_zone="Asia/Tokyo")  # 21:00 local at 12:00Z
    shop.customer("berlin", sms=True, phone="+49 151 1234567", time_zone="Europe/Berlin")  # 13:00 local
    shop.customer("no-sms", sms=False, phone="+49 151 7654321")
    shop.customer("bad-zone", sms=True, phone="+1 555 0100", time_zone="Mars/Olympus")  # falls back to UTC: 12:00
    for c in ("tokyo", "berlin", "no-sms", "bad-zone"):
        shop.order(f"o-{c}", c)
    _plan(shop, sms)
    rows = {m.customer_id: m for m in shop.messages()}
    assert rows["tokyo"].channel == "sms" and rows["tokyo"].consent_basis == "sms_consent"
    assert rows["tokyo"].due_at == AS_OF + timedelta(hours=11)  # next day 08:00 Tokyo = 23:00Z
    assert rows["berlin"].due_at == AS_OF
    assert rows["no-sms"].channel == "email" and rows["no-sms"].consent_basis == "marketing_consent"
    assert rows["bad-zone"].channel == "sms" and rows["bad-zone"].due_at == AS_OF


def test_share_ask_for_happy_reviewers_and_repeat_buyers_with_referral_code(shop):
    from smarketing_tasks.outreach.planner import referral_code

    shop.customer("happy")
    shop.order("h1", "happy", delivered_at=AS_OF - timedelta(days=30))
    shop.review("rh", "h1", "happy", 5, "Wonderful", created_at=AS_OF - timedelta(days=S.share_delay_days))
    shop.score("happy", sentiment=0.8)
    shop.customer("lukewarm")
    shop.order("l1", "lukewarm", delivered_at=AS_OF - timedelta(days=30))
    shop.review("rl", "l1", "lukewarm", 4, "good", created_at=AS_OF - timedelta(days=S.share_delay_days))
    shop.score("lukewarm", sentiment=0.4, lukewarm=True)
    shop.customer("repeat")
    shop.order("p1", "repeat", delivered_at=AS_OF - timedelta(days=60))
    shop.order("p2", "repeat", delivered_at=AS_OF - timedelta(days=S.review_delay_days + S.share_delay_days))
    shop.customer("unhappy-repeat")
    shop.order("u1", "unhappy-repeat", delivered_at=AS_OF - timedelta(days=60))
    shop.order("u2", "unhappy-repeat", delivered_at=AS_OF - timedelta(days=S.review_delay_days + S.share_delay_days))
    shop.review("ru", "u1", "unhappy-repeat", 2, "broke after a week", created_at=AS_OF - timedelta(days=5))
    shop.customer("no-consent", marketing=False)
    shop.order("n1", "no-consent", delivered_at=AS_OF - timedelta(days=60))
    shop.order("n2", "no-consent", delivered_at=AS_OF - timedelta(days=S.review_delay_days + S.share_delay_days))
    _plan(shop, replace(S, soft_opt_in=True))
    shares = {m.customer_id: (m.order_id, m.status, m.consent_basis) for m in shop.messages() if m.kind == "share_ask"}
    assert shares == {"happy": ("h1", "planned", "marketing_consent"),
                      "repeat": ("p2", "planned", "marketing_consent"),
                      "no-consent": ("n2", "skipped", None)}
    with shop.engine.connect() as conn:
        codes = dict(conn.execute(sa.text("select customer_id, referral_code from smarketing.referral_codes")).all())
    assert codes == {"happy": referral_code("happy"), "repeat": referral_code("repeat")}
    assert codes["happy"].startswith("REF-") and len(codes["happy"]) == 12 and codes["happy"][4:].isupper()


def test_a_repeat_buyers_order_returned_in_its_history_is_neither_asked_about_nor_counted(shop):
    """An order whose status reads delivered but whose history says it was returned is closed: no share ask
    for it, and it does not make a later order the customer's second."""
    due = AS_OF - timedelta(days=S.review_delay_days + S.share_delay_days)
    shop.customer("due-returned")  # the due order itself was returned once (two open orders before it)
    shop.order("d0", "due-returned", delivered_at=AS_OF - timedelta(days=90))
    shop.order("d1", "due-returned", delivered_at=AS_OF - timedelta(days=60))
    shop.order("d2", "due-returned", delivered_at=due, history=["returned"])
    shop.customer("first-returned")  # the earlier order was returned: the due one is the first open order
    shop.order("f1", "first-returned", delivered_at=AS_OF - timedelta(days=60), history=["cancelled"])
    shop.order("f2", "first-returned", delivered_at=due)
    shop.customer("three")  # two earlier orders, one of them returned: still a repeat buyer
    shop.order("t1", "three", delivered_at=AS_OF - timedelta(days=90))
    shop.order("t2", "three", delivered_at=AS_OF - timedelta(days=60), history=["returned"])
    shop.order("t3", "three", delivered_at=due)
    _plan(shop)
    shares = {m.customer_id: (m.order_id, m.status) for m in shop.messages() if m.kind == "share_ask"}
    assert shares == {"three": ("t3", "planned")}


def test_incentive_is_offered_to_every_review_ask_alike_never_by_rating(shop):
    settings = replace(S, review_incentive="10% off your next order")
    for c, rating in (("c1", 1), ("c2", 5), ("c3", None)):
        shop.customer(c)
        shop.order(f"old-{c}", c, delivered_at=AS_OF - timedelta(days=200))
        if rating:
            shop.review(f"r-{c}", f"old-{c}", c, rating, created_at=AS_OF - timedelta(days=190))
            shop.score(c, sentiment=0.9 if rating == 5 else -0.9, score=95 if rating == 5 else 5)
        shop.order(f"o-{c}", c)
    _plan(shop, settings)
    asks = [m for m in shop.messages() if m.kind == "review_request"]
    assert len(asks) == 3 and all(m.incentive_offered and m.status == "planned" for m in asks)
    _plan(shop, replace(S), as_of=AS_OF)
    assert not any(m.incentive_offered for m in shop.messages() if m.kind != "review_request")


def test_injection_in_ids_and_names_is_data_not_sql(shop):
    evil = "x'); drop table smarketing.orders; --"
    shop.customer(evil, first_name="Robert'); DROP TABLE smarketing.customers;--")
    shop.order(evil + "-o", evil, items=[("SKU-1", "'; delete from smarketing.suppressions; --")])
    _plan(shop)
    (message,) = shop.messages()
    assert message.customer_id == evil and message.status == "planned"
    assert message.idempotency_key == f"{evil}:{evil}-o:review_request:1"
    with shop.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from smarketing.orders")).scalar() == 1


def test_no_review_gating_ratings_sentiment_and_scores_never_change_who_is_asked(shop):
    """Same customers, same orders; only what the loop learned about them differs: the review asks match."""
    import random

    rng = random.Random(3)
    for i in range(40):
        c = shop.customer(f"c{i}", marketing=i % 5 != 0, sms=i % 3 == 0, phone="+49 151 1234567")
        shop.order(f"past-{i}", c, delivered_at=AS_OF - timedelta(days=300))
        shop.order(f"o{i}", c, delivered_at=AS_OF - timedelta(days=7, hours=i % 24))

    def review_asks():
        with shop.engine.begin() as conn:
            rows = conn.execute(sa.text(
                "select order_id, status, status_reason, channel, due_at, template_variant, incentive_offered"
                " from smarketing.outreach_messages where kind = 'review_request' order by order_id")).all()
            conn.execute(sa.text("delete from smarketing.outreach_messages"))
        return rows

    _plan(shop)
    baseline = review_asks()
    assert len(baseline) == 40
    for world in range(3):  # three different worlds of ratings, sentiment and scores
        with shop.engine.begin() as conn:
            for table in ("reviews", "advocate_scores"):
                conn.execute(sa.text(f"delete from smarketing.{table}"))
        for i in range(40):
            rating = rng.randint(1, 5)
            shop.review(f"w{world}-{i}", f"past-{i}", f"c{i}", rating, rng.choice(["awful", "good", "superb"]),
                        created_at=AS_OF - timedelta(days=rng.randint(1, 290)))
            shop.score(f"c{i}", score=rng.uniform(0, 100), sentiment=rng.uniform(-1, 1), lukewarm=rng.random() < .3,
                       segment=rng.choice(["champion", "detractor", "lukewarm", "silent"]))
        _plan(shop)
        assert review_asks() == baseline


def test_set_based_sql_agrees_with_the_pure_rules_on_random_cases(shop):
    """The planner's SQL and eligibility.py state the same rules: random orders near every boundary."""
    import random

    from smarketing_tasks.outreach.eligibility import (
        ReviewAskFacts,
        consent_basis,
        is_due,
        review_ask_at,
        review_ask_skip_reason,
    )

    rng = random.Random(11)
    expected = {}
    for i in range(80):
        c, o = f"c{i}", f"o{i}"
        marketing, has_email = rng.random() < 0.7, rng.random() < 0.9
        shop.customer(c, marketing=marketing, email="auto" if has_email else None)
        suppressed = rng.random() < 0.1
        if suppressed:
            shop.suppress(f"{c}@example.com" if has_email else f"x{c}@example.com", customer_id=c)
        def jitter():
            return timedelta(days=rng.choice([7, 10, 14, 7 + S.ask_window_days, 3]),
                             seconds=rng.choice([-1, 0, 1, 3600]))

        status = rng.choice(["delivered", "delivered", "shipped", "placed", "returned", "cancelled"])
        delivered = AS_OF - jitter() if status in ("delivered", "returned") and rng.random() < 0.8 else None
        shipped = AS_OF - jitter() if status != "placed" and rng.random() < 0.8 else None
        ordered = AS_OF - jitter() - timedelta(days=3)
        ever_closed = rng.random() < 0.1
        shop.order(o, c, delivered_at=delivered, shipped_at=shipped, ordered_at=ordered, status=status,
                   history=["returned"] if ever_closed else None)
        reviewed = rng.random() < 0.15
        if reviewed:
            shop.review(f"r{i}", o, c, rng.randint(1, 5))
        ask_at = review_ask_at(delivered, shipped, ordered, S)
        if not is_due(ask_at, AS_OF, S):
            continue
        facts = ReviewAskFacts(status, ever_closed, reviewed, suppressed, has_email,
                               consent_basis("email", marketing, False, "review_request", S))
        reason = review_ask_skip_reason(facts)
        expected[o] = ("planned", None) if reason is None else ("skipped", reason)

    _plan(shop)
    actual = {o: (status, reason.split(":")[0] if reason else None) for o, (status, reason) in shop.by_order().items()}
    assert len(expected) > 20 and actual == expected


def test_reminder_counts_from_when_a_late_request_actually_went_out(shop):
    shop.customer("c1")
    shop.order("o1", "c1", delivered_at=AS_OF - timedelta(days=12))
    _plan(shop, as_of=AS_OF - timedelta(days=5))
    with shop.engine.begin() as conn:  # the request was due 5 days ago but went out (an outage) only 1 day ago
        conn.execute(sa.text("update smarketing.outreach_messages set status = 'sent', sent_at = :t"),
                     {"t": AS_OF - timedelta(days=1)})
    _plan(shop)
    assert shop.by_order("review_reminder") == {}
    _plan(shop, as_of=AS_OF + timedelta(days=S.reminder_delay_days - 1))
    assert shop.by_order("review_reminder") == {"o1": ("planned", None)}
