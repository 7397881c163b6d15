"""``smarketing bench``: the whole loop at scale, stage by stage, against the PostgreSQL COPY floor.

Builds a shop of the requested size with the demo generator (plus reviews, posts and email events),
then runs each stage exactly as the DAG tasks call it — ingest, audit, plan outreach, ingest responses,
score, publish marts (sending is excluded: its floor is the SMTP server, see benchmarks/bench_outreach.py).
Each stage runs in a fresh child process so that its peak RSS is its own; a mapped task (ingest's datasets,
score's partitions) runs in a forked process of its own, as many at once as the default deployment does. The floor of a stage is a
plain COPY of the same rows out of PostgreSQL and into an empty table, measured in the same run; its second
floor, the written floor, copies the tables the stage writes into empty copies and then builds their indexes
and keys.

``--incremental`` measures what a normal day costs once a year is loaded (``run_incremental_bench``): the
loop on the first day of the shop's history, then the history up to the day before the last loaded
(not timed), then the loop on the last day; the shop database holds, at each point, the shop as it was
at the end of the simulated day (``shop_as_of``), and that moment is every stage's "now".
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

from smarketing_tasks import schema

Say = Callable[[str], None]

# stage → (tables whose rows the stage handles, for the floor; the database they live in)
STAGE_ROWS: dict[str, tuple[tuple[str, ...], str]] = {
    "ingest": (("shop.customers", "shop.orders", "shop.order_items"), "shop"),
    "audit_purchases": (("smarketing.customers", "smarketing.orders", "smarketing.order_items"), "warehouse"),
    "plan_outreach": (("smarketing.outreach_messages",), "warehouse"),
    "responses": (("shop.reviews", "shop.social_posts", "shop.email_events"), "shop"),
    "score": (("smarketing.advocate_scores",), "warehouse"),
    "publish_marts": (("marketing.advocates", "marketing.follow_ups", "marketing.testimonials",
                       "marketing.product_feedback", "marketing.loop_kpis_daily", "marketing.outreach_funnel",
                       "marketing.rewards"), "warehouse"),
}
STAGES = tuple(STAGE_ROWS)
# stage → the warehouse tables it writes, for the second floor (``written_floor``): what writing those rows costs
# as the schema has them (indexes, keys, checks), done the cheapest way, and no more.
STAGE_WRITES: dict[str, tuple[str, ...]] = {
    "ingest": ("smarketing.customers", "smarketing.customer_contacts", "smarketing.orders", "smarketing.order_items",
               "smarketing.order_status_history"),
    "audit_purchases": (),  # writes one validation run: nothing to copy
    "plan_outreach": ("smarketing.outreach_messages",),
    "responses": ("smarketing.reviews", "smarketing.social_posts", "smarketing.email_events",
                  "smarketing.review_signals", "smarketing.suppressions"),
    "score": ("smarketing.advocate_scores", "smarketing.score_state", "smarketing.follow_ups",
              "smarketing.text_signals"),
    "publish_marts": (*STAGE_ROWS["publish_marts"][0], "smarketing.mart_follow_ups", "smarketing.mart_sku_days"),
}
# Mapped tasks one deployment runs at once: docker-compose.yaml's one Celery worker takes
# AIRFLOW_WORKER_CONCURRENCY (default 4) tasks, each in its own process; the bench runs mapped stages so.
WORKER_SLOTS = 4
PURCHASE_DATASETS = schema.PURCHASE_DATASETS


@dataclass(frozen=True)
class StageFigures:
    stage: str
    rows: int
    seconds: float
    peak_rss_mib: float
    floor_seconds: float
    written_floor_seconds: float | None = None  # None: the stage writes no table worth a floor
    python_cpu_seconds: float | None = None  # the stage's process and its forks
    server_cpu_seconds: float | None = None  # None: the server is not on this machine

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor_seconds if self.floor_seconds else float("nan")

    @property
    def cores_busy(self) -> float | None:
        """CPU seconds of the stage and the server per second of wall: near the core count, the stage is
        CPU-bound and only less work makes it faster; near 1, one step at a time waits on another."""
        if self.python_cpu_seconds is None or self.server_cpu_seconds is None or not self.seconds:
            return None
        return (self.python_cpu_seconds + self.server_cpu_seconds) / self.seconds

    @property
    def written_ratio(self) -> float | None:
        return self.seconds / self.written_floor_seconds if self.written_floor_seconds else None


def bench_server(pg_url: str | None, data_dir=None) -> str:
    """Admin URL of the benchmarks' PostgreSQL: ``pg_url`` if given, else an embedded server of their own."""
    if pg_url:
        return pg_url
    from smarketing_tasks import embedded
    from smarketing_tasks.paths import DATA_DIR

    return embedded.ensure_running((data_dir or DATA_DIR) / "bench-postgres", preferred_port=54349).url()


def server_cpu_clock(url: str) -> Callable[[], float] | None:
    """A clock of the CPU seconds the PostgreSQL server behind ``url`` has used, when it runs on this machine.

    The server's processes: the postmaster with the children it has reaped, and the live ones (backends,
    autovacuum, checkpointer, parallel workers). ``None`` when the server's processes cannot be read here
    (another machine, a container, another user without permission).
    """
    import psutil
    import sqlalchemy as sa

    from smarketing_tasks.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            backend = psutil.Process(conn.execute(sa.text("select pg_backend_pid()")).scalar())
            postmaster = psutil.Process(backend.ppid())
            postmaster.cpu_times()  # readable?
    except (psutil.Error, OSError):
        return None
    finally:
        engine.dispose()

    def clock() -> float:
        total = 0.0
        for process in [*postmaster.children(), postmaster]:
            with contextlib.suppress(psutil.NoSuchProcess):  # a backend that ended while this read
                times = process.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        return total

    return clock


def fresh_database(admin_url: str, name: str) -> str:
    """Drop and recreate database ``name``; returns its URL."""
    from smarketing_tasks.db import drop_database, ensure_database, with_database

    drop_database(admin_url, name)
    ensure_database(admin_url, name)
    return with_database(admin_url, name)


def run_stage(stage: str, shop_url: str, warehouse_url: str, as_of: datetime,
              loaded: list[dict] | None = None) -> dict:
    """Run one stage in this process as its DAG task would; returns {"rows": n, "seconds": s}.

    ``loaded``: the ingest stage's results (its "loaded" entry), which the audit validates as the ingest
    DAG's audit does: the rows changed in the windows loaded. Without them the audit covers every row.
    """
    from smarketing_tasks.db import make_engine

    warehouse = make_engine(warehouse_url)
    run_id = f"bench-{stage}-{as_of:%Y%m%dT%H%M}"
    started = time.perf_counter()
    rows = 0
    extra: dict = {}
    if stage == "ingest":
        from smarketing_tasks.migrations import migrate

        migrate(warehouse)
        warehouse.dispose()  # no pooled connection crosses into the forked loaders
        # The DAG maps `ingest` over the datasets: each loads in its own process, at the same time.
        results = _mapped(_ingest_one, [(shop_url, warehouse_url, dataset, as_of, run_id)
                                        for dataset in PURCHASE_DATASETS])
        rows = sum(result["rows_read"] for result in results)
        extra["loaded"] = results
    elif stage == "audit_purchases":
        from smarketing_tasks.quality.stages import PURCHASE_SUITES, audit_purchases, audit_suites

        if loaded is None:
            results = audit_suites(warehouse, PURCHASE_SUITES, run_id=run_id, run_time=as_of,
                                   since=None, until=as_of, say=lambda _: None)
        else:
            results = audit_purchases(warehouse, loaded, run_id=run_id, run_time=as_of, say=lambda _: None)
        rows = sum(int(r["rows_checked"]) for r in results)
    elif stage == "plan_outreach":
        from smarketing_tasks.outreach import OutreachSettings, plan_outreach

        result = plan_outreach(warehouse, as_of, _settings(OutreachSettings), run_id=run_id)
        rows = result.planned + result.skipped
        extra["step_seconds"] = result.step_seconds
    elif stage == "responses":
        from smarketing_tasks.responses import ResponsesSettings, ingest_responses, redeem_referrals
        from smarketing_tasks.responses.sources import shop_response_source

        settings = _settings(ResponsesSettings)
        source = shop_response_source({}, shop_url)
        for dataset in ("reviews", "social_posts", "email_events"):
            rows += ingest_responses(source, dataset, warehouse, until=as_of, run_id=run_id, settings=settings,
                                     progress=lambda _: None).rows_read
        redeem_referrals(warehouse, until=as_of, run_id=run_id, settings=settings)
    elif stage == "score":
        from smarketing_tasks.scoring import ScoringSettings
        from smarketing_tasks.scoring.pipeline import finalize, prepare

        settings = _settings(ScoringSettings)
        prepared = prepare(warehouse, as_of, settings)
        prepared_at = time.perf_counter()
        warehouse.dispose()  # no pooled connection crosses into the forked partitions
        # The DAG maps `score_partition` over the partitions, and the default deployment runs them at once.
        slots = min(prepared.partitions, WORKER_SLOTS)
        _mapped(_score_one, [(warehouse_url, as_of, partition) for partition in range(prepared.partitions)])
        scored_at = time.perf_counter()
        summary = finalize(warehouse, as_of)
        rows = int(summary.get("customers", 0))
        extra["step_seconds"] = {"prepare": round(prepared_at - started, 2), "partitions": round(scored_at - prepared_at, 2),
                                 "finalize": round(time.perf_counter() - scored_at, 2), "slots": slots}
    elif stage == "publish_marts":
        from smarketing_tasks.marts import publish_marts

        rows = sum(publish_marts(warehouse, as_of)["rows"].values())
    else:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    seconds = time.perf_counter() - started
    warehouse.dispose()
    return {"rows": rows, "seconds": seconds, **extra}


def _settings(cls: type):
    """A stage's settings as its DAG task reads them outside Airflow: defaults, then ``SMARKETING_*`` variables
    (so ``SMARKETING_TEXT_PROCESSES=2 smarketing bench …`` times a deployment's setting)."""
    import os

    from smarketing_tasks.config import load

    return load(cls, os.environ)


def _mapped(task: Callable[[tuple], dict], jobs: list[tuple]) -> list[dict]:
    """A mapped task's instances as the default deployment runs them: each in a forked process of its own,
    up to WORKER_SLOTS at once (the caller disposes its engine first: no pooled connection crosses a fork)."""
    with ProcessPoolExecutor(max_workers=min(len(jobs), WORKER_SLOTS),
                             mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(task, jobs))


def _ingest_one(job: tuple[str, str, str, datetime, str]) -> dict:
    """One mapped ``ingest`` task: a dataset's window, in a process of its own."""
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.ingest import ingest_dataset
    from smarketing_tasks.sources import ReferenceSqlSource

    shop_url, warehouse_url, dataset, as_of, run_id = job
    warehouse = make_engine(warehouse_url)
    try:
        return ingest_dataset(ReferenceSqlSource(shop_url), dataset, warehouse, until=as_of, run_id=run_id).as_dict()
    finally:
        warehouse.dispose()


def _score_one(job: tuple[str, datetime, int]) -> dict:
    """One mapped ``score_partition`` task, in a process of its own."""
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.scoring import ScoringSettings
    from smarketing_tasks.scoring.pipeline import score_partition

    warehouse_url, as_of, partition = job
    warehouse = make_engine(warehouse_url)
    try:
        return score_partition(warehouse, as_of, partition, _settings(ScoringSettings))
    finally:
        warehouse.dispose()


def timed_copy(source, table: str, target, scratch: str) -> float:
    """Seconds for a plain COPY of ``table`` out of ``source`` (spooled to a file) into ``scratch`` of ``target``
    (psycopg connections): the floor any stage that reads and writes those rows is compared with."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as spool:
        with source.cursor().copy(f"copy (select * from {table}) to stdout") as out:  # a view too
            for block in out:
                spool.write(block)
        spool.seek(0)
        with target.cursor().copy(f"copy {scratch} from stdin") as into:
            while block := spool.read(1 << 20):
                into.write(block)
    target.commit()
    return time.perf_counter() - started


def copy_floor(url: str, tables: tuple[str, ...]) -> float:
    """Seconds to COPY the rows of ``tables`` out (to a file) and into empty tables of the same shape."""
    return _floor(url, tables, plain_copy)


def written_floor(url: str, tables: tuple[str, ...]) -> float:
    """Seconds to write the rows of ``tables`` as the schema has them, the cheapest way there is: COPY them out
    and into an empty copy of each table, then build its keys, checks, foreign keys (pointing at the real
    tables) and indexes, as a first bulk load would. The plain ``copy_floor`` builds none of them."""
    return _floor(url, tables, written_copy)


def _floor(url: str, tables: tuple[str, ...], copy_one: Callable[..., tuple[str, float]]) -> float:
    """The seconds ``copy_one(conn, table) -> (scratch, seconds)`` takes over the tables that exist, each
    scratch copy dropped after."""
    import psycopg

    from smarketing_tasks.db import libpq_url

    total = 0.0
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        for table in tables:
            if conn.execute("select to_regclass(%s)", (table,)).fetchone()[0] is None:
                continue
            scratch, seconds = copy_one(conn, table)
            conn.execute(f"drop table {scratch}")
            total += seconds
    return total


def plain_copy(conn, table: str) -> tuple[str, float]:
    """Copy ``table`` into ``floor_<schema>_<name>``, a table of the same columns and nothing else."""
    scratch = "floor_" + table.replace(".", "_")
    conn.execute(f"drop table if exists {scratch}")
    conn.execute(f"create table {scratch} (like {table})")
    return scratch, timed_copy(conn, table, conn, scratch)


def written_copy(conn, table: str) -> tuple[str, float]:
    """Copy ``table`` (``schema.name``) into ``schema.floor_written_name`` and give the copy the table's
    constraints and indexes; returns the copy's name and the seconds it took. ``conn``: psycopg, autocommit."""
    import re

    schema_name, name = table.split(".")
    scratch = f"{schema_name}.floor_written_{name}"
    conn.execute(f"drop table if exists {scratch}")
    conn.execute(f"create table {scratch} (like {table})")  # columns and not-null only
    constraints = conn.execute(
        "select pg_get_constraintdef(oid) from pg_constraint where conrelid = %s::regclass "
        "and contype in ('p', 'u', 'x', 'c', 'f') order by contype in ('c', 'f'), conname", (table,)).fetchall()
    indexes = conn.execute(   # those not already built by a key above
        "select pg_get_indexdef(i.indexrelid) from pg_index i where i.indrelid = %s::regclass "
        "and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid) order by 1",
        (table,)).fetchall()
    seconds = timed_copy(conn, table, conn, scratch)
    started = time.perf_counter()
    for (definition,) in constraints:
        conn.execute(f"alter table {scratch} add {definition}")
    for (definition,) in indexes:
        conn.execute(re.sub(r"^CREATE (UNIQUE )?INDEX \S+ ON \S+ ", rf"CREATE \1INDEX ON {scratch} ", definition))
    return scratch, seconds + time.perf_counter() - started


def _child(stage: str, shop_url: str, warehouse_url: str, as_of: datetime, loaded: list[dict] | None = None) -> dict:
    completed = subprocess.run(
        [sys.executable, "-m", "smarketing_tasks.benchmark", stage, shop_url, warehouse_url, as_of.isoformat(),
         json.dumps(loaded)],
        capture_output=True, text=True,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{completed.stderr[-4000:]}")
    line = next(x for x in completed.stdout.splitlines() if x.startswith("STAGE "))
    return json.loads(line[6:])


def run_bench(admin_url: str, purchases: int, days: int, end: datetime, seed: int, say: Say,
              stages: tuple[str, ...] = STAGES) -> list[StageFigures]:
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.demo_shop import ShopSpec, generate, generate_responses, write_shop

    urls = {role: fresh_database(admin_url, f"smarketing_bench_{role}") for role in ("shop", "warehouse")}
    spec = ShopSpec(customers=max(1, int(purchases / 1.66)), days=days, end=end, seed=seed)
    say(f"building a shop: ~{purchases:,} purchases by {spec.customers:,} customers over {days} days")
    started = time.perf_counter()
    tables = generate(spec)
    tables.update(generate_responses(tables, spec))
    counts = write_shop(make_engine(urls["shop"]), tables)
    say("  " + ", ".join(f"{n:,} {t}" for t, n in counts.items()) + f" ({time.perf_counter() - started:.0f}s)")

    import resource

    server_clock = server_cpu_clock(admin_url)
    figures = []
    for stage in stages:
        say(f"stage {stage} ...")
        python_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_before = server_clock() if server_clock else None
        measured = _child(stage, urls["shop"], urls["warehouse"], end)
        server_cpu = server_clock() - server_before if server_clock else None
        python_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        python_cpu = (python_after.ru_utime + python_after.ru_stime) - (python_before.ru_utime + python_before.ru_stime)
        tables_of_stage, database = STAGE_ROWS[stage]
        floor = copy_floor(urls[database], tables_of_stage)
        written = written_floor(urls["warehouse"], STAGE_WRITES[stage]) if STAGE_WRITES[stage] else None
        figure = StageFigures(stage, measured["rows"], measured["seconds"], measured["peak_rss_mib"], floor, written,
                              python_cpu, server_cpu)
        figures.append(figure)
        say(f"  {figure.rows:,} rows in {figure.seconds:.1f}s, peak {figure.peak_rss_mib:.0f} MiB, "
            f"{figure.ratio:.1f}x the COPY floor ({floor:.1f}s)"
            + (f", {figure.written_ratio:.1f}x the written floor ({written:.1f}s)" if written else ""))
    return figures


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def table(figures: list[StageFigures]) -> str:
    lines = ["| stage | rows | seconds | rows/s | peak RSS MiB | COPY floor s | × floor | written floor s | × written "
             "| Python CPU s | server CPU s | cores busy |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for f in figures:
        rate = f.rows / f.seconds if f.seconds else 0
        written = (f"{f.written_floor_seconds:.1f} | {f.written_ratio:.1f}" if f.written_floor_seconds
                   else "– | –")
        lines.append(f"| {f.stage} | {f.rows:,} | {f.seconds:.1f} | {rate:,.0f} | {f.peak_rss_mib:.0f} | "
                     f"{f.floor_seconds:.1f} | {f.ratio:.1f} | {written} | {_seconds(f.python_cpu_seconds)} | "
                     f"{_seconds(f.server_cpu_seconds)} | {_seconds(f.cores_busy)} |")
    total = sum(f.seconds for f in figures)
    servers = [f.server_cpu_seconds for f in figures]
    server_total = None if None in servers else sum(servers)
    lines.append(f"| **loop** | | {total:.1f} | | {max(f.peak_rss_mib for f in figures):.0f} | "
                 f"{sum(f.floor_seconds for f in figures):.1f} | | "
                 f"{sum(f.written_floor_seconds or 0 for f in figures):.1f} | | "
                 f"{sum(f.python_cpu_seconds or 0 for f in figures):.1f} | {_seconds(server_total)} | |")
    return "\n".join(lines)


TARGET_FLOOR_RATIO = 3  # issue 9: each stage within 3x its COPY floor
CORES = 2  # this machine's; the chart's CPU-bound line divides by it


def chart(figures: list[StageFigures], cores: int = CORES) -> str:
    """An SVG of the table: per stage, its seconds (red past 3x its COPY floor), the 3x budget behind it, and
    a tick where it would end if every step overlapped on ``cores`` cores ((Python + server CPU) / cores)."""
    from html import escape

    from smarketing_tasks.report.charts import ACCENT, BEHIND, WIDTH, _rect, _svg, _text

    left, right, row_height, top = 150, 190, 30, 34
    height = top + row_height * len(figures) + 26
    span = WIDTH - left - right
    longest = max(max(f.seconds, TARGET_FLOOR_RATIO * f.floor_seconds) for f in figures) or 1.0

    def x_of(seconds: float) -> float:
        return left + span * seconds / longest

    content = [f'<rect x="{left}" y="8" width="10" height="10" fill="#d9d9d9"/>',
               _text(left + 14, 17, f"{TARGET_FLOOR_RATIO}x the COPY floor"),
               f'<rect x="{left + 150}" y="8" width="10" height="10" fill="{ACCENT}"/>', _text(left + 164, 17, "stage"),
               f'<rect x="{left + 215}" y="8" width="10" height="10" fill="{BEHIND}"/>', _text(left + 229, 17, "over"),
               f'<line x1="{left + 285}" y1="6" x2="{left + 285}" y2="20" stroke="#000" stroke-width="2"/>',
               _text(left + 291, 17, f"CPU-bound on {cores} cores")]
    for i, f in enumerate(figures):
        y = top + i * row_height
        budget = TARGET_FLOOR_RATIO * f.floor_seconds
        content.append(_text(left - 10, y + 18, f.stage, "end"))
        content.append(f'<rect x="{left}" y="{y + 2}" width="{max(x_of(budget) - left, 0.5):.1f}" '
                       f'height="{row_height - 4}" fill="#d9d9d9"><title>{escape(f"{f.stage}: 3x its COPY floor: {budget:.1f} s")}'
                       "</title></rect>")
        color = BEHIND if f.seconds > budget else ACCENT
        content.append(_rect(left, y + 8, x_of(f.seconds) - left, row_height - 16, color,
                             f"{f.stage}: {f.seconds:.1f} s, {f.ratio:.1f}x its COPY floor ({f.floor_seconds:.1f} s)"))
        if f.python_cpu_seconds is not None and f.server_cpu_seconds is not None:
            bound = (f.python_cpu_seconds + f.server_cpu_seconds) / cores
            content.append(f'<line x1="{x_of(bound):.1f}" y1="{y + 3}" x2="{x_of(bound):.1f}" y2="{y + row_height - 3}" '
                           f'stroke="#000" stroke-width="2"><title>{escape(f"{f.stage}: {bound:.1f} s of CPU per core")}'
                           "</title></line>")
        content.append(_text(left + span + 8, y + 18, f"{f.seconds:.1f} s · {f.ratio:.1f}x floor"))
    content.append(_text(left, height - 6, "0 s"))
    content.append(_text(left + span, height - 6, f"{longest:.0f} s", "end"))
    # a file of its own (docs/benchmarks/), not inline in a page: it needs its namespace
    return _svg(height, content, "Each stage's seconds against three times its COPY floor").replace(
        "<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1)


# --- incremental cost: a normal day with a year loaded, against the first day ---------------------------

RESPONSE_TIMES = {"reviews": "created_at", "social_posts": "posted_at", "email_events": "occurred_at"}
TARGET_RATIO = 1.5  # issue 9: a day's run with a year loaded within 1.5x the first day's


@dataclass(frozen=True)
class DayFigures:
    stage: str
    first_rows: int
    first_seconds: float
    last_rows: int
    last_seconds: float

    @property
    def ratio(self) -> float:
        return self.last_seconds / self.first_seconds if self.first_seconds else float("nan")


def shop_as_of(tables: dict, moment: datetime) -> dict:
    """The shop as it stood at ``moment``, from the generator's final state (which holds each order's event
    times): customers created by then, orders placed by then at the status they had, with ``updated_at`` their
    latest event by then, their lines, and the responses dated by then."""
    import numpy as np
    import pandas as pd

    at = pd.Timestamp(moment)
    orders = tables["orders"][tables["orders"]["ordered_at"] <= at].copy()
    # Returned and cancelled orders were last updated when they were returned or cancelled.
    closed_at = orders["updated_at"].where(orders["status"].isin(["returned", "cancelled"]))
    closed = (closed_at <= at).to_numpy()
    shipped = orders["shipped_at"].where(orders["shipped_at"] <= at)
    delivered = orders["delivered_at"].where(orders["delivered_at"] <= at)
    orders["status"] = np.select([closed, delivered.notna().to_numpy(), shipped.notna().to_numpy()],
                                 [orders["status"].to_numpy(), "delivered", "shipped"], "placed")
    orders["shipped_at"], orders["delivered_at"] = shipped, delivered
    orders["updated_at"] = pd.concat([orders["ordered_at"], shipped, delivered, closed_at.where(closed)],
                                     axis=1).max(axis=1)
    snapshot = {
        "customers": tables["customers"][tables["customers"]["created_at"] <= at],
        "orders": orders,
        "order_items": tables["order_items"][tables["order_items"]["order_id"].isin(orders["order_id"])],
    }
    for dataset, column in RESPONSE_TIMES.items():
        if dataset in tables:
            snapshot[dataset] = tables[dataset][tables[dataset][column] <= at]
    return snapshot


def mark_sent(warehouse, until: datetime) -> int:
    """Stand in for the send stage (not measured: its floor is the SMTP server): planned messages due by
    ``until`` went out when due, so reminders, caps and cooldowns see a real outbox history."""
    import sqlalchemy as sa

    with warehouse.begin() as conn:
        return conn.execute(sa.text(
            "update smarketing.outreach_messages set status = 'sent', sent_at = due_at, attempts = attempts + 1 "
            "where status = 'planned' and due_at <= :until"), {"until": until}).rowcount


def run_day(urls: dict[str, str], as_of: datetime, stages: tuple[str, ...], say: Say) -> dict[str, dict]:
    """Every stage of one day's run, each in a child process; the audit gets the ingest's windows."""
    measured: dict[str, dict] = {}
    for stage in stages:
        loaded = measured.get("ingest", {}).get("loaded")
        measured[stage] = _child(stage, urls["shop"], urls["warehouse"], as_of, loaded)
        say(f"  {stage}: {measured[stage]['rows']:,} rows in {measured[stage]['seconds']:.2f}s")
    return measured


def load_history(urls: dict[str, str], tables: dict, first_day: datetime, last_day: datetime, say: Say,
                 stages: tuple[str, ...] = STAGES) -> None:
    """Not measured: bring the warehouse from the end of ``first_day`` to the end of ``last_day``.

    Purchases, responses, scores and marts load in one catch-up run as of ``last_day`` (each stage is
    incremental by its own watermark); the planner runs once per planning window (asks whose moment
    passed longer ago are never planned, so consecutive windows plan every ask once), with the planned
    messages marked sent as they fall due, so the outbox holds a year of requests and reminders.
    Purchases always load; the other stages only when measured.
    """
    from datetime import timedelta

    from smarketing_tasks.db import make_engine
    from smarketing_tasks.demo_shop import write_shop
    from smarketing_tasks.outreach import OutreachSettings, plan_outreach

    started = time.perf_counter()
    write_shop(make_engine(urls["shop"]), shop_as_of(tables, last_day))
    warehouse = make_engine(urls["warehouse"])
    ingested = run_stage("ingest", urls["shop"], urls["warehouse"], last_day)
    if "audit_purchases" in stages:
        run_stage("audit_purchases", urls["shop"], urls["warehouse"], last_day, ingested["loaded"])
    if "responses" in stages:
        run_stage("responses", urls["shop"], urls["warehouse"], last_day)
    say(f"  history loaded to {last_day:%Y-%m-%d} ({time.perf_counter() - started:.0f}s)")
    if "plan_outreach" in stages:
        settings, day, planned = _settings(OutreachSettings), first_day, 0
        step = timedelta(days=min(settings.ask_window_days, settings.request_ttl_days))
        mark_sent(warehouse, day)
        while day < last_day:
            day = min(day + step, last_day)
            planned += plan_outreach(warehouse, day, settings, run_id=f"bench-history-{day:%Y%m%d}").planned
            mark_sent(warehouse, day)
        say(f"  {planned:,} messages planned window by window and sent ({time.perf_counter() - started:.0f}s)")
    for stage in ("score", "publish_marts"):
        if stage in stages:
            run_stage(stage, urls["shop"], urls["warehouse"], last_day)
    # A normal day does not follow a year's bulk load: vacuum what the catch-up rewrote and write its dirty
    # pages out now, or day 365's stages pay for autovacuum and a checkpoint of the history's ~0.5 GB of WAL
    with warehouse.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("vacuum analyze")
        conn.exec_driver_sql("checkpoint")
    warehouse.dispose()
    say(f"  scored and published ({time.perf_counter() - started:.0f}s)")


def run_incremental_bench(admin_url: str, purchases: int, days: int, end: datetime, seed: int, say: Say,
                          stages: tuple[str, ...] = STAGES,
                          database_prefix: str = "smarketing_bench_incremental") -> list[DayFigures]:
    """Time each stage on the first day of a ``days``-day shop and on its last day with the rest loaded.

    The databases ``<database_prefix>_shop`` and ``_warehouse`` are recreated, and kept afterwards for a look.
    """
    from datetime import timedelta

    from smarketing_tasks.db import make_engine
    from smarketing_tasks.demo_shop import ShopSpec, generate, generate_responses, write_shop

    if days < 3:
        raise ValueError("the incremental bench needs 3 days at least: a first day, history, a last day")
    # Databases of its own: the whole-loop bench may run on the same server at the same time.
    urls = {role: fresh_database(admin_url, f"{database_prefix}_{role}") for role in ("shop", "warehouse")}
    spec = ShopSpec(customers=max(1, int(purchases / 1.66)), days=days, end=end, seed=seed)
    say(f"building a shop: ~{purchases:,} purchases by {spec.customers:,} customers over {days} days")
    tables = generate(spec)
    tables.update(generate_responses(tables, spec))
    first_day, last_day = end - timedelta(days=days - 1), end
    shop = make_engine(urls["shop"])

    counts = write_shop(shop, shop_as_of(tables, first_day))
    say(f"day 1 (until {first_day.isoformat()}): " + ", ".join(f"{n:,} {t}" for t, n in counts.items()))
    first = run_day(urls, first_day, stages, say)

    say(f"days 2-{days - 1}, not timed:")
    load_history(urls, tables, first_day, last_day - timedelta(days=1), say, stages)

    counts = write_shop(shop, shop_as_of(tables, last_day))
    shop.dispose()
    say(f"day {days} (until {last_day.isoformat()}): " + ", ".join(f"{n:,} {t}" for t, n in counts.items()))
    last = run_day(urls, last_day, stages, say)
    return [DayFigures(stage, first[stage]["rows"], first[stage]["seconds"], last[stage]["rows"],
                       last[stage]["seconds"]) for stage in stages]


def day_table(figures: list[DayFigures], days: int) -> str:
    lines = [f"| stage | day-1 rows | day-1 s | day-{days} rows | day-{days} s | ratio | < {TARGET_RATIO} |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for f in figures:
        lines.append(f"| {f.stage} | {f.first_rows:,} | {f.first_seconds:.2f} | {f.last_rows:,} | "
                     f"{f.last_seconds:.2f} | {f.ratio:.2f} | {'yes' if f.ratio < TARGET_RATIO else '**no**'} |")
    first, last = sum(f.first_seconds for f in figures), sum(f.last_seconds for f in figures)
    ratio = last / first if first else float("nan")
    lines.append(f"| **loop** | | {first:.2f} | | {last:.2f} | {ratio:.2f} | "
                 f"{'yes' if ratio < TARGET_RATIO else '**no**'} |")
    return "\n".join(lines)


def proc_tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants, from /proc (each thread's ``children`` list, then
    ``statm``: the figure psutil's ``memory_info().rss`` reads)."""
    page, total, pending = os.sysconf("SC_PAGE_SIZE"), 0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError, ValueError, IndexError):  # it ended between the listing and the reading
            with open(f"/proc/{current}/statm") as statm:
                total += int(statm.read().split()[1]) * page
            for thread in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{thread}/children") as children:
                    pending.extend(int(child) for child in children.read().split())
    return total


def peak_rss_sampler() -> Callable[[], float]:
    """Sample the RSS of this process and its children together every 20 ms (the ingest stage loads its
    datasets in child processes, as the DAG's mapped tasks); returns the peak so far in MiB.

    Not ru_maxrss: a child started by fork counts the parent's pages it had before exec. The sum counts
    pages a forked child still shares with its parent twice, so it errs high."""
    import threading

    import psutil

    process, peak = psutil.Process(), [0]

    def tree_rss() -> int:
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):  # it ended between the listing and the reading
                total += child.memory_info().rss
        return total

    # psutil finds children by reading every process of the machine (~5 ms of CPU a sample with 160 processes:
    # 6 s of a 1M responses run, in this process, holding the GIL); Linux lists each thread's children itself.
    if Path(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/children").exists():
        tree_rss = partial(proc_tree_rss, os.getpid())

    def sample() -> None:
        while True:
            peak[0] = max(peak[0], tree_rss())
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    return lambda: peak[0] / 2**20


def _main() -> None:
    stage, shop_url, warehouse_url, as_of = sys.argv[1:5]
    loaded = json.loads(sys.argv[5]) if len(sys.argv) > 5 else None
    peak = peak_rss_sampler()
    result = run_stage(stage, shop_url, warehouse_url, datetime.fromisoformat(as_of), loaded)
    result["peak_rss_mib"] = peak()
    print("STAGE " + json.dumps(result), flush=True)


if __name__ == "__main__":
    _main()


__all__ = ["STAGES", "DayFigures", "StageFigures", "day_table", "run_bench", "run_incremental_bench", "run_stage", "shop_as_of",
           "table"]
