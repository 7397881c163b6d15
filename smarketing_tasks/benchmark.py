"""``smarketing bench``: the whole loop at scale, stage by stage, against the PostgreSQL COPY floor.

Builds a shop of the requested size with the demo generator (plus reviews, posts and email events),
then runs each stage exactly as the DAG tasks call it — ingest, audit, plan outreach, ingest responses,
score, publish marts (sending is excluded: its floor is the SMTP server, see benchmarks/bench_outreach.py).
Each stage runs in a fresh child process so that its peak RSS is its own. The floor of a stage is a
plain COPY of the same rows out of PostgreSQL and into an empty table, measured in the same run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

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


@dataclass(frozen=True)
class StageFigures:
    stage: str
    rows: int
    seconds: float
    peak_rss_mib: float
    floor_seconds: float

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor_seconds if self.floor_seconds else float("nan")


def bench_server(pg_url: str | None, data_dir=None) -> str:
    """Admin URL of the benchmarks' PostgreSQL: ``pg_url`` if given, else an embedded server of their own."""
    if pg_url:
        return pg_url
    from smarketing_tasks import embedded
    from smarketing_tasks.paths import DATA_DIR

    return embedded.ensure_running((data_dir or DATA_DIR) / "bench-postgres", preferred_port=54349).url()


def fresh_database(admin_url: str, name: str) -> str:
    """Drop and recreate database ``name``; returns its URL."""
    from smarketing_tasks.db import drop_database, ensure_database, with_database

    drop_database(admin_url, name)
    ensure_database(admin_url, name)
    return with_database(admin_url, name)


def run_stage(stage: str, shop_url: str, warehouse_url: str, as_of: datetime) -> dict:
    """Run one stage in this process as its DAG task would; returns {"rows": n, "seconds": s}."""
    from smarketing_tasks.db import make_engine

    warehouse = make_engine(warehouse_url)
    run_id = f"bench-{stage}"
    started = time.perf_counter()
    rows = 0
    if stage == "ingest":
        from smarketing_tasks.ingest import ingest_dataset
        from smarketing_tasks.migrations import migrate
        from smarketing_tasks.sources import ReferenceSqlSource

        migrate(warehouse)
        source = ReferenceSqlSource(shop_url)
        for dataset in ("customers", "orders", "order_items"):
            rows += ingest_dataset(source, dataset, warehouse, until=as_of, run_id=run_id).rows_read
    elif stage == "audit_purchases":
        from smarketing_tasks.quality.stages import audit_suites

        results = audit_suites(warehouse, ("customers", "orders", "order_items"), run_id=run_id, run_time=as_of,
                               since=None, until=as_of, say=lambda _: None)
        rows = sum(int(r["rows_checked"]) for r in results)
    elif stage == "plan_outreach":
        from smarketing_tasks.outreach import OutreachSettings, plan_outreach

        result = plan_outreach(warehouse, as_of, OutreachSettings(), run_id=run_id)
        rows = result.planned + result.skipped
    elif stage == "responses":
        from smarketing_tasks.responses import ResponsesSettings, ingest_responses, redeem_referrals
        from smarketing_tasks.responses.sources import shop_response_source

        settings = ResponsesSettings()
        source = shop_response_source({}, shop_url)
        for dataset in ("reviews", "social_posts", "email_events"):
            rows += ingest_responses(source, dataset, warehouse, until=as_of, run_id=run_id, settings=settings,
                                     progress=lambda _: None).rows_read
        redeem_referrals(warehouse, until=as_of, run_id=run_id, settings=settings)
    elif stage == "score":
        from smarketing_tasks.scoring import ScoringSettings
        from smarketing_tasks.scoring.pipeline import run_all

        summary = run_all(warehouse, as_of, ScoringSettings(), say=lambda _: None)
        rows = int(summary.get("customers", 0))
    elif stage == "publish_marts":
        from smarketing_tasks.marts import publish_marts

        rows = sum(publish_marts(warehouse, as_of)["rows"].values())
    else:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    seconds = time.perf_counter() - started
    warehouse.dispose()
    return {"rows": rows, "seconds": seconds}


def timed_copy(source, table: str, target, scratch: str) -> float:
    """Seconds for a plain COPY of ``table`` out of ``source`` (spooled to a file) into ``scratch`` of ``target``
    (psycopg connections): the floor any stage that reads and writes those rows is compared with."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as spool:
        with source.cursor().copy(f"copy {table} to stdout") as out:
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
    import psycopg

    from smarketing_tasks.db import libpq_url

    total = 0.0
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        for table in tables:
            if conn.execute("select to_regclass(%s)", (table,)).fetchone()[0] is None:
                continue
            scratch = "floor_" + table.replace(".", "_")
            conn.execute(f"drop table if exists {scratch}")
            conn.execute(f"create table {scratch} (like {table})")
            total += timed_copy(conn, table, conn, scratch)
            conn.execute(f"drop table {scratch}")
    return total


def _child(stage: str, shop_url: str, warehouse_url: str, as_of: datetime) -> dict:
    completed = subprocess.run(
        [sys.executable, "-m", "smarketing_tasks.benchmark", stage, shop_url, warehouse_url, as_of.isoformat()],
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

    figures = []
    for stage in stages:
        say(f"stage {stage} ...")
        measured = _child(stage, urls["shop"], urls["warehouse"], end)
        tables_of_stage, database = STAGE_ROWS[stage]
        floor = copy_floor(urls[database], tables_of_stage)
        figure = StageFigures(stage, measured["rows"], measured["seconds"], measured["peak_rss_mib"], floor)
        figures.append(figure)
        say(f"  {figure.rows:,} rows in {figure.seconds:.1f}s, peak {figure.peak_rss_mib:.0f} MiB, "
            f"{figure.ratio:.1f}x the COPY floor ({floor:.1f}s)")
    return figures


def table(figures: list[StageFigures]) -> str:
    lines = ["| stage | rows | seconds | rows/s | peak RSS MiB | COPY floor s | × floor |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for f in figures:
        rate = f.rows / f.seconds if f.seconds else 0
        lines.append(f"| {f.stage} | {f.rows:,} | {f.seconds:.1f} | {rate:,.0f} | {f.peak_rss_mib:.0f} | "
                     f"{f.floor_seconds:.1f} | {f.ratio:.1f} |")
    total = sum(f.seconds for f in figures)
    lines.append(f"| **loop** | | {total:.1f} | | {max(f.peak_rss_mib for f in figures):.0f} | "
                 f"{sum(f.floor_seconds for f in figures):.1f} | |")
    return "\n".join(lines)


def peak_rss_sampler() -> Callable[[], float]:
    """Sample this process's RSS every 20 ms; returns a function giving the peak so far in MiB.

    Not ru_maxrss: a child started by fork counts the parent's pages it had before exec."""
    import threading

    import psutil

    process, peak = psutil.Process(), [0]

    def sample() -> None:
        while True:
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    return lambda: peak[0] / 2**20


def _main() -> None:
    stage, shop_url, warehouse_url, as_of = sys.argv[1:5]
    peak = peak_rss_sampler()
    result = run_stage(stage, shop_url, warehouse_url, datetime.fromisoformat(as_of))
    result["peak_rss_mib"] = peak()
    print("STAGE " + json.dumps(result), flush=True)


if __name__ == "__main__":
    _main()


__all__ = ["STAGES", "StageFigures", "run_bench", "run_stage", "table"]
