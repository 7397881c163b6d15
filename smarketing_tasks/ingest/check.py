"""Apply the row rules (``rules.py``) to a landed window, in SQL, inside the caller's transaction.

After ``check_landed`` the transaction holds, for dataset ``d``:

- ``checked_d``: every landed row typed, with the numbers of the rules it breaks (``broken``);
- ``rejects_d``: one record per (rejected row, broken rule) in the shape of ``smarketing.quarantine``;
- ``skipped_d``: rows that are not loaded although they break no rule — older versions of a row that a
  newer one in the same window supersedes, and identical extra copies;

and ``clean_rows(d)`` is the SELECT of the typed rows to upsert.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING

from smarketing_tasks.ingest.rules import rules, typed_columns
from smarketing_tasks.schema import CHANGE_COLUMN, KEY_COLUMNS, SOURCE_COLUMNS
from smarketing_tasks.sources.export_files import SOURCE_ERROR

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa


@dataclass(frozen=True)
class CheckedWindow:
    rows_landed: int
    rows_clean: int  # rows to upsert (after superseded versions and identical copies are set aside)
    rows_rejected: int  # distinct landed rows with at least one reject record
    max_change: datetime | None  # latest change time among rows not later than the run's time
    landed_typed: frozenset[str] = frozenset()  # columns landed in their own type (binary COPY)


@dataclass
class ValidatedBatch:
    """A checked batch read back into DataFrames (for tests and for people looking at a sample)."""

    clean: pd.DataFrame
    rejects: pd.DataFrame  # columns: _row, record_key, rule, reason, raw (json text), raw_hash
    rows_read: int
    max_change: datetime | None

    @property
    def rejected_rows(self) -> int:
        return 0 if self.rejects.empty else int(self.rejects["_row"].nunique())


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@cache
def _checked_sql(dataset: str, safe: bool, cannot_break: frozenset[str] = frozenset(),
                 landed_typed: frozenset[str] = frozenset()) -> str:
    typed = typed_columns(dataset, safe, landed_typed)
    typed_select = ", ".join(f"{expression} as {column}" for column, (_, expression) in typed.items())
    flags = ", ".join(f"case when {rule.broken} then {number} end"
                      for number, rule in enumerate(rules(dataset, landed_typed), 1) if rule.name not in cannot_break)
    return (
        f"create temporary table checked_{dataset} on commit drop as "
        f"select l._row, t.*, array_remove(array[{flags}]::integer[], null) as broken "
        f"from landing_{dataset} l cross join lateral (select {typed_select} offset 0) t"
    )


def _record_key(dataset: str) -> str:
    keys = KEY_COLUMNS[dataset]
    joined = " || '/' || ".join(f"coalesce(l.{k}::text, '')" for k in keys)
    return f"case when num_nonnulls({', '.join(f'l.{k}' for k in keys)}) = 0 then null else {joined} end"


def _raw(landed_typed: frozenset[str]) -> str:
    """The landed row as JSON, every value as the text the source printed (a typed column is printed again,
    in the ISO form a text COPY carries, so a row's raw record and its hash do not depend on the landing)."""
    raw = (f"to_jsonb(l) - '_row' - '_nul_columns' - case when l.{SOURCE_ERROR} is null "
           f"then array['{SOURCE_ERROR}', '_raw_line'] else array[]::text[] end")
    if landed_typed:
        printed = ", ".join(f"'{c}', l.{c}::text" for c in sorted(landed_typed))
        raw = f"({raw}) || jsonb_build_object({printed})"
    return raw


def _reject_insert(dataset: str, rows: str, rule: str, reason: str, extra_from: str = "",
                   landed_typed: frozenset[str] = frozenset()) -> str:
    """INSERT reject records for the landed rows selected by ``rows`` (a query giving ``_row`` [, no])."""
    return (
        f"insert into rejects_{dataset} (_row, record_key, rule, reason, raw, raw_hash) "
        f"select l._row, {_record_key(dataset)}, {rule}, left({reason}, 1000), j.raw, "
        "encode(sha256(convert_to(j.raw::text, 'UTF8')), 'hex') "
        f"from ({rows}) b join landing_{dataset} l using (_row) "
        f"cross join lateral (select {_raw(landed_typed)} as raw) j {extra_from}"
    )


@cache
def _rule_rejects_sql(dataset: str, landed_typed: frozenset[str] = frozenset()) -> str:
    found = rules(dataset, landed_typed)
    names = "array[" + ", ".join(_quote_literal(r.name) for r in found) + "]"
    reasons = "case f.no " + " ".join(f"when {n} then {r.reason}" for n, r in enumerate(found, 1)) + " end"
    return _reject_insert(
        dataset,
        f"select _row, broken from checked_{dataset} where cardinality(broken) > 0",
        f"({names})[f.no]",
        reasons,
        "cross join lateral unnest(b.broken) as f(no)",
        landed_typed,
    )


def _keys(dataset: str) -> str:
    return ", ".join(KEY_COLUMNS[dataset])


def check_landed(conn: sa.Connection, dataset: str, until: datetime,
                 cannot_break: frozenset[str] = frozenset(), settle_duplicates: bool = True,
                 landed_typed: frozenset[str] = frozenset()) -> CheckedWindow:
    """Type and check the landed rows of ``dataset``; ``until`` is the run's "now" (no event may be later).

    ``cannot_break``: rules the landing already rules out for every row (``CopyLanding``), left out.
    ``landed_typed``: columns that landed in their own type (``landing.create_landing``).
    ``settle_duplicates=False`` leaves rows sharing a key for later (``settle_duplicate_keys``): a load into
    an empty table learns from its primary key, for free, whether there are any."""
    import sqlalchemy as sa

    if dataset == "customers":
        _create_known_zones(conn)
    _type_and_flag(conn, dataset, until, cannot_break, landed_typed)
    conn.exec_driver_sql(
        f"create temporary table rejects_{dataset} (_row bigint, record_key text, rule text, reason text, raw jsonb, "
        "raw_hash text) on commit drop"
    )
    conn.exec_driver_sql(f"create temporary table skipped_{dataset} (_row bigint primary key) on commit drop")
    change = CHANGE_COLUMN[dataset]
    landed, clean, max_change = conn.execute(sa.text(
        f"select count(*), count(*) filter (where cardinality(broken) = 0), "
        f"max({change}) filter (where {change} <= :until) from checked_{dataset}"), {"until": until}).one()
    if landed > clean:
        conn.execute(sa.text(_rule_rejects_sql(dataset, landed_typed)), {"until_text": until.isoformat()})
    checked = CheckedWindow(int(landed), int(clean), int(landed) - int(clean), max_change, landed_typed)
    return settle_duplicate_keys(conn, dataset, checked) if settle_duplicates else checked


def settle_duplicate_keys(conn: sa.Connection, dataset: str, checked: CheckedWindow) -> CheckedWindow:
    """Set aside older versions and identical copies, quarantine conflicting versions (see
    ``_set_duplicates_aside``); returns ``checked`` with the rows left to load and the rows rejected."""
    if checked.rows_clean > 1:
        _set_duplicates_aside(conn, dataset, checked.landed_typed)
    rejected, skipped = conn.exec_driver_sql(
        f"select count(distinct _row), (select count(*) from skipped_{dataset}) from rejects_{dataset}").one()
    # skipped_ holds the conflicting versions too (they are quarantined, not loaded)
    return CheckedWindow(checked.rows_landed, checked.rows_clean - int(skipped), int(rejected), checked.max_change,
                         checked.landed_typed)


def _type_and_flag(conn: sa.Connection, dataset: str, until: datetime, cannot_break: frozenset[str],
                   landed_typed: frozenset[str]) -> None:
    """Create ``checked_<dataset>``: optimistically with direct casts; if a well-shaped impossible value
    ('2026-13-45') makes a cast raise, again with the safe casts that turn it into a reject."""
    import psycopg
    import sqlalchemy as sa

    savepoint = conn.begin_nested()
    try:
        conn.execute(sa.text(_checked_sql(dataset, False, cannot_break, landed_typed)), {"until": until})
    except sa.exc.DBAPIError as error:
        if not isinstance(error.orig, psycopg.DataError):
            raise
        savepoint.rollback()
        conn.execute(sa.text(_checked_sql(dataset, True, cannot_break, landed_typed)), {"until": until})
    else:
        savepoint.commit()


def _set_duplicates_aside(conn: sa.Connection, dataset: str, landed_typed: frozenset[str]) -> None:
    """Among clean rows sharing a key: the newest version wins and older ones are skipped; several newest
    versions with different content are all quarantined (we cannot tell which is right); identical copies
    collapse to one."""
    keys, change = _keys(dataset), CHANGE_COLUMN[dataset]
    clean_rows = f"select * from checked_{dataset} where cardinality(broken) = 0"
    conn.exec_driver_sql(
        f"create temporary table duplicate_keys_{dataset} on commit drop as "
        f"select {keys} from checked_{dataset} where cardinality(broken) = 0 group by {keys} having count(*) > 1"
    )
    if not conn.exec_driver_sql(f"select exists (select 1 from duplicate_keys_{dataset})").scalar():
        return
    content = "md5(row(" + ", ".join(f"c.{column}" for column in typed_columns(dataset)) + ")::text)"
    conn.exec_driver_sql(
        f"create temporary table duplicate_rows_{dataset} on commit drop as "
        f"select c._row, {', '.join(f'c.{k}' for k in KEY_COLUMNS[dataset])}, "
        f"c.{change} = max(c.{change}) over (partition by {', '.join(f'c.{k}' for k in KEY_COLUMNS[dataset])}) "
        f"as newest, {content} as content "
        f"from ({clean_rows}) c join duplicate_keys_{dataset} using ({keys})"
    )
    conn.exec_driver_sql(
        f"create temporary table duplicate_versions_{dataset} on commit drop as "
        f"select {keys}, count(distinct content) as versions, min(_row) as first_row "
        f"from duplicate_rows_{dataset} where newest group by {keys}"
    )
    conflicting = (
        f"select d._row from duplicate_rows_{dataset} d join duplicate_versions_{dataset} v using ({keys}) "
        "where d.newest and v.versions > 1"
    )
    conn.exec_driver_sql(_reject_insert(
        dataset, conflicting, "'conflicting_duplicate'",
        _quote_literal(f"the same {'/'.join(KEY_COLUMNS[dataset])} appears more than once with different content"),
        landed_typed=landed_typed,
    ))
    conn.exec_driver_sql(
        f"insert into skipped_{dataset} (_row) "
        f"select d._row from duplicate_rows_{dataset} d join duplicate_versions_{dataset} v using ({keys}) "
        "where not d.newest or v.versions > 1 or d._row <> v.first_row"
    )


def clean_rows(dataset: str) -> str:
    """The SELECT of the typed rows to load (valid, not superseded, not a copy, not in conflict)."""
    columns = ", ".join(f"c.{column}" for column in SOURCE_COLUMNS[dataset])
    return (
        f"select {columns} from checked_{dataset} c where cardinality(c.broken) = 0 "
        f"and not exists (select 1 from skipped_{dataset} s where s._row = c._row)"
    )


def _create_known_zones(conn: sa.Connection) -> None:
    """The IANA zone names Python knows (outreach converts local times with ``zoneinfo``)."""
    import zoneinfo

    import sqlalchemy as sa

    conn.exec_driver_sql("create temporary table known_zones (name text primary key) on commit drop")
    conn.execute(sa.text("insert into known_zones select unnest(cast(:zones as text[]))"),
                 {"zones": sorted(zoneinfo.available_timezones())})


def check_frame(conn: sa.Connection, dataset: str, frame: pd.DataFrame, until: datetime) -> ValidatedBatch:
    """Land one text DataFrame, check it and read the outcome back (the caller rolls the transaction back)."""
    import pandas as pd

    from smarketing_tasks.ingest.landing import create_landing, land_frames

    create_landing(conn, dataset)
    land_frames(conn, dataset, [frame], lambda _: None)
    checked = check_landed(conn, dataset, until)
    clean = pd.read_sql_query(f"{clean_rows(dataset)} order by c._row", conn)
    rejects = pd.read_sql_query(
        f"select _row - 1 as _row, record_key, rule, reason, raw::text as raw, raw_hash from rejects_{dataset} "
        "order by _row, rule", conn)
    return ValidatedBatch(clean=clean, rejects=rejects, rows_read=checked.rows_landed, max_change=checked.max_change)
