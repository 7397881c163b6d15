"""Social posts and email/SMS events on a real PostgreSQL: attribution, suppression at once, reruns."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.responses import ResponseSqlSource, ResponsesSettings, ingest_responses
from smarketing_tasks.tokens import Purpose
from tests.smarketing_tasks.responses.helpers import (
    KEY,
    T0,
    add_customer,
    add_order,
    add_sent_message,
    shop_insert,
    snapshot,
    token,
)

pytestmark = pytest.mark.integration
UNTIL = T0 + timedelta(days=20)


def _ingest(shop, warehouse, dataset, until=UNTIL, run_id="run-1"):
    return ingest_responses(ResponseSqlSource(shop), dataset, warehouse, until=until, run_id=run_id,
                            settings=ResponsesSettings(), keys=[KEY])


def _rows(warehouse, sql):
    with warehouse.connect() as conn:
        return conn.execute(sa.text(sql)).all()


def test_posts_attributed_by_link_token_then_referral_code_window(shop, warehouse):
    with warehouse.begin() as conn:
        add_customer(conn, "C1")
        add_customer(conn, "C2")
        share1 = add_sent_message(conn, "C1", None, "share_ask", T0)
        share2 = add_sent_message(conn, "C2", None, "share_ask", T0)
        conn.execute(sa.text("insert into smarketing.referral_codes values ('C2', 'REF-AAAABBBB', :t)"), {"t": T0})
    with shop.begin() as conn:
        shop_insert(conn, "social_posts", post_id="P-link", platform="Instagram", author_handle="@anna",
                    body=f"Loving my tee! http://127.0.0.1:8765/s/{token(share1, Purpose.SHARE)}", followers=1200,
                    url="https://instagram.com/p/1", posted_at=T0 + timedelta(days=1))
        shop_insert(conn, "social_posts", post_id="P-code", platform="tiktok", author_handle="@ben",
                    body="Use my code ref-aaaabbbb for 10% off", referral_code="ref-aaaabbbb", followers=90,
                    url="https://tiktok.com/@ben/1", posted_at=T0 + timedelta(days=2))
        shop_insert(conn, "social_posts", post_id="P-mention", platform="x", author_handle="@stranger",
                    body="Saw their ad today", followers=5, posted_at=T0 + timedelta(days=2))
    result = _ingest(shop, warehouse, "social_posts")
    assert (result.rows_read, result.rows_quarantined) == (3, 0)
    posts = {r.post_id: r for r in _rows(warehouse, "select * from smarketing.social_posts")}
    assert (posts["P-link"].customer_id, posts["P-link"].message_id, posts["P-link"].attribution) == (
        "C1", share1, "token")
    assert (posts["P-code"].customer_id, posts["P-code"].referral_code, posts["P-code"].message_id,
            posts["P-code"].attribution) == ("C2", "REF-AAAABBBB", share2, "window")
    assert (posts["P-mention"].customer_id, posts["P-mention"].attribution) == (None, "none")
    assert posts["P-link"].platform == "instagram"


def test_opt_outs_suppress_at_once_and_others_are_attributed(shop, warehouse):
    with warehouse.begin() as conn:
        add_customer(conn, "C1", "Anna@Example.com")
        add_customer(conn, "C2", "ben@example.com")
        add_customer(conn, "C3", "cara@example.com")
        add_customer(conn, "C4", "dan@example.com", phone="+49 151 1234567")
        add_order(conn, "O1", "C1", T0 - timedelta(days=9))
        request = add_sent_message(conn, "C1", "O1", "review_request", T0)
    events = [
        ("E1", "anna@example.com", "open", None, T0 + timedelta(hours=1)),
        ("E2", "ANNA@example.com", "unsubscribe", None, T0 + timedelta(hours=2)),
        ("E3", "ben@example.com", "bounce", "soft", T0 + timedelta(hours=1)),
        ("E4", "ben@example.com", "bounce", "hard", T0 + timedelta(hours=3)),
        ("E5", "cara@example.com", "spam_complaint", None, T0 + timedelta(hours=1)),
        ("E6", "ghost@example.com", "unsubscribe", None, T0 + timedelta(hours=1)),
        ("E7", "ghost@example.com", "click", None, T0 + timedelta(hours=1)),
        ("E8", "x@example.com", "bounce", None, T0 + timedelta(hours=1)),
    ]
    with shop.begin() as conn:
        for event_id, email, kind, bounce, at in events:
            shop_insert(conn, "email_events", event_id=event_id, email=email, event_type=kind, occurred_at=at,
                        bounce_type=bounce)
        shop_insert(conn, "email_events", event_id="S1", email=None, phone="+491511234567", channel="sms",
                    event_type="STOP", occurred_at=T0 + timedelta(hours=4))
    result = _ingest(shop, warehouse, "email_events")
    suppressions = {r.email: (r.customer_id, r.reason) for r in _rows(
        warehouse, "select email, customer_id, reason from smarketing.suppressions")}
    assert suppressions == {
        "anna@example.com": ("C1", "unsubscribe"),
        "ben@example.com": ("C2", "hard_bounce"),
        "cara@example.com": ("C3", "complaint"),
        "ghost@example.com": (None, "unsubscribe"),  # an opt-out is honoured even for an address we don't know
        "x@example.com": (None, "hard_bounce"),  # a bounce without a type counts as hard (the safe side)
        "dan@example.com": ("C4", "unsubscribe"),  # SMS STOP, resolved by phone to the customer's address
    }
    assert result.rows_quarantined == 1
    assert _rows(warehouse, "select record_key, rule from smarketing.quarantine") == [("E7", "unknown_email")]
    attributed = dict(_rows(warehouse, "select event_id, message_id from smarketing.email_events"))
    assert attributed["E1"] == request and attributed["E2"] == request
    before = snapshot(warehouse)
    again = _ingest(shop, warehouse, "email_events")
    assert again.rows_loaded == 0 and snapshot(warehouse) == before


def test_earliest_opt_out_wins_whatever_order_events_arrive(shop, warehouse):
    with warehouse.begin() as conn:
        add_customer(conn, "C1", "anna@example.com")
    with shop.begin() as conn:
        shop_insert(conn, "email_events", event_id="late", email="anna@example.com", event_type="complaint",
                    occurred_at=T0 + timedelta(days=5))
    _ingest(shop, warehouse, "email_events", until=T0 + timedelta(days=6))
    with shop.begin() as conn:  # an earlier unsubscribe delivered late by the ESP
        shop_insert(conn, "email_events", event_id="early", email="anna@example.com", event_type="unsubscribe",
                    occurred_at=T0 + timedelta(days=5, hours=-2))
    _ingest(shop, warehouse, "email_events", until=T0 + timedelta(days=7), run_id="run-2")
    assert _rows(warehouse, "select reason, suppressed_at from smarketing.suppressions") == [
        ("unsubscribe", T0 + timedelta(days=5, hours=-2))]


def test_suppression_is_honoured_by_the_very_next_outreach_planning(shop, warehouse):
    """Unsubscribe at 10:00 → the responses run → the next planning run skips the customer as suppressed."""
    outreach = pytest.importorskip("smarketing_tasks.outreach")
    with warehouse.begin() as conn:
        for customer_id, email in (("C1", "anna@example.com"), ("C2", "ben@example.com")):
            add_customer(conn, customer_id, email)
            add_order(conn, f"O-{customer_id}", customer_id, T0 - timedelta(days=12))
    with shop.begin() as conn:
        shop_insert(conn, "email_events", event_id="E1", email="anna@example.com", event_type="unsubscribe",
                    occurred_at=T0 - timedelta(hours=1))
    _ingest(shop, warehouse, "email_events", until=T0)

    outreach.plan_outreach(warehouse, T0, outreach.OutreachSettings(), run_id="next")
    planned = {r.customer_id: (r.status, r.status_reason) for r in _rows(
        warehouse, "select customer_id, status, status_reason from smarketing.outreach_messages "
                   "where kind = 'review_request'")}
    assert planned["C2"][0] == "planned"
    assert planned["C1"][0] == "skipped" and "suppressed" in planned["C1"][1]


def test_concurrent_runs_do_not_collide(shop, warehouse):
    """A backfill and the hourly run over the same rows at once: no error, no duplicate, same end state."""
    from concurrent.futures import ThreadPoolExecutor

    with warehouse.begin() as conn:
        for n in range(40):
            add_customer(conn, f"C{n}", f"c{n}@example.com")
    with shop.begin() as conn:
        for n in range(40):
            kind = ("open", "unsubscribe", "bounce", "complaint")[n % 4]
            shop_insert(conn, "email_events", event_id=f"E{n}", email=f"c{n % 20}@example.com", event_type=kind,
                        occurred_at=T0 + timedelta(minutes=n))
            shop_insert(conn, "social_posts", post_id=f"P{n}", platform="x", customer_id=f"C{n}", followers=n,
                        posted_at=T0 + timedelta(minutes=n))
    settings = ResponsesSettings(responses_batch_rows=7)

    def run(run_id: str) -> None:
        for dataset in ("email_events", "social_posts"):
            ingest_responses(ResponseSqlSource(shop), dataset, warehouse, until=UNTIL, run_id=run_id,
                             settings=settings, keys=[KEY])

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(run, ["a", "b", "c"]))
    after_concurrent = snapshot(warehouse)
    assert len(after_concurrent["email_events"]) == 40 and len(after_concurrent["social_posts"]) == 40
    assert len(after_concurrent["suppressions"]) == 15
    run("d")
    assert snapshot(warehouse) == after_concurrent


def test_loaded_posts_get_their_text_signals_and_a_first_score_run_analyses_no_text(shop, warehouse, monkeypatch):
    """Posts leave the responses stage with the language and sentiment of each distinct text stored (keyed by
    the md5 of the stripped text): scoring's first full run then reads them and analyses nothing, and a rerun
    of the load computes none again."""
    from smarketing_tasks.scoring import ScoringSettings, text
    from smarketing_tasks.scoring.pipeline import run_all
    from smarketing_tasks.scoring.text_store import text_md5

    bodies = {"P1": "Best tee ever, I love it!", "P2": "Best tee ever, I love it!",
              "P3": "Ein wunderbares Geschenk für meine Schwester, sie trägt es jeden Tag.", "P4": "meh, it's ok"}
    with warehouse.begin() as conn:
        for n in range(1, len(bodies) + 1):
            add_customer(conn, f"C{n}")
            add_order(conn, f"O{n}", f"C{n}", T0)
    with shop.begin() as conn:
        for n, (post_id, body) in enumerate(bodies.items(), start=1):
            shop_insert(conn, "social_posts", post_id=post_id, platform="x", customer_id=f"C{n}", body=body,
                        followers=10 * n, posted_at=T0 + timedelta(days=1))
    assert _ingest(shop, warehouse, "social_posts").rows_loaded == 4
    stored = {r.text_md5: (r.language, r.sentiment) for r in
              _rows(warehouse, "select text_md5, language, sentiment from smarketing.text_signals")}
    distinct = sorted(set(bodies.values()))
    assert stored == {text_md5(t): s for t, s in zip(distinct, text.text_signals(distinct), strict=True)}
    assert stored[text_md5(bodies["P1"])][0] == "en" and stored[text_md5(bodies["P1"])][1] > 0.5
    assert stored[text_md5(bodies["P3"])] == ("de", None)  # not English: no sentiment, never guessed

    def not_again(*_args, **_kwargs):
        raise AssertionError("a text with a stored signal was analysed again")

    with monkeypatch.context() as patch:
        patch.setattr(text, "detect_language", not_again)
        patch.setattr(text, "_analyzer", not_again)
        assert _ingest(shop, warehouse, "social_posts", run_id="run-2").rows_loaded == 0
        summary = run_all(warehouse, UNTIL, ScoringSettings(partitions=2), say=lambda _: None)
    assert summary["mode"] == "full" and summary["customers"] == 4
    scores = {r.customer_id: r for r in _rows(warehouse, "select * from smarketing.advocate_scores")}
    assert set(scores) == {"C1", "C2", "C3", "C4"}


def test_a_batch_analysed_in_forked_processes_loads_inside_its_transaction(shop, warehouse, monkeypatch):
    """The pool forks while the batch's transaction is open: the children never touch the connection, so the
    load commits, and the stored signals are the ones one process computes."""
    from smarketing_tasks.scoring import text
    from smarketing_tasks.scoring.text_store import text_md5

    bodies = [f"Post number {n}: the mug is lovely and arrived quickly" for n in range(6)] + [
        "Das Paket kam leider beschädigt an, sehr ärgerlich.", "Best tee ever"]
    with warehouse.begin() as conn:
        add_customer(conn, "C1")
    with shop.begin() as conn:
        for n, body in enumerate(bodies):
            shop_insert(conn, "social_posts", post_id=f"P{n}", platform="x", customer_id="C1", body=body,
                        followers=n, posted_at=T0 + timedelta(days=1))
    pools: list[int] = []
    real_in_processes = text.in_processes
    monkeypatch.setattr(text, "PARALLEL_MIN_TEXTS", 4)
    monkeypatch.setattr(text, "in_processes", lambda work, items, processes: pools.append(processes)
                        or real_in_processes(work, items, processes))
    result = ingest_responses(ResponseSqlSource(shop), "social_posts", warehouse, until=UNTIL, run_id="run-1",
                              settings=ResponsesSettings(text_processes=2), keys=[KEY])
    assert result.rows_loaded == len(bodies) and pools == [2]
    stored = {r.text_md5: (r.language, r.sentiment) for r in
              _rows(warehouse, "select text_md5, language, sentiment from smarketing.text_signals")}
    monkeypatch.setattr(text, "PARALLEL_MIN_TEXTS", 10_000)
    assert stored == {text_md5(t): s for t, s in zip(bodies, text.text_signals(bodies), strict=True)}
