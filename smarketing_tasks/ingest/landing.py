"""Land a window of source rows in a temporary table of the warehouse.

A source that can speak PostgreSQL's COPY (the reference SQL schema) streams its rows straight from one
server to the other: the bytes pass through Python without being parsed, so landing costs what a plain
COPY costs. Columns the source already stores in the warehouse's type travel in COPY's binary format and
land typed (no time or amount is printed by one server and parsed again by the other); the rest land as
text. Other sources (export folders, CDNOW) yield text DataFrames, which are COPYed in batches.
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

    def copy_binary(self, dataset: str, window: Window, typed: frozenset[str]) -> Iterator[bytes]:
        """The window in COPY binary format: the ``typed`` columns in the warehouse's type, the others as
        text, reference columns in order."""
        ...

    def typed_source_columns(self, dataset: str) -> frozenset[str]:
        """Reference columns the source stores in exactly the warehouse's type (timestamptz, numeric,
        integer): ``copy_binary`` sends them in that type and they land typed, with nothing to parse."""
        ...


def landing_table(dataset: str) -> str:
    return f"landing_{dataset}"


def create_landing(conn: sa.Connection, dataset: str, typed: frozenset[str] = frozenset()) -> str:
    """An empty landing table: the reference columns as text (the ``typed`` ones in the warehouse's type),
    read errors, and a row number."""
    from smarketing_tasks.ingest.rules import column_type

    table = landing_table(dataset)
    columns = ", ".join(f"{column} {column_type(dataset, column) if column in typed else 'text'}"
                        for column in SOURCE_COLUMNS[dataset])
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
BINARY_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def text_fields_hold_replacement(chunk: bytes, text_fields: frozenset[int], with_header: bool) -> bool:
    """Whether a text field of these whole rows in COPY's binary format holds U+FFFD. Only chunks in which a
    byte search found one are parsed: the bytes of a time or an amount can read as U+FFFD by chance (at a
    million orders some do), and without this every such load would pay for the rule on every row."""
    import struct

    at = 0
    if with_header:
        (extension,) = struct.unpack_from("!i", chunk, len(BINARY_COPY_SIGNATURE) + 4)
        at = len(BINARY_COPY_SIGNATURE) + 8 + extension
    while at < len(chunk):
        (fields,) = struct.unpack_from("!h", chunk, at)
        at += 2
        if fields < 0:  # the trailer
            break
        for field in range(fields):
            (size,) = struct.unpack_from("!i", chunk, at)
            at += 4
            if size > 0:
                if field in text_fields and REPLACEMENT_CHARACTER in chunk[at:at + size]:
                    return True
                at += size
    return False


def land_copy(conn: sa.Connection, source: CopySource, dataset: str, window: Window,
              progress: Progress, typed: frozenset[str] = frozenset()) -> CopyLanding:
    """Stream the source's COPY output into the landing table (created with the same ``typed`` columns),
    looking for U+FFFD on the way (a byte search, far cheaper than the same test per row in SQL).

    The source sends one message per row; they are passed on in chunks of ``COPY_CHUNK_BYTES``, which
    halves the Python time per row of a write per message."""
    from smarketing_tasks.db import raw_cursor

    table = landing_table(dataset)
    column_list = ", ".join(SOURCE_COLUMNS[dataset])
    binary = bool(typed)
    text_fields = frozenset(n for n, column in enumerate(SOURCE_COLUMNS[dataset]) if column not in typed)
    first_chunk = True
    blocks = source.copy_binary(dataset, window, typed) if binary else source.copy_text(dataset, window)
    form = "format binary" if binary else "encoding 'UTF8'"
    rows = reported = 0
    replacement = False
    tail = b""  # the end of the previous chunk, in case a character straddles two chunks
    chunk = bytearray()
    with raw_cursor(conn) as cur:
        with cur.copy(f"copy {table} ({column_list}) from stdin with ({form})") as copy:

            def flush() -> None:
                nonlocal rows, replacement, tail, first_chunk
                copy.write(bytes(chunk))  # a copy: a queued writer may still hold it when the chunk is reused
                if binary:  # chunks hold whole rows (one message each), so no character straddles two
                    replacement = replacement or (REPLACEMENT_CHARACTER in chunk and text_fields_hold_replacement(
                        bytes(chunk), text_fields, with_header=first_chunk))
                else:
                    replacement = replacement or REPLACEMENT_CHARACTER in tail + chunk[:2] \
                        or REPLACEMENT_CHARACTER in chunk
                    rows += chunk.count(b"\n")  # text COPY escapes newlines inside values: one line is one row
                tail = bytes(chunk[-2:])
                first_chunk = False
                chunk.clear()

            for messages, block in enumerate(blocks, 1):
                chunk += block
                if len(chunk) >= COPY_CHUNK_BYTES:
                    flush()
                    if binary:
                        rows = messages  # the server sends one message per row
                    if rows - reported >= PROGRESS_EVERY_ROWS:
                        reported = rows
                        progress(f"{dataset}: {rows:,} rows landed")
            if chunk:
                flush()
        if binary:
            rows = cur.rowcount
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
