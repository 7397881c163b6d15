"""Row rules of ingestion (SQL over landed text rows, on a real PostgreSQL): each kind of broken row, its rule and reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from smarketing_tasks.schema import SOURCE_COLUMNS

NOW = datetime(2026, 11, 22, tzinfo=UTC)

GOOD = {
    "customers": {
        "customer_id": "C1", "email": "ana@example.com", "first_name": "Ana", "phone": "+1 555", "country": "US",
        "time_zone": "America/New_York", "accepts_marketing": "t", "accepts_sms": "f",
        "created_at": "2026-10-01 10:00:00+00", "updated_at": "2026-10-02 10:00:00+00",
    },
    "orders": {
        "order_id": "O1", "customer_id": "C1", "ordered_at": "2026-10-01 10:00:00+00", "status": "delivered",
        "shipped_at": "2026-10-02 10:00:00+00", "delivered_at": "2026-10-05 10:00:00+00", "total_amount": "49.90",
        "currency": "USD", "discount_code": None, "updated_at": "2026-10-05 10:00:00+00",
    },
    "order_items": {
        "order_id": "O1", "line_no": "1", "sku": "SKU-1", "product_name": "Tee", "quantity": "2",
        "unit_price": "24.95", "updated_at": "2026-10-05 10:00:00+00",
    },
}

# (dataset, changes to a good row, expected rule, words expected in the reason)
BROKEN_ROWS = [
    ("customers", {"customer_id": None}, "missing_customer_id", "customer_id is missing"),
    ("customers", {"customer_id": "   "}, "missing_customer_id", "customer_id is missing"),
    ("customers", {"customer_id": "\t\r\n\f "}, "missing_customer_id", "customer_id is missing"),
    ("order_items", {"sku": " \t"}, "missing_sku", "sku is missing"),
    ("customers", {"email": "ana(at)example"}, "malformed_email", "'ana(at)example'"),
    ("customers", {"email": "ana@@example.com"}, "malformed_email", "not a well-formed address"),
    ("customers", {"time_zone": "Mars/Olympus"}, "unknown_time_zone", "'Mars/Olympus'"),
    ("customers", {"accepts_marketing": "maybe"}, "bad_boolean_accepts_marketing", "'maybe'"),
    ("customers", {"updated_at": "yesterday"}, "bad_timestamp_updated_at", "'yesterday'"),
    ("customers", {"updated_at": None}, "missing_updated_at", "updated_at is missing"),
    ("customers", {"created_at": "2026-10-03 00:00:00+00"}, "created_after_updated", "created_at is later"),
    ("customers", {"first_name": "Jos\ufffd"}, "undecodable_text", "first_name holds bytes that are not valid UTF-8"),
    ("customers", {"first_name": "Ana\x00"}, "nul_byte", "NUL"),
    ("orders", {"order_id": None}, "missing_order_id", "order_id is missing"),
    ("orders", {"customer_id": ""}, "missing_customer_id", "customer_id is missing"),
    ("orders", {"total_amount": "-5.00"}, "negative_total_amount", "'-5.00'"),
    ("orders", {"total_amount": "12,50"}, "bad_total_amount", "not a number"),
    ("orders", {"status": "teleported"}, "unknown_status", "'teleported'"),
    ("orders", {"currency": "dollars"}, "bad_currency", "ISO 4217"),
    ("orders", {"shipped_at": "2026-09-30 10:00:00+00"}, "shipped_before_ordered", "shipped_at is earlier"),
    ("orders", {"delivered_at": "2026-10-01 11:00:00+00"}, "delivered_before_shipped", "delivered_at is earlier"),
    ("orders", {"ordered_at": "2026-10-06 10:00:00+00", "shipped_at": None, "delivered_at": None},
     "ordered_after_updated", "ordered_at is later than updated_at"),
    ("orders", {"delivered_at": "2027-01-01 00:00:00+00"}, "future_delivered_at", "later than the run's time"),
    ("orders", {"status": "shipped", "shipped_at": None, "delivered_at": None}, "shipped_without_time",
     "shipped_at is missing"),
    ("orders", {"ordered_at": "01/10/2026"}, "bad_timestamp_ordered_at", "ISO 8601"),
    ("order_items", {"line_no": "one"}, "bad_line_no", "not an integer"),
    ("order_items", {"line_no": "1.5"}, "bad_line_no", "not an integer"),
    ("order_items", {"quantity": "0"}, "non_positive_quantity", "at least 1"),
    ("order_items", {"unit_price": "-1"}, "negative_unit_price", "negative"),
    ("order_items", {"sku": None}, "missing_sku", "sku is missing"),
]


def _frame(dataset: str, *rows: dict) -> pd.DataFrame:
    return pd.DataFrame([{c: row.get(c) for c in SOURCE_COLUMNS[dataset]} for row in rows])


@pytest.mark.parametrize("dataset", sorted(GOOD))
def test_good_row_is_clean_and_typed(check_rows, dataset):
    result = check_rows(dataset, _frame(dataset, GOOD[dataset]), NOW)
    assert result.rejects.empty
    assert len(result.clean) == 1
    assert result.max_change == datetime(2026, 10, 2 if dataset == "customers" else 5, 10, tzinfo=UTC)


@pytest.mark.parametrize(("dataset", "change", "rule", "words"), BROKEN_ROWS,
                         ids=[f"{d}-{r}-{i}" for i, (d, _, r, _) in enumerate(BROKEN_ROWS)])
def test_broken_row_is_rejected_with_rule_and_reason(check_rows, dataset, change, rule, words):
    good_other = {**GOOD[dataset], **({"order_id": "O2"} if dataset != "customers" else {"customer_id": "C2"})}
    batch = _frame(dataset, {**GOOD[dataset], **change}, good_other)
    result = check_rows(dataset, batch, NOW)
    assert len(result.clean) == 1, "the good row of the batch flows on"
    assert rule in set(result.rejects["rule"]), result.rejects[["rule", "reason"]].to_dict("records")
    reason = result.rejects.loc[result.rejects["rule"] == rule, "reason"].iloc[0]
    assert words in reason
    assert result.rejected_rows == 1


def test_conflicting_duplicates_are_all_quarantined_and_identical_ones_collapse(check_rows):
    order = GOOD["orders"]
    batch = _frame("orders", order, {**order, "total_amount": "99.00"}, {**GOOD["orders"], "order_id": "O2"},
                   {**GOOD["orders"], "order_id": "O2"})
    result = check_rows("orders", batch, NOW)
    assert list(result.clean["order_id"]) == ["O2"]
    conflicts = result.rejects[result.rejects["rule"] == "conflicting_duplicate"]
    assert sorted(conflicts["record_key"]) == ["O1", "O1"]


def test_newer_version_of_a_row_supersedes_older_one_in_the_same_batch(check_rows):
    order = GOOD["orders"]
    returned = {**order, "status": "returned", "updated_at": "2026-10-20 10:00:00+00"}
    result = check_rows("orders", _frame("orders", order, returned), NOW)
    assert result.rejects.empty
    assert list(result.clean["status"]) == ["returned"]


def test_values_are_normalised(check_rows):
    customer = {**GOOD["customers"], "email": "  Ana@Example.COM ", "accepts_marketing": "YES"}
    order = {**GOOD["orders"], "status": " Delivered", "currency": "usd"}
    clean_customer = check_rows("customers", _frame("customers", customer), NOW).clean.iloc[0]
    clean_order = check_rows("orders", _frame("orders", order), NOW).clean.iloc[0]
    assert clean_customer["email"] == "ana@example.com"
    assert bool(clean_customer["accepts_marketing"]) is True
    assert (clean_order["status"], clean_order["currency"]) == ("delivered", "USD")


def test_a_row_breaking_several_rules_is_recorded_once_per_rule_with_the_same_raw_row(check_rows):
    result = check_rows("orders", _frame("orders", {**GOOD["orders"], "total_amount": "-1", "status": "x"}), NOW)
    assert set(result.rejects["rule"]) == {"negative_total_amount", "unknown_status"}
    assert result.rejects["raw_hash"].nunique() == 1
    assert result.rejected_rows == 1


def test_a_well_shaped_impossible_value_is_a_reject_not_a_failed_load(check_rows):
    """The fast path casts directly; '2026-02-30' passes the shape check and makes the cast raise, so the
    batch is checked again with the safe casts: the row is quarantined and the good row still flows."""
    order = GOOD["orders"]
    impossible = {**order, "order_id": "O2", "shipped_at": "2026-02-30 10:00:00+00"}
    huge_line = {**GOOD["order_items"], "line_no": "99999999999"}
    result = check_rows("orders", _frame("orders", order, impossible), NOW)
    assert list(result.clean["order_id"]) == ["O1"]
    assert list(result.rejects["rule"]) == ["bad_timestamp_shipped_at"]
    items = check_rows("order_items", _frame("order_items", huge_line, {**GOOD["order_items"], "line_no": "2.0"}), NOW)
    assert list(items.clean["line_no"]) == [2]
    assert list(items.rejects["rule"]) == ["bad_line_no"]


def test_a_key_that_starts_with_whitespace_is_not_missing(check_rows):
    """Only a key that is whitespace through and through is missing; one that starts with a space is kept."""
    result = check_rows("order_items", _frame("order_items", {**GOOD["order_items"], "sku": " SKU-1"},
                                              {**GOOD["order_items"], "line_no": "2", "sku": "\tSKU-2"}), NOW)
    assert result.rejects.empty
    assert sorted(result.clean["sku"]) == ["\tSKU-2", " SKU-1"]
