"""Each source adapter delivers the reference columns as text, inside a window, losing nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from smarketing_tasks.schema import SOURCE_COLUMNS
from smarketing_tasks.sources import (
    CdnowSource,
    ExportFolderSource,
    ReferenceSqlSource,
    Window,
    source_from_url,
)

EVERYTHING = Window(since=None, until=datetime(2030, 1, 1, tzinfo=UTC))


def _all(source, dataset, window=EVERYTHING, batch_rows=1000) -> pd.DataFrame:
    frames = list(source.read(dataset, window, batch_rows))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def test_window_rejects_naive_or_inverted_bounds():
    with pytest.raises(ValueError, match="timezone-aware"):
        Window(since=None, until=datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="starts after"):
        Window(since=datetime(2026, 2, 1, tzinfo=UTC), until=datetime(2026, 1, 1, tzinfo=UTC))


def test_source_from_url_picks_the_adapter(tmp_path):
    assert isinstance(source_from_url("cdnow://"), CdnowSource)
    assert isinstance(source_from_url(f"file://{tmp_path}"), ExportFolderSource)
    assert isinstance(source_from_url("postgresql://u@h/db"), ReferenceSqlSource)


def test_cdnow_maps_the_real_history_onto_the_reference_schema():
    source = CdnowSource()
    orders = _all(source, "orders", batch_rows=50_000)
    customers = _all(source, "customers", batch_rows=50_000)
    items = _all(source, "order_items", batch_rows=50_000)
    assert list(orders.columns) == list(SOURCE_COLUMNS["orders"])
    assert (len(customers), len(orders), len(items)) == (23_570, 69_659, 69_659)
    assert orders["order_id"].is_unique
    assert round(orders["total_amount"].astype(float).sum(), 2) == 2_500_315.63
    assert orders["ordered_at"].min().startswith("1997-01-01") and orders["ordered_at"].max().startswith("1998-06-30")


def test_cdnow_window_selects_by_purchase_day():
    source = CdnowSource()
    january = Window(since=datetime(1997, 1, 1, tzinfo=UTC), until=datetime(1997, 1, 31, tzinfo=UTC))
    orders = _all(source, "orders", january)
    assert len(orders) > 0
    assert orders["ordered_at"].str[:7].eq("1997-01").all()
    assert not orders["ordered_at"].str.startswith("1997-01-01").any(), "since is exclusive"


def test_cdnow_sample_file_with_five_columns_is_read():
    sample = CdnowSource(CdnowSource().path.parent / "CDNOW_sample.txt")
    assert _all(sample, "customers")["customer_id"].nunique() == 2_357


def test_export_folder_reads_csv_and_jsonl_and_keeps_bad_records(tmp_path):
    (tmp_path / "customers.csv").write_bytes(
        b"customer_id,email,updated_at\n"
        b"C1,a@example.com,2026-01-01T00:00:00Z\n"
        b"C2,b@example.com,2026-02-01T00:00:00Z\n"
        b"C3,caf\xe9@example.com,2026-01-05T00:00:00Z\n"  # Latin-1 byte: not UTF-8
        b"C4,d@example.com,not a time\n"
    )
    (tmp_path / "orders.jsonl").write_text(
        '{"order_id": "O1", "customer_id": "C1", "updated_at": "2026-01-02T00:00:00Z", "total_amount": 10}\n'
        "{this is not json}\n"
        '["a list"]\n'
    )
    source = ExportFolderSource(tmp_path)
    assert set(source.datasets()) == {"customers", "orders"}
    january = Window(since=None, until=datetime(2026, 1, 31, tzinfo=UTC))
    customers = _all(source, "customers", january)
    assert list(customers["customer_id"]) == ["C1", "C3", "C4"], "C2 is after the window; C4 is kept for quarantine"
    assert "\ufffd" in customers.loc[customers["customer_id"] == "C3", "email"].iloc[0]
    orders = _all(source, "orders", january)
    assert orders["order_id"].iloc[0] == "O1"
    assert orders["total_amount"].iloc[0] == "10"
    errors = orders["_source_error"].dropna().tolist()
    assert errors == ["line 2 is not JSON (Expecting property name enclosed in double quotes)",
                      "line 3 is not a JSON object"]


def test_export_items_take_their_orders_change_time(tmp_path):
    (tmp_path / "orders.csv").write_text("order_id,updated_at\nO1,2026-01-02T00:00:00Z\nO2,2026-03-02T00:00:00Z\n")
    (tmp_path / "order_items.csv").write_text("order_id,line_no,sku,quantity,unit_price\nO1,1,A,1,2\nO2,1,B,1,3\n")
    items = _all(ExportFolderSource(tmp_path), "order_items", Window(None, datetime(2026, 2, 1, tzinfo=UTC)))
    assert list(items["order_id"]) == ["O1"]


@pytest.mark.integration
def test_reference_sql_source_streams_text_batches_in_window(shop_url):
    from smarketing_tasks.db import make_engine

    engine = make_engine(shop_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "insert into shop.orders (order_id, customer_id, ordered_at, status, total_amount, currency, updated_at) "
            "select 'O' || g, 'C' || mod(g, 7), timestamptz '2026-01-01' + g * interval '1 hour', 'placed', g, 'EUR', "
            "timestamptz '2026-01-01' + g * interval '1 hour' from generate_series(1, 250) g"
        )
        conn.exec_driver_sql(
            "insert into shop.order_items values ('O1', 1, 'SKU', 'Say \"hi\"\nnew line, comma', 1, 2.5)")
    source = ReferenceSqlSource(engine)
    window = Window(since=datetime(2026, 1, 1, 10, tzinfo=UTC), until=datetime(2026, 1, 5, tzinfo=UTC))
    batches = list(source.read("orders", window, batch_rows=40))
    assert [len(b) for b in batches] == [40, 40, 6]
    orders = pd.concat(batches)
    assert orders["order_id"].tolist() == [f"O{g}" for g in range(11, 97)]
    assert orders["total_amount"].iloc[0] == "11.00"
    item = _all(source, "order_items")
    assert item["product_name"].iloc[0] == 'Say "hi"\nnew line, comma'
    assert item["updated_at"].iloc[0].startswith("2026-01-01 01:00:00")
    engine.dispose()
