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
