"""Engines and bulk I/O for PostgreSQL, usable inside Airflow (from a connection) and outside (from a URL)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    import pandas as pd


def normalize_url(url: str) -> str:
    """Accept the URL spellings users paste (Airflow's ``postgres://``, libpq's ``postgresql://``) for psycopg 3."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def libpq_url(url: str) -> str:
    """The same URL without the SQLAlchemy driver suffix, for psycopg.connect and psql."""
    return sa.make_url(normalize_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)


def make_engine(url: str, **kwargs) -> sa.Engine:
    kwargs.setdefault("pool_pre_ping", True)
    # Text crosses as UTF-8 whatever the database's encoding (a LATIN1 shop is converted by the server).
    kwargs.setdefault("connect_args", {}).setdefault("client_encoding", "utf8")
    return sa.create_engine(normalize_url(url), **kwargs)


def database_name(url: str) -> str:
    return sa.make_url(normalize_url(url)).database or "postgres"


def ensure_database(admin_url: str, name: str) -> bool:
    """Create database ``name`` on the server of ``admin_url`` if it is missing; True when created.

    Text sorts bytewise (collation C; character classes stay the server's): keys are compared with memcmp
    instead of the C library's strcoll, which makes primary keys, index builds, sorts and merge joins on
    ids cheaper; for UTF-8 it is the same order as C.UTF-8. A server that refuses it (another default
    locale provider) gets its default collation."""
    engine = make_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            exists = conn.execute(sa.text("select 1 from pg_database where datname = :n"), {"n": name}).scalar()
            if exists:
                return False
            try:
                conn.exec_driver_sql(f'create database "{name}" template template0 lc_collate \'C\'')
            except sa.exc.DBAPIError:
                conn.exec_driver_sql(f'create database "{name}"')
            return True
    finally:
        engine.dispose()


def drop_database(admin_url: str, name: str) -> None:
    engine = make_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'drop database if exists "{name}" with (force)')
    finally:
        engine.dispose()


def with_database(url: str, name: str) -> str:
    return sa.make_url(normalize_url(url)).set(database=name).render_as_string(hide_password=False)


@contextmanager
def raw_cursor(conn: sa.Connection) -> Iterator:
    """The psycopg cursor under a SQLAlchemy connection (for COPY), inside the connection's transaction."""
    dbapi_conn = conn.connection.dbapi_connection
    with dbapi_conn.cursor() as cur:
        yield cur


def copy_frame(conn: sa.Connection, table: str, frame: pd.DataFrame, columns: Sequence[str] | None = None) -> int:
    """COPY a DataFrame into ``table`` (CSV, 20,000 rows at a time); returns the row count.

    COPY is the floor for loading rows into PostgreSQL; ``to_sql`` is ~10x slower on this stack. Columns
    ``csv_blocks`` cannot write exactly (times, mixed objects) are printed as pandas' CSV writer prints them
    (``str``), and any text holding a backslash is quoted: pandas wrote a text ``\\N`` bare, which COPY
    stored as NULL.
    """
    columns = list(columns or frame.columns)
    if frame.empty:
        return 0
    copy_csv_blocks(conn, table, columns, csv_blocks(frame, columns, exact=False))
    return len(frame)


def copy_csv_blocks(conn: sa.Connection, table: str, columns: Sequence[str], chunks: Iterable[str]) -> None:
    """COPY CSV text (NULL as ``\\N``; ``csv_blocks``, maybe made ahead of the transaction) into ``columns``."""
    column_list = ", ".join(f'"{c}"' for c in columns)
    with raw_cursor(conn) as cur, cur.copy(
        f"copy {table} ({column_list}) from stdin with (format csv, null '\\N')"
    ) as copy:
        for chunk in chunks:
            copy.write(chunk)


def copy_plain_frame(conn: sa.Connection, table: str, frame: pd.DataFrame, columns: Sequence[str]) -> int:
    """COPY the ``columns`` of a frame of numbers, booleans and text into ``table``; returns the row count.

    ``copy_frame`` for the scoring's wide frames: the CSV is written column by column (``csv_blocks``) at
    about a third of ``to_csv``'s CPU, and reads back as the same values (floats as ``repr``, the shortest
    text of the same double). Other column types raise TypeError: use ``copy_frame``.
    """
    if frame.empty:
        return 0
    copy_csv_blocks(conn, table, columns, csv_blocks(frame, columns))
    return len(frame)


_NULL = "\\N"
_CSV_SPECIAL = ('"', ",", "\n", "\r", "\\")  # a text holding one is quoted (a backslash: so that "\N" stays text)
_SMALL_INTS: list = []


def csv_blocks(frame: pd.DataFrame, columns: Sequence[str], rows: int = 20_000, exact: bool = True) -> Iterator[str]:
    """CSV text (NULL as ``\\N``) of ``columns``, ``rows`` rows at a time (bounded memory).

    ``exact``: refuse (TypeError) a column whose values have no plain CSV form; otherwise print those as text.
    """
    cells_of = _csv_cells if exact else _any_cells
    for start in range(0, len(frame), rows):
        part = frame.iloc[start:start + rows]
        cells = [cells_of(part[column], column) for column in columns]
        yield "\n".join(map(",".join, zip(*cells, strict=True))) + "\n"


def _any_cells(series: pd.Series, name: str) -> list[str]:
    """``_csv_cells`` where it can; else each value as ``str`` prints it (times in ISO form), quoted as CSV needs."""
    import pandas as pd

    try:
        return _csv_cells(series, name)
    except TypeError:
        pass
    missing = series.isna().to_numpy()
    if isinstance(series.dtype, pd.DatetimeTZDtype) or series.dtype.kind == "M":
        return _with_nulls(_iso_times(series), missing)
    return _text_cells([None if gone else str(value) for value, gone in zip(series.to_numpy(dtype=object).tolist(),
                                                                         missing.tolist(), strict=True)])


def _iso_times(series: pd.Series) -> list[str]:
    """Timestamps as ISO 8601 text to the microsecond (in UTC, with its offset, when the column has a zone):
    a third of ``astype(str)``'s CPU. NaT's text is for the caller to replace."""
    import numpy as np
    import pandas as pd

    zoned = isinstance(series.dtype, pd.DatetimeTZDtype)
    values = (series.dt.tz_convert("UTC").dt.tz_localize(None) if zoned else series).to_numpy("datetime64[us]")
    text = np.datetime_as_string(values, unit="us")
    return (np.char.add(text, "+00:00") if zoned else text).tolist()


def _csv_cells(series: pd.Series, name: str) -> list[str]:
    import numpy as np
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        from smarketing_tasks.values import each_distinct

        values = series.to_numpy()
        return np.where(np.isnan(values), _NULL, each_distinct(values, repr)).tolist()
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        return _int_cells(series.to_numpy())
    if isinstance(dtype, np.dtype) and dtype.kind == "b":
        return np.where(series.to_numpy(), "t", "f").tolist()
    if not isinstance(dtype, np.dtype) and dtype.kind in "iu":  # nullable integers (Int16 ...)
        missing = series.isna().to_numpy()
        return _with_nulls(_int_cells(series.to_numpy(dtype="int64", na_value=0)), missing)
    if not isinstance(dtype, np.dtype) and dtype.kind == "b":  # nullable booleans
        missing = series.isna().to_numpy()
        return _with_nulls(np.where(series.to_numpy(dtype=bool, na_value=False), "t", "f").tolist(), missing)
    if isinstance(dtype, pd.StringDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "O"):
        try:  # its join takes text only: the one scan in C also checks the types
            return _text_cells(series.to_numpy(dtype=object, na_value=None).tolist())
        except TypeError:
            raise TypeError(f"column {name!r} holds values that are not text: use copy_frame") from None
    raise TypeError(f"column {name!r} of type {dtype} has no plain CSV form: use copy_frame")


def _text_cells(texts: list[str | None]) -> list[str]:
    """CSV cells of texts (None: NULL); one scan of their joined text says whether any needs quotes."""
    joined = "".join([t for t in texts if t is not None])
    if any(special in joined for special in _CSV_SPECIAL):
        return ['"' + t.replace('"', '""') + '"' if t is not None else _NULL for t in texts]
    return [_NULL if t is None else t for t in texts]


def _int_cells(values) -> list[str]:
    import numpy as np

    if not _SMALL_INTS:
        _SMALL_INTS.append(np.array([str(i) for i in range(1 << 16)], dtype=object))
    if len(values) and values.min() >= 0 and values.max() < 1 << 16:  # counts, days, buckets: a lookup
        return _SMALL_INTS[0][values].tolist()
    return list(map(str, values.tolist()))


def _with_nulls(cells: list[str], missing) -> list[str]:
    import numpy as np

    for i in np.flatnonzero(missing).tolist():
        cells[i] = _NULL
    return cells


def copy_query_to_frames(conn: sa.Connection, query: str, batch_rows: int) -> Iterator[pd.DataFrame]:
    """Stream ``query`` out with COPY TO STDOUT and yield DataFrames of at most ``batch_rows`` rows, all text.

    The COPY stream is spooled to a temporary file so that memory stays bounded by one batch whatever the
    source size, and pandas' CSV reader (which handles quoted newlines) cuts it into batches. Columns come
    back as strings (NULL as missing) so that malformed values reach validation instead of failing the read.
    """
    import tempfile

    import pandas as pd

    with raw_cursor(conn) as cur, tempfile.TemporaryFile() as spool:
        cur.execute(f"select * from ({query}) as q limit 0")
        names = [d.name for d in cur.description]
        # The CSV reader cannot tell a quoted text "\N" from the bare NULL marker, so the server lists, per row,
        # the text columns holding exactly that (almost always none) and the reader puts them back.
        marked = ", ".join(f"case when q.{_identifier(d.name)} = '\\N' then '{i}' end"
                           for i, d in enumerate(cur.description) if d.type_code in _TEXT_TYPES)
        query = f"select q.*, concat_ws(',', {marked or 'null'}) from ({query}) as q"
        # Bytes as the database holds them (no server-side conversion that could fail on a bad byte); the
        # reader below decodes UTF-8 and keeps anything else visible as U+FFFD for validation to reject.
        with cur.copy(f"copy ({query}) to stdout with (format csv, null '\\N', encoding 'SQL_ASCII')") as copy:
            for block in copy:
                spool.write(block)
        if spool.tell() == 0:
            return
        spool.seek(0)
        for frame in pd.read_csv(
            spool,
            names=[*names, _MARKED],
            header=None,
            dtype=str,
            keep_default_na=False,
            na_values=["\\N"],
            encoding="utf-8",
            encoding_errors="replace",
            chunksize=batch_rows,
        ):
            positions = frame.pop(_MARKED)
            for row, listed in positions[positions.notna() & (positions != "")].items():
                for position in listed.split(","):
                    frame.loc[row, names[int(position)]] = "\\N"
            yield frame


_MARKED = "__texts_reading_null_marker"
_TEXT_TYPES = {25, 1043, 1042, 19}  # text, varchar, char, name: no other type prints as "\N"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
