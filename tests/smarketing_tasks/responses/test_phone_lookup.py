"""SMS events find their customer by the phone's digits through an index, not a scan of every contact."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration


def test_sms_event_customer_lookup_uses_the_phone_digits_index(warehouse):
    with warehouse.begin() as conn:
        conn.exec_driver_sql("insert into smarketing.customers (customer_id, updated_at, source) "
                             "select 'C' || g, now(), 'test' from generate_series(1, 20000) g")
        conn.exec_driver_sql("insert into smarketing.customer_contacts (customer_id, phone, updated_at) "
                             "select 'C' || g, '+1 (555) ' || g, now() from generate_series(1, 20000) g")
        conn.exec_driver_sql("analyze smarketing.customer_contacts")
        plan = "\n".join(conn.execute(sa.text(
            "explain analyze select c.customer_id from smarketing.customer_contacts c "
            "where regexp_replace(c.phone, '[^0-9+]', '', 'g') = :phone"), {"phone": "+1555123"}).scalars())
        found = conn.execute(sa.text(
            "select c.customer_id from smarketing.customer_contacts c "
            "where regexp_replace(c.phone, '[^0-9+]', '', 'g') = :phone"), {"phone": "+1555123"}).scalar()
    assert "customer_contacts_phone_digits_idx" in plan, plan
    assert found == "C123"
