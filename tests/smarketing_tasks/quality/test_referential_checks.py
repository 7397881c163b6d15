"""Referential checks of the SQL-mode suites flag rows whose parent is missing, and only those."""

from __future__ import annotations

from datetime import timedelta

import pytest

from smarketing_tasks.quality import run_suite
from tests.smarketing_tasks.quality.test_gate import T0, _insert_orders, _order

pytestmark = pytest.mark.integration
MISSING_CUSTOMER = "the order's customer is not in smarketing.customers"


def test_an_order_of_an_unknown_customer_is_flagged_as_a_warning(warehouse):
    _insert_orders(warehouse, [_order(1), _order(2, customer_id="c-unknown")])
    result = run_suite(warehouse, "orders", run_id="ref-1", run_time=T0 + timedelta(days=4), mode="sql")
    assert result.success, "a missing parent warns (it may arrive in the next run); it does not fail"
    assert any(MISSING_CUSTOMER in warning and "c-unknown" in warning for warning in result.warnings), result.warnings


def test_orders_of_known_customers_raise_no_referential_warning(warehouse):
    _insert_orders(warehouse, [_order(1), _order(2)])
    result = run_suite(warehouse, "orders", run_id="ref-2", run_time=T0 + timedelta(days=4), mode="sql")
    assert not any(MISSING_CUSTOMER in warning for warning in result.warnings), result.warnings


MISSING_ORDER = "the line's order is not in smarketing.orders"


def _lines_of_a_known_and_an_unknown_order(warehouse) -> None:
    import sqlalchemy as sa

    _insert_orders(warehouse, [_order(1)])
    with warehouse.begin() as conn:
        conn.execute(sa.text("insert into smarketing.order_items (order_id, line_no, sku, product_name, quantity, "
                             "unit_price) values ('o1', 1, 'SKU-1', 'Mug', 1, 10), ('o-unknown', 1, 'SKU-1', 'Mug', 1, 10)"))


def test_a_line_of_an_unknown_order_is_flagged_when_the_whole_table_is_audited(warehouse):
    _lines_of_a_known_and_an_unknown_order(warehouse)
    result = run_suite(warehouse, "order_items", run_id="ref-3", run_time=T0 + timedelta(days=4), mode="sql")
    assert result.success and result.rows_checked == 2
    assert any(MISSING_ORDER in warning and "o-unknown" in warning for warning in result.warnings), result.warnings


def test_a_window_of_orders_holds_only_lines_of_known_orders_so_their_check_is_skipped(warehouse):
    _lines_of_a_known_and_an_unknown_order(warehouse)
    result = run_suite(warehouse, "order_items", run_id="ref-4", run_time=T0 + timedelta(days=4), mode="sql",
                       since=None, until=T0 + timedelta(days=4))
    assert result.success and result.rows_checked == 1  # the batch filter left the unknown order's line out
    referential = next(o for o in result.outcomes if o.spec.type == "unexpected_rows_expectation")
    assert referential.skipped == "implied by the batch filter"
