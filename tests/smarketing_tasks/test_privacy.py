"""Privacy operations on a real warehouse: erasure leaves nothing about the person in any table (found
from the catalog, not from a list kept in the test), touches nobody else, keeps only hashes and the
suppression; retention strips old contact data and keeps recent. Both are idempotent."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.privacy import PrivacySettings, apply_retention, erase_customer, reerase_returned

pytestmark = [pytest.mark.integration]

NOW = datetime(2026, 11, 22, tzinfo=UTC)
ALICE = {"id": "C-ALICE", "email": "Alice.Example@Mail.test", "phone": "+4915100000001", "order": "O-A1",
         "message": "a" * 32}
BOB = {"id": "C-BOB", "email": "bob@mail.test", "phone": "+4915100000002", "order": "O-B1", "message": "b" * 32}


def _code(p: dict) -> str:
    return "REF-" + hashlib.sha256(p["id"].encode()).hexdigest()[:8].upper()


def _seed_person(conn: sa.Connection, p: dict, when: datetime, referred_by: dict | None = None) -> None:
    def run(sql: str, **params) -> None:
        conn.execute(sa.text(sql), params)

    run("""insert into smarketing.customers (customer_id, country, accepts_marketing, created_at, updated_at, source)
           values (:id, 'DE', true, :t, :t, 'test')""", id=p["id"], t=when)
    run("""insert into smarketing.customer_contacts (customer_id, email, first_name, phone, updated_at)
           values (:id, :email, 'First', :phone, :t)""", id=p["id"], email=p["email"], phone=p["phone"], t=when)
    run("""insert into smarketing.orders (order_id, customer_id, ordered_at, status, delivered_at, total_amount,
                                          currency, discount_code, updated_at, source)
           values (:o, :id, :t, 'delivered', :t, 40, 'EUR', :code, :t, 'test')""",
        o=p["order"], id=p["id"], t=when, code=referred_by and _code(referred_by))
    run("insert into smarketing.order_items values (:o, 1, 'SKU-1', 'Mug', 1, 40)", o=p["order"])
    run("insert into smarketing.order_status_history values (:o, 'delivered', :t)", o=p["order"], t=when)
    run("""insert into smarketing.quarantine (dataset, source, record_key, rule, reason, raw, raw_hash)
           values ('customers', 'test', :id, 'email_format', 'bad address', cast(:raw as jsonb), :h)""",
        id=p["id"], raw=json.dumps({"customer_id": p["id"], "email": p["email"], "phone": p["phone"]}), h=p["id"])
    run("""insert into smarketing.outreach_messages (message_id, idempotency_key, customer_id, order_id, kind, channel,
                  template_variant, status, due_at, expires_at, planned_at, sent_at)
           values (:m, :k, :id, :o, 'review_request', 'email', 'a', 'sent', :t, :t, :t, :t)""",
        m=p["message"], k=f"{p['id']}:{p['order']}:review_request:1", id=p["id"], o=p["order"], t=when)
    run("""insert into smarketing.link_clicks (token_hash, message_id, purpose, customer_id, clicked_at)
           values (:h, :m, 'review', :id, :t)""", h=f"tok-{p['id']}", m=p["message"], id=p["id"], t=when)
    run("""insert into smarketing.reviews (review_id, order_id, customer_id, sku, rating, body, created_at, source,
                  message_id, attribution)
           values (:r, :o, :id, 'SKU-1', 4, 'good', :t, 'test', :m, 'token')""",
        r=f"R-{p['id']}", o=p["order"], id=p["id"], t=when, m=p["message"])
    run("""insert into smarketing.social_posts (post_id, platform, customer_id, body, posted_at, source)
           values (:s, 'instagram', :id, 'love it', :t, 'test')""", s=f"S-{p['id']}", id=p["id"], t=when)
    run("""insert into smarketing.email_events (event_id, email, customer_id, event_type, occurred_at, source)
           values (:e, :email, null, 'open', :t, 'test')""", e=f"E-{p['id']}", email=p["email"], t=when)
    run("insert into smarketing.referral_codes values (:id, :code, :t)", id=p["id"], code=_code(p), t=when)
    if referred_by:
        run("""insert into smarketing.referrals (referred_order_id, referral_code, referrer_customer_id,
                      referred_customer_id, revenue, redeemed_at)
               values (:o, :code, :ref, :id, 40, :t)""",
            o=p["order"], code=_code(referred_by), ref=referred_by["id"], id=p["id"], t=when)
    run("""insert into smarketing.advocate_scores (customer_id, score_date, advocate_score, segment, scored_at)
           values (:id, :d, 70, 'promising', :t)""", id=p["id"], d=when.date(), t=when)
    run("""insert into smarketing.follow_ups (customer_id, reason, priority, owner_team, suggested_questions,
                  created_at, updated_at)
           values (:id, 'lukewarm', 2, 'sales', 'What would make it great?', :t, :t)""", id=p["id"], t=when)
    run("""insert into smarketing.rewards values (:id, 'social_share', :code, :s, :t)""",
        id=p["id"], code=f"RW-{p['id']}", s=f"S-{p['id']}", t=when)
    run("""insert into smarketing.nps_answers (answer_id, customer_id, score, answered_at, source)
           values (:a, :id, 7, :t, 'test')""", a=f"N-{p['id']}", id=p["id"], t=when)
    run("insert into marketing.advocates_probe values (:id, 70)", id=p["id"])


@pytest.fixture
def seeded(warehouse: sa.Engine) -> sa.Engine:
    with warehouse.begin() as conn:
        # A mart as the publisher builds them (customer grain), to show the marts are swept too.
        conn.exec_driver_sql("create table marketing.advocates_probe (customer_id text primary key, score int)")
        _seed_person(conn, ALICE, NOW - timedelta(days=30))
        _seed_person(conn, BOB, NOW - timedelta(days=20), referred_by=ALICE)
        conn.execute(sa.text(
            """insert into smarketing.validation_runs (suite, dataset, run_id, batch, mode, rows_checked, rows_bad,
                      rows_quarantined, bad_share, threshold, expectations_evaluated, expectations_failed, success,
                      results, seconds)
               values ('customers', 'customers', 'r1', 'b', 'sql', 2, 1, 1, 0.5, 0.1, 1, 1, false,
                       cast(:results as jsonb), 0.1)"""),
            {"results": json.dumps([{"column": "email", "sample": [ALICE["email"], "x"]}])})
    return warehouse


def _mentions(engine: sa.Engine, needles: list[str]) -> dict[str, int]:
    """Rows of every table in both schemas whose text contains any needle (case-insensitive)."""
    found = {}
    with engine.connect() as conn:
        tables = conn.execute(sa.text(
            """select table_schema || '.' || table_name from information_schema.tables
                where table_schema in ('smarketing', 'marketing') and table_type = 'BASE TABLE'""")).scalars().all()
        for table in tables:
            hits = conn.execute(sa.text(
                f"select count(*) from {table} t where " + " or ".join(
                    f"strpos(lower(t::text), :n{i}) > 0" for i in range(len(needles)))),
                {f"n{i}": n.lower() for i, n in enumerate(needles)}).scalar_one()
            if hits:
                found[table] = hits
    return found


def test_erasure_by_email_removes_the_person_everywhere_and_only_them(seeded):
    bob_before = _mentions(seeded, [BOB["id"], BOB["email"]])
    assert len(_mentions(seeded, [ALICE["id"], ALICE["email"], ALICE["order"]])) >= 18

    result = erase_customer(seeded, requested_at=NOW, email="  ALICE.example@mail.test ", request_ref="TICKET-1")

    assert result.customers_found == 1 and result.recorded and result.suppressed == 1
    leftovers = _mentions(seeded, [ALICE["id"], ALICE["email"], ALICE["phone"], ALICE["order"], ALICE["message"]])
    # Only the suppression (address, reason erasure) may still name her.
    assert leftovers == {"smarketing.suppressions": 1}, leftovers
    with seeded.connect() as conn:
        assert conn.execute(sa.text("select reason, customer_id from smarketing.suppressions")).one() == ("erasure", None)
        record = conn.execute(sa.text("select * from smarketing.erasures")).mappings().one()
        samples = conn.execute(sa.text("select results from smarketing.validation_runs")).scalar_one()
    assert record["customer_key"] == hashlib.sha256(ALICE["id"].encode()).hexdigest()
    assert record["email_hash"] == hashlib.sha256(ALICE["email"].lower().encode()).hexdigest()
    assert record["rows_deleted"]["smarketing.orders"] == 1
    assert samples == [{"column": "email", "sample": ["[erased]", "x"]}]
    # Bob lost only what was also Alice's: the referral that credits her code.
    bob_after = _mentions(seeded, [BOB["id"], BOB["email"]])
    assert bob_after == {t: n for t, n in bob_before.items() if t != "smarketing.referrals"}
    assert result.as_dict()["rows_deleted"] == result.total_deleted and ALICE["id"] not in json.dumps(result.as_dict())


def test_erasure_rerun_changes_nothing(seeded):
    erase_customer(seeded, requested_at=NOW, customer_id=ALICE["id"], request_ref="TICKET-2")
    again = erase_customer(seeded, requested_at=NOW, customer_id=ALICE["id"], request_ref="TICKET-2")
    assert again.total_deleted == 0 and not again.recorded and again.customers_found == 0
    by_email = erase_customer(seeded, requested_at=NOW, email=BOB["email"], request_ref="TICKET-3")
    by_email_again = erase_customer(seeded, requested_at=NOW, email=BOB["email"], request_ref="TICKET-3")
    assert by_email.recorded and by_email.total_deleted > 0
    assert not by_email_again.recorded and by_email_again.total_deleted == 0
    with seeded.connect() as conn:
        assert conn.execute(sa.text("select count(*) from smarketing.erasures")).scalar_one() == 2


def test_erasure_without_suppression_and_unknown_people(seeded):
    result = erase_customer(seeded, requested_at=NOW, customer_id=ALICE["id"], keep_suppression=False)
    assert result.suppressed == 0
    assert _mentions(seeded, [ALICE["id"], ALICE["email"]]) == {}
    nobody = erase_customer(seeded, requested_at=NOW, email="nobody@mail.test")
    assert nobody.customers_found == 0 and nobody.total_deleted == 0 and nobody.suppressed == 1
    with pytest.raises(ValueError, match="customer_id or an email"):
        erase_customer(seeded, requested_at=NOW)
    with pytest.raises(ValueError, match="not an email"):
        erase_customer(seeded, requested_at=NOW, email="alice at mail")


def test_returning_customer_is_erased_again(seeded):
    erase_customer(seeded, requested_at=NOW, customer_id=ALICE["id"])
    with seeded.begin() as conn:  # the shop sends her record again
        conn.execute(sa.text("""insert into smarketing.customers (customer_id, updated_at, source)
                                values (:id, :t, 'test')"""), {"id": ALICE["id"], "t": NOW})
    assert reerase_returned(seeded, now=NOW) == 1
    assert _mentions(seeded, [ALICE["id"]]) == {}
    assert reerase_returned(seeded, now=NOW) == 0


def test_retention_strips_old_contact_data_and_keeps_recent(seeded):
    settings = PrivacySettings(contact_retention_days=25, quarantine_contact_retention_days=0)
    with seeded.begin() as conn:  # Alice's quarantined row is old; Bob's is from today
        conn.execute(sa.text("update smarketing.quarantine set quarantined_at = :t where record_key = :id"),
                     {"t": NOW - timedelta(days=40), "id": ALICE["id"]})
        conn.execute(sa.text("update smarketing.quarantine set quarantined_at = :t where record_key = :id"),
                     {"t": NOW + timedelta(hours=1), "id": BOB["id"]})

    touched = apply_retention(seeded, now=NOW, settings=settings)

    assert touched == {"contacts_deleted": 1, "email_events_stripped": 1, "quarantine_rows_stripped": 1}
    with seeded.connect() as conn:
        contacts = conn.execute(sa.text("select customer_id from smarketing.customer_contacts")).scalars().all()
        customers = conn.execute(sa.text("select count(*) from smarketing.customers")).scalar_one()
        raws = dict(conn.execute(sa.text("select record_key, raw from smarketing.quarantine")).all())
        events = dict(conn.execute(sa.text("select event_id, email from smarketing.email_events")).all())
    assert contacts == [BOB["id"]] and customers == 2, "Alice (inactive 30 days) loses contacts, keeps history"
    assert raws[ALICE["id"]] == {"customer_id": ALICE["id"]}
    assert raws[BOB["id"]]["email"] == BOB["email"]
    assert events == {f"E-{ALICE['id']}": None, f"E-{BOB['id']}": BOB["email"]}
    assert apply_retention(seeded, now=NOW, settings=settings) == {
        "contacts_deleted": 0, "email_events_stripped": 0, "quarantine_rows_stripped": 0}


def test_retention_needs_aware_time(seeded):
    with pytest.raises(ValueError):
        apply_retention(seeded, now=datetime(2026, 11, 22), settings=PrivacySettings())  # noqa: DTZ001


def test_erasure_deletes_the_stored_signals_of_the_persons_texts(seeded):
    """text_signals names no customer, but its key (md5 of the words) can be recomputed by anyone holding the
    words: the person's post texts and NPS comments lose their signal rows; others' stay."""
    from smarketing_tasks.scoring.text_store import remember_text_signals, text_md5

    alice_post, alice_comment, bob_comment = ("Alice M. here: the mug from Jane's shop is perfect!",
                                              "  Slow delivery to Berlin  ", "Great mugs, will buy again")
    with seeded.begin() as conn:
        conn.execute(sa.text("""insert into smarketing.social_posts (post_id, platform, customer_id, body, posted_at, source)
                                values ('S-A2', 'x', :id, :body, :t, 'test')"""), {"id": ALICE["id"], "body": alice_post, "t": NOW})
        conn.execute(sa.text("update smarketing.nps_answers set comment = :c where customer_id = :id"),
                     [{"c": alice_comment, "id": ALICE["id"]}, {"c": bob_comment, "id": BOB["id"]}])
        texts = conn.execute(sa.text("select body from smarketing.social_posts "
                                     "union all select comment from smarketing.nps_answers")).scalars().all()
        assert remember_text_signals(conn, texts) == 4  # 'love it' (both wrote it), Alice's two texts, Bob's comment

    result = erase_customer(seeded, requested_at=NOW, customer_id=ALICE["id"])

    assert result.rows_deleted["smarketing.text_signals"] == 3
    with seeded.connect() as conn:
        left = conn.execute(sa.text("select text_md5 from smarketing.text_signals")).scalars().all()
    assert left == [text_md5(bob_comment)]
    assert erase_customer(seeded, requested_at=NOW, customer_id=ALICE["id"]).total_deleted == 0
