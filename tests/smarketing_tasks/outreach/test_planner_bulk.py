"""A first planning run into an empty outbox writes without the outbox's secondary indexes and builds them at
the end; a run that died before it rebuilt them is repaired by the next one; the sender is right meanwhile."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks import bulk
from smarketing_tasks.outreach import OutreachSettings, plan_outreach, planner, send_outreach
from tests.smarketing_tasks.outreach.helpers import AS_OF, SmtpServer

pytestmark = pytest.mark.integration
S = replace(OutreachSettings(), link_signing_key="test-key", retry_base_seconds=0.01, batch_size=7)
# Partial indexes of sent rows: a plan writes none, so they are kept rather than rebuilt.
PARTIAL = {"outreach_messages_customer_kind_sent_idx", "outreach_messages_sent_request_reached_idx",
           "outreach_messages_sent_day_idx"}


def _indexes(engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text(
            "select indexname, indexdef from pg_indexes "
            "where schemaname = 'smarketing' and tablename = 'outreach_messages'")).all())


def _pending(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("select count(*) from smarketing.deferred_indexes")).scalar()


def _population(shop, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        shop.customer(f"c{i:03d}")
        shop.order(f"o{i:03d}", f"c{i:03d}", delivered_at=AS_OF - timedelta(days=7))


def _rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "select message_id, idempotency_key, customer_id, order_id, kind, status, status_reason, due_at "
            "from smarketing.outreach_messages order by message_id"))]


def test_a_first_run_writes_without_the_secondary_indexes_and_builds_the_same_ones_back(shop, monkeypatch):
    _population(shop, 5)
    before = _indexes(shop.engine)
    seen = {}
    real_plan = planner._plan

    def spy(*args, **kwargs):
        seen["during"] = set(_indexes(shop.engine))
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(planner, "_plan", spy)
    result = plan_outreach(shop.engine, AS_OF, S, run_id="t")

    assert result.planned == 5 and "indexes" in result.step_seconds
    assert seen["during"] == {"outreach_messages_pkey", "outreach_messages_idempotency_key_key"} | PARTIAL, \
        "the primary key and the unique idempotency key stay (the write's conflict target and id probe need " \
        "them), and the partial indexes of sent rows (a plan writes none)"
    assert _indexes(shop.engine) == before and _pending(shop.engine) == 0


def test_a_run_into_an_outbox_with_rows_keeps_every_index(shop, monkeypatch):
    _population(shop, 2)
    plan_outreach(shop.engine, AS_OF, S, run_id="t1")
    before = _indexes(shop.engine)
    _population(shop, 2, start=2)
    seen = {}
    real_plan = planner._plan
    monkeypatch.setattr(planner, "_plan", lambda *a, **k: seen.setdefault("i", set(_indexes(shop.engine)))
                        and real_plan(*a, **k))

    result = plan_outreach(shop.engine, AS_OF + timedelta(hours=1), S, run_id="t2")

    assert result.planned == 2 and "indexes" not in result.step_seconds
    assert seen["i"] == set(before) and _indexes(shop.engine) == before


def test_a_run_that_fails_midway_leaves_its_indexes_built(shop, monkeypatch):
    _population(shop, 3)
    before = _indexes(shop.engine)

    def boom(*args, **kwargs):
        raise RuntimeError("the warehouse went away")

    monkeypatch.setattr(planner, "_plan", boom)
    with pytest.raises(RuntimeError):
        plan_outreach(shop.engine, AS_OF, S, run_id="t")
    assert _indexes(shop.engine) == before and _pending(shop.engine) == 0


def test_a_run_that_died_before_rebuilding_is_repaired_by_the_next_and_the_sender_is_right_meanwhile(
        shop, monkeypatch):
    _population(shop, 20)
    before = _indexes(shop.engine)
    # A first run that committed its rows and died before the rebuild (killed: no `finally` ran).
    with monkeypatch.context() as m:
        m.setattr(bulk, "rebuild_deferred_indexes", lambda *a, **k: [])
        plan_outreach(shop.engine, AS_OF, S, run_id="dead")
    assert set(_indexes(shop.engine)) == {"outreach_messages_pkey", "outreach_messages_idempotency_key_key"} | PARTIAL
    assert _pending(shop.engine) == 3  # (status, due), (order, kind, status), (customer, due)
    planned = _rows(shop.engine)

    # The sender claims, re-checks and marks without the (status, due), customer and order indexes: slower
    # scans, the same messages, each sent once.
    with SmtpServer() as server:
        report = send_outreach(shop.engine, AS_OF, S, server.params, lambda: AS_OF + timedelta(hours=1),
                               worker="test", warn=lambda _: None)
        again = send_outreach(shop.engine, AS_OF, S, server.params, lambda: AS_OF + timedelta(hours=1),
                              worker="test", warn=lambda _: None)
    assert report.sent == 20 and again.sent == 0
    assert set(server.handler.per_message_id().values()) == {1}
    assert set(server.handler.per_message_id()) == {row[0] for row in planned}

    # The next planning run (the outbox has rows now: not a first run) builds what the dead one left.
    result = plan_outreach(shop.engine, AS_OF + timedelta(hours=1), S, run_id="next")
    assert result.planned == 0 and "indexes" not in result.step_seconds
    assert _indexes(shop.engine) == before and _pending(shop.engine) == 0


def test_a_first_run_writes_the_same_rows_with_or_without_deferring(shop, warehouse, monkeypatch):
    _population(shop, 6)
    shop.customer("c-twice")
    shop.order("o-a", "c-twice", delivered_at=AS_OF - timedelta(days=7))
    shop.order("o-b", "c-twice", delivered_at=AS_OF - timedelta(days=7, hours=1))
    with monkeypatch.context() as m:
        m.setattr(bulk, "defer_indexes_if_empty", lambda *a, **k: [])
        plan_outreach(shop.engine, AS_OF, S, run_id="t")
    kept = _rows(shop.engine)
    with shop.engine.begin() as conn:
        conn.exec_driver_sql("delete from smarketing.outreach_messages")
        conn.exec_driver_sql("delete from smarketing.outreach_plan_runs")
    plan_outreach(shop.engine, AS_OF, S, run_id="t")
    assert _rows(shop.engine) == kept and any(row[5] == "skipped" for row in kept)
