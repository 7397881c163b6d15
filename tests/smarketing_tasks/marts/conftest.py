"""A warehouse holding the known data set with the marts published once, shared by the read-only tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.smarketing_tasks.marts.known_data import AS_OF, load_known_data


@pytest.fixture(scope="package")
def known_marts(admin_url: str) -> Iterator[sa.Engine]:
    """Known data, marts published as of AS_OF; tests must only read (use ``warehouse`` to change things)."""
    from smarketing_tasks.db import drop_database, ensure_database, make_engine, with_database
    from smarketing_tasks.marts import publish_marts
    from smarketing_tasks.migrations import migrate

    name = f"smkt_marts_{uuid.uuid4().hex[:10]}"
    ensure_database(admin_url, name)
    engine = make_engine(with_database(admin_url, name))
    try:
        migrate(engine)
        load_known_data(engine)
        publish_marts(engine, AS_OF)
        yield engine
    finally:
        engine.dispose()
        drop_database(admin_url, name)
