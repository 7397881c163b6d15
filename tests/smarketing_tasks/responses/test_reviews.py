"""Review ingestion on a real PostgreSQL: attribution by token then window, rules, language, reruns."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.responses import ResponseSqlSource, ResponsesSettings, ingest_responses
from smarketing_tasks.tokens import Purpose
from tests.smarketing_tasks.responses.helpers import (
    KEY,
    T0,
    add_customer,
    add_order,
    add_sent_message,
    shop_insert,
    snapshot,
    token,
)

pytestmark = pytest.mark.integration
UNTIL = T0 + timedelta(days=20)


@pytest.fixture
def world(warehouse):
    """Two customers with delivered orders; C1 got a request and a reminder, C2 a request with an incentive."""
    with warehouse.begin() as conn:
        add_customer(conn, "C1", "anna@example.com")
        add_customer(conn, "C2", "ben@example.com")
        add_order(conn, "O1", "C1", T0 - timedelta(days=10))
        add_order(conn, "O2", "C2", T0 - timedelta(days=10), sku="SKU-HOO-001", product_name="Recycled fleece hoodie")
        ids = {
            "request": add_sent_message(conn, "C1", "O1", "review_request", T0),
            "reminder": add_sent_message(conn, "C1", "O1", "review_reminder", T0 + timedelta(days=5), step=2),
            "c2": add_sent_message(conn, "C2", "O2", "review_request", T0, incentive=True),
        }
    return ids


def _review(conn, review_id, customer_id, order_id, rating, body, created_at, **extra):
    shop_insert(conn, "reviews", review_id=review_id, customer_id=customer_id, order_id=order_id,
                sku=extra.pop("sku", None), rating=rating, title=extra.pop("title", None), body=body,
                consent_to_publish=extra.pop("consent", True), incentivized=False, created_at=created_at, **extra)


def _ingest(shop, warehouse, until=UNTIL, run_id="run-1", settings=None):
    return ingest_responses(ResponseSqlSource(shop), "reviews", warehouse, until=until, run_id=run_id,
                            settings=settings or ResponsesSettings(), keys=[KEY])


def _reviews(warehouse):
    with warehouse.connect() as conn:
        return {r.review_id: r for r in conn.execute(sa.text("select * from smarketing.reviews")).all()}


def test_token_first_then_window_then_none(shop, warehouse, world):
    with shop.begin() as conn:
        # Through the reminder's link, but written after the request: the token names the reminder.
        _review(conn, "R-token", None, None, 5, "Lovely soft tee, fits perfectly and washes well.",
                T0 + timedelta(days=6), review_token=token(world["reminder"]))
        # No token: the latest ask to the same customer and order before the review.
        _review(conn, "R-window", "C1", "O1", 4, "Good.", T0 + timedelta(days=3))
        # Outside the attribution window: nobody asked recently.
        _review(conn, "R-none", "C1", "O1", 3, "Fine I guess, nothing special about this one really.",
                T0 + timedelta(days=19))
        # Names no order: the ask it answers says which order it is about.
        _review(conn, "R-which", "C2", None, 4, "Warm and comfy", T0 + timedelta(days=2))
    result = _ingest(shop, warehouse, settings=ResponsesSettings(attribution_window=timedelta(days=7)))
    assert (result.rows_read, result.rows_quarantined) == (4, 0)

    reviews = _reviews(warehouse)
    assert (reviews["R-token"].message_id, reviews["R-token"].attribution) == (world["reminder"], "token")
    # The token also tells who wrote it and about which order.
    assert (reviews["R-token"].customer_id, reviews["R-token"].order_id) == ("C1", "O1")
    assert (reviews["R-window"].message_id, reviews["R-window"].attribution) == (world["request"], "window")
    assert (reviews["R-none"].message_id, reviews["R-none"].attribution) == (None, "none")
    assert (reviews["R-which"].message_id, reviews["R-which"].order_id) == (world["c2"], "O2")


def test_answer_to_an_incentivised_ask_is_flagged(shop, warehouse, world):
    with shop.begin() as conn:
        _review(conn, "R-c2", "C2", "O2", 2, "The hoodie pilled after one wash.", T0 + timedelta(days=1))
    _ingest(shop, warehouse)
    review = _reviews(warehouse)["R-c2"]
    assert review.incentivized is True and review.message_id == world["c2"]


def test_language_is_noted_per_review(shop, warehouse, world):
    with shop.begin() as conn:
        _review(conn, "R-en", "C1", "O1", 5, "Absolutely love this tee, the fabric is soft and it keeps its shape.",
                T0 + timedelta(days=1))
        _review(conn, "R-de", "C1", "O1", 4, "Sehr schönes Shirt, angenehmer Stoff und schnelle Lieferung.",
                T0 + timedelta(days=2))
        _review(conn, "R-short", "C1", "O1", 4, "Good.", T0 + timedelta(days=3))
        _review(conn, "R-given", "C2", "O2", 5, "Super", T0 + timedelta(days=3), language="FR")
    _ingest(shop, warehouse)
    reviews = _reviews(warehouse)
    assert (reviews["R-en"].language, reviews["R-en"].language_source) == ("en", "langdetect")
    assert (reviews["R-de"].language, reviews["R-de"].language_source) == ("de", "langdetect")
    assert (reviews["R-short"].language, reviews["R-short"].language_source) == (None, "undetermined")
    assert (reviews["R-given"].language, reviews["R-given"].language_source) == ("fr", "source")


def test_loaded_reviews_get_their_text_signals_once(shop, warehouse, world):
    """Signals (tone, lukewarm, quote) are computed as reviews load; a rerun computes none, a change recomputes."""
    with shop.begin() as conn:
        _review(conn, "R-en", "C1", "O1", 5, "Absolutely love this tee, the fabric is soft and it keeps its shape.",
                T0 + timedelta(days=1))
        _review(conn, "R-de", "C2", "O2", 4, "Sehr schönes Shirt, angenehmer Stoff und schnelle Lieferung.",
                T0 + timedelta(days=2))
    _ingest(shop, warehouse)

    def signals():
        with warehouse.connect() as conn:
            return {r.review_id: r for r in conn.execute(sa.text("select * from smarketing.review_signals"))}

    first = signals()
    assert first["R-en"].sentiment > 0.5 and first["R-en"].language == "en" and first["R-en"].quote
    assert first["R-de"].sentiment is None and first["R-de"].language == "de"
    _ingest(shop, warehouse, run_id="run-2")
    assert {k: v.computed_at for k, v in signals().items()} == {k: v.computed_at for k, v in first.items()}
    with shop.begin() as conn:
        conn.exec_driver_sql("update shop.reviews set body = 'Shrank in the wash, disappointed.', rating = 2, "
                             "created_at = created_at + interval '1 hour' where review_id = 'R-en'")
    _ingest(shop, warehouse, run_id="run-3")
    again = signals()
    assert again["R-en"].sentiment < 0 and again["R-en"].computed_at > first["R-en"].computed_at
    assert again["R-de"].computed_at == first["R-de"].computed_at


def test_forged_and_expired_tokens(shop, warehouse, world):
    with shop.begin() as conn:
        _review(conn, "R-forged", "C1", "O1", 5, "Great!", T0 + timedelta(days=1),
                review_token=token(world["request"], key=b"someone-else"))
        _review(conn, "R-share-token", "C1", "O1", 5, "Great!!", T0 + timedelta(days=1),
                review_token=token(world["request"], purpose=Purpose.SHARE))
        # Expired when written: the link no longer vouches for it, but the customer and order still do.
        _review(conn, "R-expired", "C1", "O1", 4, "Nice", T0 + timedelta(days=2),
                review_token=token(world["request"], expires_at=T0 + timedelta(days=1)))
    result = _ingest(shop, warehouse)
    assert result.rows_quarantined == 2
    with warehouse.connect() as conn:
        rules = dict(conn.execute(sa.text("select record_key, rule from smarketing.quarantine")).all())
    assert rules == {"R-forged": "invalid_review_token", "R-share-token": "invalid_review_token"}
    assert _reviews(warehouse)["R-expired"].attribution == "window"


def test_referential_rules_and_duplicates(shop, warehouse, world):
    with shop.begin() as conn:
        _review(conn, "R-ghost", "C-nobody", None, 5, "Who am I?", T0 + timedelta(days=1))
        _review(conn, "R-no-order", "C1", "O-nothing", 5, "Which order?", T0 + timedelta(days=1))
        _review(conn, "R-other", "C1", "O2", 5, "Not my order", T0 + timedelta(days=1))
        _review(conn, "R-sku", "C1", "O1", 5, "Unknown product", T0 + timedelta(days=1), sku="SKU-NOPE")
        _review(conn, "R-first", "C1", "O1", 5, "Twice submitted", T0 + timedelta(days=1), sku="SKU-TEE-001")
        _review(conn, "R-again", "C1", "O1", 5, "Twice submitted", T0 + timedelta(days=1, minutes=1), sku="SKU-TEE-001")
        _review(conn, "R-store", None, None, 4, "Nice shop, quick delivery.", T0 + timedelta(days=1))
    result = _ingest(shop, warehouse)
    with warehouse.connect() as conn:
        rules = dict(conn.execute(sa.text("select record_key, rule from smarketing.quarantine")).all())
    assert rules == {"R-ghost": "unknown_customer", "R-no-order": "unknown_order", "R-other": "order_of_another_customer",
                     "R-sku": "unknown_sku", "R-again": "duplicate_review"}
    assert set(_reviews(warehouse)) == {"R-first", "R-store"}
    assert result.rows_quarantined == 5

    # The same review arriving again later (as a new id) is caught against the stored one.
    with shop.begin() as conn:
        _review(conn, "R-third", "C1", "O1", 5, "Twice submitted", T0 + timedelta(days=2), sku="SKU-TEE-001")
    _ingest(shop, warehouse, until=UNTIL + timedelta(hours=1), run_id="run-2")
    with warehouse.connect() as conn:
        reason = conn.execute(sa.text("select reason from smarketing.quarantine where record_key = 'R-third'")).scalar()
    assert reason.endswith("R-first")


def test_rerunning_any_interval_changes_nothing(shop, warehouse, world):
    with shop.begin() as conn:
        for day in range(1, 15):
            _review(conn, f"R{day}", "C1", "O1", 1 + day % 5, f"Review number {day}", T0 + timedelta(days=day))
        _review(conn, "R-bad", "C1", "O1", 9, "Too many stars", T0 + timedelta(days=3))
    _ingest(shop, warehouse, until=T0 + timedelta(days=7), run_id="a")
    _ingest(shop, warehouse, until=UNTIL, run_id="b")
    before = snapshot(warehouse)
    assert len(before["reviews"]) == 14 and len(before["quarantine"]) == 1
    # Rerun the first interval, the second, and a backfill from scratch under another source watermark reset.
    again = _ingest(shop, warehouse, until=T0 + timedelta(days=7), run_id="a")
    _ingest(shop, warehouse, until=UNTIL, run_id="b")
    assert again.rows_loaded == 0
    with warehouse.begin() as conn:
        conn.exec_driver_sql("delete from smarketing.watermarks")
    backfill = _ingest(shop, warehouse, until=UNTIL, run_id="backfill")
    assert backfill.rows_read == 15 and backfill.rows_loaded == 0
    assert snapshot(warehouse) == before


def test_watermark_never_passes_the_run_time(shop, warehouse, world):
    with shop.begin() as conn:
        _review(conn, "R-now", "C1", "O1", 5, "On time", T0 + timedelta(days=1))
        _review(conn, "R-future", "C1", "O1", 5, "From the future", T0 + timedelta(days=400))
    result = _ingest(shop, warehouse)
    assert set(_reviews(warehouse)) == {"R-now"}
    assert result.high_watermark <= UNTIL
    # Once the run's time passes it, the row is read and stored, not lost.
    _ingest(shop, warehouse, until=T0 + timedelta(days=401), run_id="later")
    assert set(_reviews(warehouse)) == {"R-now", "R-future"}


def test_links_signed_before_a_key_rotation_still_attribute(shop, warehouse, world):
    from smarketing_tasks.responses import signing_keys

    with shop.begin() as conn:
        _review(conn, "R-old-key", None, None, 5, "Signed before the rotation", T0 + timedelta(days=1),
                review_token=token(world["request"], key=b"old-key"))
    settings = ResponsesSettings(link_signing_key="new-key", link_signing_keys_retired="other, old-key")
    keys = signing_keys(warehouse, settings, warn=lambda _: None)
    assert keys == [b"new-key", b"other", b"old-key"]
    ingest_responses(ResponseSqlSource(shop), "reviews", warehouse, until=UNTIL, run_id="r", settings=settings,
                     keys=keys)
    assert _reviews(warehouse)["R-old-key"].attribution == "token"


def test_a_text_reading_backslash_n_is_kept_as_text_not_null(shop, warehouse, world):
    """COPY's NULL marker is \\N: a title that reads exactly that must reach the warehouse as the text."""
    with shop.begin() as conn:
        _review(conn, "R-marker", "C1", "O1", 5, "Back\\slash and \\N inside: a fine tee.", T0 + timedelta(days=3),
                title="\\N")
    assert _ingest(shop, warehouse).rows_loaded == 1
    review = _reviews(warehouse)["R-marker"]
    assert (review.title, review.body) == ("\\N", "Back\\slash and \\N inside: a fine tee.")


def test_both_order_rules_are_one_statement_and_keep_their_words_and_record_order(shop, warehouse, world):
    with shop.begin() as conn:
        _review(conn, "R-other-1", "C1", "O2", 5, "Not my order", T0 + timedelta(days=1))
        _review(conn, "R-no-order-1", "C1", "O-nothing", 5, "Which order?", T0 + timedelta(days=1, minutes=1))
        _review(conn, "R-other-2", "C2", "O1", 4, "Not mine either", T0 + timedelta(days=1, minutes=2))
        _review(conn, "R-no-order-2", None, "O-missing", 3, "No such order", T0 + timedelta(days=1, minutes=3))
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    sa.event.listen(warehouse, "before_cursor_execute", record)
    try:
        _ingest(shop, warehouse)
    finally:
        sa.event.remove(warehouse, "before_cursor_execute", record)
    # Each order rule's statement read every order of a full-load batch: one statement serves both now.
    order_checks = [s for s in statements if "is not a known order" in s or "belongs to customer" in s]
    assert len(order_checks) == 1, order_checks
    with warehouse.connect() as conn:
        records = conn.execute(sa.text(
            "select record_key, rule, reason from smarketing.quarantine order by quarantine_id")).all()
    assert [tuple(r) for r in records[:2]] == [
        ("R-no-order-1", "unknown_order", "order_id 'O-nothing' is not a known order"),
        ("R-no-order-2", "unknown_order", "order_id 'O-missing' is not a known order"),
    ] or [tuple(r) for r in records[:2]] == [
        ("R-no-order-2", "unknown_order", "order_id 'O-missing' is not a known order"),
        ("R-no-order-1", "unknown_order", "order_id 'O-nothing' is not a known order"),
    ]
    assert sorted(tuple(r) for r in records[2:]) == [
        ("R-other-1", "order_of_another_customer", "order O2 belongs to customer C2, not C1"),
        ("R-other-2", "order_of_another_customer", "order O1 belongs to customer C1, not C2"),
    ]
