"""The words of each shape rule's reason, for the failing rows only (validation in Python, no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from smarketing_tasks.responses import ResponsesSettings
from smarketing_tasks.responses.sources import response_columns
from smarketing_tasks.responses.validate import validate_responses

UNTIL = datetime(2026, 6, 1, tzinfo=UTC)
AT = "2026-05-01T10:00:00+00:00"
SETTINGS = ResponsesSettings(max_body_chars=20)


def _frame(dataset: str, rows: list[dict]) -> pd.DataFrame:
    columns = response_columns(dataset)
    return pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=list(columns), dtype="str")


def _reasons(dataset: str, rows: list[dict]) -> dict[tuple[str, str], str]:
    checked = validate_responses(dataset, _frame(dataset, rows), UNTIL, SETTINGS, [b"key"])
    key = response_columns(dataset)[0]
    frame = checked.frame
    return {(frame.loc[row, key], rule): reason for row, rule, reason in checked.rejects}


def test_review_reasons_quote_the_failing_value_and_leave_good_rows_alone():
    good = {"review_id": "ok", "rating": "5", "body": "Lovely", "created_at": AT}
    reasons = _reasons("reviews", [
        good,
        {"review_id": "half", "rating": "4.5", "created_at": AT},
        {"review_id": "six", "rating": "6", "created_at": AT},
        {"review_id": "long", "rating": "3", "body": "x" * 25, "created_at": AT},
        {"review_id": "when", "rating": "3", "created_at": "yesterday"},
        {"review_id": "bool", "rating": "3", "consent_to_publish": "maybe", "created_at": AT},
        {"review_id": "token", "rating": "3", "review_token": "not-a-token", "created_at": AT},
        {"review_id": "latin", "rating": "3", "body": "Caf\ufffd", "created_at": AT},
        {"review_id": "nul\x00", "rating": "3", "created_at": AT},
    ])
    assert reasons == {
        ("half", "bad_rating"): "rating is not a whole number of stars: '4.5'",
        ("six", "rating_out_of_range"): "rating is outside 1-5: '6'",
        ("long", "body_too_long"): "body has 25 characters, more than 20",
        ("when", "bad_timestamp_created_at"): "created_at is not an ISO 8601 timestamp: 'yesterday'",
        ("bool", "bad_boolean_consent_to_publish"): "consent_to_publish is not true/false: 'maybe'",
        ("token", "invalid_review_token"): "review_token is not a review link we issued (malformed)",
        ("latin", "undecodable_text"): "body holds bytes that are not valid UTF-8 (a file in mixed encodings?)",
        ("nul\x00", "nul_byte"): "review_id holds a NUL byte",
    }


def test_post_and_event_reasons_quote_the_failing_value():
    posts = _reasons("social_posts", [
        {"post_id": "ok", "platform": "instagram", "followers": "10", "url": "https://x.example/p/1", "posted_at": AT},
        {"post_id": "few", "platform": "instagram", "followers": "-3", "posted_at": AT},
        {"post_id": "url", "platform": "instagram", "url": "ftp://x", "posted_at": AT},
    ])
    assert posts == {("few", "negative_followers"): "followers is negative: '-3'",
                     ("url", "bad_url"): "url is not an http(s) address: 'ftp://x'"}
    events = _reasons("email_events", [
        {"event_id": "ok", "email": "a@b.example", "event_type": "Hard-Bounce", "occurred_at": AT},
        {"event_id": "what", "email": "a@b.example", "event_type": "delivered", "occurred_at": AT},
        {"event_id": "soft?", "email": "a@b.example", "event_type": "bounce", "bounce_type": "medium",
         "occurred_at": AT},
        {"event_id": "mail", "email": "not-an-address", "event_type": "open", "occurred_at": AT},
        {"event_id": "fax", "email": "a@b.example", "event_type": "open", "channel": "fax", "occurred_at": AT},
    ])
    assert events == {
        ("what", "unknown_event_type"): "event_type is not one of unsubscribe|bounce|complaint|open|click: 'delivered'",
        ("soft?", "bad_bounce_type"): "bounce_type is not hard or soft: 'medium'",
        ("mail", "malformed_email"): "email is not a well-formed address: 'not-an-address'",
        ("fax", "unknown_channel"): "channel is not email, sms or webhook: 'fax'",
    }


def test_event_type_aliases_and_the_bounce_they_imply():
    frame = _frame("email_events", [
        {"event_id": "1", "email": "a@b.example", "event_type": "Hard-Bounce", "occurred_at": AT},
        {"event_id": "2", "email": "a@b.example", "event_type": "STOP", "occurred_at": AT},
        {"event_id": "3", "email": "a@b.example", "event_type": "bounced", "occurred_at": AT},
    ])
    clean = validate_responses("email_events", frame, UNTIL, SETTINGS, [b"key"]).clean
    assert clean[["event_type", "bounce_type"]].values.tolist() == [
        ["bounce", "hard"], ["unsubscribe", None], ["bounce", "hard" if SETTINGS.untyped_bounce_is_hard else "soft"]]
