"""The per-review signals: the lukewarm rule, the best short quote, and redaction of contact data."""

from __future__ import annotations

import re

import pytest

from smarketing_tasks.marts.review_signals import (
    EMAIL_PATTERN,
    PHONE_PATTERN,
    PHONE_PRESENCE,
    best_quote,
    is_lukewarm,
    redact,
    review_signals,
    tone,
)


@pytest.mark.parametrize(("rating", "text", "lukewarm"), [
    (5, "good", True),  # seed 004: 'good' is the dangerous word, even with five stars
    (4, "Ok.", True),
    (4, "not bad", True),
    (3, "", True),
    (4, "It was okay I guess", True),  # 3-4 stars, neutral words
    (4, "Great product, fast delivery!", False),
    (5, "Love it", False),
    (5, "Arrived on time and does what it says.", False),
    (2, "fine", False),  # low ratings are detractors, not passives
])
def test_the_lukewarm_rule(rating, text, lukewarm):
    assert is_lukewarm(rating, text, tone(text) if text else None) is lukewarm


def test_redaction_removes_emails_phones_and_links_but_keeps_dates():
    text = "Mail jane.doe+shop@example.co.uk, call +44 20 7946 0958 or (030) 123-45678, see https://x.example/a?b=1"
    redacted = redact(text + " on 2026-11-02")
    assert redacted == "Mail [email], call [phone] or [phone], see [link] on 2026-11-02"
    assert not re.search(EMAIL_PATTERN, redacted) and not re.search(PHONE_PATTERN, redacted)


@pytest.mark.parametrize("text", ["call +44 20 7946 0958", "1234 5678", "12345678.9", "(030) 123-45678",
                                  "1 2 3 4 5 6 7 8 9", "5 orders, 1,234,567,890 spent", "+((0) 12 34 56 78 9", ""])
def test_the_phone_presence_pattern_finds_a_phone_exactly_where_the_phone_pattern_does(text):
    assert bool(re.search(PHONE_PRESENCE, text)) is bool(re.search(PHONE_PATTERN, text))


def test_the_best_quote_is_the_most_positive_sentence_that_fits():
    quote, score = best_quote("Fine", "Ordered in May. The lamp is beautiful and the light is warm. Shipping was slow.",
                              80)
    assert quote == "The lamp is beautiful and the light is warm."
    assert score == pytest.approx(tone(quote)) and score > 0


def test_a_long_review_is_quoted_by_a_clause_or_cut_at_a_word():
    long_sentence = "Absolutely wonderful coat, " + "with many pockets and a hood and a lining " * 5
    quote, _ = best_quote(None, long_sentence, 40)
    assert quote == "Absolutely wonderful coat"
    cut, _ = best_quote(None, "word " * 60, 40)
    assert cut.endswith("…") and len(cut) <= 40 and " wor…" not in cut


def test_quotes_never_carry_a_placeholder_and_need_three_words():
    assert best_quote(None, "Great! Call 0171 2345 6789.", 100) == (None, None)
    signals = review_signals([("r1", 5, None, "Love it. Mail a@b.example", True),
                              ("r2", 4, "Meh", "good", False)], 160)
    assert signals[0].quote is None  # two words, then 'Mail [email]'
    assert signals[1].quote is None and signals[1].is_lukewarm and signals[1].title_redacted == "Meh"


def test_only_english_text_gets_a_tone_and_short_english_is_recognised():
    from smarketing_tasks.marts.review_signals import SignalRules

    signals = review_signals([("de", 4, None, "Gute Qualität, schnelle Lieferung, gerne wieder.", True, "de"),
                              ("en", 5, None, "Good.", True, None),  # too short for the detectors: English by words
                              ("none", 3, None, None, False, None)], rules=SignalRules())
    german, short, empty = signals
    assert (german.language, german.sentiment, german.is_lukewarm) == ("de", None, True)  # the stars decide
    assert short.language == "en" and short.sentiment == pytest.approx(tone("Good.")) and short.is_lukewarm
    assert (empty.language, empty.sentiment, empty.is_lukewarm) == (None, None, True)


def _insert_review(conn, review_id: str, customer_id: str, rating: int, body: str | None, *, consent=True,
                   language: str | None = "en") -> None:
    import sqlalchemy as sa

    conn.execute(sa.text(
        """insert into smarketing.reviews (review_id, customer_id, rating, body, consent_to_publish, language,
                  created_at, source)
           values (:r, :c, :g, :b, :k, :l, '2026-11-10 10:00+00', 'test')
           on conflict (review_id) do update set rating = excluded.rating, body = excluded.body"""),
        {"r": review_id, "c": customer_id, "g": rating, "b": body, "k": consent, "l": language})


def _signals(engine) -> dict:
    import sqlalchemy as sa

    with engine.connect() as conn:
        return {r.review_id: r for r in conn.execute(sa.text("select * from smarketing.review_signals"))}


def test_signals_are_computed_once_and_again_only_for_a_changed_review_or_rule(warehouse):
    from smarketing_tasks.marts.review_signals import SignalRules, refresh_review_signals

    with warehouse.begin() as conn:
        _insert_review(conn, "r1", "c1", 5, "The lamp is beautiful and the light is warm.")
        _insert_review(conn, "r2", "c2", 4, "good")
        assert refresh_review_signals(conn) == 2
    first = _signals(warehouse)
    assert first["r1"].sentiment > 0.5 and first["r1"].quote == "The lamp is beautiful and the light is warm."
    assert first["r2"].is_lukewarm and first["r2"].quote is None  # two letters: nothing to quote
    with warehouse.begin() as conn:
        assert refresh_review_signals(conn) == 0  # nothing changed: nothing recomputed
        _insert_review(conn, "r2", "c2", 2, "Broke after a week, very disappointed.")
        assert refresh_review_signals(conn) == 1
    second = _signals(warehouse)
    assert second["r1"].computed_at == first["r1"].computed_at and second["r1"].content_hash == first["r1"].content_hash
    assert second["r2"].sentiment < 0 and not second["r2"].is_lukewarm and second["r2"].content_hash != first["r2"].content_hash
    with warehouse.begin() as conn:
        assert refresh_review_signals(conn, SignalRules(quote_max_chars=20)) == 2  # a new rule: all again
    assert _signals(warehouse)["r1"].quote.endswith("…")


def test_loading_reviews_computes_their_signals_in_the_same_transaction_and_a_rerun_none(warehouse):
    """The responses stage fills the signals of what it loads (scoring reads them before any mart build)."""
    from smarketing_tasks.marts.review_signals import SignalRules, refresh_review_signals

    with warehouse.begin() as conn:
        _insert_review(conn, "r1", "c1", 5, "Love it, the fabric is soft and warm.")
        _insert_review(conn, "r2", "c2", 3, "Fine.")
        conn.exec_driver_sql("create temporary table stage_reviews (review_id text) on commit drop")
        conn.exec_driver_sql("insert into stage_reviews values ('r1')")
        assert refresh_review_signals(conn, SignalRules(), review_ids_from="stage_reviews") == 1
    assert set(_signals(warehouse)) == {"r1"}  # only the staged review


def test_erasure_removes_the_persons_review_signals(warehouse):
    from datetime import UTC, datetime

    from smarketing_tasks.marts.review_signals import refresh_review_signals
    from smarketing_tasks.privacy import erase_customer

    with warehouse.begin() as conn:
        _insert_review(conn, "r1", "c1", 5, "Love it, the fabric is soft and warm.")
        _insert_review(conn, "r2", "c2", 4, "Great quality, fast delivery.")
        refresh_review_signals(conn)
    result = erase_customer(warehouse, requested_at=datetime(2026, 11, 22, tzinfo=UTC), customer_id="c1")
    assert result.rows_deleted["smarketing.review_signals"] == 1
    assert set(_signals(warehouse)) == {"r2"}


def test_repeated_reviews_get_the_signals_each_would_get_alone():
    """Reviews identical in stars, text, quote wish and language share one computation, never a wrong answer."""
    rows = [("a", 5, None, "Good.", True), ("b", 5, None, "Good.", True), ("c", 3, None, "Good.", True),
            ("d", 5, None, "Good.", False), ("e", 5, "Nice", "Good.", True), ("f", 5, None, "Good.", True, "en"),
            ("g", 4, None, "Gute Qualität, schnelle Lieferung, gerne wieder.", True, "de"),
            ("h", 4, None, "Gute Qualität, schnelle Lieferung, gerne wieder.", True),
            ("i", 5, "Love it", "Call me on +49 170 1234567. Best tee I own, honestly.", True),
            ("j", 5, "Love it", "Call me on +49 170 1234567. Best tee I own, honestly.", True)]
    together = review_signals(rows)
    assert together == [review_signals([row])[0] for row in rows]
    assert [s.review_id for s in together] == list("abcdefghij")


def test_a_large_batch_judged_in_forked_processes_equals_one_process(monkeypatch):
    """Above the size threshold the distinct reviews are judged in forked processes; every review (repeats, other
    languages, quotes wanted or not) gets exactly what one process gives, in the batch's order."""
    from smarketing_tasks.scoring import text

    bodies = ["Good.", "Great quality, fast delivery! Will order again.", "The seams came loose after a week",
              "Gute Qualität, schnelle Lieferung, gerne wieder.", "Call me on +49 170 1234567. Best tee I own.", ""]
    rows = [(f"r{n}", 1 + n % 5, "Nice" if n % 7 == 0 else None, f"{bodies[n % 6]} {n // 12}" if n % 4 else bodies[n % 6],
             n % 3 > 0, "de" if n % 6 == 3 and n % 2 else None) for n in range(600)]
    pools: list[int] = []
    real_in_processes = text.in_processes

    def counting(work, items, processes):
        pools.append(len(items))
        return real_in_processes(work, items, processes)

    alone = review_signals(rows)
    monkeypatch.setattr(text, "PARALLEL_MIN_TEXTS", 50)
    monkeypatch.setattr(text, "in_processes", counting)
    parallel = review_signals(rows, processes=2)
    assert len(pools) == 1 and 50 <= pools[0] < len(rows)  # the pool ran, once per distinct review
    assert parallel == alone
    assert [s.review_id for s in parallel] == [row[0] for row in rows]
