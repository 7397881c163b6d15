"""Row rules for source data: every row is either clean and typed, or rejected with a readable reason.

Rules are vectorised over a batch (a million orders validate in seconds). Each rule has a stable name
(``rule``) for grouping in the quarantine table and a sentence for people (``reason``). A row that breaks
several rules is quarantined once per rule, so the table says everything wrong with it at once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING

from smarketing_tasks.schema import CHANGE_COLUMN, KEY_COLUMNS, ORDER_STATUSES, SOURCE_COLUMNS
from smarketing_tasks.sources.export_files import SOURCE_ERROR

if TYPE_CHECKING:
    import pandas as pd

EMAIL_PATTERN = r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[A-Za-z]{2,}"
CURRENCY_PATTERN = r"[A-Z]{3}"
_TRUE = {"t", "true", "1", "yes", "y"}
_FALSE = {"f", "false", "0", "no", "n"}

TIMESTAMP_COLUMNS = {
    "customers": ("created_at", "updated_at"),
    "orders": ("ordered_at", "shipped_at", "delivered_at", "updated_at"),
    "order_items": ("updated_at",),
}
REQUIRED_COLUMNS = {
    "customers": ("customer_id", "updated_at"),
    "orders": ("order_id", "customer_id", "ordered_at", "status", "total_amount", "currency", "updated_at"),
    "order_items": ("order_id", "line_no", "sku", "quantity", "unit_price", "updated_at"),
}


@dataclass
class ValidatedBatch:
    """``clean``: typed rows ready to load. ``rejects``: one row per (input row, broken rule)."""

    clean: pd.DataFrame
    rejects: pd.DataFrame  # columns: record_key, rule, reason, raw (json text), raw_hash
    rows_read: int
    max_change: datetime | None

    @property
    def rejected_rows(self) -> int:
        return 0 if self.rejects.empty else int(self.rejects["_row"].nunique())


@cache
def _time_zones() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


class _Problems:
    """Collects (row mask, rule, reason) triples for one batch."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.found: list[tuple[pd.Series, str, pd.Series | str]] = []

    def add(self, mask: pd.Series, rule: str, reason: str, value: pd.Series | None = None) -> None:
        """Record ``rule`` for rows in ``mask``; ``value``, if given, is quoted after the reason (failing rows only)."""
        mask = mask.fillna(False).astype(bool)
        if mask.any():
            self.found.append((mask, rule, reason if value is None else reason + _quote(value[mask])))


def _is_blank(values: pd.Series) -> pd.Series:
    as_text = values.astype("string")
    return as_text.isna() | (as_text.str.len() == 0) | as_text.str.isspace()


def _parse_times(values: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")


def _parse_bool(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    lowered = values.astype("string").str.strip().str.lower()
    truthy = lowered.isin(_TRUE)
    falsy = lowered.isin(_FALSE)
    invalid = values.notna() & ~truthy & ~falsy
    return truthy.fillna(False).astype(bool), invalid


def _quote(values: pd.Series) -> pd.Series:
    return "'" + values.astype("string").str.slice(0, 200).fillna("") + "'"


def validate_batch(dataset: str, frame: pd.DataFrame, until: datetime) -> ValidatedBatch:
    """Check one all-text batch of ``dataset``; ``until`` is the run's "now" (no event may be later)."""
    import pandas as pd

    frame = frame.reset_index(drop=True)
    problems = _Problems(frame)
    typed = pd.DataFrame(index=frame.index)

    if SOURCE_ERROR in frame.columns:
        errors = frame[SOURCE_ERROR].notna()
        problems.add(errors, "unreadable_record", "", frame[SOURCE_ERROR])

    text_columns = [c for c in SOURCE_COLUMNS[dataset] if c in frame.columns]
    for column in text_columns:
        as_text = frame[column].astype("string")
        suspicious = as_text.str.contains("[\ufffd\x00]", regex=True)
        if suspicious.any():  # one scan per column; the precise checks only when something is there
            problems.add(as_text.str.contains("\ufffd", regex=False), "undecodable_text",
                         f"{column} holds bytes that are not valid UTF-8")
            problems.add(as_text.str.contains("\x00", regex=False), "nul_byte", f"{column} holds a NUL byte")

    for column in REQUIRED_COLUMNS[dataset]:
        problems.add(_is_blank(frame[column]), f"missing_{column}", f"{column} is missing")

    until_ts = pd.Timestamp(until)
    for column in TIMESTAMP_COLUMNS[dataset]:
        parsed = _parse_times(frame[column])
        problems.add(frame[column].notna() & parsed.isna(), f"bad_timestamp_{column}",
                     f"{column} is not an ISO 8601 timestamp: ", frame[column])
        problems.add(parsed > until_ts, f"future_{column}", f"{column} is later than the run's time {until.isoformat()}")
        typed[column] = parsed

    for column in text_columns:
        if column not in typed.columns:
            typed[column] = frame[column].where(~_is_blank(frame[column]), None) if column.endswith("_id") else frame[column]

    if dataset == "customers":
        _customer_rules(frame, typed, problems)
    elif dataset == "orders":
        _order_rules(frame, typed, problems)
    elif dataset == "order_items":
        _item_rules(frame, typed, problems)

    clean, rejects = _split(dataset, frame, typed, problems)
    change = typed[CHANGE_COLUMN[dataset]]
    max_change = change.max() if change.notna().any() else None
    return ValidatedBatch(clean=clean, rejects=rejects, rows_read=len(frame),
                          max_change=None if max_change is None else max_change.to_pydatetime())


def _customer_rules(frame: pd.DataFrame, typed: pd.DataFrame, problems: _Problems) -> None:
    email = frame["email"].astype("string").str.strip()
    problems.add(email.notna() & (email != "") & ~email.str.fullmatch(EMAIL_PATTERN), "malformed_email",
                 "email is not a well-formed address: ", frame["email"])
    typed["email"] = email.str.lower().where(email != "", None)
    zone = frame["time_zone"]
    problems.add(zone.notna() & ~zone.isin(_time_zones()), "unknown_time_zone",
                 "time_zone is not an IANA zone name: ", zone)
    for column in ("accepts_marketing", "accepts_sms"):
        values, invalid = _parse_bool(frame[column])
        problems.add(invalid, f"bad_boolean_{column}", f"{column} is not true/false: ", frame[column])
        typed[column] = values
    problems.add(typed["created_at"] > typed["updated_at"], "created_after_updated",
                 "created_at is later than updated_at")


def _order_rules(frame: pd.DataFrame, typed: pd.DataFrame, problems: _Problems) -> None:
    import pandas as pd

    status = frame["status"].astype("string").str.strip().str.lower()
    problems.add(frame["status"].notna() & ~status.isin(ORDER_STATUSES), "unknown_status",
                 "status is not one of " + "|".join(ORDER_STATUSES) + ": ", frame["status"])
    typed["status"] = status
    total = pd.to_numeric(frame["total_amount"], errors="coerce")
    problems.add(frame["total_amount"].notna() & total.isna(), "bad_total_amount",
                 "total_amount is not a number: ", frame["total_amount"])
    problems.add(total < 0, "negative_total_amount", "total_amount is negative: ", frame["total_amount"])
    typed["total_amount"] = total.round(2)
    currency = frame["currency"].astype("string").str.strip().str.upper()
    problems.add(frame["currency"].notna() & ~currency.str.fullmatch(CURRENCY_PATTERN), "bad_currency",
                 "currency is not a 3-letter ISO 4217 code: ", frame["currency"])
    typed["currency"] = currency
    problems.add(typed["shipped_at"] < typed["ordered_at"], "shipped_before_ordered",
                 "shipped_at is earlier than ordered_at")
    problems.add(typed["delivered_at"] < typed["shipped_at"].fillna(typed["ordered_at"]), "delivered_before_shipped",
                 "delivered_at is earlier than shipped_at (or ordered_at)")
    problems.add(typed["ordered_at"] > typed["updated_at"], "ordered_after_updated",
                 "ordered_at is later than updated_at")
    problems.add(status.isin(("shipped",)) & typed["shipped_at"].isna(), "shipped_without_time",
                 "status is shipped but shipped_at is missing")
    code = frame["discount_code"].astype("string").str.strip()
    typed["discount_code"] = code.where(code != "", None)


def _item_rules(frame: pd.DataFrame, typed: pd.DataFrame, problems: _Problems) -> None:
    import pandas as pd

    for column, kind in (("line_no", "integer"), ("quantity", "integer"), ("unit_price", "number")):
        number = pd.to_numeric(frame[column], errors="coerce")
        not_number = frame[column].notna() & number.isna()
        if kind == "integer":
            not_number |= number.notna() & (number != number.round())
        problems.add(not_number, f"bad_{column}", f"{column} is not a{'n' if kind == 'integer' else ''} {kind}: ", frame[column])
        typed[column] = number.where(number == number.round()).astype("Int64") if kind == "integer" else number
    problems.add(typed["quantity"] <= 0, "non_positive_quantity", "quantity must be at least 1: ", frame["quantity"])
    problems.add(typed["unit_price"] < 0, "negative_unit_price", "unit_price is negative: ", frame["unit_price"])


def _split(dataset: str, frame: pd.DataFrame, typed: pd.DataFrame, problems: _Problems):
    """Apply duplicate handling, then divide the batch into clean typed rows and reject records."""
    import pandas as pd

    bad = pd.Series(False, index=frame.index)
    for mask, _, _ in problems.found:
        bad |= mask

    keys = list(KEY_COLUMNS[dataset])
    change = CHANGE_COLUMN[dataset]
    candidates = typed[~bad]
    duplicated = candidates.duplicated(keys, keep=False)
    drop_index = pd.Index([])
    if duplicated.any():
        dupes = candidates[duplicated]
        latest = dupes.groupby(keys, dropna=False)[change].transform("max")
        newest = dupes[dupes[change] == latest]
        older = dupes.index.difference(newest.index)  # earlier versions of a row: superseded, not lost
        content_hash = pd.util.hash_pandas_object(newest.astype("string"), index=False)
        versions = content_hash.groupby([newest[k] for k in keys], dropna=False).transform("nunique")
        conflicting = newest.index[versions.to_numpy() > 1]
        problems.add(pd.Series(frame.index.isin(conflicting), index=frame.index), "conflicting_duplicate",
                     "the same " + "/".join(keys) + " appears more than once with different content")
        identical_extra = newest.loc[newest.index.difference(conflicting)].duplicated(keys, keep="first")
        drop_index = older.union(identical_extra[identical_extra].index)
        bad |= pd.Series(frame.index.isin(conflicting), index=frame.index)

    clean = typed[~bad].drop(index=drop_index, errors="ignore")
    clean = clean[[c for c in SOURCE_COLUMNS[dataset] if c in clean.columns]].reset_index(drop=True)

    records = []
    for mask, rule, reason in problems.found:
        for row in mask[mask].index:
            text = reason if isinstance(reason, str) else str(reason.loc[row])
            records.append((row, rule, text))
    rejects = _reject_frame(dataset, frame, records)
    return clean, rejects


def storable_text(text: str) -> str:
    """PostgreSQL text and jsonb cannot hold NUL bytes: keep each one visible as the escape ``\\u0000``."""
    return text.replace("\x00", "\\u0000")


def _reject_frame(dataset: str, frame: pd.DataFrame, records: list[tuple[int, str, str]]) -> pd.DataFrame:
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
