"""Benchmark: the full orders suite on 1,000,000 orders, validated in PostgreSQL (GX SQL datasource) and in pandas.

    .venv/bin/python benchmarks/bench_validation.py --orders 1000000
    .venv/bin/python benchmarks/bench_validation.py --orders 100000 --repeat 3 --pg-url postgresql://...

The orders are generated inside PostgreSQL (generate_series), 0.2% of them broken in ways the suite must
catch (lower-case currency, delivery before shipping), so that every run also finds, quarantines and moves
rows. Each mode validates its own copy of the table in a child process (the same ``run_suite`` the DAG tasks
call), so that its peak RSS is its own; PostgreSQL's memory is not in that figure (it is the server's shared
buffers and work_mem, bounded by its configuration). Uses the embedded PostgreSQL under .data/bench-postgres
unless --pg-url names another server. Results: docs/benchmarks/validation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODES = ("sql", "pandas")
BROKEN_EVERY = 250  # 0.4% of rows broken: below the suite's 5% threshold, so the gate passes and moves them


def prepare(url: str, orders: int) -> float:
    """Migrated warehouse with customers, and one copy of ``orders`` orders per mode; returns seconds."""
    import sqlalchemy as sa

    from smarketing_tasks.db import make_engine
    from smarketing_tasks.migrations import migrate

    engine = make_engine(url)
    migrate(engine)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "insert into smarketing.customers (customer_id, updated_at, source) "
            "select 'c' || g, timestamptz '2026-01-01', 'bench' from generate_series(0, 49999) g")
        conn.exec_driver_sql("create schema bench")
        conn.execute(sa.text(f"""
            create table bench.orders_template as
            select 'o' || g as order_id, 'c' || (g % 50000) as customer_id,
                   timestamptz '2026-01-01' + g * interval '20 seconds' as ordered_at,
                   (array['placed', 'shipped', 'delivered', 'delivered', 'delivered', 'returned', 'cancelled'])
                       [1 + g % 7] as status,
                   timestamptz '2026-01-02' + g * interval '20 seconds' as shipped_at,
                   case when g % {BROKEN_EVERY} = 7 then timestamptz '2025-12-01'
                        else timestamptz '2026-01-04' + g * interval '20 seconds' end as delivered_at,
                   round((10 + (g % 997) * 0.37)::numeric, 2) as total_amount,
                   case when g % {BROKEN_EVERY} = 3 then 'usd'
                        else (array['USD', 'EUR', 'GBP', 'CAD'])[1 + g % 4] end as currency,
                   null::text as discount_code,
                   timestamptz '2026-01-05' + g * interval '20 seconds' as updated_at,
                   'bench'::text as source, now() as loaded_at
            from generate_series(1, {orders}) g"""))
        for mode in MODES:
            conn.exec_driver_sql(f"create table bench.orders_{mode} (like smarketing.orders including all)")
            conn.exec_driver_sql(f"insert into bench.orders_{mode} select * from bench.orders_template")
        conn.exec_driver_sql("drop table bench.orders_template")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for mode in MODES:
            conn.exec_driver_sql(f"vacuum analyze bench.orders_{mode}")
    engine.dispose()
    return time.perf_counter() - started


def child(url: str, mode: str, run_id: str) -> None:
    """One validation in this process; prints seconds, peak RSS and what the gate found, as JSON."""
    import resource

    from smarketing_tasks.quality.gx_runner import quiet_gx

    quiet_gx()
    started = time.perf_counter()
    import great_expectations  # noqa: F401  # a fixed cost per process, reported apart

    import_seconds = time.perf_counter() - started
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.quality import run_suite

    engine = make_engine(url)
    baseline_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    result = run_suite(engine, "orders", table=f"bench.orders_{mode}", mode=mode, run_id=run_id)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "mode": mode, "seconds": seconds, "import_seconds": import_seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mib": baseline_mib, "rows": result.rows_checked, "rows_bad": result.rows_bad,
        "rows_quarantined": result.rows_quarantined, "success": result.success,
        "expectations": sum(1 for o in result.outcomes if not o.skipped),
    }))


def run_child(url: str, mode: str, run_id: str) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--url", url, "--run-id", run_id],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="validations per mode (the first moves broken rows)")
    parser.add_argument("--pg-url")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--run-id", default="bench", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.url, args.child, args.run_id)
        return

    from smarketing_tasks.benchmark import bench_server, fresh_database

    admin = bench_server(args.pg_url)
    url = fresh_database(admin, "smkt_bench_validation")
    print(f"generating {args.orders:,} orders ({100 / BROKEN_EVERY:.1f}% broken) x {len(MODES)} copies ...", flush=True)
    print(f"  prepared in {prepare(url, args.orders):.1f}s", flush=True)
    rows = []
    for attempt in range(args.repeat):
        for mode in MODES:
            figures = run_child(url, mode, f"bench-{attempt}")
            rows.append(figures)
            print(f"  {mode:<6} run {attempt + 1}: {figures['seconds']:6.1f}s (+{figures['import_seconds']:.1f}s "
                  f"to import GX), peak RSS {figures['peak_rss_mib']:7.0f} MiB, "
                  f"{figures['rows']:,} rows, {figures['rows_bad']:,} bad, {figures['rows_quarantined']:,} "
                  f"quarantined, {figures['expectations']} expectations, success={figures['success']}", flush=True)
    print()
    print("| mode | orders | expectations | validation seconds (median) | + GX import | peak RSS of the process |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode]
        print(f"| {'in PostgreSQL (GX SQL datasource)' if mode == 'sql' else 'pandas (rows read into memory)'} | "
              f"{mine[0]['rows']:,} | {mine[0]['expectations']} | {statistics.median(r['seconds'] for r in mine):.1f} | "
              f"{statistics.median(r['import_seconds'] for r in mine):.1f} | "
              f"{max(r['peak_rss_mib'] for r in mine):,.0f} MiB |")


if __name__ == "__main__":
    main()
