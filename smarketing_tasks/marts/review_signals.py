"""Per-review signals the marts and scoring need and SQL cannot compute: language, tone (VADER), the lukewarm
rule, the best quote. Computed once per review and kept in ``smarketing.review_signals`` (migration 0014).

When: the responses stage refreshes the signals of each batch of reviews in the transaction that loads it,
so scoring (which runs before the marts) never sees a review without them; the marts build refreshes
whatever is still missing or stale (reviews loaded before 0014, changed settings) before it builds. A row
is stale when its ``content_hash`` (rating, title, body, consent, language) or its ``rules_version`` (code
version and the settings below) differs: a changed review or a changed rule is recomputed, nothing else.

Also the redaction of contact data from free text: reviews are written by customers, who sometimes leave
an email address or a phone number in them, and marts must never carry either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial

import sqlalchemy as sa

from smarketing_tasks.scoring.settings import ScoringSettings
from smarketing_tasks.scoring.text import TextRules

# Bump when the code below changes what it computes: every row is then recomputed on the next refresh.
SIGNALS_CODE_VERSION = 2

# Shared with the SQL of the marts (bound as :email_pattern / :phone_pattern) and with the audit, so that
# PostgreSQL and Python redact and check the same things. Both dialects read these patterns alike.
EMAIL_PATTERN = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+"
# nine or more digits, optionally after '+' or '(', with spaces, dots, dashes or brackets between them
PHONE_PATTERN = r"\+?\(?[0-9]([ ().-]*[0-9]){8,}"
# Text holds a PHONE_PATTERN match exactly when it holds one of this (its nine digits without the optional prefix):
# a test for SQL only (redaction prefilter, audit) that PostgreSQL evaluates ~30% faster per value.
PHONE_PRESENCE = r"[0-9](?:[ ().-]*[0-9]){8}"
_EMAIL = re.compile(EMAIL_PATTERN)
_PHONE = re.compile(PHONE_PATTERN)
_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)

_WORD = re.compile(r"[a-z']+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_CLAUSE_END = re.compile(r"[,;:()]\s*|\s+[-–—]\s+")
_PLACEHOLDER = re.compile(r"\[(email|phone|link)\]")


@dataclass(frozen=True)
class SignalRules:
    """The settings the signals depend on; part of each row's ``rules_version``."""

    quote_max_chars: int = 160  # MartSettings.quote_max_chars
    testimonial_min_rating: int = 4  # MartSettings.testimonial_min_rating: only such reviews get a quote
    text: TextRules = field(default_factory=lambda: ScoringSettings().text_rules())

    @classmethod
    def from_settings(cls, mart_settings) -> SignalRules:
        """From ``MartSettings``; the lukewarm thresholds are scoring's defaults, as the marts always used."""
        return cls(quote_max_chars=mart_settings.quote_max_chars,
                   testimonial_min_rating=mart_settings.testimonial_min_rating)

    @property
    def version(self) -> str:
        return (f"signals-{SIGNALS_CODE_VERSION};quote={self.quote_max_chars};min_rating={self.testimonial_min_rating};"
                f"short={self.text.short_words};strong={self.text.strong_compound};"
                f"negative={self.text.negative_compound}")


@dataclass(frozen=True)
class ReviewSignals:
    review_id: str
    sentiment: float | None  # VADER compound of title + body, -1..1; None without text or not English
    is_lukewarm: bool
    quote: str | None  # best short quote (redacted), None when nothing fits
    quote_sentiment: float | None
    title_redacted: str | None
    language: str | None = None  # ISO 639-1 of title + body; None when undetermined


def _analyzer():
    from smarketing_tasks.scoring.text import _analyzer as shared

    return shared()  # one VADER lexicon per process: scoring's language test reads the same one


def tone(text: str) -> float:
    return float(_analyzer().polarity_scores(text)["compound"])


def redact(text: str | None) -> str | None:
    """Replace email addresses, phone numbers and links by placeholders."""
    if text is None:
        return None
    text = _EMAIL.sub("[email]", text)
    text = _URL.sub("[link]", text)
    return _PHONE.sub("[phone]", text)


def is_lukewarm(rating: int, text: str, sentiment: float | None, rules: TextRules | None = None) -> bool:
    """The lukewarm rule for one review, with scoring's thresholds and faint-words test (seed 004: 'good').

    3-4 stars with neutral, faint or no words are lukewarm; 5 stars with faint words ('Good.', 'ok') are too;
    1-2 stars are detractors, not lukewarm. Same rule as smarketing_tasks.scoring applies per customer.
    Words we cannot read (not English: no sentiment) leave the stars to decide, as no words do.
    """
    from smarketing_tasks.scoring.text import is_faint

    rules = rules or ScoringSettings().text_rules()
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


def _language(text: str, given: str | None) -> str | None:
    """The review's language: the one loaded with it (source or detector), else scoring's fast English test,
    which knows the short texts the detectors leave undetermined ("Good.", "ok")."""
    if given:
        return given.lower()[:2]
    if not text:
        return None
    from smarketing_tasks.scoring.text import detect_language

    found = detect_language(text)
    return None if found == "und" else found[:2]


def review_signals(rows: Iterable[tuple], quote_max_chars: int | None = None,
                   rules: SignalRules | None = None, processes: int = 1) -> list[ReviewSignals]:
    """Signals for ``(review_id, rating, title, body, wants_quote[, language])`` rows; quotes only where wanted.

    Identical texts are analysed once (reviews repeat a lot: "Good.", "Great quality, fast delivery!"), and
    a review identical to an earlier one in all it is judged on (stars, title, body, quote wanted, language)
    gets that one's signals without the per-review rules running again. With ``processes`` > 1 and at least
    ``PARALLEL_MIN_TEXTS`` distinct reviews, those are judged in that many forked processes: a review's signals
    depend on the review alone, so the answers equal one process's.
    """
    from smarketing_tasks.scoring import text

    rows = list(rows)
    if processes > 1 and len(rows) >= text.PARALLEL_MIN_TEXTS:
        firsts = {_judged_on(row): row for row in reversed(rows)}  # the first row of each distinct review
        if len(firsts) >= text.PARALLEL_MIN_TEXTS:
            distinct = list(firsts.values())
            judged = text.in_processes(partial(_review_signals, quote_max_chars=quote_max_chars, rules=rules),
                                        distinct, processes)
            by_key = {_judged_on(row): signals for row, signals in zip(distinct, judged, strict=True)}
            return [_for_review(by_key[_judged_on(row)], row[0]) for row in rows]
    return _review_signals(rows, quote_max_chars, rules)


def _judged_on(row: tuple) -> tuple:
    """What a review's signals depend on: stars, title, body, quote wanted, given language."""
    return (row[1], row[2], row[3], bool(row[4]), row[5] if len(row) > 5 else None)


def _for_review(same: ReviewSignals, review_id: str) -> ReviewSignals:
    # (dataclasses.replace costs ~10 µs a review: 1 s for 100,000)
    return ReviewSignals(review_id, same.sentiment, same.is_lukewarm, same.quote, same.quote_sentiment,
                         same.title_redacted, same.language)


def _review_signals(rows: Iterable[tuple], quote_max_chars: int | None = None,
                    rules: SignalRules | None = None) -> list[ReviewSignals]:
    rules = rules or SignalRules()
    max_chars = quote_max_chars or rules.quote_max_chars
    tones: dict[tuple[str, str | None], tuple[str | None, float | None]] = {}
    quotes: dict[tuple[str | None, str | None], tuple[str | None, float | None]] = {}
    judged: dict[tuple, ReviewSignals] = {}
    out = []
    for row in rows:
        review_id, rating, title, body, wants_quote = row[:5]
        given = row[5] if len(row) > 5 else None
        same = judged.get((rating, title, body, bool(wants_quote), given))
        if same is not None:
            out.append(_for_review(same, review_id))
            continue
        text = " ".join(p for p in (title, body) if p).strip()
        key = (text, given)
        if key not in tones:
            language = _language(text, given)
            tones[key] = (language, tone(text) if text and language == "en" else None)
        language, sentiment = tones[key]
        quote, quote_sentiment = None, None
        if wants_quote:
            if (title, body) not in quotes:
                quotes[(title, body)] = best_quote(title, body, max_chars)
            quote, quote_sentiment = quotes[(title, body)]
        signals = ReviewSignals(review_id=review_id, sentiment=sentiment,
                                is_lukewarm=is_lukewarm(int(rating), text, sentiment, rules.text),
                                quote=quote, quote_sentiment=quote_sentiment, title_redacted=redact(title),
                                language=language)
        judged[(rating, title, body, bool(wants_quote), given)] = signals
        out.append(signals)
    return out


# What a row's signals are computed from; a row whose hash differs is recomputed.
CONTENT_HASH_SQL = "md5(row(r.rating, r.title, r.body, r.consent_to_publish, r.language)::text)"
_COLUMNS = ("review_id", "content_hash", "rules_version", "language", "sentiment", "is_lukewarm", "quote",
            "quote_sentiment", "title_redacted")


def refresh_review_signals(conn: sa.Connection, rules: SignalRules | None = None, *,
                           review_ids_from: str | None = None, processes: int = 1) -> int:
    """Compute and upsert the signals of reviews that have none or stale ones; returns how many.

    ``review_ids_from``: a table (a load's stage) whose ``review_id`` column limits the reviews looked at;
    without it every review is checked (a hash comparison in SQL: cheap; only stale rows reach Python).
    Runs in the caller's transaction. ``processes``: see ``review_signals``.
    """
    from smarketing_tasks.db import raw_cursor

    rules = rules or SignalRules()
    scope = f"and r.review_id in (select review_id from {review_ids_from})" if review_ids_from else ""
    stale = conn.execute(sa.text(f"""
        select r.review_id, r.rating, r.title, r.body, r.consent_to_publish and r.rating >= :min_rating,
               r.language, {CONTENT_HASH_SQL}
        from smarketing.reviews r left join smarketing.review_signals s on s.review_id = r.review_id
        where (s.review_id is null or s.content_hash <> {CONTENT_HASH_SQL} or s.rules_version <> :version)
              {scope}"""), {"min_rating": rules.testimonial_min_rating, "version": rules.version}).all()
    if not stale:
        return 0
    hashes = {row[0]: row[6] for row in stale}
    signals = review_signals([row[:6] for row in stale], rules=rules, processes=processes)
    conn.exec_driver_sql(
        "create temporary table fresh_review_signals (review_id text, content_hash text, rules_version text, "
        "language text, sentiment double precision, is_lukewarm boolean, quote text, quote_sentiment double precision, "
        "title_redacted text) on commit drop")
    with raw_cursor(conn) as cur, cur.copy(f"copy fresh_review_signals ({', '.join(_COLUMNS)}) from stdin") as copy:
        for s in signals:
            copy.write_row((s.review_id, hashes[s.review_id], rules.version, s.language, s.sentiment, s.is_lukewarm,
                            s.quote, s.quote_sentiment, s.title_redacted))
    updates = ", ".join(f"{c} = excluded.{c}" for c in (*_COLUMNS[1:], "computed_at"))
    conn.exec_driver_sql(f"""
        insert into smarketing.review_signals ({', '.join(_COLUMNS)}, computed_at)
        select {', '.join(_COLUMNS)}, now() from fresh_review_signals
        on conflict (review_id) do update set {updates}""")
    conn.exec_driver_sql("drop table fresh_review_signals")
    return len(signals)
