"""The demo's customer simulator: reads a real Maildir, answers deterministically, and ingestion picks it up."""

from __future__ import annotations

import mailbox
from datetime import timedelta
from email.message import EmailMessage

import pytest
import sqlalchemy as sa

from smarketing_tasks.db import make_engine
from smarketing_tasks.demo_shop import write_shop
from smarketing_tasks.ingest import ingest_dataset
from smarketing_tasks.responses import ResponseSqlSource, ingest_responses, redeem_referrals
from smarketing_tasks.simulator import SimulatorSettings, read_mailbox, satisfaction, simulate_customers
from smarketing_tasks.sources import ReferenceSqlSource
from smarketing_tasks.tokens import Purpose
from tests.smarketing_tasks.responses.helpers import (
    KEY,
    T0,
    add_customer,
    add_order,
    add_sent_message,
    token,
)

pytestmark = pytest.mark.integration
CUSTOMERS = 240
SHOP_TABLES = ("reviews", "social_posts", "email_events", "customers", "orders", "order_items")


def _email(message_id: str, kind: str, customer_id: str, body: str) -> bytes:
    message = EmailMessage()
    message["Message-ID"] = f"<{message_id}@smarketing.local>"
    message["X-Smarketing-Message-Id"] = message_id
    message["X-Smarketing-Kind"] = kind
    message["X-Smarketing-Customer-Id"] = customer_id
    message["Subject"] = "How was your order?"
    message.set_content(body)
    return message.as_bytes()


@pytest.fixture
def sent_world(warehouse, tmp_path):
    """Customers with delivered orders, a sent review request each (share asks for a third), in a Maildir."""
    box = mailbox.Maildir(str(tmp_path / "mailbox"), create=True)
    with warehouse.begin() as conn:
        for n in range(CUSTOMERS):
            customer_id = f"C{n:05d}"
            add_customer(conn, customer_id, f"c{n}@example.com")
            add_order(conn, f"O{n:05d}", customer_id, T0 - timedelta(days=10))
            request = add_sent_message(conn, customer_id, f"O{n:05d}", "review_request", T0)
            box.add(_email(request, "review_request", customer_id,
                           f"Hi,\nhow was it? http://127.0.0.1:8765/r/{token(request)}\n"
                           f"Unsubscribe: http://127.0.0.1:8765/u/{token(request, Purpose.UNSUBSCRIBE)}\n"))
            if n % 3 == 0:
                code = f"REF-{n:08d}".replace("0", "A").replace("1", "B")[:12]
                conn.execute(sa.text("insert into smarketing.referral_codes values (:c, :code, :t)"),
                             {"c": customer_id, "code": code, "t": T0 - timedelta(days=1)})
                share = add_sent_message(conn, customer_id, None, "share_ask", T0 + timedelta(hours=1))
                box.add(_email(share, "share_ask", customer_id,
                               f"Share with your code {code}: http://127.0.0.1:8765/s/{token(share, Purpose.SHARE)}\n"))
    return tmp_path / "mailbox"


def _fresh_shop(make_database):
    engine = make_engine(make_database("simshop"))
    write_shop(engine, {})
    return engine


def _shop_rows(shop):
    with shop.connect() as conn:
        return {t: sorted(tuple(map(str, r)) for r in conn.execute(sa.text(f"select * from shop.{t}")).all())
                for t in SHOP_TABLES}


def test_simulation_is_deterministic_for_a_seed_and_reruns_add_nothing(sent_world, warehouse, make_database):
    assert len(read_mailbox(sent_world)) == CUSTOMERS + CUSTOMERS // 3
    shops = [_fresh_shop(make_database) for _ in range(3)]
    first = simulate_customers(sent_world, shops[0], warehouse, start=T0)
    second = simulate_customers(sent_world, shops[1], warehouse, start=T0)
    other = simulate_customers(sent_world, shops[2], warehouse, start=T0, settings=SimulatorSettings(seed=99))
    assert first.as_dict() == second.as_dict() and _shop_rows(shops[0]) == _shop_rows(shops[1])
    assert _shop_rows(shops[0]) != _shop_rows(shops[2]) and other.messages == first.messages
    # Feelings spread from angry to glowing; every kind of behaviour shows up in a few hundred customers.
    for action in ("reviews_glowing", "reviews_lukewarm", "reviews_angry", "social_posts", "referred_friends",
                   "unsubscribed", "bounced", "opened"):
        assert first.actions[action] > 0, action
    assert first.acted_until <= T0 + timedelta(hours=1) + SimulatorSettings().horizon
    rerun = simulate_customers(sent_world, shops[0], warehouse, start=T0)
    assert rerun.as_dict()["rows_reviews"] == 0 and _shop_rows(shops[0]) == _shop_rows(shops[1])
    with shops[0].connect() as conn:
        lukewarm = conn.execute(sa.text("select count(*) from shop.reviews where body in ('Good.', 'Ok.', 'Fine.')")).scalar()
    assert lukewarm > 0
    for shop in shops:
        shop.dispose()


def test_satisfaction_is_hidden_but_fixed():
    values = [satisfaction(7, f"C{n}") for n in range(2000)]
    assert values == [satisfaction(7, f"C{n}") for n in range(2000)]
    assert 0 <= min(values) < 0.2 and 0.9 < max(values) <= 1
    assert sum(v >= 0.5 for v in values) > sum(v < 0.5 for v in values)  # most customers are content


def test_responses_flow_back_in_attributed(sent_world, warehouse, shop_url):
    shop = make_engine(shop_url)
    report = simulate_customers(sent_world, shop, warehouse, start=T0)
    until = report.acted_until
    source = ReferenceSqlSource(shop)
    for dataset in ("customers", "orders", "order_items"):  # the friends' orders
        ingest_dataset(source, dataset, warehouse, until=until, run_id="sim")
    results = {d: ingest_responses(ResponseSqlSource(shop), d, warehouse, until=until, run_id="sim", keys=[KEY])
               for d in ("reviews", "social_posts", "email_events")}
    redeem_referrals(warehouse, until=until, run_id="sim")
    with warehouse.connect() as conn:
        attribution = dict(conn.execute(sa.text(
            "select attribution, count(*) from smarketing.reviews group by 1")).all())
        posts = conn.execute(sa.text("select count(*) from smarketing.social_posts where message_id is not null")).scalar()
        suppressed = dict(conn.execute(sa.text("select reason, count(*) from smarketing.suppressions group by 1")).all())
        referrals = conn.execute(sa.text("select count(*) from smarketing.referrals where message_id is not null")).scalar()
        self_referrals = conn.execute(sa.text(
            "select count(*) from smarketing.quarantine where dataset = 'referrals' and rule = 'self_referral'")).scalar()
    assert all(r.rows_quarantined == 0 for r in results.values())
    reviews = sum(report.actions[f"reviews_{b}"] for b in ("glowing", "lukewarm", "angry"))
    assert attribution.get("token", 0) + attribution.get("window", 0) == reviews and attribution["token"] > 0
    assert attribution["window"] > 0 and "none" not in attribution
    assert posts == report.actions["social_posts"]
    assert suppressed["hard_bounce"] == report.actions["bounced"]
    assert suppressed["unsubscribe"] == report.actions["unsubscribed"]
    assert referrals == report.actions["referred_friends"]
    assert self_referrals == report.actions["self_referral_attempts"]
    shop.dispose()


def test_empty_or_missing_mailbox_is_a_clean_no_op(warehouse, shop_url, tmp_path):
    shop = make_engine(shop_url)
    report = simulate_customers(tmp_path / "no-mailbox", shop, warehouse, start=T0)
    assert (report.messages, sum(report.actions.values()), report.acted_until) == (0, 0, None)
    assert all(not rows for rows in _shop_rows(shop).values())
    shop.dispose()


@pytest.mark.slow
def test_real_outreach_emails_drive_the_simulation(warehouse, shop_url, tmp_path):
    """Outreach plans and renders real emails into a Maildir sink; customers answer; the answers attribute."""
    from datetime import UTC, datetime

    from smarketing_tasks.demo_shop import ShopSpec, generate
    from smarketing_tasks.outreach import OutreachSettings, plan_outreach, send_outreach
    from smarketing_tasks.responses import signing_keys
    from smarketing_tasks.responses.settings import ResponsesSettings

    end = datetime(2026, 11, 22, tzinfo=UTC)
    shop = make_engine(shop_url)
    write_shop(shop, generate(ShopSpec(customers=400, days=60, end=end, seed=3)))
    for dataset in ("customers", "orders", "order_items"):
        ingest_dataset(ReferenceSqlSource(shop), dataset, warehouse, until=end, run_id="ingest")
    # Created up front: the sink's sending threads each create the Maildir and can race on a fresh folder.
    mailbox.Maildir(str(tmp_path / "mailbox"), create=True)
    outreach = OutreachSettings(email_transport="sink", sink_dir=str(tmp_path / "mailbox"))
    plan_outreach(warehouse, end, outreach, run_id="plan")
    # Sent "now" by a fixed clock, as the demo's sender would on the day.
    send_outreach(warehouse, end, outreach, None, clock=lambda: end + timedelta(hours=1), worker="test",
                  channels=["email"], warn=lambda _: None)
    received = read_mailbox(tmp_path / "mailbox")
    assert received and {m.kind for m in received} <= {"review_request", "review_reminder", "share_ask"}

    report = simulate_customers(tmp_path / "mailbox", shop, warehouse, start=end)
    keys = signing_keys(warehouse, ResponsesSettings(), warn=lambda _: None)
    ingest_responses(ResponseSqlSource(shop), "reviews", warehouse, until=report.acted_until, run_id="r", keys=keys)
    with warehouse.connect() as conn:
        by = dict(conn.execute(sa.text("select attribution, count(*) from smarketing.reviews group by 1")).all())
    assert by.get("token", 0) > 0 and "none" not in by
    assert sum(by.values()) == sum(report.actions[f"reviews_{b}"] for b in ("glowing", "lukewarm", "angry"))
    shop.dispose()


def test_mailbox_holds_emails_and_sms_the_sink_kept(tmp_path):
    import json

    box = mailbox.Maildir(str(tmp_path / "mb"), create=True)
    box.add(_email("a" * 32, "review_request", "C1", "http://x/r/abc.def"))
    box.add(b"Subject: not ours\n\nhello")  # mail without our headers is ignored
    (tmp_path / "mb" / "new" / f"{'b' * 32}.sms.json").write_text(json.dumps(
        {"message_id": "b" * 32, "kind": "review_request", "channel": "sms", "customer_id": "C2", "to": "+4915",
         "text": "Shop: http://x/r/ghi.jkl Reply STOP to opt out."}))
    (tmp_path / "mb" / "new" / "broken.json").write_text("{not json")
    received = read_mailbox(tmp_path / "mb")
    assert [(m.message_id[0], m.channel, m.customer_id) for m in received] == [("a", "email", "C1"), ("b", "sms", "C2")]
    assert "/r/abc.def" in received[0].text and "/r/ghi.jkl" in received[1].text
