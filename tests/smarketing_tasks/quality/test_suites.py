"""The suite files: valid GX suites, one per dataset and contract mart, naming only columns that exist."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from smarketing_tasks.quality import load_suite, suite_names
from smarketing_tasks.quality.stages import MART_SUITES, PURCHASE_SUITES, RESPONSE_SUITES

CORE_SUITES = (*PURCHASE_SUITES, *RESPONSE_SUITES, "outreach_messages", "advocate_scores")


def _columns_named(name: str) -> set[str]:
    suite = load_suite(name)
    named = set(suite.key) | {d.column for d in suite.distributions}
    for spec in suite.expectations:
        named |= set(spec.columns)
        named |= set(spec.kwargs.get("column_set", ()))
    return named


def test_there_is_one_suite_per_dataset_and_per_contract_mart():
    from smarketing_tasks.marts.catalog import CONTRACT_MARTS

    assert set(MART_SUITES) == set(CONTRACT_MARTS)
    assert set(suite_names()) == {*CORE_SUITES, *MART_SUITES}


@pytest.mark.parametrize("name", suite_names())
def test_suite_loads_in_gx_and_every_expectation_says_why(name: str):
    from great_expectations.core import ExpectationSuite

    suite = load_suite(name)
    gx_suite = ExpectationSuite(**suite.gx_suite_dict())

    assert gx_suite.name == name == suite.raw["name"]
    assert len(gx_suite.expectations) == len(suite.expectations) >= 5
    assert all(spec.meta.get("reason") for spec in suite.expectations)
    assert suite.key and suite.table and suite.mode in ("sql", "pandas")


@pytest.mark.parametrize("name", MART_SUITES)
def test_mart_suites_name_only_catalog_columns(name: str):
    from smarketing_tasks.marts.catalog import load_catalog

    columns = {m.name: set(m.column_names) for m in load_catalog()}[name]
    assert _columns_named(name) <= columns


@pytest.mark.integration
def test_core_suites_name_only_columns_of_their_tables(warehouse):
    with warehouse.connect() as conn:
        for name in CORE_SUITES:
            suite = load_suite(name)
            schema, table = suite.table.split(".")
            columns = set(conn.execute(sa.text(
                "select column_name from information_schema.columns where table_schema = :s and table_name = :t"),
                {"s": schema, "t": table}).scalars())
            extra = {c.strip().split(".")[-1] for c in (suite.extra_columns or "").split(",") if c.strip()}
            assert _columns_named(name) <= columns | extra, name
