"""Schema migrations: applied once, in order, safe under concurrency, refusing edited history."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from smarketing_tasks.db import make_engine
from smarketing_tasks.migrations import discover, migrate

pytestmark = pytest.mark.integration


def test_migration_files_are_numbered_uniquely():
    versions = [m.version for m in discover()]
    assert versions == sorted(set(versions))
    assert versions[0] == 1


def test_migrate_is_idempotent_and_creates_the_core_tables(make_database):
    engine = make_engine(make_database("mig"))
    applied = migrate(engine)
    assert applied[0] == "0001_core_tables.sql"
    assert migrate(engine) == []
    with engine.connect() as conn:
        tables = set(conn.execute(sa.text(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_schema in ('smarketing', 'marketing')")).scalars())
    assert {"smarketing.customers", "smarketing.customer_contacts", "smarketing.orders", "smarketing.order_items",
            "smarketing.quarantine", "smarketing.watermarks", "smarketing.schema_migrations"} <= tables
    engine.dispose()


def test_concurrent_migrators_apply_each_file_once(make_database):
    url = make_database("mig")
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run():
        engine = make_engine(url)
        try:
            results.append(migrate(engine))
        except BaseException as error:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(error)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(len(r) for r in results) == [0, 0, 0, len(discover())]


def test_an_edited_migration_is_refused(make_database, tmp_path):
    (tmp_path / "0001_first.sql").write_text("create table smarketing.t (a int);")
    engine = make_engine(make_database("mig"))
    assert migrate(engine, tmp_path) == ["0001_first.sql"]
    (tmp_path / "0001_first.sql").write_text("create table smarketing.t (a bigint);")
    with pytest.raises(RuntimeError, match="changed after it was applied"):
        migrate(engine, tmp_path)
    engine.dispose()


def test_a_failing_migration_leaves_nothing_half_applied(make_database, tmp_path):
    (tmp_path / "0001_ok.sql").write_text("create table smarketing.ok (a int);")
    (tmp_path / "0002_broken.sql").write_text("create table smarketing.half (a int); select no_such_function();")
    engine = make_engine(make_database("mig"))
    with pytest.raises(sa.exc.ProgrammingError):
        migrate(engine, tmp_path)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select to_regclass('smarketing.half')")).scalar() is None
        assert conn.execute(sa.text("select to_regclass('smarketing.ok')")).scalar() is None
    engine.dispose()


def test_badly_named_migration_is_rejected(tmp_path):
    (tmp_path / "1_first.sql").write_text("select 1;")
    with pytest.raises(ValueError, match="NNNN_snake_case"):
        discover(tmp_path)
