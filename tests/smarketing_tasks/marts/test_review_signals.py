"""The per-review signals: the lukewarm rule, the best short quote, and redaction of contact data."""

from __future__ import annotations

import re

import pytest

from smarketing_tasks.marts.review_signals import (
    EMAIL_PATTERN,
    PHONE_PATTERN,
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
