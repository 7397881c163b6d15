"""Response sources: the Judge.me export (a real platform's layout) and the generic export folder."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from smarketing_tasks.responses import (
    JudgeMeExportSource,
    ResponseExportSource,
    ResponsesSettings,
    ingest_responses,
)
from smarketing_tasks.responses.sources import JUDGEME_COLUMNS, decode_mixed
from smarketing_tasks.sources.base import Window
from tests.smarketing_tasks.responses.helpers import (
    KEY,
    T0,
    add_customer,
    add_order,
    add_sent_message,
    snapshot,
)

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "judgeme_reviews_export.csv"
UNTIL = T0 + timedelta(days=30)


def test_judgeme_sample_follows_the_documented_columns():
    header = SAMPLE.read_bytes().split(b"\n", 1)[0].decode()
    assert tuple(header.split(",")) == JUDGEME_COLUMNS
    text, fallbacks = decode_mixed(SAMPLE.read_bytes())
    assert fallbacks == 1 and "Élodie" in text and "Qualité" in text and "\ufffd" not in text


def test_judgeme_rows_map_onto_reviews():
    table = JudgeMeExportSource(SAMPLE).table()
    assert len(table) == 7
    first = table.iloc[0]
    assert (first["rating"], first["sku"], first["reviewer_email"], first["created_at"], first["moderation"],
            first["consent_to_publish"]) == ("5", "organic-cotton-tee", "anna@example.com", "2026-06-03 10:12:00",
                                             "published", "true")
    assert table["review_id"].is_unique and table["review_id"].str.startswith("judgeme-").all()
    # The same export read twice gives the same ids (reruns must not duplicate reviews).
    assert JudgeMeExportSource(SAMPLE).table()["review_id"].tolist() == table["review_id"].tolist()
    assert set(table["moderation"]) == {"published", "spam", "pending"}
    window = Window(since=T0 + timedelta(days=2, hours=12), until=T0 + timedelta(days=4, hours=18, minutes=50))
    assert len(next(JudgeMeExportSource(SAMPLE).read("reviews", window, 100))) == 2


def test_judgeme_export_is_refused_when_it_is_not_one(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("name,stars\nx,5\n")
    with pytest.raises(ValueError, match="not a Judge.me review export"):
        JudgeMeExportSource(path).table()


@pytest.mark.integration
def test_judgeme_export_ingests_with_customers_products_and_attribution(warehouse):
    with warehouse.begin() as conn:
        for customer_id, email in (("C1", "Anna@example.com"), ("C2", "ben@example.com"), ("C3", "cara@example.com"),
                                   ("C4", "elodie@example.com"), ("C5", "dan@example.com")):
            add_customer(conn, customer_id, email)
        add_order(conn, "O1", "C1", T0 - timedelta(days=20))
        add_order(conn, "O2", "C2", T0 - timedelta(days=20), sku="SKU-HOO-001", product_name="Recycled fleece hoodie")
        request = add_sent_message(conn, "C1", "O1", "review_request", T0)
    source = JudgeMeExportSource(SAMPLE)
    result = ingest_responses(source, "reviews", warehouse, until=UNTIL, run_id="r", keys=[KEY])
    with warehouse.connect() as conn:
        reviews = {r.customer_id: r for r in conn.execute(sa.text("select * from smarketing.reviews")).all()}
        rules = sorted(conn.execute(sa.text("select rule from smarketing.quarantine")).scalars())
    assert rules == ["marked_spam", "unknown_sku"]
    assert result.rows_read == 7 and result.rows_quarantined == 2
    assert set(reviews) == {"C1", "C2", "C3", "C4", None}
    anna = reviews["C1"]
    assert (anna.sku, anna.rating, anna.source, anna.message_id, anna.attribution, anna.language) == (
        "SKU-TEE-001", 5, "judgeme:judgeme_reviews_export", request, "window", "en")
    assert (reviews["C2"].sku, reviews["C2"].body, reviews["C2"].language) == ("SKU-HOO-001", "Good.", None)
    assert reviews["C3"].language == "de" and reviews["C4"].language == "fr"
    stranger = reviews[None]  # a web review from someone who is not a customer: kept, unpublished, unattributed
    assert (stranger.consent_to_publish, stranger.attribution, stranger.body) == (
        False, "none", "Quick delivery & friendly support 😀")
    before = snapshot(warehouse)
    ingest_responses(source, "reviews", warehouse, until=UNTIL, run_id="r2", keys=[KEY])
    assert snapshot(warehouse) == before


@pytest.mark.integration
def test_export_folder_csv_and_jsonl(tmp_path, warehouse):
    with warehouse.begin() as conn:
        add_customer(conn, "C1", "anna@example.com")
    (tmp_path / "email_events.csv").write_text(
        "event_id,email,event_type,occurred_at,bounce_type\n"
        f"E1,anna@example.com,bounce,{(T0 + timedelta(hours=1)).isoformat()},hard\n")
    (tmp_path / "social_posts.jsonl").write_text("\n".join([
        json.dumps({"post_id": "P1", "platform": "instagram", "author_handle": "@anna", "customer_id": "C1",
                    "body": "New tee!", "followers": 300, "url": "https://instagram.com/p/1",
                    "posted_at": (T0 + timedelta(hours=2)).isoformat()}),
        "{not json",
    ]) + "\n")
    source = ResponseExportSource(tmp_path, name="drop")
    assert set(source.datasets()) == {"email_events", "social_posts"}
    settings = ResponsesSettings()
    events = ingest_responses(source, "email_events", warehouse, until=UNTIL, run_id="r", settings=settings, keys=[KEY])
    posts = ingest_responses(source, "social_posts", warehouse, until=UNTIL, run_id="r", settings=settings, keys=[KEY])
    assert (events.rows_loaded, posts.rows_loaded, posts.rows_quarantined) == (1, 1, 1)
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("select reason from smarketing.suppressions")).scalar() == "hard_bounce"
        assert conn.execute(sa.text("select rule from smarketing.quarantine")).scalar() == "unreadable_record"
