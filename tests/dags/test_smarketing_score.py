"""smarketing_score under dag.test() against a real warehouse: scores, follow-ups, reruns, the marts Asset."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import DEMO_END

pytestmark = [pytest.mark.integration, pytest.mark.airflow]


def _dag():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_dag_integrity import DAGS_FOLDER

    bag = DagBag(dag_folder=str(DAGS_FOLDER / "smarketing_score.py"))
    assert bag.import_errors == {}
    return bag.get_dag("smarketing_score")


def _seed(url: str) -> None:
    from smarketing_tasks.db import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "insert into smarketing.customers (customer_id, updated_at, source) "
            "select 'c' || g, :t, 'test' from generate_series(1, 60) g"), {"t": DEMO_END})
        conn.execute(sa.text(
            "insert into smarketing.orders (order_id, customer_id, ordered_at, status, total_amount, currency, "
            "updated_at, source) select 'o' || g || '-' || k, 'c' || g, :t - make_interval(days => 10 + g * k), "
            "'delivered', 20 + g, 'EUR', :t, 'test' from generate_series(1, 60) g, generate_series(1, 1 + g % 4) k"),
            {"t": DEMO_END})
        conn.execute(sa.text(
            "insert into smarketing.reviews (review_id, customer_id, rating, body, created_at, source) values "
            "('r1', 'c1', 4, 'Good.', :t - interval '2 days', 'test'), "
            "('r2', 'c2', 5, 'Absolutely love it, already ordered another for my dad!', :t - interval '3 days', 'test'), "
            "('r3', 'c3', 1, 'Arrived broken and support never answered.', :t - interval '1 day', 'test')"),
            {"t": DEMO_END})
    engine.dispose()


def test_score_dag_is_scheduled_on_purchases_or_responses(airflow_db):
    from smarketing_airflow.assets import PURCHASES, RESPONSES

    dag = _dag()
    assert dag.dag_id == "smarketing_score"
    # Either Asset alone triggers a run: purchases without responses must still be scored.
    condition = dag.timetable.asset_condition
    assert {a.uri for a in condition.objects} == {PURCHASES.uri, RESPONSES.uri}
    assert type(condition).__name__ == "AssetAny"
    assert type(dag.get_task("score_partition")).__name__.endswith("MappedOperator")  # fans out over partitions


@pytest.mark.slow
def test_score_dag_scores_every_customer_and_reruns_without_duplicates(airflow_db, loop_connections):
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    from smarketing_tasks.db import make_engine

    url = loop_connections["smarketing_warehouse"]
    from smarketing_tasks.migrations import migrate

    migrate(make_engine(url))
    _seed(url)
    dag = _dag()
    run = dag.test(logical_date=DEMO_END)
    assert run.state == "success"

    engine = make_engine(url)
    with engine.connect() as conn:
        scores = conn.execute(sa.text(
            "select customer_id, segment, reasons from smarketing.advocate_scores order by customer_id")).all()
        follow_ups = conn.execute(sa.text("select customer_id, reason from smarketing.follow_ups order by 1")).all()
    by_customer = {row.customer_id: row for row in scores}
    assert len(scores) == 60
    assert by_customer["c1"].segment == "lukewarm"
    assert "4★ but only said 'Good.'" in by_customer["c1"].reasons
    assert by_customer["c3"].segment == "detractor"
    assert ("c1", "lukewarm") in follow_ups and ("c3", "detractor") in follow_ups

    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == run.run_id).all()
        assert [e.asset.uri.rstrip("/") for e in events] == ["smarketing://marts"]
        assert events[0].extra["customers"] == 60

    rerun = dag.test(logical_date=DEMO_END + timedelta(minutes=1))  # same score date
    assert rerun.state == "success"
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from smarketing.advocate_scores")).scalar() == 60
        assert conn.execute(sa.text("select count(*) from smarketing.follow_ups")).scalar() == len(follow_ups)
        assert conn.execute(sa.text("select count(*) from smarketing.score_inputs")).scalar() == 0

    # The next day nothing changed, but the run is asked (param full_rescore) to rescore everyone anyway.
    full = dag.test(logical_date=DEMO_END + timedelta(days=1), run_conf={"full_rescore": True})
    assert full.state == "success"
    with engine.connect() as conn:
        runs = conn.execute(sa.text("select mode, rescored from smarketing.score_runs order by score_date")).all()
    assert [tuple(r) for r in runs] == [("full", 60), ("full", 60)]
    engine.dispose()
