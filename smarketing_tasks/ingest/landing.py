"""Land a window of source rows, as text, in a temporary table of the warehouse.

A source that can speak PostgreSQL's COPY (the reference SQL schema) streams its rows straight from one
server to the other: the bytes pass through Python without being parsed, so landing costs what a plain
COPY costs. Other sources (export folders, CDNOW) yield text DataFrames, which are COPYed in batches.
Temporary tables are never written to the WAL and vanish with the transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from smarketing_tasks.schema import SOURCE_COLUMNS
from smarketing_tasks.sources.base import Window
from smarketing_tasks.sources.export_files import SOURCE_ERROR

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

Progress = Callable[[str], None]
PROGRESS_EVERY_ROWS = 500_000
COPY_CHUNK_BYTES = 1 << 20
RAW_LINE = "_raw_line"
NUL_COLUMNS = "_nul_columns"


@runtime_checkable
class CopySource(Protocol):
    """A source that can stream a dataset's window in COPY text format, reference columns in order."""

    name: str

    def copy_text(self, dataset: str, window: Window) -> Iterator[bytes]: ...

    def typed_source_columns(self, dataset: str) -> frozenset[str]:
        """Reference columns the source stores in the warehouse's own type (printed in ISO form by
        ``copy_text``), which the check may cast without a shape check."""
        ...


def landing_table(dataset: str) -> str:
    return f"landing_{dataset}"


def create_landing(conn: sa.Connection, dataset: str) -> str:
    """An empty landing table: the reference columns as text, read errors, and a row number."""
    table = landing_table(dataset)
    columns = ", ".join(f"{column} text" for column in SOURCE_COLUMNS[dataset])
    conn.exec_driver_sql(
        f"create temporary table {table} ({columns}, {SOURCE_ERROR} text, {RAW_LINE} text, {NUL_COLUMNS} text[], "
        "_row bigint generated always as identity) on commit drop"
    )
    return table


@dataclass(frozen=True)
class CopyLanding:
    """What a COPY landing holds: its rows, and whether any value carries U+FFFD (the mark a decoder leaves
    for bytes that were not UTF-8; a COPY cannot carry read errors or NUL bytes)."""

    rows: int
    has_replacement_character: bool

    def rules_it_cannot_break(self) -> frozenset[str]:
        """Rules no row of this landing can break, which the check may therefore leave out."""
        impossible = {"unreadable_record", "nul_byte"}
        if not self.has_replacement_character:
            impossible.add("undecodable_text")
        return frozenset(impossible)


REPLACEMENT_CHARACTER = "\ufffd".encode()


def land_copy(conn: sa.Connection, source: CopySource, dataset: str, window: Window,
              progress: Progress) -> CopyLanding:
    """Stream the source's COPY output into the landing table, looking for U+FFFD on the way (a byte
    search, far cheaper than the same test per row in SQL).

    The source sends one message per row; they are passed on in chunks of ``COPY_CHUNK_BYTES``, which
    halves the Python time per row of a write per message."""
    from smarketing_tasks.db import raw_cursor

    table = landing_table(dataset)
    column_list = ", ".join(SOURCE_COLUMNS[dataset])
    rows = reported = 0
    replacement = False
    tail = b""  # the end of the previous chunk, in case a character straddles two chunks
    chunk = bytearray()
    with raw_cursor(conn) as cur, cur.copy(f"copy {table} ({column_list}) from stdin with (encoding 'UTF8')") as copy:

        def flush() -> None:
            nonlocal rows, replacement, tail
            copy.write(bytes(chunk))  # a copy: a queued writer may still hold it when the chunk is reused
            replacement = replacement or REPLACEMENT_CHARACTER in tail + chunk[:2] or REPLACEMENT_CHARACTER in chunk
            tail = bytes(chunk[-2:])
            rows += chunk.count(b"\n")  # text COPY escapes newlines inside values, so one line is one row
            chunk.clear()

        for block in source.copy_text(dataset, window):
            chunk += block
            if len(chunk) >= COPY_CHUNK_BYTES:
                flush()
                if rows - reported >= PROGRESS_EVERY_ROWS:
                    reported = rows
                    progress(f"{dataset}: {rows:,} rows landed")
        if chunk:
            flush()
    return CopyLanding(rows, replacement)


def land_frames(conn: sa.Connection, dataset: str, frames: Iterable[pd.DataFrame], progress: Progress) -> int:
    """COPY text DataFrames (the reference columns, maybe a read-error column) into the landing table."""
    from smarketing_tasks.db import copy_frame

    table = landing_table(dataset)
    rows = reported = 0
    for frame in frames:
        if frame.empty:
            continue
        storable = _mark_nul_bytes(frame, SOURCE_COLUMNS[dataset])
        columns = [c for c in (*SOURCE_COLUMNS[dataset], SOURCE_ERROR, RAW_LINE, NUL_COLUMNS) if c in storable.columns]
        rows += copy_frame(conn, table, storable, columns)
        if rows - reported >= PROGRESS_EVERY_ROWS:
            reported = rows
            progress(f"{dataset}: {rows:,} rows landed")
    return rows


def _mark_nul_bytes(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """PostgreSQL text cannot hold NUL: keep each one visible as ``\\u0000`` and list the columns that had one,
    so the ``nul_byte`` rule can quarantine the row."""
    import pandas as pd

    from smarketing_tasks.frame_rules import storable_text

    out = frame.copy(deep=False)
    found: dict[str, pd.Series] = {}
    for column in columns:
        if column not in out.columns:
            continue
        values = out[column]
        has_nul = values.astype("string").str.contains("\x00", regex=False).fillna(False).astype(bool)
        if has_nul.any():
            out[column] = values.map(lambda v: storable_text(v) if isinstance(v, str) else v)
            found[column] = has_nul
    for name in (SOURCE_ERROR, RAW_LINE):
        if name in out.columns:
            out[name] = out[name].map(lambda v: storable_text(v) if isinstance(v, str) else v)
    if found:
        masks = pd.DataFrame(found)
        marked = masks.any(axis=1)
        marks = pd.Series(None, index=out.index, dtype=object)
        # A text[] literal per marked row only: column names are plain identifiers, so no quoting is needed.
        marks[marked] = masks[marked].apply(lambda row: "{" + ",".join(row.index[row]) + "}", axis=1)
        out[NUL_COLUMNS] = marks
    return out
