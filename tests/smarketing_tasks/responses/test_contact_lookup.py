"""Responses find a customer by address with one index probe that reads the latest contact first."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.responses.pipeline import latest_contact_by_email
from tests.smarketing_tasks.responses.helpers import T0, add_customer, add_many_contacts

pytestmark = pytest.mark.integration


def test_address_lookup_reads_the_latest_contact_from_the_index_without_sorting(warehouse):
    with warehouse.begin() as conn:
        add_many_contacts(conn, 20000, "email", "'c' || g || '@example.com'")
        conn.exec_driver_sql("create temporary table stage_addresses (email text) on commit drop")
        conn.exec_driver_sql("insert into stage_addresses select 'c' || g || '@example.com' from generate_series(1, 500) g")
        conn.exec_driver_sql("analyze stage_addresses")
        plan = "\n".join(conn.exec_driver_sql(
            f"explain select {latest_contact_by_email('s.email')} from stage_addresses s").scalars())
    assert "customer_contacts_email_latest_idx" in plan, plan
    assert "Sort" not in plan, plan


def test_an_address_shared_by_contacts_names_the_latest_then_the_first_id(warehouse):
    with warehouse.begin() as conn:
        add_customer(conn, "C2", email="Shared@Example.com", created_at=T0)
        add_customer(conn, "C1", email="shared@example.com", created_at=T0 - timedelta(days=1))
        add_customer(conn, "C4", email="tie@example.com", created_at=T0)
        add_customer(conn, "C3", email="TIE@example.com", created_at=T0)

        def lookup(address):
            return conn.execute(sa.text(f"select {latest_contact_by_email(':a')}"), {"a": address}).scalar()

        assert lookup("shared@example.com") == "C2"
        assert lookup("tie@example.com") == "C3"
        assert lookup("nobody@example.com") is None
