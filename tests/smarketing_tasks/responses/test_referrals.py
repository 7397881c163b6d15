"""Referral redemptions on a real PostgreSQL: first order only, first referrer keeps it, no self-referral."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.responses import redeem_referrals
from tests.smarketing_tasks.responses.helpers import T0, add_customer, add_order, add_sent_message, snapshot

pytestmark = pytest.mark.integration
UNTIL = T0 + timedelta(days=30)


def _code(conn, customer_id, code, created_at=T0 - timedelta(days=1)):
    conn.execute(sa.text("insert into smarketing.referral_codes values (:c, :code, :t)"),
                 {"c": customer_id, "code": code, "t": created_at})


@pytest.fixture
def referrers(warehouse):
    with warehouse.begin() as conn:
        add_customer(conn, "A", "alice@gmail.com", phone="+44 20 7946 0000")
        add_customer(conn, "B", "bob@example.com")
        _code(conn, "A", "REF-AAAAAAAA")
        _code(conn, "B", "REF-BBBBBBBB")
        share = add_sent_message(conn, "A", None, "share_ask", T0 - timedelta(hours=12))
    return share


def _referrals(warehouse):
    with warehouse.connect() as conn:
        return {r.referred_order_id: r for r in conn.execute(sa.text("select * from smarketing.referrals")).all()}


def _rules(warehouse):
    with warehouse.connect() as conn:
        return dict(conn.execute(sa.text(
            "select record_key, rule from smarketing.quarantine where dataset = 'referrals'")).all())


def _pending(warehouse):
    with warehouse.connect() as conn:
        return list(conn.execute(sa.text("select order_id from smarketing.referral_pending order by 1")).scalars())


def test_referral_rules(warehouse, referrers):
    with warehouse.begin() as conn:
        add_customer(conn, "F1", "friend1@example.com")
        add_order(conn, "O-F1-1", "F1", T0 + timedelta(days=1), discount_code="ref-aaaaaaaa ", total=55)
        add_order(conn, "O-F1-2", "F1", T0 + timedelta(days=5), discount_code="REF-BBBBBBBB")  # later order, other code
        add_customer(conn, "F2", "friend2@example.com")
        add_order(conn, "O-F2-0", "F2", T0 - timedelta(days=40))  # bought before: not a new customer
        add_order(conn, "O-F2-1", "F2", T0 + timedelta(days=1), discount_code="REF-AAAAAAAA")
        add_order(conn, "O-A", "A", T0 + timedelta(days=1), discount_code="REF-AAAAAAAA")  # own code
        add_customer(conn, "A2", "Alice+deals@gmail.com")  # the same Gmail inbox
        add_order(conn, "O-A2", "A2", T0 + timedelta(days=1), discount_code="REF-AAAAAAAA")
        add_customer(conn, "A3", "other@example.com", phone="+442079460000")  # the same phone
        add_order(conn, "O-A3", "A3", T0 + timedelta(days=1), discount_code="REF-AAAAAAAA")
        add_customer(conn, "F3", "friend3@example.com")
        add_order(conn, "O-F3", "F3", T0 + timedelta(days=1), discount_code="REF-ZZZZZZZZ")  # no such code
        add_customer(conn, "F4", "friend4@example.com")
        add_order(conn, "O-F4", "F4", T0 + timedelta(days=1), discount_code="WELCOME10")  # a promotion, ignored
        add_customer(conn, "F5", "friend5@example.com")
        add_order(conn, "O-F5", "F5", T0 + timedelta(days=1), discount_code="REF-BBBBBBBB", status="cancelled")
        add_customer(conn, "F6", "friend6@example.com")
        add_order(conn, "O-F6", "F6", T0 - timedelta(days=3), discount_code="REF-BBBBBBBB")  # before B had it
    result = redeem_referrals(warehouse, until=UNTIL, run_id="r1")

    referrals = _referrals(warehouse)
    assert set(referrals) == {"O-F1-1"}
    credited = referrals["O-F1-1"]
    assert (credited.referrer_customer_id, credited.referred_customer_id, credited.referral_code,
            float(credited.revenue), credited.message_id) == ("A", "F1", "REF-AAAAAAAA", 55.0, referrers)
    assert _rules(warehouse) == {
        "O-F1-2": "not_first_order", "O-F2-1": "not_first_order", "O-A": "self_referral",
        "O-A2": "self_referral_same_email", "O-A3": "self_referral_same_phone", "O-F3": "unknown_referral_code",
        "O-F5": "order_cancelled", "O-F6": "code_not_yet_issued",
    }
    assert (result.rows_loaded, result.rows_quarantined) == (1, 8)

    before = snapshot(warehouse)
    rerun = redeem_referrals(warehouse, until=UNTIL, run_id="r1")
    assert rerun.rows_loaded == 0 and snapshot(warehouse) == before


def test_first_referrer_keeps_the_credit(warehouse, referrers):
    with warehouse.begin() as conn:
        add_customer(conn, "F", "friend@example.com")
        add_order(conn, "O-1", "F", T0 + timedelta(days=1), discount_code="REF-AAAAAAAA")
    redeem_referrals(warehouse, until=T0 + timedelta(days=2), run_id="r1")
    # The first order is cancelled later and the friend orders again with another code: A keeps the credit.
    with warehouse.begin() as conn:
        conn.exec_driver_sql("update smarketing.orders set status = 'cancelled' where order_id = 'O-1'")
        add_order(conn, "O-2", "F", T0 + timedelta(days=3), discount_code="REF-BBBBBBBB")
    redeem_referrals(warehouse, until=T0 + timedelta(days=4), run_id="r2")
    assert {k: r.referrer_customer_id for k, r in _referrals(warehouse).items()} == {"O-1": "A"}
    assert _rules(warehouse) == {"O-2": "already_referred"}


def test_orders_after_the_run_time_wait(warehouse, referrers):
    with warehouse.begin() as conn:
        add_customer(conn, "F", "friend@example.com")
        add_order(conn, "O-1", "F", T0 + timedelta(days=10), discount_code="REF-AAAAAAAA")
    redeem_referrals(warehouse, until=T0 + timedelta(days=5), run_id="early")
    assert _referrals(warehouse) == {}
    redeem_referrals(warehouse, until=T0 + timedelta(days=11), run_id="later")
    assert set(_referrals(warehouse)) == {"O-1"}


def test_a_run_reads_only_changed_and_pending_orders_and_still_matches_late_ones(warehouse, referrers):
    with warehouse.begin() as conn:
        add_customer(conn, "F1", "friend1@example.com")
        add_order(conn, "O-1", "F1", T0 + timedelta(days=1), discount_code="REF-AAAAAAAA")
        add_customer(conn, "F2", "friend2@example.com")
        add_order(conn, "O-2", "F2", T0 + timedelta(days=1), discount_code="REF-CCCCCCCC")  # not issued yet
        add_customer(conn, "F3", "friend3@example.com")
        add_order(conn, "O-3", "F3", T0 + timedelta(days=1), discount_code="WELCOME10")
    first = redeem_referrals(warehouse, until=T0 + timedelta(days=2), run_id="r1")
    assert set(_referrals(warehouse)) == {"O-1"} and _rules(warehouse) == {"O-2": "unknown_referral_code"}
    assert first.rows_read == 2 and _pending(warehouse) == ["O-2"]

    # Loaded after the first run: an order placed before it, and the code the second order used.
    with warehouse.begin() as conn:
        add_customer(conn, "F4", "friend4@example.com")
        add_order(conn, "O-4", "F4", T0 + timedelta(days=1), discount_code="REF-BBBBBBBB")
        add_customer(conn, "C", "carol@example.com")
        _code(conn, "C", "REF-CCCCCCCC")
    second = redeem_referrals(warehouse, until=T0 + timedelta(days=3), run_id="r2")
    assert {k: r.referrer_customer_id for k, r in _referrals(warehouse).items()} == {"O-1": "A", "O-2": "C", "O-4": "B"}
    assert second.rows_read == 2 and _pending(warehouse) == []

    before = snapshot(warehouse)
    rerun = redeem_referrals(warehouse, until=T0 + timedelta(days=3), run_id="r2")
    assert (rerun.rows_read, rerun.rows_loaded) == (0, 0) and snapshot(warehouse) == before


def test_issuing_a_code_logs_the_orders_that_already_used_it(warehouse, referrers):
    """The referral-code trigger finds the orders by one index probe per issued code (migration 0023)."""
    with warehouse.begin() as conn:
        add_customer(conn, "F", "friend@example.com")
        add_order(conn, "O-1", "F", T0 + timedelta(days=1), discount_code=" ref-dddddddd ")
        add_order(conn, "O-2", "F", T0 + timedelta(days=1), discount_code="REF-EEEEEEEE")
        conn.execute(sa.text("delete from smarketing.referral_changes"))
    with warehouse.begin() as conn:
        add_customer(conn, "D", "dora@example.com")
        _code(conn, "D", "REF-DDDDDDDD")
        logged = conn.execute(sa.text("select order_id from smarketing.referral_changes")).scalars().all()
    assert logged == ["O-1"]
