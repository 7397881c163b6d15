"""Benchmark: purchase ingestion against the PostgreSQL COPY floor, DAG parse time, and the demo command.

    .venv/bin/python benchmarks/bench_ingest.py --orders 1000000            # ingestion vs COPY
    .venv/bin/python benchmarks/bench_ingest.py --parse                     # DAG parse time
    .venv/bin/python benchmarks/bench_ingest.py --demo                      # time of `./loop demo --fresh`

Ingestion runs in a child process (the same code as the DAG's tasks) so that its peak RSS is measured
alone; the floor is a plain COPY of the same rows out of the shop and into an empty table of the warehouse,
measured in the same run on the same server. Uses the embedded PostgreSQL under .data/bench-postgres
unless --pg-url names another server.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from smarketing_tasks.schema import PURCHASE_DATASETS  # noqa: E402 (after the path line)

END = datetime(2026, 11, 22, tzinfo=UTC)
DATASETS = PURCHASE_DATASETS


def copy_floor(shop_url: str, warehouse_url: str) -> dict[str, float]:
    """Seconds to COPY each dataset out of the shop (to a file) and into an unindexed table of the warehouse."""
    import psycopg

    from smarketing_tasks.benchmark import timed_copy
    from smarketing_tasks.db import libpq_url

    floor = {}
    with psycopg.connect(libpq_url(shop_url)) as shop, psycopg.connect(libpq_url(warehouse_url)) as wh:
        for dataset in DATASETS:
            definition = shop.execute(
                "select string_agg(quote_ident(attname) || ' ' || format_type(atttypid, atttypmod), ', ' "
                "order by attnum) from pg_attribute where attrelid = %s::regclass and attnum > 0 "
                "and not attisdropped", (f"shop.{dataset}",)).fetchone()[0]
            wh.execute(f"drop table if exists floor_{dataset}")
            wh.execute(f"create table floor_{dataset} ({definition})")
            wh.commit()
            floor[dataset] = timed_copy(shop, f"shop.{dataset}", wh, f"floor_{dataset}")
            wh.execute(f"drop table floor_{dataset}")
            wh.commit()
    return floor


def child_ingest(shop_url: str, warehouse_url: str) -> None:
    from smarketing_tasks.benchmark import peak_rss_sampler
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.ingest import ingest_dataset
    from smarketing_tasks.migrations import migrate
    from smarketing_tasks.sources import ReferenceSqlSource

    peak = peak_rss_sampler()
    warehouse = make_engine(warehouse_url)
    migrate(warehouse)
    source = ReferenceSqlSource(shop_url)
    out = {}
    for dataset in DATASETS:
        result = ingest_dataset(source, dataset, warehouse, until=END, run_id="bench", batch_rows=100_000)
        out[dataset] = {"rows": result.rows_read, "loaded": result.rows_loaded, "seconds": result.seconds}
    out["peak_rss_mib"] = peak()
    print("RESULT " + json.dumps(out))


def child_ingest_one(shop_url: str, warehouse_url: str, dataset: str) -> None:
    """One dataset, as one mapped ``ingest`` task of the DAG runs it."""
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.ingest import ingest_dataset
    from smarketing_tasks.sources import ReferenceSqlSource

    result = ingest_dataset(ReferenceSqlSource(shop_url), dataset, make_engine(warehouse_url), until=END,
                            run_id="bench-concurrent")
    print("RESULT " + json.dumps({"rows": result.rows_read, "seconds": result.seconds}))


def concurrent_ingest(shop_url: str, warehouse_url: str) -> float:
    """Wall seconds to ingest the three datasets at once, one process each (the DAG maps them in parallel)."""
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.migrations import migrate

    migrate(make_engine(warehouse_url))
    started = time.perf_counter()
    children = [subprocess.Popen([sys.executable, __file__, "_child_one", shop_url, warehouse_url, dataset],
                                 stdout=subprocess.PIPE, text=True) for dataset in DATASETS]
    for child in children:
        child.communicate()
        if child.returncode:
            raise SystemExit(f"a concurrent ingest child failed ({child.returncode})")
    return time.perf_counter() - started


def bench_ingest(args) -> None:
    from smarketing_tasks.benchmark import bench_server, fresh_database
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.demo_shop import ShopSpec, generate, write_shop

    admin = bench_server(args.pg_url)
    shop_url, warehouse_url = fresh_database(admin, "bench_shop"), fresh_database(admin, "bench_warehouse")
    customers = int(args.orders / 1.66)
    print(f"generating a shop of ~{args.orders:,} orders ({customers:,} customers)...", flush=True)
    started = time.perf_counter()
    counts = write_shop(make_engine(shop_url), generate(ShopSpec(customers=customers, days=365, end=END, seed=1)))
    print(f"  {counts} in {time.perf_counter() - started:.1f}s", flush=True)

    print("ingesting (child process)...", flush=True)
    child = subprocess.run([sys.executable, __file__, "_child", shop_url, warehouse_url], capture_output=True,
                           text=True, check=True)
    result = json.loads(next(line for line in child.stdout.splitlines() if line.startswith("RESULT "))[7:])
    print("measuring the COPY floor...", flush=True)
    floor = copy_floor(shop_url, warehouse_url)

    total_ingest = sum(result[d]["seconds"] for d in DATASETS)
    total_floor = sum(floor.values())
    print("\n| dataset | rows | ingest s | rows/s | COPY floor s | ratio |\n|---|---:|---:|---:|---:|---:|")
    for dataset in DATASETS:
        r = result[dataset]
        print(f"| {dataset} | {r['rows']:,} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} | "
              f"{floor[dataset]:.1f} | {r['seconds'] / floor[dataset]:.2f}x |")
    rows = sum(result[d]["rows"] for d in DATASETS)
    print(f"| **all** | {rows:,} | {total_ingest:.1f} | {rows / total_ingest:,.0f} | {total_floor:.1f} | "
          f"{total_ingest / total_floor:.2f}x |")
    print(f"\npeak RSS of the ingesting process: {result['peak_rss_mib']:.0f} MiB")

    print("\ningesting the three datasets at once (one process each, as the DAG's mapped tasks)...", flush=True)
    wall = concurrent_ingest(shop_url, fresh_database(admin, "bench_warehouse_concurrent"))
    print(f"concurrent ingest: {wall:.1f}s wall for {rows:,} rows = {wall / total_floor:.2f}x the COPY floor "
          f"({total_floor:.1f}s, the three COPYs one after another)")


def bench_parse(args) -> None:
    """Each round runs the baseline and then every DAG file, so a file is compared with the baseline of its
    own round (the machine's speed drifts between rounds); medians over ``--repeat`` rounds, in wall time
    and in the child's CPU time (which other work on the machine moves less)."""
    import resource

    env = {**os.environ, "AIRFLOW_HOME": tempfile.mkdtemp(), "PYTHONWARNINGS": "ignore",
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONPATH": str(ROOT / "plugins")}

    def timed(code: list[str]) -> tuple[float, float]:
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run([sys.executable, *code], env=env, check=True, capture_output=True)
        wall = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)

    paths = sorted((ROOT / "dags").glob("*.py"))
    baselines: list[tuple[float, float]] = []
    above: dict[str, list[tuple[float, float]]] = {path.name: [] for path in paths}
    for _ in range(args.repeat):
        base_wall, base_cpu = timed(["-c", "import airflow.sdk"])
        baselines.append((base_wall, base_cpu))
        for path in paths:
            wall, cpu = timed([str(path)])
            above[path.name].append((wall - base_wall, cpu - base_cpu))
    median = statistics.median
    print(f"baseline `import airflow.sdk`: {median(w for w, _ in baselines):.2f}s wall, "
          f"{median(c for _, c in baselines):.2f}s CPU (median of {args.repeat} rounds)\n")
    print("| DAG file | above baseline, wall s | above baseline, CPU s |\n|---|---:|---:|")
    for name, deltas in above.items():
        print(f"| {name} | {median(w for w, _ in deltas):+.2f} | {median(c for _, c in deltas):+.2f} |")


def bench_demo(args) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    started = time.perf_counter()
    subprocess.run([str(ROOT / "loop"), "demo", "--fresh", "--data-dir", str(data_dir), "--end", "2026-11-22"],
                   check=True, stdout=subprocess.DEVNULL)
    print(f"`./loop demo --fresh` on a warm package cache: {time.perf_counter() - started:.1f}s")
    subprocess.run([str(ROOT / ".venv/bin/smarketing"), "embedded", "stop", "--data-dir", str(data_dir)], check=False)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        child_ingest(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_child_one":
        child_ingest_one(sys.argv[2], sys.argv[3], sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=0, help="benchmark ingestion of about this many orders")
    parser.add_argument("--parse", action="store_true", help="benchmark DAG parse time")
    parser.add_argument("--demo", action="store_true", help="time the README's first command")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pg-url", help="admin URL of another PostgreSQL server")
    args = parser.parse_args()
    if args.orders:
        bench_ingest(args)
    if args.parse:
        bench_parse(args)
    if args.demo:
        bench_demo(args)


if __name__ == "__main__":
    main()
