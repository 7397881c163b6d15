"""Per-review signals the marts need and SQL cannot compute: tone (VADER), the lukewarm rule, the best quote.

Also the redaction of contact data from free text: reviews are written by customers, who sometimes leave
an email address or a phone number in them, and marts must never carry either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from smarketing_tasks.scoring.settings import ScoringSettings

# Shared with the SQL of the marts (bound as :email_pattern / :phone_pattern) and with the audit, so that
# PostgreSQL and Python redact and check the same things. Both dialects read these patterns alike.
EMAIL_PATTERN = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+"
# nine or more digits, optionally after '+' or '(', with spaces, dots, dashes or brackets between them
PHONE_PATTERN = r"\+?\(?[0-9]([ ().-]*[0-9]){8,}"
_EMAIL = re.compile(EMAIL_PATTERN)
_PHONE = re.compile(PHONE_PATTERN)
_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)

_WORD = re.compile(r"[a-z']+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_CLAUSE_END = re.compile(r"[,;:()]\s*|\s+[-–—]\s+")
_PLACEHOLDER = re.compile(r"\[(email|phone|link)\]")


@dataclass(frozen=True)
class ReviewSignals:
    review_id: str
    sentiment: float | None  # VADER compound of title + body, -1..1; None without text
    is_lukewarm: bool
    quote: str | None  # best short quote (redacted), None when nothing fits
    quote_sentiment: float | None
    title_redacted: str | None


@cache
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def tone(text: str) -> float:
    return float(_analyzer().polarity_scores(text)["compound"])


def redact(text: str | None) -> str | None:
    """Replace email addresses, phone numbers and links by placeholders."""
    if text is None:
        return None
    text = _EMAIL.sub("[email]", text)
    text = _URL.sub("[link]", text)
    return _PHONE.sub("[phone]", text)


def is_lukewarm(rating: int, text: str, sentiment: float | None) -> bool:
    """The lukewarm rule for one review, with scoring's thresholds and faint-words test (seed 004: 'good').

    3-4 stars with neutral, faint or no words are lukewarm; 5 stars with faint words ('Good.', 'ok') are too;
    1-2 stars are detractors, not lukewarm. Same rule as smarketing_tasks.scoring applies per customer.
    """
    from smarketing_tasks.scoring.text import is_faint

    rules = ScoringSettings().text_rules()
    if rating <= 2:
        return False
    faint = bool(text.strip()) and sentiment is not None and is_faint(
        text, sentiment, rules.short_words, rules.strong_compound, rules.negative_compound)
    if rating >= 5:
        return faint
    return sentiment is None or sentiment < rules.strong_compound or faint


def best_quote(title: str | None, body: str | None, max_chars: int) -> tuple[str | None, float | None]:
    """The most positive sentence of the review that fits ``max_chars``, with its tone.

    Candidates are the sentences of body and title (the title is often the punchiest line); a sentence
    that is too long or holds a redacted contact detail is cut into its clauses, and clauses with a
    placeholder are dropped, so a quote never reads 'call [phone]'. Fewer than three words say too little
    to sell. When nothing fits, the first sentence is cut at a word boundary with an ellipsis.
    """
    sentences = []
    for part in (body, title):
        if part:
            sentences += [" ".join(s.split()) for s in _SENTENCE_END.split(redact(part) or "")]
    candidates = []
    for sentence in sentences:
        pieces = [sentence]
        if len(sentence) > max_chars or _PLACEHOLDER.search(sentence):
            pieces = [p.strip() for p in _CLAUSE_END.split(sentence)]
        candidates += [p for p in pieces if len(_WORD.findall(p.lower())) >= 3 and not _PLACEHOLDER.search(p)]
    fitting = [c for c in candidates if len(c) <= max_chars]
    if fitting:
        score, _, quote = max((tone(c), -abs(len(c) - max_chars // 2), c) for c in fitting)
        return quote, score
    if not candidates:
        return None, None
    cut = candidates[0][: max_chars - 1].rsplit(" ", 1)[0].rstrip(",;:-") + "…"
    return cut, tone(cut)


def review_signals(rows: Iterable[tuple], quote_max_chars: int) -> list[ReviewSignals]:
    """Signals for ``(review_id, rating, title, body, wants_quote)`` rows; quotes only where wanted."""
    out = []
    for review_id, rating, title, body, wants_quote in rows:
        text = " ".join(p for p in (title, body) if p).strip()
        sentiment = tone(text) if text else None
        quote, quote_sentiment = best_quote(title, body, quote_max_chars) if wants_quote else (None, None)
        out.append(ReviewSignals(review_id=review_id, sentiment=sentiment,
                                 is_lukewarm=is_lukewarm(int(rating), text, sentiment),
                                 quote=quote, quote_sentiment=quote_sentiment, title_redacted=redact(title)))
    return out
