"""Deferring a table's secondary indexes and the foreign keys pointing at it for a bulk load, and getting them back."""

import threading

import pytest
import sqlalchemy as sa

from smarketing_tasks import bulk


def _indexes(warehouse, table: str) -> set[str]:
    with warehouse.connect() as conn:
        return set(conn.execute(sa.text(
            "select indexname from pg_indexes where schemaname = 'smarketing' and tablename = :t"),
            {"t": table}).scalars())


def _make_tables(warehouse) -> None:
    with warehouse.begin() as conn:
        conn.exec_driver_sql("create table smarketing.bulk_target (id int primary key, k text unique, v int)")
        conn.exec_driver_sql("create index bulk_target_v_idx on smarketing.bulk_target (v)")
        conn.exec_driver_sql("create table smarketing.bulk_side (id int, w int)")
        conn.exec_driver_sql("create index bulk_side_w_idx on smarketing.bulk_side (w desc)")


def test_an_empty_target_loses_only_its_secondary_indexes_and_gets_the_same_ones_back(warehouse):
    _make_tables(warehouse)
    target_before, side_before = _indexes(warehouse, "bulk_target"), _indexes(warehouse, "bulk_side")

    dropped = bulk.defer_indexes_if_empty(warehouse, "smarketing.bulk_target",
                                          ["smarketing.bulk_target", "smarketing.bulk_side"])

    assert sorted(dropped) == ["bulk_side_w_idx", "bulk_target_v_idx"]
    assert _indexes(warehouse, "bulk_target") == {"bulk_target_pkey", "bulk_target_k_key"}, \
        "the primary key and unique indexes stay: upserts and rules need them"
    assert _indexes(warehouse, "bulk_side") == set()
    assert bulk.rebuild_deferred_indexes(warehouse, ["smarketing.bulk_target"]) == ["bulk_target_v_idx"]
    assert _indexes(warehouse, "bulk_side") == set(), "only the tables asked for are rebuilt"
    bulk.rebuild_deferred_indexes(warehouse)
    assert (_indexes(warehouse, "bulk_target"), _indexes(warehouse, "bulk_side")) == (target_before, side_before)
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("select pg_get_indexdef('smarketing.bulk_side_w_idx'::regclass)")).scalar() \
            == "CREATE INDEX bulk_side_w_idx ON smarketing.bulk_side USING btree (w DESC)"
        assert conn.execute(sa.text("select count(*) from smarketing.deferred_indexes")).scalar() == 0


def test_a_target_with_rows_keeps_every_index(warehouse):
    _make_tables(warehouse)
    with warehouse.begin() as conn:
        conn.exec_driver_sql("insert into smarketing.bulk_target values (1, 'a', 1)")
    before = _indexes(warehouse, "bulk_target")

    assert bulk.defer_indexes_if_empty(warehouse, "smarketing.bulk_target") == []
    assert _indexes(warehouse, "bulk_target") == before


def _foreign_keys(warehouse, table: str) -> dict[str, str]:
    with warehouse.connect() as conn:
        return dict(conn.execute(sa.text(
            "select conname, pg_get_constraintdef(oid) from pg_constraint where contype = 'f' "
            "and conrelid = cast(:t as regclass)"), {"t": table}).all())


def _make_referencing(warehouse) -> None:
    with warehouse.begin() as conn:
        conn.exec_driver_sql("create table smarketing.bulk_parent (id int primary key)")
        conn.exec_driver_sql("create table smarketing.bulk_child (id int primary key, "
                             "parent_id int references smarketing.bulk_parent on delete cascade)")
        conn.exec_driver_sql("create table smarketing.bulk_other (id int primary key)")


def test_an_empty_target_loses_the_foreign_keys_pointing_at_it_and_gets_the_same_ones_back(warehouse):
    _make_referencing(warehouse)
    before = _foreign_keys(warehouse, "smarketing.bulk_child")

    assert bulk.defer_foreign_keys_if_empty(warehouse, "smarketing.bulk_other", ["smarketing.bulk_child"]) == [], \
        "only keys that point at the target"
    assert bulk.defer_foreign_keys_if_empty(warehouse, "smarketing.bulk_parent", ["smarketing.bulk_child"]) \
        == ["bulk_child_parent_id_fkey"]
    assert _foreign_keys(warehouse, "smarketing.bulk_child") == {}
    with warehouse.begin() as conn:  # the bulk load
        conn.exec_driver_sql("insert into smarketing.bulk_parent select generate_series(1, 100)")
        conn.exec_driver_sql("insert into smarketing.bulk_child select g, g from generate_series(1, 100) g")

    assert bulk.restore_deferred_foreign_keys(warehouse, ["smarketing.bulk_other"]) == []
    assert bulk.restore_deferred_foreign_keys(warehouse, ["smarketing.bulk_child"]) == ["bulk_child_parent_id_fkey"]
    assert _foreign_keys(warehouse, "smarketing.bulk_child") == before
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("select count(*) from smarketing.deferred_foreign_keys")).scalar() == 0
        assert conn.execute(sa.text("select bool_and(convalidated) from pg_constraint "
                                    "where conrelid = 'smarketing.bulk_child'::regclass and contype = 'f'")).scalar()


def test_a_target_with_rows_keeps_the_foreign_keys_pointing_at_it(warehouse):
    _make_referencing(warehouse)
    with warehouse.begin() as conn:
        conn.exec_driver_sql("insert into smarketing.bulk_parent values (1)")
    assert bulk.defer_foreign_keys_if_empty(warehouse, "smarketing.bulk_parent", ["smarketing.bulk_child"]) == []
    assert "bulk_child_parent_id_fkey" in _foreign_keys(warehouse, "smarketing.bulk_child")


def test_a_key_that_no_longer_holds_is_refused_loudly_and_stays_recorded(warehouse):
    """The restore checks every row, as the key would have: a row naming a missing row fails it, and the key
    stays listed, so every later load tries again instead of going on without it."""
    _make_referencing(warehouse)
    bulk.defer_foreign_keys_if_empty(warehouse, "smarketing.bulk_parent", ["smarketing.bulk_child"])
    with warehouse.begin() as conn:
        conn.exec_driver_sql("insert into smarketing.bulk_child values (1, 42)")

    with pytest.raises(sa.exc.IntegrityError, match="bulk_child_parent_id_fkey"):
        bulk.restore_deferred_foreign_keys(warehouse, ["smarketing.bulk_child"])
    assert _foreign_keys(warehouse, "smarketing.bulk_child") == {}
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("select constraint_name from smarketing.deferred_foreign_keys")).scalars().all() \
            == ["bulk_child_parent_id_fkey"]


def test_two_loaders_rebuilding_at_once_both_succeed(warehouse):
    import threading
    import time

    _make_tables(warehouse)
    bulk.defer_indexes_if_empty(warehouse, "smarketing.bulk_target")
    errors: list[BaseException] = []

    def rebuild() -> None:
        try:
            bulk.rebuild_deferred_indexes(warehouse, ["smarketing.bulk_target"])
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    with warehouse.connect() as writer:  # a load still writing: both rebuilds wait for it
        writer.exec_driver_sql("insert into smarketing.bulk_target values (1, 'a', 1)")
        threads = [threading.Thread(target=rebuild) for _ in range(2)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        with warehouse.connect() as conn:
            while conn.execute(sa.text("select count(*) from pg_locks where not granted "
                                         "and relation = 'smarketing.bulk_target'::regclass")).scalar() < 2:
                assert time.monotonic() < deadline, "both rebuilds should be waiting for the writer"
                time.sleep(0.05)
        writer.commit()
    for thread in threads:
        thread.join(10)
    assert errors == [], "the second rebuild waits and finds the index built instead of building it again"
    assert "bulk_target_v_idx" in _indexes(warehouse, "bulk_target")


def test_partial_indexes_can_be_kept(warehouse):
    _make_tables(warehouse)
    with warehouse.begin() as conn:
        conn.exec_driver_sql("create index bulk_target_v_some_idx on smarketing.bulk_target (v) where v > 10")

    assert bulk.defer_indexes_if_empty(warehouse, "smarketing.bulk_target", partial=False) == ["bulk_target_v_idx"]
    assert "bulk_target_v_some_idx" in _indexes(warehouse, "bulk_target")
    bulk.rebuild_deferred_indexes(warehouse)


def test_a_target_with_rows_is_answered_without_waiting_for_its_writers(warehouse):
    """Every run but the first finds rows: it must not queue behind a writer in flight (the sender marking
    messages) nor hold new writers back, as the lock that guards a first load would."""
    _make_tables(warehouse)
    with warehouse.begin() as conn:
        conn.exec_driver_sql("insert into smarketing.bulk_target values (1, 'a', 1)")
    writer = warehouse.connect()
    try:
        writer.exec_driver_sql("insert into smarketing.bulk_target values (2, 'b', 2)")  # open transaction
        answers: list[list[str]] = []
        check = threading.Thread(target=lambda: answers.append(
            bulk.defer_indexes_if_empty(warehouse, "smarketing.bulk_target")))
        check.start()
        check.join(timeout=5)
        assert answers == [[]], "the check waited for the open writer (or dropped an index)"
    finally:
        writer.rollback()
        writer.close()
        check.join()


def test_loaders_starting_at_once_on_an_empty_table_neither_deadlock_nor_both_drop(warehouse):
    """Three first loads at once (a backfill beside the hourly run): one drops the indexes, the others find
    them gone. A plain read of the table before the lock, in the same transaction, deadlocked them: each held
    a read lock the other's drop had to wait for."""
    _make_tables(warehouse)
    for _ in range(10):
        start = threading.Barrier(3)
        results: list = []

        def load(start: threading.Barrier = start, results: list = results) -> None:
            start.wait()
            try:
                results.append(bulk.defer_indexes_if_empty(warehouse, "smarketing.bulk_target"))
            except Exception as error:  # noqa: BLE001 - the test reports it
                results.append(error)

        loaders = [threading.Thread(target=load) for _ in range(3)]
        for loader in loaders:
            loader.start()
        for loader in loaders:
            loader.join()
        assert sorted(map(str, results)) == ["['bulk_target_v_idx']", "[]", "[]"]
        bulk.rebuild_deferred_indexes(warehouse)
