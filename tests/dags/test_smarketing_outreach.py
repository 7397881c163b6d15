"""smarketing_outreach under dag.test(): plans, sends to a real SMTP server once, emits the Asset, reruns cleanly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

pytestmark = [pytest.mark.integration, pytest.mark.airflow]


def _run(logical_date):
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_dag_integrity import DAGS_FOLDER

    dag = DagBag(dag_folder=str(DAGS_FOLDER / "smarketing_outreach.py")).get_dag("smarketing_outreach")
    return dag.test(logical_date=logical_date)


def test_outreach_dag_sends_each_message_once_and_emits_outreach_asset(airflow_db, loop_connections, monkeypatch):
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    from smarketing_tasks.db import make_engine
    from tests.smarketing_tasks.outreach.helpers import SmtpServer, Warehouse

    # The staleness guard compares with the real clock, so this run's "now" is the real hour.
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    engine = make_engine(loop_connections["smarketing_warehouse"])
    shop = Warehouse(engine)
    for i in range(6):
        shop.customer(f"c{i}", marketing=i != 5)
        shop.order(f"o{i}", f"c{i}", delivered_at=now - timedelta(days=7, hours=i))
    shop.suppress("c4@example.com", "unsubscribe")
    shop.customer("old")
    shop.order("o-old", "old", delivered_at=now - timedelta(days=37))

    with SmtpServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_SMARKETING_SMTP",
                           f"smtp://127.0.0.1:{server.port}?disable_ssl=true&disable_tls=true")
        first = _run(now)
        assert first.state == "success"
        rerun = _run(now + timedelta(minutes=1))
        assert rerun.state == "success"
        backfill = _run(now - timedelta(days=30))  # plans the old order's ask; the real clock expires it
        assert backfill.state == "success"

    received = server.handler.per_message_id()
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select customer_id, status, status_reason, message_id from smarketing.outreach_messages")).all()
    engine.dispose()
    assert sorted(r.customer_id for r in rows if r.status == "sent") == ["c0", "c1", "c2", "c3"]
    assert {r.customer_id: r.status_reason for r in rows if r.status == "skipped"} == {
        "c4": "suppressed: unsubscribe", "c5": "no consent"}
    assert [(r.customer_id, r.status) for r in rows if r.customer_id == "old"] == [("old", "expired")]
    assert set(received) == {r.message_id for r in rows if r.status == "sent"}
    assert set(received.values()) == {1}

    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == first.run_id).all()
        assert [(e.asset.name, e.asset.uri.rstrip("/")) for e in events] == [("smarketing_outreach",
                                                                               "smarketing://outreach")]
        assert events[0].extra["sent"] == 4 and events[0].extra["skipped"] == 2


def test_send_shards_map_one_task_per_channel_and_shard_and_still_send_each_message_once(
        airflow_db, loop_connections, monkeypatch):
    """SMARKETING_SEND_SHARDS=2: send is mapped over email 1/2, email 2/2, sms 1/2, sms 2/2 (workers can run
    them at once); the shards of a channel claim from one queue, so every message still goes out once."""
    from smarketing_tasks.db import make_engine
    from tests.smarketing_tasks.outreach.helpers import SmtpServer, Warehouse

    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    engine = make_engine(loop_connections["smarketing_warehouse"])
    shop = Warehouse(engine)
    for i in range(12):
        shop.customer(f"c{i}")
        shop.order(f"o{i}", f"c{i}", delivered_at=now - timedelta(days=7, hours=i))
    monkeypatch.setenv("SMARKETING_SEND_SHARDS", "2")
    with SmtpServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_SMARKETING_SMTP",
                           f"smtp://127.0.0.1:{server.port}?disable_ssl=true&disable_tls=true")
        run = _run(now)
    assert run.state == "success"
    sends = sorted((ti.rendered_map_index, ti.state) for ti in run.get_task_instances() if ti.task_id == "send")
    assert sends == [("email 1/2", "success"), ("email 2/2", "success"), ("sms 1/2", "success"),
                     ("sms 2/2", "success")]
    received = server.handler.per_message_id()
    with engine.connect() as conn:
        sent = conn.execute(sa.text(
            "select message_id from smarketing.outreach_messages where status = 'sent'")).scalars().all()
    engine.dispose()
    assert len(sent) == 12 and set(received) == set(sent) and set(received.values()) == {1}


def test_outreach_dag_is_scheduled_by_purchases_and_by_the_clock(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_dag_integrity import DAGS_FOLDER

    dag = DagBag(dag_folder=str(DAGS_FOLDER / "smarketing_outreach.py")).get_dag("smarketing_outreach")
    assert type(dag.timetable).__name__ == "AssetOrTimeSchedule"
    assert dag.timetable.asset_condition.uri.rstrip("/") == "smarketing://purchases"
    assert type(dag.timetable.timetable).__name__ == "CronTriggerTimetable"  # due reminders without new purchases
    outlets = {o.uri.rstrip("/") for t in dag.tasks for o in t.outlets}
    assert outlets == {"smarketing://outreach"}


def test_smtp_connection_extras_follow_airflows_smtp_provider(monkeypatch):
    from smarketing_airflow.connections import smtp_params

    monkeypatch.delenv("AIRFLOW_CONN_SMARKETING_SMTP", raising=False)
    assert smtp_params() is None  # no connection: the DAG falls back to the Maildir sink

    monkeypatch.setenv("AIRFLOW_CONN_SMARKETING_SMTP", "smtp://mailer:s3cret@mail.example:587?disable_ssl=true"
                       "&from_email=shop%40example.com&timeout=5")
    params = smtp_params()
    assert (params.host, params.port, params.login, params.password) == ("mail.example", 587, "mailer", "s3cret")
    assert (params.use_ssl, params.starttls, params.timeout, params.from_email) == (False, True, 5.0,
                                                                                    "shop@example.com")

    monkeypatch.setenv("AIRFLOW_CONN_SMARKETING_SMTP", "smtp://mail.example")
    params = smtp_params()
    assert (params.port, params.use_ssl, params.starttls) == (465, True, False)  # the provider's default: SSL
