"""Vectorised row-rule helpers over text DataFrames, for stages whose rules run in Python (responses).

Purchase ingestion runs its rules in SQL where the rows land (``ingest/rules.py``); these helpers serve
data that needs Python anyway (language detection, signed tokens). Each rule has a stable name (``rule``)
for grouping in the quarantine table and a sentence for people (``reason``).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from smarketing_tasks.ingest.rules import EMAIL_PATTERN, FALSE_WORDS, TRUE_WORDS
from smarketing_tasks.schema import KEY_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

_TRUE = set(TRUE_WORDS)
_FALSE = set(FALSE_WORDS)

__all__ = ["EMAIL_PATTERN", "Problems", "is_blank", "parse_bool", "parse_times", "quote", "reject_frame",
           "storable_text"]


class Problems:
    """Collects (row mask, rule, reason) triples for one batch."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.found: list[tuple[pd.Series, str, pd.Series | str]] = []

    def add(self, mask: pd.Series, rule: str, reason: str, value: pd.Series | None = None) -> None:
        """Record ``rule`` for rows in ``mask``; ``value``, if given, is quoted after the reason (failing rows only)."""
        mask = mask.fillna(False).astype(bool)
        if mask.any():
            self.found.append((mask, rule, reason if value is None else reason + quote(value[mask])))


def is_blank(values: pd.Series) -> pd.Series:
    as_text = values.astype("string")
    return as_text.isna() | (as_text.str.len() == 0) | as_text.str.isspace()


def parse_times(values: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")


def parse_bool(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    lowered = values.astype("string").str.strip().str.lower()
    truthy = lowered.isin(_TRUE)
    falsy = lowered.isin(_FALSE)
    invalid = values.notna() & ~truthy & ~falsy
    return truthy.fillna(False).astype(bool), invalid


def quote(values: pd.Series) -> pd.Series:
    return "'" + values.astype("string").str.slice(0, 200).fillna("") + "'"


def storable_text(text: str) -> str:
    """PostgreSQL text and jsonb cannot hold NUL bytes: keep each one visible as the escape ``\\u0000``."""
    return text.replace("\x00", "\\u0000")


def reject_frame(dataset: str, frame: pd.DataFrame, records: list[tuple[int, str, str]]) -> pd.DataFrame:
    import pandas as pd

    rows = []
    keys = KEY_COLUMNS[dataset]
    raw_cache: dict[int, tuple[str, str, str | None]] = {}
    for row, rule, reason in records:
        if row not in raw_cache:
            values = {k: (None if v is None or (isinstance(v, float) and v != v) else storable_text(str(v)))
                      for k, v in frame.loc[row].items()}
            raw = json.dumps(values, sort_keys=True, ensure_ascii=False)
            key_parts = [values.get(k) for k in keys]
            record_key = None if all(p is None for p in key_parts) else "/".join(p or "" for p in key_parts)
            raw_cache[row] = (raw, hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest(), record_key)
        raw, raw_hash, record_key = raw_cache[row]
        rows.append({"_row": row, "record_key": record_key, "rule": rule, "reason": storable_text(reason[:1000]),
                     "raw": raw, "raw_hash": raw_hash})
    return pd.DataFrame(rows, columns=["_row", "record_key", "rule", "reason", "raw", "raw_hash"])
