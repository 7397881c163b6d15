"""Failure alerts: a task that fails for good under dag.test() alerts a real HTTP webhook and a real SMTP
server (aiosmtpd); a broken channel does not stop the other one nor raise."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

pytestmark = [pytest.mark.airflow]


@pytest.fixture
def webhook():
    """A real HTTP endpoint recording JSON posts; answers with ``status`` (mutable) ."""
    received: list[dict] = []
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "json": json.loads(body), "auth": self.headers.get("X-Token")})
            self.send_response(state["status"])
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received, state
    server.shutdown()
    server.server_close()


def _alert_env(monkeypatch, webhook_url: str, smtp_port: int) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SMARKETING_ALERTS", json.dumps(
        {"conn_type": "http", "extra": {"url": f"{webhook_url}/hooks/ops", "headers": {"X-Token": "s3cret"}}}))
    monkeypatch.setenv("AIRFLOW_CONN_SMARKETING_SMTP", json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port,
         "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "loop@shop.test"}}))
    monkeypatch.setenv("SMARKETING_ALERT_EMAILS", "ops@shop.test, data@shop.test")


PROBE_DAG = """
import pendulum
from airflow.sdk import dag, task
from smarketing_airflow.defaults import DEFAULT_ARGS


@dag(dag_id="smarketing_alert_probe", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
     default_args={**DEFAULT_ARGS, "retries": 0}, max_active_runs=1)
def probe():
    @task
    def breaks():
        raise ValueError("the shop database refused the connection")

    @task
    def fine():
        return 1

    fine()
    breaks()


probe()
"""


@pytest.fixture
def probe_dag(tmp_path):
    """A DAG with one failing task, written to a file and serialised (dag.test needs it in the database)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    (tmp_path / "probe.py").write_text(PROBE_DAG)
    bag = DagBag(dag_folder=str(tmp_path), bundle_name="dags-folder")
    assert bag.import_errors == {}
    sync_bag_to_db(bag, "dags-folder", None)
    return bag.get_dag("smarketing_alert_probe")


def test_failed_task_alerts_by_webhook_and_email(airflow_db, probe_dag, monkeypatch, webhook, smtp_server):
    url, posts, _ = webhook
    smtp_port, mails = smtp_server
    _alert_env(monkeypatch, url, smtp_port)

    run = probe_dag.test(logical_date=pendulum_date())
    assert run.state == "failed"

    assert len(posts) == 1, "one alert for the one failed task, none for the task that succeeded"
    post = posts[0]
    assert post["path"] == "/hooks/ops" and post["auth"] == "s3cret"
    body = post["json"]
    assert (body["kind"], body["dag_id"], body["task_id"]) == ("task_failed", "smarketing_alert_probe", "breaks")
    assert "ValueError: the shop database refused the connection" in body["error"]
    assert body["run_id"] == run.run_id and body["text"].startswith("[smarketing] smarketing_alert_probe.breaks failed")

    assert len(mails) == 1
    mail = mails[0]
    assert mail["To"] == "ops@shop.test, data@shop.test" and mail["From"] == "loop@shop.test"
    assert " ".join(mail["Subject"].split()) == f"[smarketing] smarketing_alert_probe.breaks failed (run {run.run_id})"
    assert "the shop database refused the connection" in mail.get_payload()


def test_broken_webhook_does_not_stop_email(airflow_db, probe_dag, monkeypatch, webhook, smtp_server):
    url, posts, state = webhook
    state["status"] = 500
    smtp_port, mails = smtp_server
    _alert_env(monkeypatch, url, smtp_port)

    run = probe_dag.test(logical_date=pendulum_date())
    assert run.state == "failed"
    assert len(posts) == 1 and len(mails) == 1


def test_no_channel_configured_is_quiet(monkeypatch):
    from smarketing_airflow.callbacks import send_alert

    from smarketing_tasks.alerts import Alert

    monkeypatch.delenv("AIRFLOW_CONN_SMARKETING_ALERTS", raising=False)
    monkeypatch.delenv("SMARKETING_ALERT_EMAILS", raising=False)
    monkeypatch.setenv("AIRFLOW_VAR_SMARKETING_SETTINGS", "{}")
    assert send_alert(Alert(kind="task_failed", dag_id="d", run_id="r", task_id="t")) == []


def test_connection_shapes():
    from airflow.models.connection import Connection
    from smarketing_airflow.callbacks import smtp_target, webhook_target

    slack = Connection(conn_id="a", uri="https://hooks.example.com/services/T000/B000/XXXX")
    assert webhook_target(slack) == ("https://hooks.example.com/services/T000/B000/XXXX", {})
    local = Connection(conn_id="a", uri="http://127.0.0.1:9000/alert")
    assert webhook_target(local)[0] == "http://127.0.0.1:9000/alert"

    provider_default = smtp_target(Connection(conn_id="s", uri="smtp://user:pw@mail.example.com"))
    assert (provider_default.use_ssl, provider_default.port, provider_default.login) == (True, 465, "user")
    starttls = smtp_target(Connection(conn_id="s", uri="smtp://mail.example.com:587?disable_ssl=true"))
    assert (starttls.use_ssl, starttls.use_starttls, starttls.port) == (False, True, 587)


def pendulum_date():
    import pendulum

    return pendulum.datetime(2026, 11, 22, tz="UTC")


def test_deadline_missed_alerts_like_a_failure(monkeypatch, webhook):
    import asyncio

    from smarketing_airflow.callbacks import deadline_missed

    url, posts, _ = webhook
    monkeypatch.setenv("AIRFLOW_CONN_SMARKETING_ALERTS", f"{url}/deadline")
    monkeypatch.delenv("SMARKETING_ALERT_EMAILS", raising=False)
    # The simple context the scheduler hands to deadline callbacks (airflow.models.deadline.handle_miss).
    context = {"dag_run": {"dag_id": "smarketing_score", "dag_run_id": "asset_triggered__x", "logical_date": None},
               "deadline": {"id": "1", "deadline_time": "2026-11-22T06:00:00+00:00"}}
    assert asyncio.run(deadline_missed(context=context)) == ["webhook"]
    body = posts[0]["json"]
    assert posts[0]["path"] == "/deadline"
    assert (body["kind"], body["dag_id"], body["run_id"]) == ("deadline_missed", "smarketing_score", "asset_triggered__x")
    assert body["text"].startswith("[smarketing] smarketing_score missed its deadline")
    assert "2026-11-22T06:00:00+00:00" in body["error"]


def test_deadline_alert_serialises_with_a_dag():
    from datetime import timedelta

    import pendulum
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization
    from smarketing_airflow.callbacks import deadline_alert

    dag = DAG("smarketing_deadline_probe", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
              deadline=deadline_alert(timedelta(hours=2)))
    text = json.dumps(DagSerialization.to_dict(dag))
    assert "smarketing_airflow.callbacks.deadline_missed" in text


def test_every_task_of_every_dag_alerts_on_failure():
    from airflow.dag_processing.dagbag import DagBag
    from smarketing_airflow.callbacks import alert_on_failure

    from tests.dags.test_dag_integrity import DAGS_FOLDER

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.dags
    for dag in bag.dags.values():
        for task in dag.tasks:
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert alert_on_failure in callbacks, f"{dag.dag_id}.{task.task_id} does not alert on failure"
