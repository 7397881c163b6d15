"""Expectations the batch's table enforces (its NOT NULL columns and unique keys) are not scanned for; every other
table, or a batch that joins other rows in, still gets them checked row by row."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.quality import QualityGateFailed, gate, load_suite, run_suite
from smarketing_tasks.quality.gate import table_guarantees
from tests.smarketing_tasks.quality.test_gate import T0, _insert_orders, _order

pytestmark = pytest.mark.integration
UNIQUE_ORDER = "expect_column_values_to_be_unique(order_id)"
UNIQUE_LINE = "expect_compound_columns_to_be_unique(order_id, line_no)"


def _outcomes(result) -> dict[str, str | None]:
    return {o.spec.label: o.skipped for o in result.outcomes}


def _spec(suite: str, label: str):
    return next(s for s in load_suite(suite).expectations if s.label == label)


def test_the_warehouse_keys_stand_in_for_the_scans_and_refuse_what_the_scans_would_find(warehouse):
    _insert_orders(warehouse, [_order(n) for n in range(5)])

    result = run_suite(warehouse, "orders", run_id="keys", run_time=T0 + timedelta(days=4), mode="sql")

    assert result.success, result.message
    skipped = _outcomes(result)
    assert skipped[UNIQUE_ORDER] == "enforced by unique key orders_pkey (order_id) of smarketing.orders"
    assert skipped["expect_column_values_to_not_be_null(order_id)"] == "enforced by NOT NULL on smarketing.orders.order_id"
    # delivered_at may be null in the table: "not null when delivered" is checked in the batch.
    assert skipped["expect_column_values_to_not_be_null(delivered_at)"] is None
    for broken in (_order(1), _order(9, order_id=None), _order(9, customer_id=None)):
        with pytest.raises(sa.exc.IntegrityError):
            _insert_orders(warehouse, [broken])


def test_a_table_without_the_keys_is_scanned_and_its_duplicates_stop_the_gate(warehouse):
    with warehouse.begin() as conn:
        conn.exec_driver_sql("create schema qa")
        conn.exec_driver_sql("create table qa.orders (like smarketing.orders including defaults)")
        conn.execute(sa.text(
            "insert into qa.orders (order_id, customer_id, ordered_at, status, total_amount, currency, updated_at, "
            "source) select 'o' || i, 'c1', :t, 'placed', 10, 'USD', :t, 'test' from unnest(array[1, 2, 2]) i"),
            {"t": T0})

    with pytest.raises(QualityGateFailed, match="order_id appears more than once"):
        gate(warehouse, "orders", table="qa.orders", run_id="no-keys", run_time=T0 + timedelta(days=4), mode="sql")


@pytest.mark.parametrize(("index", "enforced"), [
    ("alter table qa.items add primary key (order_id, line_no)", True),
    ("create unique index on qa.items (order_id)", True),  # a key within the columns is unique within them too
    ("create unique index on qa.items (order_id, line_no) where line_no > 0", False),  # partial
    ("create unique index on qa.items (lower(order_id), line_no)", False),  # an expression
    ("create unique index on qa.items (order_id, line_no, sku)", False),  # wider than the columns
    ("create unique index on qa.items (order_id, product_name)", False),  # not within the columns
])
def test_only_a_key_of_plain_never_null_columns_within_the_expectations_columns_counts(warehouse, index, enforced):
    with warehouse.begin() as conn:
        conn.exec_driver_sql("create schema qa")
        conn.exec_driver_sql("create table qa.items (like smarketing.order_items)")
        conn.exec_driver_sql(index)

    found = table_guarantees(warehouse, "qa.items").enforcing(_spec("order_items", UNIQUE_LINE))

    assert (found is not None) is enforced, found


def test_a_unique_column_that_may_be_null_is_no_key(warehouse):
    with warehouse.begin() as conn:
        conn.exec_driver_sql("create schema qa")
        conn.exec_driver_sql("create table qa.items (order_id text unique, line_no integer not null)")

    assert table_guarantees(warehouse, "qa.items").enforcing(_spec("order_items", UNIQUE_LINE)) is None
    assert table_guarantees(warehouse, "qa.missing").enforcing(_spec("order_items", UNIQUE_LINE)) is None


def test_a_batch_that_joins_other_rows_in_checks_its_keys_itself(warehouse):
    with warehouse.begin() as conn:
        conn.execute(sa.text("insert into smarketing.customers (customer_id, accepts_marketing, accepts_sms, updated_at, "
                             "source) values ('c1', true, false, :t, 'test')"), {"t": T0})

    result = run_suite(warehouse, "customers", run_id="joined", run_time=T0, mode="sql")

    assert result.success, result.message
    assert load_suite("customers").join
    assert _outcomes(result)["expect_column_values_to_be_unique(customer_id)"] is None
