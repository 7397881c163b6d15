"""smarketing_responses under dag.test() against real databases: loads, attributes, suppresses, reruns cleanly."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import DEMO_END

pytestmark = [pytest.mark.integration, pytest.mark.airflow]
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "judgeme_reviews_export.csv"


def _run(logical_date):
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_dag_integrity import DAGS_FOLDER

    dag = DagBag(dag_folder=str(DAGS_FOLDER / "smarketing_responses.py")).get_dag("smarketing_responses")
    for task in dag.tasks:
        task.retries = 0  # a failure here is a bug: report it at once instead of after backoff
    return dag.test(logical_date=logical_date)


def _seed(loop_connections) -> str:
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.responses.pipeline import signing_keys
    from smarketing_tasks.responses.settings import ResponsesSettings
    from smarketing_tasks.tokens import Purpose, sign
    from tests.smarketing_tasks.responses.helpers import (
        add_customer,
        add_order,
        add_sent_message,
        shop_insert,
    )

    warehouse = make_engine(loop_connections["smarketing_warehouse"])
    shop = make_engine(loop_connections["smarketing_shop"])
    sent = DEMO_END - timedelta(days=3)
    with warehouse.begin() as conn:
        add_customer(conn, "C1", "anna@example.com")
        add_customer(conn, "C2", "ben@example.com")
        add_order(conn, "O1", "C1", sent - timedelta(days=10))
        add_order(conn, "O2", "C2", sent - timedelta(days=1), discount_code="REF-AAAAAAAA", sku="SKU-HOO-001",
                  product_name="Recycled fleece hoodie")
        conn.execute(sa.text("insert into smarketing.referral_codes values ('C1', 'REF-AAAAAAAA', :t)"),
                     {"t": sent - timedelta(days=5)})
        request = add_sent_message(conn, "C1", "O1", "review_request", sent)
    # The DAG signs nothing; it verifies with the key kept in the warehouse, as outreach signs with it.
    key = signing_keys(warehouse, ResponsesSettings(), warn=lambda _: None)[0]
    with shop.begin() as conn:
        shop_insert(conn, "reviews", review_id="R1", rating=5, body="Love it, softest tee I own.",
                    consent_to_publish=True, incentivized=False, created_at=sent + timedelta(days=1),
                    review_token=sign(key, request, Purpose.REVIEW, sent + timedelta(days=30)))
        shop_insert(conn, "reviews", review_id="R2", customer_id="C2", rating=11, body="?", created_at=sent)
        shop_insert(conn, "social_posts", post_id="P1", platform="instagram", referral_code="REF-AAAAAAAA",
                    body="Get 10% with REF-AAAAAAAA", followers=800, posted_at=sent + timedelta(days=1))
        shop_insert(conn, "email_events", event_id="E1", email="ben@example.com", event_type="unsubscribe",
                    occurred_at=sent + timedelta(hours=5))
    warehouse.dispose()
    shop.dispose()
    return request


def _counts(url: str) -> dict:
    from smarketing_tasks.db import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        counts = {t: conn.execute(sa.text(f"select count(*) from smarketing.{t}")).scalar()
                  for t in ("reviews", "social_posts", "email_events", "suppressions", "referrals", "quarantine")}
        counts["attributed_review"] = conn.execute(sa.text(
            "select message_id || ':' || attribution from smarketing.reviews where review_id = 'R1'")).scalar()
    engine.dispose()
    return counts


def test_responses_dag_loads_attributes_and_reruns_idempotently(airflow_db, loop_connections, monkeypatch):
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    request = _seed(loop_connections)
    monkeypatch.setenv("AIRFLOW_CONN_SMARKETING_REVIEW_PLATFORM",
                       json.dumps({"conn_type": "generic", "extra": {"format": "judgeme", "path": str(SAMPLE)}}))
    run = _run(DEMO_END)
    assert run.state == "success"
    counts = _counts(loop_connections["smarketing_warehouse"])
    # 1 shop review + 5 platform reviews kept (one spam, one unknown product quarantined), one bad rating.
    assert counts == {"reviews": 6, "social_posts": 1, "email_events": 1, "suppressions": 1, "referrals": 1,
                      "quarantine": 3, "attributed_review": f"{request}:token"}
    from smarketing_tasks.db import make_engine

    engine = make_engine(loop_connections["smarketing_warehouse"])
    with engine.connect() as conn:  # audited before publishing: one suite run per loaded dataset
        audited = dict(conn.execute(sa.text(
            "select suite, rows_checked from smarketing.validation_runs where run_id = :r"), {"r": run.run_id}).all())
    engine.dispose()
    assert set(audited) == {"reviews", "social_posts", "email_events"} and audited["reviews"] >= 6
    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == run.run_id).all()
        assert [e.asset.uri.rstrip("/") for e in events] == ["smarketing://responses"]
        assert events[0].extra["rows_loaded"] == 6 + 1 + 1 + 1

    rerun = _run(DEMO_END + timedelta(minutes=1))
    assert rerun.state == "success"
    assert _counts(loop_connections["smarketing_warehouse"]) == counts


def test_responses_dag_runs_without_platform_connection_or_responses(airflow_db, loop_connections):
    run = _run(DEMO_END)
    assert run.state == "success"
    assert _counts(loop_connections["smarketing_warehouse"])["reviews"] == 0
