"""Shared fixtures: a real PostgreSQL for every integration test, and an Airflow metadata database.

Which PostgreSQL: ``SMARKETING_TEST_PG_URL`` (an admin URL such as
``postgresql://postgres@127.0.0.1:5432/test``) if set, otherwise the embedded server under
``.data/test-postgres`` (started on first use, reused afterwards). Each test gets fresh databases with
unique names, dropped afterwards, so runs never see each other's rows.

Airflow reads its configuration when first imported, so the environment is set here before any test
module imports it; test modules import airflow inside tests or fixtures only.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SESSION_TAG = f"{os.getpid()}"


def _admin_url() -> str:
    url = os.environ.get("SMARKETING_TEST_PG_URL")
    if url:
        return url
    from smarketing_tasks.embedded import ensure_running

    server = ensure_running(ROOT / ".data" / "test-postgres", preferred_port=54339)
    return server.url("postgres")


def pytest_configure(config: pytest.Config) -> None:
    admin = _admin_url()
    os.environ["SMARKETING_TEST_ADMIN_URL"] = admin
    from smarketing_tasks.db import with_database

    airflow_home = Path(tempfile.mkdtemp(prefix="smarketing-airflow-"))
    os.environ.update({
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": with_database(admin, f"smkt_test_airflow_{SESSION_TAG}").replace(
            "postgresql://", "postgresql+psycopg://"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "PYTHONWARNINGS": "ignore",
    })
    for path in (ROOT / "plugins", ROOT / "dags"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


@pytest.fixture(scope="session")
def admin_url() -> str:
    return os.environ["SMARKETING_TEST_ADMIN_URL"]


@pytest.fixture
def make_database(admin_url: str) -> Iterator:
    """Factory: ``make_database("wh")`` → URL of a new empty database, dropped after the test."""
    from smarketing_tasks.db import drop_database, ensure_database, with_database

    created: list[str] = []

    def factory(label: str) -> str:
        name = f"smkt_{label}_{uuid.uuid4().hex[:10]}"
        ensure_database(admin_url, name)
        created.append(name)
        return with_database(admin_url, name)

    yield factory
    for name in created:
        drop_database(admin_url, name)


@pytest.fixture
def warehouse_url(make_database) -> str:
    """A migrated, empty warehouse."""
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.migrations import migrate

    url = make_database("wh")
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    return url


@pytest.fixture
def warehouse(warehouse_url: str):
    from smarketing_tasks.db import make_engine

    engine = make_engine(warehouse_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def check_rows(admin_url: str) -> Iterator:
    """``check_rows(dataset, frame, until)`` → the ingest row rules applied (in SQL) to a text DataFrame, read
    back as a ``ValidatedBatch``; each call rolls back, so one migrated database serves the whole session."""
    from smarketing_tasks.db import drop_database, ensure_database, make_engine, with_database
    from smarketing_tasks.ingest import check_frame
    from smarketing_tasks.migrations import migrate

    name = f"smkt_rules_{uuid.uuid4().hex[:10]}"
    ensure_database(admin_url, name)
    engine = make_engine(with_database(admin_url, name))
    migrate(engine)

    def check(dataset: str, frame, until):
        with engine.connect() as conn:
            transaction = conn.begin()
            try:
                conn.exec_driver_sql("set local time zone 'UTC'")
                return check_frame(conn, dataset, frame, until)
            finally:
                transaction.rollback()

    yield check
    engine.dispose()
    drop_database(admin_url, name)


@pytest.fixture
def shop_url(make_database) -> str:
    """An empty shop database with the reference schema created."""
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.demo_shop import write_shop

    url = make_database("shop")
    engine = make_engine(url)
    write_shop(engine, {})
    engine.dispose()
    return url


@pytest.fixture
def shop(shop_url: str):
    """An engine on the empty reference shop of ``shop_url``."""
    from smarketing_tasks.db import make_engine

    engine = make_engine(shop_url)
    yield engine
    engine.dispose()


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on a free port that keeps what it receives: ``(port, messages)``."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    from tests.integration.airflow_stack import free_port

    received = []

    class Keep(Message):
        def handle_message(self, message):
            received.append(message)

    controller = Controller(Keep(), hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, received
    controller.stop()


@pytest.fixture(scope="session")
def airflow_db(admin_url: str) -> Iterator[None]:
    """A migrated Airflow metadata database for this test session (dag.test needs one)."""
    from smarketing_tasks.db import drop_database, ensure_database

    name = f"smkt_test_airflow_{SESSION_TAG}"
    ensure_database(admin_url, name)
    from airflow.utils import db as airflow_db_utils

    airflow_db_utils.initdb()
    yield
    from airflow.settings import dispose_orm

    dispose_orm()
    drop_database(admin_url, name)


@pytest.fixture
def loop_connections(monkeypatch, warehouse_url: str, shop_url: str) -> dict[str, str]:
    """Point the contract's Airflow connections at this test's databases (as AIRFLOW_CONN_* env vars)."""
    urls = {"smarketing_warehouse": warehouse_url, "smarketing_shop": shop_url}
    for conn_id, url in urls.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", url.replace("postgresql://", "postgres://"))
    return urls


DEMO_END = datetime(2026, 11, 22, tzinfo=UTC)
