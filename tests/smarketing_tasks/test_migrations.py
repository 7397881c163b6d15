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


def test_0026_rewrites_the_keys_of_rows_whose_ids_need_escaping_and_keeps_their_message_ids(make_database, tmp_path):
    """Rows planned under the old ``customer:order:kind:step`` get the escaped key from their own columns; their
    message id (the Message-ID of what went out, named by links and responses) stays; other rows do not change."""
    import shutil

    from smarketing_tasks.migrations import MIGRATIONS_DIR
    from smarketing_tasks.outreach.eligibility import idempotency_key, message_id_for

    for migration in discover():
        if migration.version < 26:
            shutil.copy(migration.path, tmp_path / migration.path.name)
    engine = make_engine(make_database("mig"))
    migrate(engine, tmp_path)
    # (customer, order, status); the first row's new key is the second row's old key, so the rewrite must not
    # check uniqueness halfway
    rows = [("a:b", "o", "sent"), ("a%3Ab", "o", "planned"), ("c", "-", "skipped"), ("d", "e:f", "planned"),
            ("plain", "o1", "sent"), ("", "o2", "planned")]
    with engine.begin() as conn:
        for customer, order, status in rows:
            old_key = f"{customer}:{order}:review_request:1"
            conn.execute(sa.text(
                "insert into smarketing.outreach_messages (message_id, idempotency_key, customer_id, order_id, kind,"
                " step, channel, template_variant, consent_basis, status, due_at, expires_at, planned_at)"
                " values (:m, :k, :c, :o, 'review_request', 1, 'email', 'B', 'marketing_consent', :st,"
                " '2026-11-01', '2026-11-08', '2026-11-01')"),
                {"m": message_id_for(old_key), "k": old_key, "c": customer, "o": order, "st": status})
        before = {r.message_id: dict(r._mapping) for r in conn.execute(sa.text(
            "select * from smarketing.outreach_messages"))}

    assert migrate(engine, MIGRATIONS_DIR) == [m.path.name for m in discover() if m.version >= 26]
    with engine.connect() as conn:
        after = {r.message_id: dict(r._mapping) for r in conn.execute(sa.text(
            "select * from smarketing.outreach_messages"))}
    assert after.keys() == before.keys()
    for message_id, row in after.items():
        assert row["idempotency_key"] == idempotency_key(row["customer_id"], row["order_id"], row["kind"], row["step"])
        assert row | {"idempotency_key": None} == before[message_id] | {"idempotency_key": None}
    by_customer = {row["customer_id"]: row["idempotency_key"] for row in after.values()}
    assert by_customer == {"a:b": "a%3Ab:o:review_request:1", "a%3Ab": "a%253Ab:o:review_request:1",
                           "c": "c:%2D:review_request:1", "d": "d:e%3Af:review_request:1",
                           "plain": "plain:o1:review_request:1", "": ":o2:review_request:1"}
    assert after[message_id_for("plain:o1:review_request:1")] == before[message_id_for("plain:o1:review_request:1")]
    engine.dispose()


def test_0029_trims_the_customer_columns_ingest_now_trims_and_leaves_clean_rows_alone(make_database, tmp_path):
    """Rows stored before ingest trimmed them get the same trim, so the audit's stricter patterns (nothing after
    a value) pass what they passed before the upgrade; a row already clean is not rewritten."""
    import shutil

    from smarketing_tasks.migrations import MIGRATIONS_DIR

    for migration in discover():
        if migration.version < 29:
            shutil.copy(migration.path, tmp_path / migration.path.name)
    engine = make_engine(make_database("mig"))
    migrate(engine, tmp_path)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "insert into smarketing.customers (customer_id, country, time_zone, updated_at, source) values "
            "('padded', 'GB\n', ' Europe/London ', '2026-11-01', 't'), ('blank', ' ', '', '2026-11-01', 't'), "
            "('clean', 'DE', 'Europe/Berlin', '2026-11-01', 't')"))
        conn.execute(sa.text(
            "insert into smarketing.customer_contacts (customer_id, email, first_name, phone, updated_at) values "
            "('padded', 'p@example.com', ' Ann ', '+44 20 7946 0000\n', '2026-11-01'), "
            "('blank', 'b@example.com', '', '\t', '2026-11-01'), "
            "('clean', 'c@example.com', 'Bo', '+49 30 1234567', '2026-11-01')"))
        clean_version = conn.execute(sa.text(
            "select xmin::text from smarketing.customers where customer_id = 'clean'")).scalar()

    assert migrate(engine, MIGRATIONS_DIR) == [m.path.name for m in discover() if m.version >= 29]
    with engine.connect() as conn:
        stored = conn.execute(sa.text(
            "select c.customer_id, c.country, c.time_zone, k.first_name, k.phone, c.xmin::text as version "
            "from smarketing.customers c join smarketing.customer_contacts k using (customer_id) order by 1")).all()
    assert [tuple(row)[:5] for row in stored] == [
        ("blank", None, None, None, None),
        ("clean", "DE", "Europe/Berlin", "Bo", "+49 30 1234567"),
        ("padded", "GB", "Europe/London", "Ann", "+44 20 7946 0000"),
    ]
    assert stored[1].version == clean_version  # not rewritten
    engine.dispose()


def test_0030_records_deferred_foreign_keys_by_table_and_name(make_database):
    """A key's name is unique per table only: two tables may each defer a key of the same name."""
    engine = make_engine(make_database("mig"))
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "insert into smarketing.deferred_foreign_keys (table_name, constraint_name, definition) values "
            "('smarketing.a', 'k', 'FOREIGN KEY (x) REFERENCES smarketing.p(x)'), "
            "('smarketing.b', 'k', 'FOREIGN KEY (x) REFERENCES smarketing.p(x)')"))
        with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
            conn.execute(sa.text("insert into smarketing.deferred_foreign_keys (table_name, constraint_name, "
                                 "definition) values ('smarketing.a', 'k', 'again')"))
        assert conn.execute(sa.text("select count(*) from smarketing.deferred_foreign_keys")).scalar() == 2
    engine.dispose()
