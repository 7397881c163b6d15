"""Databases the project creates: bytewise text order, created once."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from smarketing_tasks.db import drop_database, ensure_database, make_engine, with_database

pytestmark = pytest.mark.integration


def test_a_created_database_sorts_text_bytewise_and_is_created_once(admin_url):
    name = f"smkt_db_{uuid.uuid4().hex[:10]}"
    try:
        assert ensure_database(admin_url, name) is True
        assert ensure_database(admin_url, name) is False
        engine = make_engine(with_database(admin_url, name))
        with engine.connect() as conn:
            collation = conn.execute(sa.text("select datcollate from pg_database where datname = :n"), {"n": name}).scalar()
            ordered = conn.exec_driver_sql(
                "select array_agg(v order by v) from unnest(array['b', 'B', 'a', 'é', 'Z']) v").scalar()
            lowered = conn.exec_driver_sql("select lower('ÉLAN')").scalar()
        engine.dispose()
    finally:
        drop_database(admin_url, name)
    assert collation == "C"
    assert ordered == ["B", "Z", "a", "b", "é"]  # code point order, as Python sorts
    assert lowered == "élan"  # character classes still know non-ASCII letters


def test_plain_frames_store_the_values_to_csv_stores(make_database):
    """copy_plain_frame writes its own CSV: every type it formats reads back as pandas' CSV reads back."""
    import numpy as np
    import pandas as pd

    from smarketing_tasks.db import copy_frame, copy_plain_frame

    texts = ['He said "hi", then left', "two\nlines", "back\\slash", "\\N", "", None, "ümlaut ✓", "plain"]
    n = len(texts)
    frame = pd.DataFrame({
        "key": np.arange(n, dtype="int64"),
        "ratio": [0.1, 2 / 3, 1e-7, 1e16, -0.0, np.nan, 123456.789, 5e-324],
        "money": np.round([0.125, 0.135, 2.675, 1e11 / 3, 0.0, np.nan, 99.995, -1.005], 2),
        "score": np.round([0.05, 0.25, 0.35, 99.95, 100.0, 55.55, np.nan, 12.34], 1),
        "count": np.array([0, 1, 65535, 65536, -3, 2**40, 7, 9], dtype="int64"),
        "rank": pd.array([1, None, 5, 3, None, 2, 4, 1], dtype="Int16"),
        "flag": np.array([True, False] * (n // 2)),
        "maybe": pd.array([True, None, False, True, None, False, True, False], dtype="boolean"),
        "note": pd.Series(texts, dtype="str"),
        "raw": pd.Series(texts, dtype="object"),
        "plain": pd.Series([f"C{i:07d}" for i in range(n)], dtype="str"),
    })
    columns = list(frame.columns)
    ddl = ("(key bigint primary key, ratio double precision, money numeric(14, 2), score numeric(5, 1), count bigint, "
           "rank smallint, flag boolean, maybe boolean, note text, raw text, plain text)")
    engine = make_engine(make_database("plain"))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"create table by_pandas {ddl}")
            conn.exec_driver_sql(f"create table by_plain {ddl}")
            copy_frame(conn, "by_pandas", frame.astype({"note": object, "raw": object}), columns)
            assert copy_plain_frame(conn, "by_plain", frame, columns) == n
            differ = conn.exec_driver_sql(
                "select array_agg(key order by key) from ((table by_pandas except table by_plain) union all "
                "(table by_plain except table by_pandas)) d").scalar()
            stored = conn.exec_driver_sql("select note, raw, ratio::text, count from by_plain order by key").all()
    finally:
        engine.dispose()
    # pandas writes a text "\N" unquoted, so it reads back as NULL: the one value the plain CSV stores better.
    assert differ == [3, 3]
    assert [row.note for row in stored] == texts and [row.raw for row in stored] == texts
    assert stored[1].ratio == repr(2 / 3) and stored[7].ratio == "5e-324" and stored[5].count == 2**40


def test_plain_frames_refuse_columns_they_cannot_write_exactly():
    import pandas as pd

    from smarketing_tasks.db import csv_blocks

    stamps = pd.DataFrame({"at": pd.to_datetime(["2026-11-22T00:00:00Z"])})
    with pytest.raises(TypeError, match="'at'.*copy_frame"):
        list(csv_blocks(stamps, ["at"]))
    mixed = pd.DataFrame({"value": pd.Series(["a", 1], dtype="object")})
    with pytest.raises(TypeError, match="'value' holds values that are not text"):
        list(csv_blocks(mixed, ["value"]))
    blocks = list(csv_blocks(pd.DataFrame({"n": range(5)}), ["n"], rows=2))
    assert blocks == ["0\n1\n", "2\n3\n", "4\n"]


def test_frame_csv_blocks_store_timestamps_and_booleans_as_to_csv_does(make_database):
    """The responses' stage CSV, written ahead of its transaction: zoned and naive timestamps to the microsecond,
    Python booleans in object columns, nullable integers and text read back as copy_frame's do."""
    import pandas as pd

    from smarketing_tasks.db import copy_csv_blocks, copy_frame, frame_csv_blocks

    frame = pd.DataFrame({
        "key": range(4),
        "at": pd.to_datetime(["2026-11-22T00:00:00Z", "2025-01-01T23:59:59.123456+02:00", None, "1999-12-31T12:00Z"],
                             format="ISO8601", utc=True),
        "naive": pd.to_datetime(["2026-11-22 00:00:00.5", None, "2000-02-29 01:02:03", "2026-01-01"], format="ISO8601"),
        "flag": pd.Series([True, False, None, True], dtype=object),
        "stars": pd.array([5, None, 1, 3], dtype="Int64"),
        "note": pd.Series(['a, "b"', None, "two\nlines", "plain"], dtype=object),
    })
    columns = list(frame.columns)
    ddl = "(key bigint primary key, at timestamptz, naive timestamp, flag boolean, stars smallint, note text)"
    engine = make_engine(make_database("stage_csv"))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"create table by_pandas {ddl}")
            conn.exec_driver_sql(f"create table by_blocks {ddl}")
            copy_frame(conn, "by_pandas", frame, columns)
            copy_csv_blocks(conn, "by_blocks", columns, frame_csv_blocks(frame, columns))
            differ = conn.exec_driver_sql(
                "select count(*) from ((table by_pandas except table by_blocks) union all "
                "(table by_blocks except table by_pandas)) d").scalar()
            stored = conn.exec_driver_sql("select count(*), count(at), count(flag) from by_blocks").one()
    finally:
        engine.dispose()
    assert differ == 0 and tuple(stored) == (4, 3, 3)
