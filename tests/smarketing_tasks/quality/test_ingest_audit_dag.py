"""The ingest DAG's audit step under dag.test(): a suite past its threshold fails the run before publishing."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.conftest import DEMO_END

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.slow]


def test_a_batch_breaking_the_orders_suite_fails_the_run_and_emits_no_asset(airflow_db, loop_connections):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    from smarketing_tasks.db import make_engine
    from smarketing_tasks.demo_shop import ShopSpec, generate, write_shop
    from tests.dags.test_dag_integrity import DAGS_FOLDER

    tables = generate(ShopSpec(customers=200, days=40, end=DEMO_END, seed=3))
    orders = tables["orders"]
    # Well-formed ISO codes (row validation at load accepts them) that the shop does not sell in: 10% of orders.
    orders.loc[orders.index[::10], "currency"] = "XAU"
    shop = make_engine(loop_connections["smarketing_shop"])
    write_shop(shop, tables)
    shop.dispose()

    dag = DagBag(dag_folder=str(DAGS_FOLDER / "smarketing_ingest.py")).get_dag("smarketing_ingest")
    run = dag.test(logical_date=DEMO_END)

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed"
    assert states["audit_purchases"] == "failed" and states["publish_purchases"] == "upstream_failed"
    with create_session() as session:
        assert session.query(AssetEvent).filter(AssetEvent.source_run_id == run.run_id).count() == 0
    warehouse = make_engine(loop_connections["smarketing_warehouse"])
    with warehouse.connect() as conn:
        runs = dict(conn.execute(sa.text("select suite, success from smarketing.validation_runs")).all())
        message = conn.execute(sa.text(
            "select failure_message from smarketing.validation_runs where suite = 'orders'")).scalar()
        still_loaded = conn.execute(sa.text("select count(*) from smarketing.orders where currency = 'XAU'")).scalar()
    warehouse.dispose()
    assert runs == {"customers": True, "orders": False, "order_items": True}
    assert "expect_column_values_to_be_in_set(currency)" in message and '"XAU"' in message
    assert "above the 5% threshold" in message
    # Past the threshold nothing is moved: a person decides, and a rerun fails the same way.
    assert still_loaded == len(orders.index[::10])
