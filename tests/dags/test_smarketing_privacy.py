"""smarketing_privacy under dag.test(): an erasure requested through the run's params, then the retention
sweep; a scheduled run (no params) erases nobody and only applies retention."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.conftest import DEMO_END
from tests.smarketing_tasks.test_privacy import ALICE, BOB, _seed_person

pytestmark = [pytest.mark.integration, pytest.mark.airflow]


def _dag():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_dag_integrity import DAGS_FOLDER

    return DagBag(dag_folder=str(DAGS_FOLDER / "smarketing_privacy.py")).get_dag("smarketing_privacy")


def _xcom(run, task_id: str):
    ti = next(t for t in run.get_task_instances() if t.task_id == task_id)
    return ti.xcom_pull(task_ids=task_id)


@pytest.fixture
def seeded_warehouse(loop_connections) -> sa.Engine:
    from datetime import timedelta

    from smarketing_tasks.db import make_engine

    engine = make_engine(loop_connections["smarketing_warehouse"])
    with engine.begin() as conn:
        conn.exec_driver_sql("create table marketing.advocates_probe (customer_id text primary key, score int)")
        _seed_person(conn, ALICE, DEMO_END - timedelta(days=30))
        _seed_person(conn, BOB, DEMO_END - timedelta(days=1000))
    yield engine
    engine.dispose()


def _count(engine: sa.Engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


def test_erasure_requested_by_params(airflow_db, seeded_warehouse):
    run = _dag().test(logical_date=DEMO_END, run_conf={"email": ALICE["email"], "request_ref": "DSR-7"})
    assert run.state == "success"
    summary = _xcom(run, "erase_requested")
    assert summary["requested"] and summary["customers_found"] == 1 and summary["rows_deleted"] > 10
    assert _count(seeded_warehouse, "select count(*) from smarketing.customers where customer_id = :i", i=ALICE["id"]) == 0
    assert _count(seeded_warehouse, "select count(*) from smarketing.erasures where request_ref = 'DSR-7'") == 1
    # Bob has been inactive for 1000 days: the retention sweep of the same run removed his contacts only.
    assert _count(seeded_warehouse, "select count(*) from smarketing.customers where customer_id = :i", i=BOB["id"]) == 1
    assert _count(seeded_warehouse, "select count(*) from smarketing.customer_contacts") == 0
    assert _xcom(run, "apply_retention")["contacts_deleted"] == 1


def test_scheduled_run_erases_nobody(airflow_db, seeded_warehouse):
    run = _dag().test(logical_date=DEMO_END)
    assert run.state == "success"
    assert _xcom(run, "erase_requested") == {"requested": False}
    assert _count(seeded_warehouse, "select count(*) from smarketing.customers") == 2
    assert _count(seeded_warehouse, "select count(*) from smarketing.customer_contacts") == 1


def test_malformed_request_fails_without_retries(airflow_db, seeded_warehouse):
    run = _dag().test(logical_date=DEMO_END, run_conf={"email": "alice at mail"})
    assert run.state == "failed"
    erase = next(t for t in run.get_task_instances() if t.task_id == "erase_requested")
    assert erase.state == "failed" and erase.try_number == 1
    assert _count(seeded_warehouse, "select count(*) from smarketing.customers") == 2
