"""`smarketing health` against real services: the test PostgreSQL, an aiosmtpd server, a real HTTP
endpoint standing in for the api-server; and what it says when each of them is missing or unwell."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import sqlalchemy as sa

from smarketing_tasks.cli import main
from smarketing_tasks.health import HealthSettings, parse_connection, run_checks, worst
from tests.integration.airflow_stack import free_port

pytestmark = [pytest.mark.integration]
NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
SETTINGS = HealthSettings(health_timeout_seconds=2)


@pytest.fixture
def smtp_port():
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    controller = Controller(Sink(), hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port
    controller.stop()


@pytest.fixture
def api():
    """An HTTP server answering /api/v2/monitor/health with ``state['body']``."""
    state = {"body": {}}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            payload = json.dumps(state["body"]).encode()
            self.send_response(200 if self.path == "/api/v2/monitor/health" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", state
    server.shutdown()
    server.server_close()


def _by_name(results):
    return {r.name: r for r in results}


def _smtp_env(port: int) -> str:
    return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": port,
                       "extra": {"disable_ssl": True, "disable_tls": True}})


def test_healthy_deployment(warehouse_url, warehouse, shop_url, smtp_port, api):
    url, state = api
    state["body"] = {name: {"status": "healthy"} for name in ("metadatabase", "scheduler", "triggerer", "dag_processor")}
    with warehouse.begin() as conn:
        conn.execute(sa.text("""insert into smarketing.ingest_runs (run_id, source, dataset, window_end, rows_read,
                                   rows_loaded, rows_quarantined, seconds, finished_at)
                                values ('r', 'shop', 'orders', :t, 1, 1, 0, 0.1, :t)"""), {"t": NOW - timedelta(hours=1)})
    env = {"AIRFLOW_CONN_SMARKETING_WAREHOUSE": warehouse_url.replace("postgresql://", "postgres://"),
           "AIRFLOW_CONN_SMARKETING_SHOP": shop_url, "AIRFLOW_CONN_SMARKETING_SMTP": _smtp_env(smtp_port),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": warehouse_url}
    results = _by_name(run_checks(env, NOW, SETTINGS, api_url=url))
    assert {n: r.status for n, r in results.items()} == {
        "warehouse": "ok", "migrations": "ok", "freshness": "ok", "outbox": "ok", "shop": "ok", "smtp": "ok",
        "metadata": "fail", "api": "ok"}
    assert "not migrated" in results["metadata"].detail, "a warehouse is not an Airflow metadata database"
    assert "1.0 h ago" in results["freshness"].detail


def test_stale_data_and_unmigrated_warehouse_warn(make_database, warehouse_url):
    env = {"AIRFLOW_CONN_SMARKETING_WAREHOUSE": warehouse_url}
    results = _by_name(run_checks(env, NOW, SETTINGS))
    assert results["freshness"].status == "warn" and "no ingestion" in results["freshness"].detail
    assert worst(list(results.values())) == "warn"

    empty = make_database("health_empty")
    results = _by_name(run_checks({"AIRFLOW_CONN_SMARKETING_WAREHOUSE": empty}, NOW, SETTINGS))
    assert results["migrations"].status == "warn" and "0001_core_tables.sql" in results["migrations"].detail


def test_unreachable_services_fail_with_a_reason(api):
    url, state = api
    state["body"] = {"metadatabase": {"status": "healthy"}, "scheduler": {"status": "unhealthy"}}
    dead = free_port()
    env = {"AIRFLOW_CONN_SMARKETING_WAREHOUSE": f"postgres://postgres@127.0.0.1:{dead}/warehouse",
           "AIRFLOW_CONN_SMARKETING_SMTP": _smtp_env(dead)}
    results = _by_name(run_checks(env, NOW, SETTINGS, api_url=url))
    assert results["warehouse"].status == "fail" and "OperationalError" in results["warehouse"].detail
    assert results["smtp"].status == "fail" and "ConnectionRefusedError" in results["smtp"].detail
    assert results["api"].status == "fail" and "scheduler unhealthy" in results["api"].detail
    only = run_checks({}, NOW, SETTINGS, only={"smtp"})
    assert [(r.name, r.status, r.detail) for r in only] == [("smtp", "fail", "not configured")]


def test_cli_exit_codes(monkeypatch, warehouse_url, capsys):
    monkeypatch.setenv("AIRFLOW_CONN_SMARKETING_WAREHOUSE", warehouse_url)
    assert main(["health", "--only", "warehouse", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "warn" and {c["name"] for c in report["checks"]} >= {"warehouse", "migrations"}
    assert main(["health", "--only", "warehouse,smtp"]) == 1
    assert "FAIL  smtp" in capsys.readouterr().out


def test_connection_values_parse_like_airflow():
    uri = parse_connection("smtp://mailer:p%40ss@smtp.example.com:587?from_email=a%40b.c&disable_ssl=true")
    assert (uri.conn_type, uri.host, uri.port, uri.login, uri.password) == ("smtp", "smtp.example.com", 587, "mailer", "p@ss")
    assert uri.extra == {"from_email": "a@b.c", "disable_ssl": "true"}
    js = parse_connection(json.dumps({"conn_type": "postgres", "host": "db", "port": 5432, "login": "u",
                                      "password": "p", "schema": "warehouse"}))
    assert js.sqlalchemy_url() == "postgresql+psycopg://u:p@db:5432/warehouse"


def test_cli_erase(monkeypatch, warehouse_url, warehouse, capsys):
    with warehouse.begin() as conn:
        conn.execute(sa.text("insert into smarketing.customers (customer_id, updated_at, source) values ('C1', now(), 't')"))
        conn.execute(sa.text("insert into smarketing.customer_contacts values ('C1', 'c1@mail.test', 'C', null, now())"))
    assert main(["erase", "--warehouse", warehouse_url, "--email", "c1@mail.test", "--request-ref", "DSR-1"]) == 0
    out = capsys.readouterr().out
    assert "'customers_found': 1" in out and "c1@mail.test" not in out and "C1" not in out
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("select count(*) from smarketing.customers")).scalar_one() == 0
