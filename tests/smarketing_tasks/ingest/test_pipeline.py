"""Incremental ingestion on a real PostgreSQL: status changes, watermarks, reruns, backfills, quarantine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.db import make_engine
from smarketing_tasks.ingest import ingest_dataset
from smarketing_tasks.ingest.report import QuarantineThresholdExceeded, check_quarantine_shares
from smarketing_tasks.sources import CdnowSource, ExportFolderSource, ReferenceSqlSource

pytestmark = pytest.mark.integration
DATASETS = ("customers", "orders", "order_items")
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _ingest_all(source, warehouse, until, run_id="run"):
    return {d: ingest_dataset(source, d, warehouse, until=until, run_id=run_id, overlap=timedelta(minutes=5))
            for d in DATASETS}


def _snapshot(warehouse) -> dict[str, list]:
    with warehouse.connect() as conn:
        return {
            table: conn.execute(sa.text(f"select * from smarketing.{table} order by 1, 2")).all()
            for table in ("customers", "customer_contacts", "orders", "order_items", "order_status_history",
                          "quarantine", "watermarks")
        }


def _order(conn, order_id, status, updated_at, shipped_at=None, delivered_at=None, total=20):
    conn.execute(sa.text(
        "insert into shop.orders (order_id, customer_id, ordered_at, status, shipped_at, delivered_at, total_amount, "
        "currency, updated_at) values (:o, 'C1', :ordered, :s, :sh, :de, :t, 'EUR', :u)"),
        {"o": order_id, "ordered": T0, "s": status, "sh": shipped_at, "de": delivered_at, "t": total, "u": updated_at})


def _set_order(conn, order_id, **values):
    sets = ", ".join(f"{k} = :{k}" for k in values)
    conn.execute(sa.text(f"update shop.orders set {sets} where order_id = :order_id"), {"order_id": order_id, **values})


def test_status_changes_flow_through_incremental_runs(shop, warehouse):
    with shop.begin() as conn:
        conn.execute(sa.text("insert into shop.customers (customer_id, email, accepts_marketing, updated_at) "
                             "values ('C1', 'c1@example.com', true, :t)"), {"t": T0})
        _order(conn, "O1", "placed", T0)
    source = ReferenceSqlSource(shop)
    _ingest_all(source, warehouse, T0 + timedelta(hours=1))

    shipped, delivered, returned = (T0 + timedelta(days=d) for d in (1, 4, 12))
    with shop.begin() as conn:
        _set_order(conn, "O1", status="shipped", shipped_at=shipped, updated_at=shipped)
    _ingest_all(source, warehouse, shipped + timedelta(hours=1))
    with shop.begin() as conn:
        _set_order(conn, "O1", status="delivered", delivered_at=delivered, updated_at=delivered)
    _ingest_all(source, warehouse, delivered + timedelta(hours=1))
    with shop.begin() as conn:
        _set_order(conn, "O1", status="returned", updated_at=returned)
    results = _ingest_all(source, warehouse, returned + timedelta(hours=1))

    assert results["orders"].rows_read == 1, "only the changed order is read"
    with warehouse.connect() as conn:
        status = conn.execute(sa.text("select status, delivered_at from smarketing.orders")).one()
        history = conn.execute(sa.text(
            "select status, observed_at from smarketing.order_status_history order by observed_at")).all()
    assert status == ("returned", delivered)
    assert history == [("returned", returned)], "returns survive later updates; delivery lives on the order"


def test_rows_changed_after_the_run_time_wait_for_a_later_run(shop, warehouse):
    with shop.begin() as conn:
        _order(conn, "O1", "placed", T0)
        _order(conn, "O2", "placed", T0 + timedelta(hours=5))
    source = ReferenceSqlSource(shop)
    first = ingest_dataset(source, "orders", warehouse, until=T0 + timedelta(hours=1), run_id="r1")
    second = ingest_dataset(source, "orders", warehouse, until=T0 + timedelta(hours=6), run_id="r2")
    assert first.rows_loaded == 1, "O2 changed after the first run's time"
    assert second.rows_read == 2, "O2, plus O1 again from the overlap window (an idempotent no-op)"
    assert second.window_start == T0 - timedelta(minutes=15), "re-reads a small overlap before the watermark"


def test_rerun_and_backfill_leave_the_same_tables(shop, warehouse):
    from smarketing_tasks.demo_shop import ShopSpec, generate, write_shop

    end = datetime(2026, 6, 1, tzinfo=UTC)
    write_shop(shop, generate(ShopSpec(customers=200, days=40, end=end, seed=3, bad_row_share=0.02)))
    source = ReferenceSqlSource(shop)
    # Catch up day by day, as a scheduler with catchup would.
    for day in range(40, -1, -1):
        _ingest_all(source, warehouse, end - timedelta(days=day), run_id=f"day{day}")
    caught_up = _snapshot(warehouse)
    assert len(caught_up["orders"]) > 200 and len(caught_up["quarantine"]) > 0

    _ingest_all(source, warehouse, end, run_id="rerun")
    _ingest_all(source, warehouse, end - timedelta(days=20), run_id="backfill")
    assert _snapshot(warehouse) == caught_up


def test_catch_up_equals_one_shot_load(shop, warehouse, make_database):
    from smarketing_tasks.demo_shop import ShopSpec, generate, write_shop
    from smarketing_tasks.migrations import migrate

    end = datetime(2026, 6, 1, tzinfo=UTC)
    write_shop(shop, generate(ShopSpec(customers=150, days=20, end=end, seed=5)))
    source = ReferenceSqlSource(shop)
    for day in range(20, -1, -2):
        _ingest_all(source, warehouse, end - timedelta(days=day))
    second = make_engine(make_database("wh2"))
    migrate(second)
    _ingest_all(source, second, end)

    def business_rows(engine):
        with engine.connect() as conn:
            return (conn.execute(sa.text("select order_id, status, updated_at, total_amount from smarketing.orders "
                                         "order by 1")).all(),
                    conn.execute(sa.text("select * from smarketing.order_items order by 1, 2")).all())

    assert business_rows(warehouse) == business_rows(second)
    second.dispose()


def test_an_older_copy_of_a_row_never_overwrites_a_newer_one(shop, warehouse):
    with shop.begin() as conn:
        _order(conn, "O1", "delivered", T0 + timedelta(days=3), shipped_at=T0 + timedelta(days=1),
               delivered_at=T0 + timedelta(days=3))
    ingest_dataset(ReferenceSqlSource(shop), "orders", warehouse, until=T0 + timedelta(days=4), run_id="r1")
    with shop.begin() as conn:  # a lagging replica serves the older version
        conn.exec_driver_sql("delete from shop.orders")
        _order(conn, "O1", "placed", T0 + timedelta(days=3, minutes=-1))
    ingest_dataset(ReferenceSqlSource(shop), "orders", warehouse, until=T0 + timedelta(days=5), run_id="r2")
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("select status from smarketing.orders")).scalar() == "delivered"


def test_bad_rows_are_quarantined_once_and_the_good_ones_load(tmp_path, warehouse):
    (tmp_path / "orders.csv").write_bytes(
        b"order_id,customer_id,ordered_at,status,total_amount,currency,updated_at\n"
        b"O1,C1,2026-01-01T00:00:00Z,placed,10,EUR,2026-01-01T00:00:00Z\n"
        b"O2,C1,2026-01-01T00:00:00Z,placed,-3,EUR,2026-01-01T00:00:00Z\n"
        b"O3,C1,2026-01-01T00:00:00Z,pla\xffced,3,EUR,2026-01-01T00:00:00Z\n"
    )
    source = ExportFolderSource(tmp_path)
    until = datetime(2026, 2, 1, tzinfo=UTC)
    first = ingest_dataset(source, "orders", warehouse, until=until, run_id="r1")
    again = ingest_dataset(source, "orders", warehouse, until=until + timedelta(days=400), run_id="r2",
                           overlap=timedelta(days=999))
    assert (first.rows_loaded, first.rows_quarantined) == (1, 2)
    assert again.rows_quarantined == 2
    with warehouse.connect() as conn:
        rows = conn.execute(sa.text(
            "select record_key, rule, reason, raw->>'status' from smarketing.quarantine order by record_key, rule")).all()
        runs = conn.execute(sa.text("select run_id, rows_read from smarketing.ingest_runs order by run_id")).all()
    assert [(r[0], r[1]) for r in rows] == [("O2", "negative_total_amount"), ("O3", "undecodable_text"),
                                            ("O3", "unknown_status")]
    assert rows[1][3] == "pla\ufffdced"
    assert runs == [("r1", 3), ("r2", 3)]


def test_quarantine_share_threshold_names_the_dataset():
    results = [{"dataset": "orders", "source": "shop", "rows_read": 100, "rows_quarantined": 6},
               {"dataset": "customers", "source": "shop", "rows_read": 100, "rows_quarantined": 5}]
    with pytest.raises(QuarantineThresholdExceeded, match=r"orders from shop: 6 of 100 rows \(6.0%\)"):
        check_quarantine_shares(results, 0.05)
    check_quarantine_shares(results[1:], 0.05)


@pytest.mark.slow
def test_real_cdnow_history_lands_whole(warehouse):
    results = _ingest_all(CdnowSource(), warehouse, datetime(1998, 7, 1, tzinfo=UTC))
    assert {d: r.rows_quarantined for d, r in results.items()} == dict.fromkeys(DATASETS, 0)
    with warehouse.connect() as conn:
        facts = conn.execute(sa.text(
            "select (select count(*) from smarketing.customers), count(*), sum(total_amount), "
            "count(distinct customer_id) filter (where customer_id in ("
            "  select customer_id from smarketing.orders group by 1 having count(*) > 1)), "
            "min(ordered_at)::date, max(ordered_at)::date from smarketing.orders")).one()
        cds = conn.execute(sa.text("select sum(quantity) from smarketing.order_items")).scalar()
    customers, purchases, revenue, repeaters, first_day, last_day = facts
    assert (customers, purchases) == (23_570, 69_659)
    assert float(revenue) == pytest.approx(2_500_315.63, abs=0.01)
    assert repeaters == 11_662  # customers with more than one purchase line (awk over the raw file agrees)
    assert (str(first_day), str(last_day)) == ("1997-01-01", "1998-06-30")
    assert cds == 167_881


def _index_names(warehouse, table):
    with warehouse.connect() as conn:
        return set(conn.execute(sa.text("select indexname from pg_indexes where schemaname = 'smarketing' "
                                        "and tablename = :t"), {"t": table}).scalars())


def test_first_load_defers_secondary_indexes_and_rebuilds_them(shop, warehouse):
    from smarketing_tasks.ingest.pipeline import defer_indexes_if_empty

    before = _index_names(warehouse, "orders")
    with shop.begin() as conn:
        _order(conn, "O1", "placed", T0)
    messages: list[str] = []
    ingest_dataset(ReferenceSqlSource(shop), "orders", warehouse, until=T0 + timedelta(hours=1), run_id="r1",
                   progress=messages.append)
    assert any("built at the end" in m for m in messages)
    assert _index_names(warehouse, "orders") == before
    assert defer_indexes_if_empty(warehouse, "orders") == [], "a table with rows keeps its indexes"


def test_indexes_lost_by_a_crashed_bulk_load_come_back_on_the_next_run(shop, warehouse):
    from smarketing_tasks.ingest.pipeline import defer_indexes_if_empty

    before = _index_names(warehouse, "orders")
    dropped = defer_indexes_if_empty(warehouse, "orders")  # ...and then the process died
    assert dropped and _index_names(warehouse, "orders") == before - set(dropped)
    ingest_dataset(ReferenceSqlSource(shop), "orders", warehouse, until=T0, run_id="after-crash")
    assert _index_names(warehouse, "orders") == before
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("select count(*) from smarketing.deferred_indexes")).scalar() == 0


def test_nul_bytes_are_quarantined_visibly_instead_of_failing_the_batch(tmp_path, warehouse):
    (tmp_path / "customers.csv").write_bytes(
        b"customer_id,first_name,updated_at\n"
        b"C1,Ana,2026-01-01T00:00:00Z\n"
        b"C2\x00,Bo\x00b,2026-01-01T00:00:00Z\n"
    )
    result = ingest_dataset(ExportFolderSource(tmp_path), "customers", warehouse,
                            until=datetime(2026, 2, 1, tzinfo=UTC), run_id="r1")
    assert (result.rows_loaded, result.rows_quarantined) == (1, 1)
    with warehouse.connect() as conn:
        key, rule, name, reason = conn.execute(sa.text(
            "select record_key, rule, raw->>'first_name', reason from smarketing.quarantine")).one()
    assert (key, rule, name) == ("C2\\u0000", "nul_byte", "Bo\\u0000b")
    assert reason == "customer_id and first_name holds a NUL byte"  # every column with one, only this row


def test_a_database_source_streams_by_copy_and_files_land_in_batches(shop, warehouse, tmp_path):
    with shop.begin() as conn:
        for n in range(3):
            _order(conn, f"O{n}", "placed", T0)
    messages: list[str] = []
    result = ingest_dataset(ReferenceSqlSource(shop), "orders", warehouse, until=T0 + timedelta(hours=1),
                            run_id="r1", progress=messages.append)
    assert (result.rows_read, result.rows_loaded) == (3, 3)
    assert not any("row by row" in m for m in messages), "valid UTF-8 goes the COPY way"


def test_a_replacement_character_in_a_database_source_is_still_quarantined(shop, warehouse):
    """A COPY landing leaves out the U+FFFD rule only when no value holds one: a shop row that already
    carries a decoder's mark (somewhere upstream lost its bytes) is quarantined as from a file."""
    with shop.begin() as conn:
        _order(conn, "O1", "placed", T0)
        _order(conn, "O2", "pla\ufffdced", T0)
    result = ingest_dataset(ReferenceSqlSource(shop), "orders", warehouse, until=T0 + timedelta(hours=1), run_id="r1")
    assert (result.rows_loaded, result.rows_quarantined) == (1, 1)
    with warehouse.connect() as conn:
        rules = conn.execute(sa.text("select rule from smarketing.quarantine where record_key = 'O2' order by 1")).scalars()
        assert list(rules) == ["undecodable_text", "unknown_status"]


_ROW_WITH_MARK = "O1\tC1\t2026-03-01 00:00:00+00\tpla\ufffdced\t\\N\t\\N\t20.00\tEUR\t\\N\t2026-03-01 00:00:00+00\n".encode()
_MARK_AT = _ROW_WITH_MARK.index("\ufffd".encode())


@pytest.mark.parametrize("split", [None, _MARK_AT + 1, _MARK_AT + 2], ids=["one block", "after byte 1", "after byte 2"])
def test_a_copy_landing_sees_a_replacement_character_split_across_blocks(warehouse, split):
    from smarketing_tasks.ingest.landing import create_landing, land_copy
    from smarketing_tasks.sources.base import Window

    blocks = [_ROW_WITH_MARK] if split is None else [_ROW_WITH_MARK[:split], _ROW_WITH_MARK[split:]]

    class BlockSource:
        name = "blocks"

        def copy_text(self, dataset, window):
            yield from blocks

    with warehouse.begin() as conn:
        create_landing(conn, "orders")
        landed = land_copy(conn, BlockSource(), "orders", Window(None, T0), lambda _: None)
        assert conn.exec_driver_sql("select status from landing_orders").scalar() == "pla\ufffdced"
    assert (landed.rows, landed.has_replacement_character) == (1, True)
    assert "undecodable_text" not in landed.rules_it_cannot_break()


def test_bytes_that_are_not_utf8_in_a_database_source_are_quarantined_not_fatal(admin_url, make_database, warehouse):
    """A SQL_ASCII shop database can hold any bytes; the COPY stream then fails in the warehouse, and the
    window is read again through the decoding path, which keeps the bad value as U+FFFD and quarantines it."""
    from smarketing_tasks.db import database_name
    from smarketing_tasks.demo_shop import write_shop

    url = make_database("ascii_shop")
    name = database_name(url)
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'drop database "{name}"')
        conn.exec_driver_sql(f"create database \"{name}\" encoding 'SQL_ASCII' template template0 "
                             "lc_collate 'C' lc_ctype 'C'")
    admin.dispose()
    shop = make_engine(url)
    write_shop(shop, {})
    with shop.begin() as conn:
        conn.exec_driver_sql("insert into shop.customers (customer_id, first_name, updated_at) values "
                             "('C1', 'Ana', '2026-03-01'), ('C2', E'Jos\\xe9', '2026-03-01')")
    messages: list[str] = []
    result = ingest_dataset(ReferenceSqlSource(shop), "customers", warehouse, until=T0 + timedelta(days=1),
                            run_id="r1", progress=messages.append)
    shop.dispose()
    assert any("not valid UTF-8" in m for m in messages)
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (2, 1, 1)
    with warehouse.connect() as conn:
        key, rule = conn.execute(sa.text("select record_key, rule from smarketing.quarantine")).one()
    assert (key, rule) == ("C2", "undecodable_text")


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-03-01", "2026-03-01 00:00:00+00"), ("2026-03-01T10:00:00Z", "2026-03-01 10:00:00+00"),
    ("2026-03-01 10:00:00.123+02:00", "2026-03-01 08:00:00.123+00"), ("2026-03-01T10:00+0530", "2026-03-01 04:30:00+00"),
    ("2026-13-45", None), ("yesterday", None), ("01/10/2026", None), ("epoch", None), ("", None),
])
def test_timestamps_must_be_iso_8601(warehouse, text, expected):
    with warehouse.connect() as conn:
        conn.exec_driver_sql("set time zone 'UTC'")
        value = conn.execute(sa.text("select smarketing.try_timestamptz(v.t)::text from (select cast(:t as text) "
                                     "as t offset 0) v"), {"t": text}).scalar()
    assert value == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("49.90", "49.90"), (" -5 ", "-5"), ("1e3", "1000"), (".5", "0.5"),
    ("12,50", None), ("NaN", None), ("Infinity", None), ("0x1F", None), ("1_000", None), ("1e", None), ("abc", None),
])
def test_numbers_must_be_plain_decimals(warehouse, text, expected):
    with warehouse.connect() as conn:
        # From a column, as ingest calls it (a literal argument would be constant-folded at plan time).
        value = conn.execute(sa.text("select smarketing.try_numeric(v.t)::text from (select cast(:t as text) as t "
                                     "offset 0) v"), {"t": text}).scalar()
    assert value == expected


def test_a_first_load_keeps_the_contact_foreign_key(shop, warehouse):
    """The first load drops and re-adds the contacts' foreign key in its transaction (one set-based check
    instead of one per row); afterwards the key exists and still refuses orphans."""
    with shop.begin() as conn:
        conn.execute(sa.text("insert into shop.customers (customer_id, email, accepts_marketing, updated_at) "
                             "values ('C1', 'c1@example.com', true, :t)"), {"t": T0})
    ingest_dataset(ReferenceSqlSource(shop), "customers", warehouse, until=T0 + timedelta(hours=1), run_id="r1")
    with warehouse.connect() as conn:
        keys = conn.execute(sa.text("select count(*) from pg_constraint where contype = 'f' "
                                    "and conrelid = 'smarketing.customer_contacts'::regclass")).scalar()
        assert keys == 1
        assert conn.execute(sa.text("select email from smarketing.customer_contacts")).scalar() == "c1@example.com"
    with pytest.raises(sa.exc.IntegrityError), warehouse.begin() as conn:
        conn.execute(sa.text("insert into smarketing.customer_contacts (customer_id, updated_at) values ('nobody', now())"))


def test_a_first_load_builds_its_primary_keys_after_the_rows(shop, warehouse):
    """A first load drops the primary keys no foreign key needs and builds them once the rows are in; after
    it every target table has its key again, and the key refuses a duplicate."""
    with shop.begin() as conn:
        conn.execute(sa.text("insert into shop.customers (customer_id, email, accepts_marketing, updated_at) "
                             "values ('C1', 'c1@example.com', true, :t)"), {"t": T0})
        _order(conn, "O1", "placed", T0)
        conn.execute(sa.text("insert into shop.order_items (order_id, line_no, sku, quantity, unit_price) "
                             "values ('O1', 1, 'SKU-1', 1, 9.5)"))
    statements: list[str] = []
    sa.event.listen(warehouse, "before_cursor_execute", lambda *args: statements.append(args[2]))
    _ingest_all(ReferenceSqlSource(shop), warehouse, T0 + timedelta(hours=1))
    assert sum("add constraint" in s and "primary key" in s.lower() for s in statements) == 4
    with warehouse.connect() as conn:
        keyed = conn.execute(sa.text(
            "select conrelid::regclass::text from pg_constraint where contype = 'p' and conrelid = any(cast(:t as regclass[])) "
            "order by 1"), {"t": ["smarketing.customers", "smarketing.customer_contacts", "smarketing.orders",
                                  "smarketing.order_items"]}).scalars().all()
    assert keyed == ["smarketing.customer_contacts", "smarketing.customers", "smarketing.order_items",
                     "smarketing.orders"]
    with pytest.raises(sa.exc.IntegrityError), warehouse.begin() as conn:
        conn.execute(sa.text("insert into smarketing.order_items (order_id, line_no, sku, quantity, unit_price) "
                             "values ('O1', 1, 'SKU-2', 1, 1)"))


def test_a_first_load_with_duplicate_keys_settles_them_as_any_run_does(shop, warehouse):
    """A first load inserts without looking for duplicate keys first; when the primary key finds some, the
    insert is undone and they are settled: the newest version wins, an identical copy collapses, and
    newest versions that disagree are all quarantined."""
    later = T0 + timedelta(hours=1)
    with shop.begin() as conn:
        _order(conn, "O1", "placed", T0)
        _order(conn, "O1", "shipped", later, shipped_at=later)  # a newer version of O1
        _order(conn, "O2", "placed", T0)
        _order(conn, "O2", "placed", T0)  # an identical copy
        _order(conn, "O3", "placed", T0, total=10)
        _order(conn, "O3", "placed", T0, total=11)  # the same moment, different content
        _order(conn, "O4", "placed", T0)
    result = ingest_dataset(ReferenceSqlSource(shop), "orders", warehouse, until=T0 + timedelta(days=1), run_id="r1")
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (7, 3, 2)
    with warehouse.connect() as conn:
        loaded = conn.execute(sa.text("select order_id, status from smarketing.orders order by 1")).all()
        quarantined = conn.execute(sa.text("select record_key, rule from smarketing.quarantine order by 1")).all()
    assert loaded == [("O1", "shipped"), ("O2", "placed"), ("O4", "placed")]
    assert quarantined == [("O3", "conflicting_duplicate"), ("O3", "conflicting_duplicate")]


def test_a_clean_first_load_never_looks_for_duplicate_keys(shop, warehouse):
    """Without duplicates the primary key is the only check: no duplicate-key table is built."""
    with shop.begin() as conn:
        for n in range(3):
            _order(conn, f"O{n}", "placed", T0)
    statements: list[str] = []
    sa.event.listen(warehouse, "before_cursor_execute", lambda *args: statements.append(args[2]))
    result = ingest_dataset(ReferenceSqlSource(shop), "orders", warehouse, until=T0 + timedelta(days=1), run_id="r1")
    assert result.rows_loaded == 3
    assert not any("duplicate_keys_orders" in s for s in statements)
    assert any(s.startswith("insert into smarketing.orders") and "on conflict" not in s for s in statements)


def test_a_typed_shop_column_is_cast_without_a_shape_check_but_still_refuses_special_words(shop, warehouse):
    """The reference schema stores times and amounts typed, so their printed text needs no shape check;
    'infinity' and 'NaN', which such a column can hold but no real order has, are still quarantined."""
    source = ReferenceSqlSource(shop)
    assert source.typed_source_columns("orders") == {"ordered_at", "shipped_at", "delivered_at", "updated_at",
                                                     "total_amount"}
    assert source.typed_source_columns("order_items") == {"line_no", "quantity", "unit_price", "updated_at"}
    with shop.begin() as conn:
        _order(conn, "O1", "placed", T0)
        _order(conn, "O2", "placed", T0)
        _order(conn, "O3", "placed", T0, total=float("nan"))
        conn.exec_driver_sql("update shop.orders set ordered_at = '-infinity' where order_id = 'O2'")
    result = ingest_dataset(source, "orders", warehouse, until=T0 + timedelta(days=1), run_id="r1")
    assert (result.rows_loaded, result.rows_quarantined) == (1, 2)
    with warehouse.connect() as conn:
        rules = conn.execute(sa.text("select record_key, rule from smarketing.quarantine order by 1, 2")).all()
    assert rules == [("O2", "bad_timestamp_ordered_at"), ("O3", "bad_total_amount")]


def test_typed_shop_columns_land_typed_by_a_binary_copy(shop, warehouse):
    """Columns the shop stores in the warehouse's type travel in COPY's binary format and land typed; the
    others land as text."""
    from smarketing_tasks.ingest.landing import create_landing, land_copy
    from smarketing_tasks.sources.base import Window

    with shop.begin() as conn:
        _order(conn, "O1", "placed", T0)
        _order(conn, "O2", "shipped", T0, shipped_at=T0)
    source = ReferenceSqlSource(shop)
    typed = source.typed_source_columns("orders")
    with warehouse.begin() as conn:
        conn.exec_driver_sql("set local time zone 'UTC'")
        create_landing(conn, "orders", typed)
        landed = land_copy(conn, source, "orders", Window(None, T0 + timedelta(days=1)), lambda _: None, typed)
        kinds = dict(conn.exec_driver_sql(
            "select attname, format_type(atttypid, atttypmod) from pg_attribute "
            "where attrelid = 'landing_orders'::regclass and attnum > 0").all())
        row = conn.exec_driver_sql("select order_id, status, shipped_at, total_amount from landing_orders "
                                   "where order_id = 'O2'").one()
    assert landed.rows == 2
    assert (kinds["ordered_at"], kinds["total_amount"], kinds["status"]) == ("timestamp with time zone", "numeric", "text")
    assert row == ("O2", "shipped", T0, 20)


@pytest.mark.parametrize(("name", "expected"), [("plain", False), ("bro\ufffdken", True)])
def test_binary_rows_are_searched_for_a_replacement_character_in_their_text_fields_only(warehouse, name, expected):
    """A time whose eight bytes read EF BF BD (U+FFFD in UTF-8) is no undecodable text; a name holding it is."""
    import psycopg.sql

    from smarketing_tasks.db import raw_cursor
    from smarketing_tasks.ingest.landing import REPLACEMENT_CHARACTER, text_fields_hold_replacement

    chunk = bytearray()
    with warehouse.connect() as conn, raw_cursor(conn) as cur:
        statement = psycopg.sql.SQL(
            # 0x000000EFBFBD0000 microseconds after 2000-01-01, PostgreSQL's epoch
            "copy (select 'O1'::text, timestamptz '2000-01-12 22:01:54.018304+00', {}::text) "
            "to stdout with (format binary)").format(psycopg.sql.Literal(name))
        with cur.copy(statement) as copy:
            for block in copy:
                chunk += block
    assert REPLACEMENT_CHARACTER in chunk, "the time's bytes hold the sequence"
    assert text_fields_hold_replacement(bytes(chunk), frozenset({0, 2}), with_header=True) is expected


def test_a_quarantined_row_reads_the_same_from_a_binary_or_a_text_landing(shop, warehouse):
    """The quarantine keeps the raw row as the text the shop printed, whichever way it landed, so a rerun
    that lands it the other way records nothing twice."""

    class TextOnlyShop(ReferenceSqlSource):
        def typed_source_columns(self, dataset):
            return frozenset()

    with shop.begin() as conn:
        _order(conn, "O1", "lost", T0, total=12.5)
    until = T0 + timedelta(days=1)
    ingest_dataset(ReferenceSqlSource(shop), "orders", warehouse, until=until, run_id="binary")
    ingest_dataset(TextOnlyShop(shop), "orders", warehouse, until=until, run_id="text")
    with warehouse.connect() as conn:
        raws = conn.execute(sa.text("select run_id, raw from smarketing.quarantine")).all()
    assert [run for run, _ in raws] == ["binary"]
    raw = raws[0][1]
    assert (raw["ordered_at"], raw["total_amount"], raw["status"]) == ("2026-03-01 00:00:00+00", "12.50", "lost")


def test_a_shop_that_keeps_times_as_text_gets_every_shape_check(shop, warehouse):
    with shop.begin() as conn:
        conn.exec_driver_sql("alter table shop.orders alter column ordered_at type text")
        _order(conn, "O1", "placed", T0)
        _order(conn, "O2", "placed", T0)
        conn.exec_driver_sql("update shop.orders set ordered_at = 'yesterday' where order_id = 'O2'")
    source = ReferenceSqlSource(shop)
    assert "ordered_at" not in source.typed_source_columns("orders")
    result = ingest_dataset(source, "orders", warehouse, until=T0 + timedelta(days=1), run_id="r1")
    assert (result.rows_loaded, result.rows_quarantined) == (1, 1)
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("select rule from smarketing.quarantine")).scalar() == "bad_timestamp_ordered_at"


def test_contact_and_place_columns_are_stored_trimmed_and_blank_as_null(shop, warehouse):
    """A spreadsheet export pads values and ends cells with newlines: the customer is kept, with the
    values people meant (so the audit's patterns, which allow nothing after a value, pass them)."""
    with shop.begin() as conn:
        conn.execute(sa.text(
            "insert into shop.customers (customer_id, email, first_name, phone, country, time_zone, "
            "accepts_marketing, updated_at) values "
            "('C1', ' c1@example.com ', ' Ann ', ' +44 20 7946 0000\n', 'GB\n', ' Europe/London ', true, :t), "
            "('C2', 'c2@example.com', '', '   ', ' ', '\t', true, :t)"), {"t": T0})
    ingest_dataset(ReferenceSqlSource(shop), "customers", warehouse, until=T0 + timedelta(hours=1), run_id="r1")
    with warehouse.connect() as conn:
        stored = conn.execute(sa.text(
            "select c.customer_id, k.email, k.first_name, k.phone, c.country, c.time_zone "
            "from smarketing.customers c join smarketing.customer_contacts k using (customer_id) order by 1")).all()
        quarantined = conn.execute(sa.text("select count(*) from smarketing.quarantine")).scalar()
    assert [tuple(row) for row in stored] == [
        ("C1", "c1@example.com", "Ann", "+44 20 7946 0000", "GB", "Europe/London"),
        ("C2", "c2@example.com", None, None, None, None),
    ]
    assert quarantined == 0
