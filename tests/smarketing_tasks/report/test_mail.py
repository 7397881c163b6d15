"""The report by email, delivered to a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import socket
from email import policy

import pytest

from smarketing_tasks.marts import publish_marts
from smarketing_tasks.marts.headline import headline_numbers
from smarketing_tasks.outreach.channels import SmtpParams
from smarketing_tasks.report import write_report
from smarketing_tasks.report.mail import recipients, report_email, send_report
from tests.smarketing_tasks.marts.known_data import AS_OF, load_known_data


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    class Collect:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
            self.messages.append((envelope.rcpt_tos, envelope.content))
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, handler
    controller.stop()


def test_the_report_reaches_staff_as_an_attachment_with_the_headline_in_the_body(warehouse, tmp_path, smtp_server):
    port, handler = smtp_server
    load_known_data(warehouse)
    publish_marts(warehouse, AS_OF)
    page = write_report(warehouse, tmp_path, AS_OF)
    to = recipients(" marketing@shop.example, ,sales@shop.example")
    message = report_email(page, headline_numbers(warehouse), AS_OF, "loop@shop.example", to)
    send_report(SmtpParams(host="127.0.0.1", port=port), message)

    [(envelope_to, raw)] = handler.messages
    assert envelope_to == ["marketing@shop.example", "sales@shop.example"]
    received = email.message_from_bytes(raw, policy=policy.default)
    assert received["Subject"] == "smarketing-loop report 2026-11-22: NPS +0, 2 follow-ups waiting"
    body = received.get_body(preferencelist=("plain",)).get_content()
    assert "Word-of-mouth reach at risk:   156 people" in body
    [attachment] = list(received.iter_attachments())
    assert attachment.get_filename() == page.name
    assert attachment.get_content() == page.read_text()


def test_a_report_email_needs_recipients(warehouse, tmp_path):
    page = write_report(warehouse, tmp_path, AS_OF)
    with pytest.raises(ValueError, match="no recipients"):
        report_email(page, None, AS_OF, "loop@shop.example", recipients(" , "))
