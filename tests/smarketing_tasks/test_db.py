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


def test_plain_frames_store_what_copy_frame_stores(make_database):
    """copy_plain_frame refuses what it cannot write exactly; what it writes reads back as copy_frame's rows."""
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
    assert differ is None  # the text "\N" too: it is quoted, so COPY does not read it as NULL
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


def test_copy_frame_stores_times_mixed_objects_and_every_text_as_given(make_database):
    """Columns csv_blocks refuses go through copy_frame as text PostgreSQL parses back to the same values, and
    no text is lost: a review reading "\\N" stays that text (pandas' to_csv wrote it bare, COPY's NULL)."""
    from datetime import UTC, date, datetime

    import numpy as np
    import pandas as pd

    from smarketing_tasks.db import copy_frame

    texts = ["\\N", "\\", "a\\Nb", '"quoted"', "comma, here", "two\nlines", "", None]
    n = len(texts)
    frame = pd.DataFrame({
        "key": np.arange(n),
        "body": pd.Series(texts, dtype="object"),
        "at": pd.to_datetime(["2026-11-22T10:15:30.123456Z", None, "1997-01-01T00:00:00Z", "2026-03-29T03:30:00+02:00",
                              "2026-11-22T00:00:00Z", None, "2000-02-29T23:59:59Z", "2026-11-22T10:15:30Z"],
                            format="ISO8601", utc=True),
        "naive": pd.to_datetime(["2026-11-22 10:00", None, "1998-06-30 00:00:00.5", "2026-11-22 10:00", None,
                                 "2026-01-01", "2026-01-01", "2026-01-01"], format="ISO8601"),
        "mixed": pd.Series(["x", 1, 2.5, None, True, date(2026, 11, 22), "y,z", np.nan], dtype="object"),
        "amount": pd.array([1.5, None, 0.1, 2.0, None, 3.25, 0.0, -1.0], dtype="Float64"),
        "flag": pd.Series([True, False, None, True, False, None, True, True], dtype="object"),
    })
    engine = make_engine(make_database("copyframe"))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("create table t (key bigint primary key, body text, at timestamptz, "
                                 "naive timestamp, mixed text, amount numeric, flag boolean)")
            assert copy_frame(conn, "t", frame) == n
            rows = conn.exec_driver_sql("select body, at, naive, mixed, amount::text, flag from t order by key").all()
    finally:
        engine.dispose()
    assert [r.body for r in rows] == texts
    assert rows[0].at == datetime(2026, 11, 22, 10, 15, 30, 123456, tzinfo=UTC) and rows[1].at is None
    assert rows[3].at == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert [r.naive for r in rows][:3] == [datetime(2026, 11, 22, 10), None, datetime(1998, 6, 30, 0, 0, 0, 500000)]
    assert [r.mixed for r in rows] == ["x", "1", "2.5", None, "True", "2026-11-22", "y,z", None]
    assert [r.amount for r in rows] == ["1.5", None, "0.1", "2.0", None, "3.25", "0.0", "-1.0"]
    assert [r.flag for r in rows] == [True, False, None, True, False, None, True, True]
