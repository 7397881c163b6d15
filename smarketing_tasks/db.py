"""Engines and bulk I/O for PostgreSQL, usable inside Airflow (from a connection) and outside (from a URL)."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
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
    """COPY a DataFrame into ``table`` (CSV through memory); returns the row count.

    COPY is the floor for loading rows into PostgreSQL; ``to_sql`` is ~10x slower on this stack.
    """
    columns = list(columns or frame.columns)
    if frame.empty:
        return 0
    buffer = io.StringIO()
    frame[columns].to_csv(buffer, index=False, header=False, na_rep="\\N")
    buffer.seek(0)
    column_list = ", ".join(f'"{c}"' for c in columns)
    with raw_cursor(conn) as cur, cur.copy(
        f"copy {table} ({column_list}) from stdin with (format csv, null '\\N')"
    ) as copy:
        while chunk := buffer.read(1 << 20):
            copy.write(chunk)
    return len(frame)


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
        # Bytes as the database holds them (no server-side conversion that could fail on a bad byte); the
        # reader below decodes UTF-8 and keeps anything else visible as U+FFFD for validation to reject.
        with cur.copy(f"copy ({query}) to stdout with (format csv, null '\\N', encoding 'SQL_ASCII')") as copy:
            for block in copy:
                spool.write(block)
        if spool.tell() == 0:
            return
        spool.seek(0)
        yield from pd.read_csv(
            spool,
            names=names,
            header=None,
            dtype=str,
            keep_default_na=False,
            na_values=["\\N"],
            encoding="utf-8",
            encoding_errors="replace",
            chunksize=batch_rows,
        )
