"""The whole-loop bench: its written floor, and its incremental mode (the shop replayed day by day, and a
day's run timed on a tiny shop).

Figures are not asserted (speed targets live in docs/benchmarks); what the mode reads and runs is.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from smarketing_tasks.benchmark import (
    STAGE_WRITES,
    day_table,
    run_incremental_bench,
    shop_as_of,
    written_copy,
    written_floor,
)
from smarketing_tasks.demo_shop import ShopSpec, generate, generate_responses

END = datetime(2026, 11, 22, tzinfo=UTC)
# The stages this project's purchases side owns (each a child process: the others only add minutes here).
STAGES_RUN = ("ingest", "audit_purchases", "plan_outreach")


def _shop(customers: int, days: int, seed: int = 3) -> dict[str, pd.DataFrame]:
    spec = ShopSpec(customers=customers, days=days, end=END, seed=seed)
    tables = generate(spec)
    tables.update(generate_responses(tables, spec))
    return tables


def test_shop_as_of_replays_each_order_to_its_state_at_that_moment():
    tables = _shop(400, 30)
    final = tables["orders"]
    moment = END - timedelta(days=12)
    orders = shop_as_of(tables, moment)["orders"].set_index("order_id")
    at = pd.Timestamp(moment)

    assert set(orders.index) == set(final.loc[final["ordered_at"] <= at, "order_id"])
    assert (orders["updated_at"] <= at).all() and (orders["updated_at"] >= orders["ordered_at"]).all()
    for status, shipped, delivered in (("placed", False, False), ("shipped", True, False), ("delivered", True, True)):
        rows = orders[orders["status"] == status]
        assert rows["shipped_at"].notna().eq(shipped).all(), status
        assert rows["delivered_at"].notna().eq(delivered).all(), status
    # An order returned after the moment was still delivered then; one delivered later was in transit.
    later = final.set_index("order_id").reindex(orders.index)
    returned_later = (later["status"] == "returned") & (later["updated_at"] > at) & (later["delivered_at"] <= at)
    assert returned_later.any() and (orders.loc[returned_later, "status"] == "delivered").all()
    in_transit = (later["shipped_at"] <= at) & (later["delivered_at"] > at)
    assert in_transit.any() and (orders.loc[in_transit, "status"] == "shipped").all()
    assert (orders.loc[in_transit, "updated_at"] == later.loc[in_transit, "shipped_at"]).all()

    snapshot = shop_as_of(tables, moment)
    assert set(snapshot["order_items"]["order_id"]) == set(orders.index)
    assert (snapshot["reviews"]["created_at"] <= at).all() and len(snapshot["reviews"]) < len(tables["reviews"])
    assert (snapshot["customers"]["created_at"] <= at).all()


def test_shop_as_of_the_last_moment_is_the_generated_shop():
    tables = _shop(300, 20)
    snapshot = shop_as_of(tables, END)
    for dataset, frame in tables.items():
        pd.testing.assert_frame_equal(snapshot[dataset].reset_index(drop=True), frame.reset_index(drop=True),
                                      check_dtype=False, obj=dataset)


@pytest.mark.integration
def test_incremental_bench_times_the_first_day_and_the_last_with_the_rest_loaded(admin_url):
    from smarketing_tasks.db import drop_database, make_engine, with_database

    prefix = f"smkt_incremental_{uuid.uuid4().hex[:8]}"
    said: list[str] = []
    purchases, days = 500, 20
    try:
        figures = run_incremental_bench(admin_url, purchases, days, END, seed=1, say=said.append, stages=STAGES_RUN,
                                        database_prefix=prefix)
        warehouse = make_engine(with_database(admin_url, f"{prefix}_warehouse"))
        with warehouse.connect() as conn:
            sent = conn.execute(sa.text("select count(*) from smarketing.outreach_messages "
                                        "where status = 'sent' and due_at < :end"), {"end": END}).scalar()
            last_planned = conn.execute(sa.text("select count(*) from smarketing.outreach_messages "
                                                "where planned_at = :end"), {"end": END}).scalar()
            windows = conn.execute(sa.text("select dataset, window_start from smarketing.ingest_runs "
                                           "where window_end = :end and dataset = 'orders'"), {"end": END}).all()
        warehouse.dispose()
    finally:
        for role in ("shop", "warehouse"):
            drop_database(admin_url, f"{prefix}_{role}")

    by_stage = {f.stage: f for f in figures}
    assert list(by_stage) == list(STAGES_RUN)
    assert all(f.first_seconds > 0 and f.last_seconds > 0 for f in figures)

    # Day 1 reads the shop as it stood at the end of its first day; the last day only what changed that day.
    spec = ShopSpec(customers=int(purchases / 1.66), days=days, end=END, seed=1)
    tables = generate(spec)
    first = shop_as_of(tables, END - timedelta(days=days - 1))
    assert by_stage["ingest"].first_rows == sum(len(first[d]) for d in ("customers", "orders", "order_items"))
    last = shop_as_of(tables, END)
    day_start = pd.Timestamp(END - timedelta(days=1))
    changed_orders = last["orders"][last["orders"]["updated_at"] > day_start]
    changed = ((last["customers"]["updated_at"] > day_start).sum() + len(changed_orders)
               + last["order_items"]["order_id"].isin(changed_orders["order_id"]).sum())
    total = sum(len(last[d]) for d in ("customers", "orders", "order_items"))
    assert changed <= by_stage["ingest"].last_rows < total / 4
    (window,) = windows
    assert window.window_start > END - timedelta(days=2)  # by the watermark: a day and the overlap

    # The audit validates exactly the rows the ingest read, on both days.
    assert by_stage["audit_purchases"].first_rows == by_stage["ingest"].first_rows
    assert by_stage["audit_purchases"].last_rows == by_stage["ingest"].last_rows

    # The history was planned and sent day by day, and the last day planned its own asks.
    assert sent > 0
    assert by_stage["plan_outreach"].last_rows == last_planned > 0

    table = day_table(figures, days)
    assert all(f"| {stage} |" in table for stage in STAGES_RUN) and f"day-{days} s" in table
    assert any("history loaded" in line for line in said)


def _keys_and_indexes(conn: sa.Connection, table: str) -> tuple[list[str], list[str]]:
    """The definitions of a table's constraints and indexes, with the table's own name taken out."""
    name = table.split(".")[1]
    constraints = conn.execute(sa.text("select pg_get_constraintdef(oid) from pg_constraint "
                                       "where conrelid = cast(:t as regclass) order by 1"), {"t": table}).scalars()
    indexes = conn.execute(sa.text("select regexp_replace(pg_get_indexdef(indexrelid), '^.* USING ', '') "
                                   "from pg_index where indrelid = cast(:t as regclass) order by 1"), {"t": table})
    return [c.replace(name, "T") for c in constraints], [i.replace(name, "T") for (i,) in indexes]


@pytest.mark.integration
def test_the_written_floor_copies_into_tables_with_every_index_and_key_each_stage_writes(warehouse_url, warehouse):
    """Each table named exists (the floor skips a missing one, so a renamed table would shrink it silently),
    its copy ends with the same indexes, checks, keys and foreign keys, and the floor leaves no copy behind."""
    import psycopg

    from smarketing_tasks.db import libpq_url
    from smarketing_tasks.marts.publish import publish_marts

    publish_marts(warehouse, END)  # the marts' tables exist from their first publish on
    tables = [t for written in STAGE_WRITES.values() for t in written]
    with warehouse.connect() as conn:
        missing = [t for t in tables if conn.execute(sa.text("select to_regclass(:t)"), {"t": t}).scalar() is None]
    assert missing == []

    with psycopg.connect(libpq_url(warehouse_url), autocommit=True) as raw:
        copies = {table: written_copy(raw, table)[0] for table in tables}
    with warehouse.connect() as conn:
        differ = {t: (_keys_and_indexes(conn, t), _keys_and_indexes(conn, copy)) for t, copy in copies.items()}
    differ = {t: pair for t, pair in differ.items() if pair[0] != pair[1]}
    assert differ == {}
    with warehouse.connect() as conn:
        keys = conn.execute(sa.text("select count(*) from pg_constraint where contype = 'f' "
                                    "and conrelid = 'smarketing.floor_written_review_signals'::regclass")).scalar()
    assert keys == 1  # the foreign key to reviews came along

    assert written_floor(warehouse_url, tuple(tables)) > 0
    with warehouse.connect() as conn:
        left = conn.execute(sa.text("select count(*) from pg_class where relname like 'floor_written_%' "
                                    "and relkind = 'r'")).scalar()
    assert left == 0


@pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
                    reason="needs /proc/<pid>/task/<tid>/children (Linux)")
def test_the_process_tree_rss_counts_the_children_as_psutil_does():
    """The bench's RSS sampler reads the tree from /proc instead of psutil's scan of every process of the machine
    (~5 ms a sample, every 20 ms, in the measured process); it must count the same bytes."""
    import subprocess
    import sys

    import psutil

    from smarketing_tasks.benchmark import proc_tree_rss

    child = subprocess.Popen([sys.executable, "-c", "import sys, time; x = bytearray(64 * 2**20); x[::4096] = "
                              "b'1' * len(x[::4096]); print('ready', flush=True); time.sleep(30)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        me = psutil.Process()
        expected = me.memory_info().rss + sum(c.memory_info().rss for c in me.children(recursive=True))
        found = proc_tree_rss(os.getpid())
        assert abs(found - expected) < 4 * 2**20
        assert found - me.memory_info().rss > 64 * 2**20  # the child's 64 MiB are in
    finally:
        child.kill()
        child.wait()


def test_the_server_clock_counts_the_cpu_a_statement_spent_in_its_backend(warehouse_url):
    """The bench's server CPU column: the clock moves by at least what a busy backend used (read from the
    backend's own process), and once the backend has ended its time is still counted (by the postmaster)."""
    import psutil

    from smarketing_tasks.benchmark import server_cpu_clock
    from smarketing_tasks.db import make_engine

    clock = server_cpu_clock(warehouse_url)
    assert clock is not None, "the test server runs on this machine, so its processes can be read"
    engine = make_engine(warehouse_url)
    before = clock()
    with engine.connect() as conn:
        backend = psutil.Process(conn.execute(sa.text("select pg_backend_pid()")).scalar())
        start = backend.cpu_times()
        conn.execute(sa.text("select count(*) from generate_series(1, 5000000) g where g % 7 = 3"))
        used = sum(backend.cpu_times()[:2]) - sum(start[:2])
    engine.dispose()
    assert used > 0.05
    time.sleep(0.2)  # the postmaster reaps the ended backend and adds its time to its children's
    assert clock() - before >= used * 0.9


def test_the_table_says_how_busy_the_cores_were_and_dashes_what_was_not_measured():
    from smarketing_tasks.benchmark import StageFigures, table

    rendered = table([StageFigures("score", 10, 4.0, 100.0, 1.0, 2.0, 5.0, 2.6),
                      StageFigures("publish_marts", 10, 2.0, 50.0, 1.0, None, 1.0, None)])
    score, publish, total = rendered.splitlines()[2:]
    assert score.endswith("| 5.0 | 2.6 | 1.9 |")  # (5.0 + 2.6) / 4.0 s
    assert publish.endswith("| 1.0 | – | – |")
    assert total.endswith("| 6.0 | – | |")


def test_the_bench_reads_each_stage_s_settings_from_the_environment_as_a_task_does(monkeypatch):
    """``SMARKETING_TEXT_PROCESSES=2 smarketing bench`` must time that setting, not the defaults."""
    from smarketing_tasks.benchmark import _settings
    from smarketing_tasks.responses import ResponsesSettings

    assert _settings(ResponsesSettings).text_processes == ResponsesSettings().text_processes
    monkeypatch.setenv("SMARKETING_TEXT_PROCESSES", "2")
    assert _settings(ResponsesSettings).text_processes == 2


def test_the_chart_draws_each_stage_red_past_three_times_its_floor_with_its_cpu_bound():
    import xml.etree.ElementTree as ET

    from smarketing_tasks.benchmark import StageFigures, chart

    svg = chart([StageFigures("ingest", 10, 20.0, 100.0, 8.0, None, 4.0, 30.0),  # 2.5x: within
                 StageFigures("responses", 10, 40.0, 100.0, 1.0, None, 36.0, 12.0),  # 40x: over
                 StageFigures("publish_marts", 10, 5.0, 100.0, 2.0)])  # CPU not measured
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    bars = [r for r in root.iter(f"{ns}rect") if r.get("class") == "mark"] or \
        [r for r in root.iter("rect") if r.get("class") == "mark"]
    assert [b.get("fill") for b in bars] == ["#2166ac", "#b2182b", "#2166ac"]
    tips = [t.text for t in root.iter() if t.tag.endswith("title")]
    assert "responses: 24.0 s of CPU per core" in tips  # (36 + 12) / 2
    assert not any(t.startswith("publish_marts") and "CPU" in t for t in tips)
    assert "40.0 s · 40.0x floor" in svg
