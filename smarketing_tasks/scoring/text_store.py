"""``smarketing.text_signals``: the language and VADER sentiment of a post text or NPS comment, kept once per
distinct text (keyed by the md5 of the stripped text), so that scoring never analyses a text twice.

Filled where texts arrive (the responses stage, as it loads social posts) and by scoring for any text still
without a signal (rows loaded before the responses stage stored them, NPS answers written by other tools).
Nothing here names a customer: the same words from two customers are one row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import sqlalchemy as sa

from smarketing_tasks.scoring.text import SIGNAL_METHOD, text_signals

Signal = tuple[str, float | None]  # (language, VADER compound or None when not English)


def text_md5(text: str) -> str:
    """The key of a text's signal: md5 of the text as given (callers strip it first)."""
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def stripped_texts(values: Iterable) -> list[str | None]:
    """Each value stripped of surrounding white space; None for a missing or blank one (never analysed)."""
    return [(v.strip() or None) if isinstance(v, str) else None for v in values]


def signals_of(conn: sa.Connection, texts: Iterable[str], processes: int = 1) -> tuple[dict[str, Signal], dict[str, Signal]]:
    """The signal of each distinct (stripped, non-empty) text: stored ones read, the others computed now.

    Returns (signal by text, the newly computed ones by md5 for ``store_text_signals``). ``processes`` > 1
    spreads a large computation over that many forked processes (same answers, see ``text_signals``).
    """
    distinct = set(texts)
    by_hash = {text_md5(t): t for t in distinct}
    signals: dict[str, Signal] = {}
    if by_hash:
        rows = conn.execute(sa.text(
            "select text_md5, language, sentiment from smarketing.text_signals "
            "where text_md5 = any(:hashes) and method = :method"),
            {"hashes": sorted(by_hash), "method": SIGNAL_METHOD}).all()
        signals = {by_hash[row.text_md5]: (row.language, row.sentiment) for row in rows}
    missing = sorted(distinct - signals.keys())
    computed = dict(zip(missing, text_signals(missing, processes=processes), strict=True)) if missing else {}
    signals.update(computed)
    return signals, {text_md5(text): signal for text, signal in computed.items()}


def store_text_signals(conn: sa.Connection, computed: dict[str, Signal]) -> int:
    """Keep newly computed signals; returns how many were given. Writers that run at the same time (scoring
    partitions, a responses load) may store the same text: rows go in key order, so that they never wait on
    each other in a cycle, and an existing row of the same method is left as it is."""
    if not computed:
        return 0
    ordered = sorted(computed.items())
    conn.execute(sa.text("""
        insert into smarketing.text_signals (text_md5, method, language, sentiment)
        select h, :method, language, sentiment
        from unnest(cast(:hashes as text[]), cast(:languages as text[]), cast(:sentiments as double precision[]))
             with ordinality as u (h, language, sentiment, n)
        order by n
        on conflict (text_md5) do update set method = excluded.method, language = excluded.language,
            sentiment = excluded.sentiment, computed_at = excluded.computed_at
        where smarketing.text_signals.method <> excluded.method"""),  # one statement, not one per text
        {"method": SIGNAL_METHOD, "hashes": [h for h, _ in ordered],
         "languages": [language for _, (language, _) in ordered],
         "sentiments": [sentiment for _, (_, sentiment) in ordered]})
    return len(computed)


def remember_text_signals(conn: sa.Connection, texts: Iterable, processes: int = 1) -> int:
    """Store the signals of those of ``texts`` (raw values; blanks skipped) that have none; returns how many
    were computed. A rerun over the same texts computes none."""
    _, computed = signals_of(conn, (t for t in stripped_texts(texts) if t is not None), processes)
    return store_text_signals(conn, computed)
