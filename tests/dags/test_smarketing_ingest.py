"""smarketing_ingest under dag.test() against real databases: loads, quarantines, reruns cleanly."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import DEMO_END

pytestmark = [pytest.mark.integration, pytest.mark.airflow]


def _counts(url: str) -> dict[str, int]:
    from smarketing_tasks.db import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        counts = {t: conn.execute(sa.text(f"select count(*) from smarketing.{t}")).scalar()
                  for t in ("customers", "customer_contacts", "orders", "order_items", "quarantine")}
    engine.dispose()
    return counts


def _run(logical_date):
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_dag_integrity import DAGS_FOLDER

    dag = DagBag(dag_folder=str(DAGS_FOLDER / "smarketing_ingest.py")).get_dag("smarketing_ingest")
    return dag.test(logical_date=logical_date)


def test_ingest_dag_loads_demo_shop_and_reruns_idempotently(airflow_db, loop_connections):
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.demo_shop import ShopSpec, generate, write_shop

    shop = make_engine(loop_connections["smarketing_shop"])
    tables = generate(ShopSpec(customers=300, days=60, end=DEMO_END, seed=11, bad_row_share=0.01))
    write_shop(shop, tables)
    shop.dispose()

    first = _run(DEMO_END)
    assert first.state == "success"
    counts = _counts(loop_connections["smarketing_warehouse"])
    quarantined_orders = counts["quarantine"]
    assert counts["customers"] + counts["orders"] + quarantined_orders >= len(tables["customers"]) + len(tables["orders"])
    assert counts["order_items"] == len(tables["order_items"])
    assert quarantined_orders > 0

    rerun = _run(DEMO_END + timedelta(minutes=1))
    assert rerun.state == "success"
    assert _counts(loop_connections["smarketing_warehouse"]) == counts


def test_ingest_dag_emits_purchases_asset(airflow_db, loop_connections):
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    run = _run(DEMO_END)
    assert run.state == "success"
    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == run.run_id).all()
        # Airflow normalises the contract URI smarketing://purchases with a trailing slash.
        assert [(e.asset.name, e.asset.uri.rstrip("/")) for e in events] == [
            ("smarketing_purchases", "smarketing://purchases")]
        assert events[0].extra["rows_loaded"] == 0
