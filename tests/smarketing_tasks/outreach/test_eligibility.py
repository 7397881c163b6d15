"""The rules as pure functions: boundaries of the SMS window across time zones, triggers, cap, cooldown."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from smarketing_tasks.outreach.eligibility import (
    PriorMessage,
    ReviewAskFacts,
    consent_basis,
    idempotency_key,
    in_sms_window,
    is_due,
    message_id_for,
    next_sms_slot,
    outside_cooldown,
    review_ask_at,
    review_ask_skip_reason,
    variant_for,
    within_cap,
)
from smarketing_tasks.outreach.settings import OutreachSettings

S = OutreachSettings()
T = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("utc", "zone", "inside"), [
    ("2026-11-22T07:00:00+00:00", "Europe/Berlin", True),    # 08:00 Berlin: opens (inclusive)
    ("2026-11-22T06:59:59+00:00", "Europe/Berlin", False),   # 07:59:59
    ("2026-11-22T19:59:59+00:00", "Europe/Berlin", True),    # 20:59:59
    ("2026-11-22T20:00:00+00:00", "Europe/Berlin", False),   # 21:00 Berlin: closed (exclusive)
    ("2026-11-22T12:00:00+00:00", "Asia/Tokyo", False),      # 21:00 Tokyo
    ("2026-11-22T23:00:00+00:00", "Asia/Tokyo", True),       # 08:00 Tokyo next day
    ("2026-11-22T12:00:00+00:00", "America/Los_Angeles", False),  # 04:00
    ("2026-11-22T02:30:00+00:00", "Asia/Kolkata", True),     # 08:00 at a half-hour offset
    ("2026-03-29T06:00:00+00:00", "Europe/Berlin", True),    # 08:00 on the day clocks go forward
    ("2026-03-29T05:59:00+00:00", "Europe/Berlin", False),
    ("2026-11-22T12:00:00+00:00", "Not/AZone", True),        # unknown zone: default UTC, 12:00
])
def test_sms_window_edges(utc, zone, inside):
    assert in_sms_window(datetime.fromisoformat(utc), zone, S) is inside


def test_next_sms_slot_moves_to_the_next_opening():
    evening = datetime.fromisoformat("2026-11-22T20:30:00+00:00")  # 21:30 Berlin
    assert next_sms_slot(evening, "Europe/Berlin", S) == datetime.fromisoformat("2026-11-23T07:00:00+00:00")
    early = datetime.fromisoformat("2026-11-22T05:00:00+00:00")  # 06:00 Berlin
    assert next_sms_slot(early, "Europe/Berlin", S) == datetime.fromisoformat("2026-11-22T07:00:00+00:00")
    assert next_sms_slot(T, "Europe/Berlin", S) == T


def test_sms_needs_sms_consent_email_needs_marketing_consent_or_soft_opt_in():
    assert consent_basis("sms", True, False, "review_request", S) is None
    assert consent_basis("sms", False, True, "review_request", S) == "sms_consent"
    assert consent_basis("email", True, False, "share_ask", S) == "marketing_consent"
    assert consent_basis("email", False, False, "review_request", S) is None
    soft = replace(S, soft_opt_in=True)
    assert consent_basis("email", False, False, "review_request", soft) == "soft_opt_in"
    assert consent_basis("email", False, False, "share_ask", soft) is None


def test_trigger_on_delivery_with_fallbacks_and_exact_boundaries():
    delivered = T - timedelta(days=7)
    assert review_ask_at(delivered, delivered, delivered, S) == T
    assert review_ask_at(None, T - timedelta(days=10), T - timedelta(days=30), S) == T
    assert review_ask_at(None, None, T - timedelta(days=14), S) == T
    assert is_due(T, T, S) and not is_due(T + timedelta(seconds=1), T, S)
    assert not is_due(T - timedelta(days=S.ask_window_days), T, S)


def test_cap_and_cooldown_boundaries():
    three_today = [PriorMessage("share_ask", T - timedelta(hours=h), "sent") for h in (1, 2)]
    assert within_cap(three_today, T, S)
    assert not within_cap([*three_today, PriorMessage("thank_you", T, "planned")], T, S)
    assert within_cap([*three_today, PriorMessage("thank_you", T - timedelta(days=30), "sent")], T, S)
    assert within_cap([*three_today, PriorMessage("thank_you", T, "skipped")], T, S)
    assert not outside_cooldown([PriorMessage("review_request", T - timedelta(days=119), "sent")],
                                "review_request", T, S)
    assert outside_cooldown([PriorMessage("review_request", T - timedelta(days=120), "sent")], "review_request", T, S)
    assert outside_cooldown([PriorMessage("share_ask", T, "sent")], "review_request", T, S)


def test_review_ask_reasons_in_order_suppression_first():
    everything_wrong = ReviewAskFacts("returned", True, True, True, False, None)
    assert review_ask_skip_reason(everything_wrong) == "suppressed"
    ok = ReviewAskFacts("delivered", False, False, False, True, "marketing_consent")
    assert review_ask_skip_reason(ok) is None
    assert review_ask_skip_reason(replace(ok, already_reviewed=True)) == "already reviewed"
    assert review_ask_skip_reason(replace(ok, ever_closed=True)) == "order returned or cancelled"


def test_review_ask_facts_cannot_carry_ratings_or_scores():
    """No review gating by construction: the decision's inputs have no place for them."""
    from dataclasses import fields

    names = {f.name for f in fields(ReviewAskFacts)}
    assert not names & {"rating", "sentiment", "advocate_score", "segment", "nps_class", "is_lukewarm"}


def test_ids_and_variants_are_stable():
    key = idempotency_key("c1", None, "share_ask", 1)
    assert key == "c1:-:share_ask:1"
    assert message_id_for(key) == message_id_for(key) and len(message_id_for(key)) == 32
    assert variant_for(key, ["B", "A"]) == variant_for(key, ["A", "B"])
    assert {variant_for(f"c{i}:o:review_request:1", ["A", "B"]) for i in range(50)} == {"A", "B"}


def test_keys_of_ids_that_need_no_escaping_are_the_old_customer_order_kind_step():
    """Ids without ``%``, ``:`` or a lone ``-`` keep the key (so the Message-ID and variant) planned before 0026."""
    for customer, order in (("c1", "o1"), ("C 7", "O-7-1"), ("ünï", "ö--"), ("c1", ""), ("-", "o")):
        assert idempotency_key(customer, order, "review_request", 1) == f"{customer}:{order}:review_request:1"
    assert idempotency_key("c1", None, "share_ask", 1) == "c1:-:share_ask:1"


def test_ids_holding_colons_percent_signs_or_a_lone_dash_never_share_a_key():
    assert idempotency_key("a:b", "c", "review_request", 1) == "a%3Ab:c:review_request:1"
    assert idempotency_key("a", "b:c", "review_request", 1) == "a:b%3Ac:review_request:1"
    assert idempotency_key("a%3Ab", "c", "review_request", 1) == "a%253Ab:c:review_request:1"
    assert idempotency_key("c1", "-", "share_ask", 1) == "c1:%2D:share_ask:1"
    assert idempotency_key("c1", "%2D", "share_ask", 1) == "c1:%252D:share_ask:1"
    asks = [("a:b", "c"), ("a", "b:c"), ("a%3Ab", "c"), ("a", "b%3Ac"), ("a:b:c", None), ("a:b:c", "-"),
            ("a", "b:c:-"), ("c1", None), ("c1", "-"), ("c1", "%2D"), ("c1", "%252D"), ("c1", ""), ("", "c1"),
            ("c1:", ""), ("c1", ":"), ("%", "%"), ("%25", "%25"), (":", ":"), ("%3A", "%3A")]
    keys = {idempotency_key(c, o, "review_request", 1) for c, o in asks}
    assert len(keys) == len(asks)
    assert all(key.count(":") == 3 for key in keys)
