"""The demo mailbox is a real SMTP server writing a Maildir; resends of one message are stored once."""

from __future__ import annotations

import mailbox
from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.outreach import OutreachSettings, plan_outreach, send_outreach
from smarketing_tasks.outreach.channels import SmtpParams
from smarketing_tasks.outreach.mailbox import DemoMailbox, summarize
from tests.smarketing_tasks.outreach.helpers import AS_OF

pytestmark = pytest.mark.integration


def test_mailbox_stores_sent_messages_and_a_resend_once(shop, tmp_path):
    settings = replace(OutreachSettings(), link_signing_key="k")
    for i in range(3):
        shop.customer(f"c{i}")
        shop.order(f"o{i}", f"c{i}")
    plan_outreach(shop.engine, AS_OF, settings)
    with DemoMailbox(tmp_path / "mailbox", port=None) as box:
        params = SmtpParams(port=box.port)
        send_outreach(shop.engine, AS_OF, settings, params, lambda: AS_OF + timedelta(hours=1), worker="a",
                      warn=lambda _: None)
        # Simulate the crash window: the outcome of one message was lost, so it is sent again.
        with shop.engine.begin() as conn:
            conn.execute(sa.text("update smarketing.outreach_messages set status = 'planned' "
                                 "where customer_id = 'c0'"))
        send_outreach(shop.engine, AS_OF, settings, params, lambda: AS_OF + timedelta(hours=1), worker="b",
                      warn=lambda _: None)
        assert box.handler.received == 4
    stored = mailbox.Maildir(str(tmp_path / "mailbox"), create=False)
    assert len(stored) == 3
    assert summarize(tmp_path / "mailbox") == {"review_request": 3}
    assert {m["X-Smarketing-Customer-Id"] for m in stored} == {"c0", "c1", "c2"}
