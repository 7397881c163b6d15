"""The gate on a real warehouse: quarantine under the threshold, a loud failure above it, runs recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.quality import QualityGateFailed, gate, run_suite

pytestmark = pytest.mark.integration
T0 = datetime(2026, 6, 1, tzinfo=UTC)


def _order(n: int, **overrides) -> dict:
    row = {"order_id": f"o{n}", "customer_id": "c1", "ordered_at": T0, "status": "delivered",
           "shipped_at": T0 + timedelta(days=1), "delivered_at": T0 + timedelta(days=3), "total_amount": 10 + n,
           "currency": "USD", "discount_code": None, "updated_at": T0 + timedelta(days=3), "source": "test"}
    row.update(overrides)
    return row


def _insert_orders(engine: sa.Engine, rows: list[dict]) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("insert into smarketing.customers (customer_id, updated_at, source) "
                             "values ('c1', :t, 'test') on conflict do nothing"), {"t": T0})
        conn.execute(sa.text(
            "insert into smarketing.orders (order_id, customer_id, ordered_at, status, shipped_at, delivered_at, "
            "total_amount, currency, discount_code, updated_at, source) values (:order_id, :customer_id, :ordered_at, "
            ":status, :shipped_at, :delivered_at, :total_amount, :currency, :discount_code, :updated_at, :source)"),
            rows)


def _scalar(engine: sa.Engine, sql: str):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


@pytest.mark.parametrize("mode", ["sql", "pandas"])
def test_rows_under_threshold_move_to_quarantine_and_the_run_is_recorded(warehouse, mode):
    rows = [_order(n) for n in range(40)]
    rows[5] = _order(5, currency="usd")
    _insert_orders(warehouse, rows)

    result = gate(warehouse, "orders", run_id="run-1", run_time=T0 + timedelta(days=4), mode=mode)

    assert result.success and result.rows_checked == 40 and result.rows_quarantined == 1
    assert _scalar(warehouse, "select count(*) from smarketing.orders") == 39
    assert _scalar(warehouse, "select count(*) from smarketing.orders where order_id = 'o5'") == 0
    with warehouse.connect() as conn:
        quarantined = conn.execute(sa.text(
            "select dataset, record_key, rule, reason, raw ->> 'currency' from smarketing.quarantine")).all()
        run = conn.execute(sa.text(
            "select suite, mode, rows_checked, rows_bad, rows_quarantined, success, seconds > 0 "
            "from smarketing.validation_runs")).one()
    assert sorted((d, k, r, raw) for d, k, r, _, raw in quarantined) == [
        ("orders", "o5", "expect_column_values_to_be_in_set(currency)", "usd"),
        ("orders", "o5", "expect_column_values_to_match_regex(currency)", "usd")]
    assert any(reason == 'currency is not a 3-letter ISO 4217 code (currency="usd")' for *_, reason, _ in quarantined)
    assert tuple(run) == ("orders", mode, 40, 1, 1, True, True)


def test_crossing_the_threshold_fails_naming_suite_expectation_and_values_and_moves_nothing(warehouse):
    rows = [_order(n) for n in range(10)]
    rows[1] = _order(1, currency="eur")
    rows[2] = _order(2, delivered_at=T0 - timedelta(days=2))
    _insert_orders(warehouse, rows)

    with pytest.raises(QualityGateFailed) as failure:
        gate(warehouse, "orders", run_id="run-2", run_time=T0 + timedelta(days=4))

    message = str(failure.value)
    assert "suite 'orders'" in message and "2 of 10 rows (20.0%)" in message and "above the 5% threshold" in message
    assert "expect_column_values_to_match_regex(currency)" in message and '"eur"' in message
    assert "delivered_at is earlier than shipped_at" in message
    # Nothing moved: a retry must fail the same way instead of passing on a thinned batch.
    assert _scalar(warehouse, "select count(*) from smarketing.orders") == 10
    assert _scalar(warehouse, "select count(*) from smarketing.quarantine where record_key in ('o1', 'o2')") >= 2
    assert _scalar(warehouse, "select success from smarketing.validation_runs where run_id = 'run-2'") is False
    assert "suite 'orders'" in _scalar(warehouse, "select failure_message from smarketing.validation_runs")


def test_broken_key_fails_whatever_the_share(warehouse):
    import pandas as pd

    frame = pd.DataFrame([_order(n) for n in range(100)] + [_order(7)])

    with pytest.raises(QualityGateFailed, match=r"order_id appears more than once.*\"o7\""):
        gate(frame, "orders", warehouse=warehouse, run_id="run-3", source="test_feed")


def test_frame_gate_returns_the_clean_rows_and_quarantines_the_rest_with_the_source(warehouse):
    import pandas as pd

    frame = pd.DataFrame([_order(n) for n in range(30)])
    frame["total_amount"] = frame["total_amount"].astype(float)
    frame.loc[3, "total_amount"] = -4.5

    result = gate(frame, "orders", warehouse=warehouse, run_id="run-4", source="test_feed")

    assert len(result.clean) == 29 and "o3" not in set(result.clean["order_id"])
    assert list(result.clean.columns) == list(frame.columns)
    with warehouse.connect() as conn:
        row = conn.execute(sa.text("select source, record_key, rule, reason from smarketing.quarantine")).one()
    assert row == ("test_feed", "o3", "expect_column_values_to_be_between(total_amount)",
                   "total_amount is negative (total_amount=-4.5)")


def test_rerun_of_the_same_run_replaces_its_record_and_never_duplicates_quarantine(warehouse):
    import pandas as pd

    frame = pd.DataFrame([_order(n) for n in range(30)])
    frame.loc[3, "currency"] = "dollars"
    for _ in range(2):
        run_suite(frame, "orders", warehouse=warehouse, run_id="run-5", source="feed")

    assert _scalar(warehouse, "select count(*) from smarketing.validation_runs") == 1
    assert _scalar(warehouse, "select count(*) from smarketing.quarantine") == 2  # regex and set, once each


def test_without_a_warehouse_a_frame_keeps_its_broken_rows_nothing_is_dropped_unrecorded():
    import pandas as pd

    frame = pd.DataFrame([_order(n) for n in range(30)])
    frame["total_amount"] = frame["total_amount"].astype(float)
    frame.loc[3, "total_amount"] = -1.0

    result = run_suite(frame, "orders", run_id="offline")

    assert result.success and result.rows_bad == 1 and result.rows_quarantined == 0
    assert len(result.clean) == 30 and result.validation_id is None


def test_a_batch_read_for_pandas_is_the_frame_read_sql_gives(warehouse):
    import pandas as pd

    from smarketing_tasks.quality.gate import read_batch_frame

    with warehouse.begin() as conn:
        conn.exec_driver_sql(
            "create table smarketing.frame_read_check as select n, "
            "case when mod(n, 3) = 0 then null else 'text ' || chr(37) || 's :x ' || n end as label, "
            "case when mod(n, 4) = 0 then null else mod(n, 2) = 0 end as flag, "
            "case when mod(n, 5) = 0 then null else timestamptz '2026-06-01 12:00+02' + n * interval '1 hour' end as at, "
            "n * 1.25::numeric(8, 2) as amount, null::text as always_null "
            "from generate_series(1, 50) n")
    query = ("select t.ctid::text || '@' || t.xmin::text as _row_ref, t.* from smarketing.frame_read_check t "
             "where t.label like '%x%' or t.label is null")  # sent as is: '%' is no placeholder

    with warehouse.connect() as conn:
        expected = pd.read_sql(sa.text(query), conn)

    frame = read_batch_frame(warehouse, query)

    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    assert frame["label"].isna().sum() == 16 and frame["at"].dt.tz is not None


@pytest.mark.parametrize(("workers", "expected"), [(0, "0"), (1, "1")])
def test_gx_sessions_use_the_configured_parallel_workers(warehouse, workers, expected):
    from smarketing_tasks.quality.gx_runner import _context, _sql_datasource

    datasource = _sql_datasource(_context(), f"parallel_{workers}", warehouse, workers)
    try:
        with datasource.get_engine().connect() as conn:
            assert conn.exec_driver_sql("show max_parallel_workers_per_gather").scalar() == expected
    finally:
        datasource.get_engine().dispose()
