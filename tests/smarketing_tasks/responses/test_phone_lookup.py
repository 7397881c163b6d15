"""SMS events find their customer by the phone's digits through an index, not a scan of every contact."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.smarketing_tasks.responses.helpers import add_many_contacts

pytestmark = pytest.mark.integration


def test_sms_event_customer_lookup_uses_the_phone_digits_index(warehouse):
    with warehouse.begin() as conn:
        add_many_contacts(conn, 20000, "phone", "'+1 (555) ' || g")
        plan = "\n".join(conn.execute(sa.text(
            "explain analyze select c.customer_id from smarketing.customer_contacts c "
            "where regexp_replace(c.phone, '[^0-9+]', '', 'g') = :phone"), {"phone": "+1555123"}).scalars())
        found = conn.execute(sa.text(
            "select c.customer_id from smarketing.customer_contacts c "
            "where regexp_replace(c.phone, '[^0-9+]', '', 'g') = :phone"), {"phone": "+1555123"}).scalar()
    assert "customer_contacts_phone_digits_idx" in plan, plan
    assert found == "C123"
