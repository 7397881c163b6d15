"""Sending against a real SMTP server (aiosmtpd) and a real PostgreSQL, including faults.

Exactly once is checked the way a recipient would: count the messages the server received per
Message-ID, and compare with the outbox.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.outreach import ChannelDown, OutreachSettings, plan_outreach, send_outreach
from smarketing_tasks.outreach.channels import SmtpParams
from tests.smarketing_tasks.outreach.helpers import AS_OF, Faults, SmtpServer

pytestmark = pytest.mark.integration
S = replace(OutreachSettings(), link_signing_key="test-key", retry_base_seconds=0.01, batch_size=7)
CLOCK = lambda: AS_OF + timedelta(hours=1)  # noqa: E731 - the "real" clock of these sends


def _population(shop, n: int, **customer) -> None:
    for i in range(n):
        shop.customer(f"c{i:03d}", **customer)
        shop.order(f"o{i:03d}", f"c{i:03d}", items=[("SKU-1", "Blue Mug"), ("SKU-2", "Green Teapot")])


def _statuses(shop) -> dict[str, int]:
    with shop.engine.connect() as conn:
        return dict(conn.execute(sa.text(
            "select status, count(*) from smarketing.outreach_messages group by 1")).all())


def _sent_ids(shop) -> set[str]:
    with shop.engine.connect() as conn:
        return set(conn.execute(sa.text(
            "select message_id from smarketing.outreach_messages where status = 'sent'")).scalars())


def _send(shop, server, settings=S, **kwargs):
    return send_outreach(shop.engine, AS_OF, settings, server.params if server else None, CLOCK,
                         worker=kwargs.pop("worker", "test"), warn=lambda _: None, **kwargs)


def test_batch_goes_out_once_over_one_connection_with_the_contract_headers(shop):
    _population(shop, 20)
    plan_outreach(shop.engine, AS_OF, S)
    with SmtpServer() as server:
        report = _send(shop, server)
        again = _send(shop, server)
    received = server.handler.per_message_id()
    assert report.sent == 20 and again.sent == 0
    assert set(received) == _sent_ids(shop) and set(received.values()) == {1}
    assert server.handler.connections == S.connections  # one per lane (none for a rerun with nothing due)
    message = server.handler.messages[0]
    mid = message["X-Smarketing-Message-Id"]
    assert message["Message-ID"] == f"<{mid}@smarketing.local>"
    assert message["X-Smarketing-Kind"] == "review_request"
    assert message["X-Smarketing-Customer-Id"].startswith("c")
    assert message["List-Unsubscribe"].startswith(f"<{S.links_base_url}/u/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert f"{S.links_base_url}/r/" in text and f"{S.links_base_url}/u/" in text and S.postal_address in text
    assert "Blue Mug" in html and "Green Teapot" in html and S.postal_address in html


def test_links_are_signed_for_the_message_and_expire(shop):
    from smarketing_tasks import tokens

    _population(shop, 1)
    plan_outreach(shop.engine, AS_OF, S)
    with SmtpServer() as server:
        _send(shop, server)
    message = server.handler.messages[0]
    token = message["List-Unsubscribe"].strip("<>").rsplit("/", 1)[1]
    claims = tokens.verify(b"test-key", token, AS_OF, tokens.Purpose.UNSUBSCRIBE)
    assert claims.message_id == message["X-Smarketing-Message-Id"]
    with pytest.raises(tokens.InvalidToken) as expired:
        tokens.verify(b"test-key", token, AS_OF + timedelta(days=S.link_ttl_days + 1))
    assert expired.value.kind == "expired"


def test_two_concurrent_senders_never_send_the_same_message(shop):
    _population(shop, 60)
    plan_outreach(shop.engine, AS_OF, S)
    reports = []
    with SmtpServer() as server:
        threads = [threading.Thread(target=lambda w=w: reports.append(_send(shop, server, worker=w)))
                   for w in ("w1", "w2", "w3")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sum(r.sent for r in reports) == 60
    assert server.handler.per_message_id().most_common(1)[0][1] == 1
    assert len(server.handler.per_message_id()) == 60 and _statuses(shop) == {"sent": 60}


def test_staleness_guard_expires_backfilled_messages_instead_of_sending(shop):
    _population(shop, 3)
    plan_outreach(shop.engine, AS_OF, S)
    late = lambda: AS_OF + timedelta(days=S.request_ttl_days, seconds=1)  # noqa: E731
    with SmtpServer() as server:
        report = send_outreach(shop.engine, AS_OF, S, server.params, late, worker="backfill", warn=lambda _: None)
    assert report.sent == 0 and server.handler.messages == []
    assert _statuses(shop) == {"expired": 3}
    reason = shop.messages()[0].status_reason
    assert reason == "stale: not sent before expires_at (backfill or outage)"


@pytest.mark.parametrize("fault", [Faults(drop_after=4, fail_times=3), Faults(refuse_after=5, fail_times=3)],
                         ids=["drops-connection", "refuses-421"])
def test_server_faults_are_retried_and_each_message_arrives_once(shop, fault):
    _population(shop, 25)
    plan_outreach(shop.engine, AS_OF, S)
    with SmtpServer(fault) as server:
        report = _send(shop, server)
    assert server.handler.fired == 3
    received = server.handler.per_message_id()
    assert report.sent == 25 and len(received) == 25 and set(received.values()) == {1}
    assert _statuses(shop) == {"sent": 25}
    assert server.handler.connections >= 4  # reconnected after each fault
    with shop.engine.connect() as conn:
        attempts = conn.execute(sa.text("select sum(attempts) from smarketing.outreach_messages")).scalar()
    assert attempts == 25 + 3  # each fault cost exactly one attempt, recorded


def test_permanent_rejection_fails_the_message_and_suppresses_the_hard_bounce(shop):
    _population(shop, 3)
    plan_outreach(shop.engine, AS_OF, S)
    with SmtpServer(Faults(reject_recipients={"c001@example.com"})) as server:
        report = _send(shop, server)
    assert report.sent == 2 and report.failed == {"permanent": 1}
    failed = [m for m in shop.messages() if m.status == "failed"]
    assert [(m.customer_id, m.error_kind) for m in failed] == [("c001", "permanent")]
    assert "550" in failed[0].last_error
    with shop.engine.connect() as conn:
        assert conn.execute(sa.text("select email, reason from smarketing.suppressions")).all() == [
            ("c001@example.com", "hard_bounce")]


def test_channel_down_requeues_and_a_later_run_sends(shop):
    _population(shop, 5)
    plan_outreach(shop.engine, AS_OF, S)
    settings = replace(S, max_attempts=4, send_retries=2, connections=1)
    down = SmtpParams(host="127.0.0.1", port=1, timeout=2)  # nothing listens on port 1
    for _ in range(2):  # two runs while the server is down: the first message uses up its 4 attempts
        with pytest.raises(ChannelDown):
            send_outreach(shop.engine, AS_OF, settings, down, CLOCK, worker="w", warn=lambda _: None)
    messages = shop.messages()
    assert {m.status for m in messages} == {"planned", "failed"}
    (gave_up,) = [m for m in messages if m.status == "failed"]
    assert gave_up.error_kind == "transient" and gave_up.attempts == 4
    assert gave_up.status_reason.startswith("gave up after 4 attempts")
    assert all(m.attempts == 0 for m in messages if m.status == "planned")
    with SmtpServer() as server:
        report = _send(shop, server, settings)
    assert report.sent == 4 and len(server.handler.per_message_id()) == 4
    assert set(server.handler.per_message_id().values()) == {1}


def test_suppression_and_review_after_planning_stop_the_send(shop):
    _population(shop, 3)
    plan_outreach(shop.engine, AS_OF, S)
    shop.suppress("c000@example.com", "unsubscribe")
    shop.review("r1", "o001", "c001", 4)
    with SmtpServer() as server:
        report = _send(shop, server)
    assert report.sent == 1
    assert {m.customer_id: m.status_reason for m in shop.messages() if m.status == "skipped"} == {
        "c000": "suppressed before sending: unsubscribe", "c001": "already reviewed"}


def test_warehouse_connection_dropped_mid_batch_still_sends_each_once(shop, warehouse_url):
    from smarketing_tasks.db import database_name, make_engine

    _population(shop, 30)
    plan_outreach(shop.engine, AS_OF, S)
    admin = make_engine(os.environ["SMARKETING_TEST_ADMIN_URL"], isolation_level="AUTOCOMMIT")
    name = database_name(warehouse_url)

    def drop_connections(count: int) -> None:
        if count in (5, 12, 20):
            with admin.connect() as conn:
                conn.execute(sa.text("select pg_terminate_backend(pid) from pg_stat_activity "
                                     "where datname = :d and pid <> pg_backend_pid()"), {"d": name})

    with SmtpServer(Faults(on_message=drop_connections)) as server:
        report = _send(shop, server)
    admin.dispose()
    received = server.handler.per_message_id()
    assert report.sent == 30 and len(received) == 30 and set(received.values()) == {1}
    assert _statuses(shop) == {"sent": 30}


_SENDER_SCRIPT = """
import sys
from dataclasses import replace
from datetime import datetime, timedelta
from smarketing_tasks.db import make_engine
from smarketing_tasks.outreach import OutreachSettings, send_outreach
from smarketing_tasks.outreach.channels import SmtpParams
as_of = datetime.fromisoformat(sys.argv[3])
# One lane: the server kills the sender before accepting message k, so nothing accepted is unrecorded.
settings = replace(OutreachSettings(), link_signing_key="test-key", batch_size=50, claim_lease_seconds=1,
                   connections=1)
send_outreach(make_engine(sys.argv[1]), as_of, settings, SmtpParams(port=int(sys.argv[2])),
              lambda: as_of + timedelta(hours=1), worker="doomed")
"""


def test_sender_killed_mid_batch_then_rerun_sends_every_message_exactly_once(shop, warehouse_url):
    _population(shop, 40)
    plan_outreach(shop.engine, AS_OF, S)
    faults = Faults(kill_pid_after=17)
    with SmtpServer(faults) as server:
        process = subprocess.Popen([sys.executable, "-c", _SENDER_SCRIPT, warehouse_url, str(server.port),
                                    AS_OF.isoformat()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        faults.kill_pid = process.pid
        assert process.wait(timeout=120) == -9  # killed by the server while the batch was in flight
        assert len(server.handler.messages) == 17
        assert _statuses(shop) == {"sent": 17, "sending": 23}  # the rest of its batch stays claimed
        time.sleep(1.2)  # the dead sender's lease (1 s) runs out
        report = _send(shop, server)
    received = server.handler.per_message_id()
    assert report.sent == 23 and report.rechecked["reclaimed"] == 23
    assert len(received) == 40 and set(received.values()) == {1}
    assert _statuses(shop) == {"sent": 40}
