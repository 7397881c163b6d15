"""SMS over the signed JSON webhook (a real HTTP server): consent, the local-time window at send time."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from smarketing_tasks.outreach import OutreachSettings, plan_outreach, send_outreach
from smarketing_tasks.outreach.channels import webhook_signature
from tests.smarketing_tasks.outreach.helpers import AS_OF

pytestmark = pytest.mark.integration


class Receiver(BaseHTTPRequestHandler):
    calls: list = []
    status = 202

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.calls.append((dict(self.headers), body))
        self.send_response(Receiver.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"id": "provider-1"}')

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.calls, Receiver.status = [], 202
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/sms"
    server.shutdown()


def _settings(url: str) -> OutreachSettings:
    return replace(OutreachSettings(), preferred_channel="sms", webhook_url=url, webhook_secret="hook-secret",
                   link_signing_key="k", webhook_rate_per_second=0)


def test_sms_goes_out_signed_and_only_inside_the_recipients_window(shop, receiver):
    settings = _settings(receiver)
    shop.customer("berlin", sms=True, phone="+49 151 1234567", time_zone="Europe/Berlin")  # 13:00 local
    shop.customer("tokyo", sms=True, phone="+81 90 1234 5678", time_zone="Asia/Tokyo")  # 21:00 local: waits
    for c in ("berlin", "tokyo"):
        shop.order(f"o-{c}", c)
    plan_outreach(shop.engine, AS_OF, settings)
    report = send_outreach(shop.engine, AS_OF, settings, None, lambda: AS_OF + timedelta(minutes=5), worker="w",
                           channels=["sms"], warn=lambda _: None)
    assert report.sent == 1
    (headers, body), = Receiver.calls
    assert headers["X-Smarketing-Signature"] == webhook_signature(b"hook-secret", headers["X-Smarketing-Timestamp"],
                                                                 body)
    payload = json.loads(body)
    assert payload["to"] == "+49 151 1234567" and f"{settings.links_base_url}/r/" in payload["text"]
    assert headers["Idempotency-Key"] == payload["message_id"]
    assert {m.customer_id: m.provider_message_id for m in shop.messages() if m.status == "sent"} == {
        "berlin": "provider-1"}

    next_morning = AS_OF + timedelta(hours=11)  # 08:00 in Tokyo
    report = send_outreach(shop.engine, next_morning, settings, None, lambda: next_morning, worker="w",
                           channels=["sms"], warn=lambda _: None)
    assert report.sent == 1 and len(Receiver.calls) == 2


def test_an_sms_claimed_outside_the_window_waits_for_the_next_morning(shop, receiver):
    settings = _settings(receiver)
    shop.customer("berlin", sms=True, phone="+49 151 1234567", time_zone="Europe/Berlin")
    shop.order("o1", "berlin")
    plan_outreach(shop.engine, AS_OF, settings)  # due 13:00 Berlin
    late = AS_OF + timedelta(hours=8, minutes=30)  # the send runs late: 21:30 Berlin
    report = send_outreach(shop.engine, AS_OF, settings, None, lambda: late, worker="w", channels=["sms"],
                           warn=lambda _: None)
    assert report.sent == 0 and report.requeued == 1 and Receiver.calls == []
    (message,) = shop.messages()
    assert (message.status, message.attempts) == ("planned", 0)
    assert message.due_at == AS_OF + timedelta(hours=19)  # 08:00 Berlin the next day


def test_webhook_errors_are_told_apart(shop, receiver):
    settings = _settings(receiver)
    shop.customer("berlin", sms=True, phone="+49 151 1234567", time_zone="Europe/Berlin")
    shop.order("o1", "berlin")
    plan_outreach(shop.engine, AS_OF, settings)
    Receiver.status = 422
    report = send_outreach(shop.engine, AS_OF, settings, None, lambda: AS_OF, worker="w", channels=["sms"],
                           warn=lambda _: None)
    assert report.failed == {"permanent": 1}
    (message,) = shop.messages()
    assert message.error_kind == "permanent" and "HTTP 422" in message.last_error
