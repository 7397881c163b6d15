"""The link service against a real warehouse: one-click unsubscribe, tracked redirects, bad tokens."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from smarketing_tasks.links import create_app
from smarketing_tasks.outreach.eligibility import idempotency_key, message_id_for
from smarketing_tasks.outreach.settings import OutreachSettings
from smarketing_tasks.tokens import Purpose, sign
from tests.smarketing_tasks.outreach.helpers import AS_OF, Warehouse

pytestmark = pytest.mark.integration
KEY = b"link-test-key"
S = replace(OutreachSettings(), link_signing_key=KEY.decode())
MID = message_id_for(idempotency_key("c1", "o1", "review_request", 1))


@pytest.fixture
def client(warehouse):
    shop = Warehouse(warehouse)
    shop.customer("c1", email="Ann@Example.com")
    shop.order("o1", "c1")
    shop.message("c1", "review_request", AS_OF - timedelta(days=1), order_id="o1")
    with warehouse.begin() as conn:
        conn.execute(sa.text("insert into smarketing.referral_codes values ('c1', 'REF-ABCDEFGH', :t)"), {"t": AS_OF})
    app = create_app(warehouse, S, [KEY], clock=lambda: AS_OF)
    return TestClient(app, follow_redirects=False)


def _token(purpose: Purpose, key: bytes = KEY, days: int = 30, message_id: str = MID) -> str:
    return sign(key, message_id, purpose, AS_OF + timedelta(days=days))


def _rows(engine, table: str) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"select * from smarketing.{table}")).all()


def test_get_shows_a_confirmation_and_changes_nothing(client, warehouse):
    response = client.get(f"/u/{_token(Purpose.UNSUBSCRIBE)}")
    assert response.status_code == 200 and "<form method='post'" in response.text
    assert _rows(warehouse, "suppressions") == []


def test_one_click_post_suppresses_once_and_a_replay_changes_nothing(client, warehouse):
    token = _token(Purpose.UNSUBSCRIBE)
    response = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200 and "unsubscribed" in response.text
    (row,) = _rows(warehouse, "suppressions")
    assert (row.email, row.customer_id, row.reason, row.source) == ("ann@example.com", "c1", "unsubscribe",
                                                                     "link_service")
    with warehouse.begin() as conn:  # an operator lifts the suppression; the old link must not set it again
        conn.execute(sa.text("delete from smarketing.suppressions"))
    replay = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert replay.status_code == 200
    assert _rows(warehouse, "suppressions") == [] and len(_rows(warehouse, "link_consumptions")) == 1
    assert "already used" in client.get(f"/u/{token}").text


@pytest.mark.parametrize(("make", "status", "words"), [
    (lambda: _token(Purpose.UNSUBSCRIBE, key=b"someone-else"), 400, "not issued by us"),
    (lambda: _token(Purpose.UNSUBSCRIBE, days=-1), 410, "expired"),
    (lambda: _token(Purpose.UNSUBSCRIBE)[:-5], 400, "not issued by us"),
    (lambda: "garbage", 400, "incomplete or damaged"),
    (lambda: _token(Purpose.REVIEW), 400, "not meant for this page"),
    (lambda: _token(Purpose.UNSUBSCRIBE, message_id="f" * 32), 404, "do not know"),
], ids=["forged", "expired", "truncated", "malformed", "wrong-purpose", "unknown-message"])
def test_bad_tokens_change_nothing_and_say_why(client, warehouse, make, status, words):
    token = make()
    for response in (client.post(f"/u/{token}"), client.get(f"/u/{token}")):
        assert response.status_code == status and words in response.text
    assert _rows(warehouse, "suppressions") == [] and _rows(warehouse, "link_consumptions") == []


def test_review_link_records_the_first_click_and_redirects_with_the_token(client, warehouse):
    token = _token(Purpose.REVIEW)
    first = client.get(f"/r/{token}", headers={"user-agent": "test-browser"})
    again = client.get(f"/r/{token}")
    assert first.status_code == again.status_code == 303
    target = urlsplit(first.headers["location"])
    assert parse_qs(target.query) == {"order": ["o1"], "t": [token]}
    (click,) = _rows(warehouse, "link_clicks")
    assert (click.message_id, click.purpose, click.customer_id, click.user_agent) == (MID, "review", "c1",
                                                                                     "test-browser")
    assert client.get(f"/r/{_token(Purpose.REVIEW, key=b'x')}").status_code == 400
    assert len(_rows(warehouse, "link_clicks")) == 1


def test_share_link_redirects_with_referral_code_and_utm(client, warehouse):
    response = client.get(f"/s/{_token(Purpose.SHARE)}")
    assert response.status_code == 303
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["ref"] == ["REF-ABCDEFGH"] and query["utm_medium"] == ["referral"]
    assert query["utm_campaign"] == ["review_request"] and query["utm_content"] == ["A"]
    assert [c.purpose for c in _rows(warehouse, "link_clicks")] == ["share"]


def test_one_click_from_a_real_email_stops_the_next_ask(warehouse):
    """Send through aiosmtpd, POST the List-Unsubscribe URL as a mail client would, plan again: suppressed."""
    from smarketing_tasks.outreach import plan_outreach, send_outreach
    from tests.smarketing_tasks.outreach.helpers import SmtpServer

    shop = Warehouse(warehouse)
    shop.customer("c9")
    shop.order("o9", "c9")
    plan_outreach(warehouse, AS_OF, S)
    with SmtpServer() as server:
        send_outreach(warehouse, AS_OF, S, server.params, lambda: AS_OF, worker="t", warn=lambda _: None)
    (email,) = server.handler.messages
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = urlsplit(email["List-Unsubscribe"].strip("<>")).path
    client = TestClient(create_app(warehouse, S, [KEY], clock=lambda: AS_OF), follow_redirects=False)
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200

    later = AS_OF + timedelta(days=S.cooldown_days + 1)
    shop.order("o10", "c9", delivered_at=later - timedelta(days=7))
    plan_outreach(warehouse, later, S)
    assert shop.by_order()["o10"] == ("skipped", "suppressed: unsubscribe")


def test_links_signed_before_a_key_rotation_still_work(warehouse):
    from smarketing_tasks.outreach import verification_keys

    shop = Warehouse(warehouse)
    shop.customer("c1")
    shop.message("c1", "review_request", AS_OF - timedelta(days=1), order_id="o1")
    rotated = replace(S, link_signing_key="new-key", link_signing_keys_retired=f" {KEY.decode()} ,")
    keys = verification_keys(warehouse, rotated, warn=lambda _: None)
    assert keys == [b"new-key", KEY]
    client = TestClient(create_app(warehouse, rotated, keys, clock=lambda: AS_OF), follow_redirects=False)
    assert client.get(f"/r/{_token(Purpose.REVIEW)}").status_code == 303  # signed with the retired key
    assert client.get(f"/r/{_token(Purpose.REVIEW, key=b'never-ours')}").status_code == 400
