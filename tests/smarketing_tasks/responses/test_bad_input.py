"""A corpus of bad input through the export folder: each row quarantined with a reason or stored safely."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.responses import ResponseExportSource, ResponsesSettings, ingest_responses
from tests.smarketing_tasks.responses.helpers import KEY, T0, add_customer, add_order, snapshot

pytestmark = pytest.mark.integration
UNTIL = T0 + timedelta(days=10)
AT = (T0 + timedelta(days=1)).isoformat()
LATER = (T0 + timedelta(days=1, minutes=5)).isoformat()
SQL = "Robert'); DROP TABLE smarketing.reviews; --"
REVIEW_COLUMNS = ["review_id", "order_id", "customer_id", "sku", "rating", "title", "body", "consent_to_publish",
                  "incentivized", "created_at"]
REVIEWS = [
    # review_id, order_id, customer_id, sku, rating, title, body, consent, incentivized, created_at
    ("ok-1", "O1", "C1", "SKU-TEE-001", "5", "Great", "Lovely tee", "true", "false", AT),
    ("ok-1", "O1", "C1", "SKU-TEE-001", "5", "Great", "Lovely tee", "true", "false", AT),  # exact repeat: once
    ("clash", "O1", "C1", None, "4", None, "Version one", "true", "false", AT),
    ("clash", "O1", "C1", None, "2", None, "Version two", "true", "false", AT),
    ("copy", "O1", "C1", "SKU-TEE-001", "5", "Great", "Lovely tee", "true", "false", LATER),  # same text, new id
    ("zero", "O1", "C1", None, "0", None, "x", "true", "false", AT),
    ("six", "O1", "C1", None, "6", None, "x", "true", "false", AT),
    ("half", "O1", "C1", None, "4.5", None, "x", "true", "false", AT),
    ("word", "O1", "C1", None, "five", None, "x", "true", "false", AT),
    ("stars-only", "O1", "C1", None, "3", None, None, "false", "false", AT),
    ("whitespace", "O1", "C1", None, "2", "  ", "   \n  ", "false", "false", AT),
    ("huge", "O1", "C1", None, "1", None, "spam " * 10_000, "true", "false", AT),
    ("sku?", "O1", "C1", "SKU-DOES-NOT-EXIST", "4", None, "x", "true", "false", AT),
    ("who?", None, "C-UNKNOWN", None, "4", None, "x", "true", "false", AT),
    ("emoji", "O1", "C1", None, "5", "😍🔥", "Best tee ever 👕✨ — 10/10 would buy again", "true", "false", AT),
    ("html", "O1", "C1", None, "1", "<h1>Bad</h1>", "<script>document.location='http://evil'</script>"
     "<img src=x onerror=alert(1)>Broke after a week", "true", "false", AT),
    ("sql", "O1", "C1", None, "2", SQL, SQL, "true", "false", AT),
    ("future", "O1", "C1", None, "5", None, "x", "true", "false", (T0 + timedelta(days=365)).isoformat()),
    ("when?", "O1", "C1", None, "5", None, "x", "true", "false", "yesterday"),
    ("nul\x00id", "O1", "C1", None, "5", None, "x", "true", "false", AT),
    ("bool", "O1", "C1", None, "5", None, "x", "maybe", "false", AT),
    (None, "O1", "C1", None, "5", None, "no id", "true", "false", AT),
]
EXPECTED_REVIEW_RULES = {
    "clash": {"conflicting_duplicate"}, "copy": {"duplicate_review"}, "zero": {"rating_out_of_range"},
    "six": {"rating_out_of_range"}, "half": {"bad_rating"}, "word": {"bad_rating"}, "huge": {"body_too_long"},
    "sku?": {"unknown_sku"}, "who?": {"unknown_customer"}, "when?": {"bad_timestamp_created_at"},
    "nul\\u0000id": {"nul_byte"}, "bool": {"bad_boolean_consent_to_publish"}, None: {"missing_review_id"},
    "latin1": {"undecodable_text"},
}


def _reviews_csv() -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REVIEW_COLUMNS)
    writer.writerows(REVIEWS)
    latin1 = io.StringIO()
    csv.writer(latin1, lineterminator="\n").writerow(
        ["latin1", "O1", "C1", None, "4", None, "Très bien, qualité parfaite", "true", "false", AT])
    return buffer.getvalue().encode("utf-8") + latin1.getvalue().encode("latin-1")


def _jsonl(rows: list[dict]) -> str:
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n"


POSTS = [
    {"post_id": "fine", "platform": "Instagram", "author_handle": "@anna 🌸", "customer_id": "C1",
     "body": "Obsessed 😍 <b>#tee</b>", "followers": 1500, "url": "https://instagram.com/p/abc", "posted_at": AT},
    {"post_id": "negative", "platform": "x", "followers": -5, "posted_at": AT},
    {"post_id": "lots", "platform": "x", "followers": "lots", "posted_at": AT},
    {"post_id": "js-url", "platform": "x", "url": "javascript:alert(1)", "posted_at": AT},
    {"post_id": "ghost", "platform": "x", "customer_id": "C-NOPE", "posted_at": AT},
    {"post_id": "no-platform", "platform": "", "posted_at": AT},
    {"post_id": "sql", "platform": "x", "body": SQL, "author_handle": "'; --", "posted_at": AT},
]
EXPECTED_POST_RULES = {"negative": {"negative_followers"}, "lots": {"bad_followers"}, "js-url": {"bad_url"},
                       "ghost": {"unknown_customer"}, "no-platform": {"missing_platform"}}
EVENTS = [
    {"event_id": "ok", "email": "anna@example.com", "event_type": "Opened", "occurred_at": AT},
    {"event_id": "stranger-open", "email": "nobody@example.com", "event_type": "open", "occurred_at": AT},
    {"event_id": "stranger-unsub", "email": "Nobody@Example.com", "event_type": "unsubscribe", "occurred_at": AT},
    {"event_id": "bad-email", "email": "not an email", "event_type": "unsubscribe", "occurred_at": AT},
    {"event_id": "delivered", "email": "anna@example.com", "event_type": "delivered", "occurred_at": AT},
    {"event_id": "medium", "email": "anna@example.com", "event_type": "bounce", "bounce_type": "medium",
     "occurred_at": AT},
    {"email": "anna@example.com", "event_type": "click", "occurred_at": AT},
    {"event_id": "no-contact", "event_type": "click", "occurred_at": AT},
]
EXPECTED_EVENT_RULES = {"stranger-open": {"unknown_email"}, "bad-email": {"malformed_email"},
                        "delivered": {"unknown_event_type"}, "medium": {"bad_bounce_type"},
                        None: {"missing_event_id"}, "no-contact": {"missing_contact"}}


def _quarantine(warehouse, dataset):
    rules: dict = {}
    with warehouse.connect() as conn:
        for key, rule in conn.execute(sa.text(
                "select record_key, rule from smarketing.quarantine where dataset = :d"), {"d": dataset}).all():
            rules.setdefault(key, set()).add(rule)
    return rules


def test_bad_input_corpus_is_quarantined_or_stored_safely(tmp_path, warehouse):
    with warehouse.begin() as conn:
        add_customer(conn, "C1", "anna@example.com")
        add_order(conn, "O1", "C1", T0 - timedelta(days=5))
    (tmp_path / "reviews.csv").write_bytes(_reviews_csv())
    (tmp_path / "social_posts.jsonl").write_text(_jsonl(POSTS))
    (tmp_path / "email_events.jsonl").write_text(_jsonl(EVENTS))
    source = ResponseExportSource(tmp_path, name="corpus")
    settings = ResponsesSettings(responses_batch_rows=7)  # several batches, so duplicates meet across and within them
    results = {d: ingest_responses(source, d, warehouse, until=UNTIL, run_id="r", settings=settings, keys=[KEY])
               for d in ("reviews", "social_posts", "email_events")}

    assert _quarantine(warehouse, "reviews") == EXPECTED_REVIEW_RULES
    assert _quarantine(warehouse, "social_posts") == EXPECTED_POST_RULES
    assert _quarantine(warehouse, "email_events") == EXPECTED_EVENT_RULES
    with warehouse.connect() as conn:
        reviews = {r.review_id: r for r in conn.execute(sa.text("select * from smarketing.reviews")).all()}
        posts = {r.post_id: r for r in conn.execute(sa.text("select * from smarketing.social_posts")).all()}
        events = set(conn.execute(sa.text("select event_id from smarketing.email_events")).scalars())
        suppressed = set(conn.execute(sa.text("select email from smarketing.suppressions")).scalars())
    assert set(reviews) == {"ok-1", "stars-only", "whitespace", "emoji", "html", "sql"}
    assert reviews["stars-only"].body is None and reviews["whitespace"].body is None
    assert reviews["emoji"].title == "😍🔥" and "👕✨" in reviews["emoji"].body
    assert (reviews["html"].title, reviews["html"].body) == ("Bad", "Broke after a week")
    assert reviews["sql"].body == SQL  # stored as text; the table is still there to be read
    assert (posts["fine"].author_handle, posts["fine"].body, posts["fine"].platform) == (
        "@anna 🌸", "Obsessed 😍 #tee", "instagram")
    assert posts["sql"].body == SQL
    assert events == {"ok", "stranger-unsub"} and suppressed == {"nobody@example.com"}
    # Nothing lost: every row read is stored, quarantined, or an exact repeat of a stored row.
    assert results["reviews"].rows_read == len(REVIEWS) + 1 - 1  # the future row waits for its time
    assert results["reviews"].high_watermark <= UNTIL

    before = snapshot(warehouse)
    for dataset in ("reviews", "social_posts", "email_events"):
        ingest_responses(source, dataset, warehouse, until=UNTIL, run_id="again", settings=settings, keys=[KEY])
    assert snapshot(warehouse) == before
