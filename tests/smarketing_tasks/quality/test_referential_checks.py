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
