"""Run a suite, list recent validation runs, or build the Data Docs, without Airflow.

    python -m smarketing_tasks.quality validate orders --url postgresql://…/warehouse [--mode sql] [--where …]
    python -m smarketing_tasks.quality runs --url postgresql://…/warehouse [--suite orders] [--limit 20]
    python -m smarketing_tasks.quality docs --url postgresql://…/warehouse [--out DIR]

``validate`` is the same gate the DAGs run (it quarantines and records); it exits 1 when the suite fails.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from smarketing_tasks.db import make_engine
from smarketing_tasks.quality.data_docs import build_data_docs
from smarketing_tasks.quality.gate import run_suite
from smarketing_tasks.quality.settings import QualitySettings
from smarketing_tasks.quality.stages import _say
from smarketing_tasks.quality.suites import suite_names


def _validate(engine: sa.Engine, args: argparse.Namespace) -> int:
    run_time = datetime.fromisoformat(args.run_time) if args.run_time else None
    result = run_suite(engine, args.suite, run_id=args.run_id, run_time=run_time, mode=args.mode, table=args.table,
                       where=args.where)
    _say(result, print)
    if not result.success:
        print(result.message, file=sys.stderr)
    return 0 if result.success else 1


def _runs(engine: sa.Engine, args: argparse.Namespace) -> int:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select finished_at, suite, run_id, mode, rows_checked, rows_bad, rows_quarantined, success, seconds "
            "from smarketing.validation_runs where cast(:suite as text) is null or suite = :suite "
            "order by finished_at desc limit :n"), {"suite": args.suite, "n": args.limit}).all()
    print(f"{'finished':<20} {'suite':<18} {'mode':<6} {'rows':>10} {'bad':>8} {'quar.':>8} {'ok':<4} {'s':>6}  run")
    for r in rows:
        print(f"{r.finished_at:%Y-%m-%d %H:%M:%S} {r.suite:<18} {r.mode:<6} {r.rows_checked:>10,} {r.rows_bad:>8,} "
              f"{r.rows_quarantined:>8,} {'yes' if r.success else 'NO':<4} {r.seconds:>6.1f}  {r.run_id}")
    return 0


def _docs(engine: sa.Engine, args: argparse.Namespace) -> int:
    settings = QualitySettings(data_docs_dir=args.out) if args.out else QualitySettings()
    print(f"Data Docs: {build_data_docs(engine, settings)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smarketing_tasks.quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="run one suite on its warehouse table")
    validate.add_argument("suite", choices=suite_names())
    validate.add_argument("--mode", choices=("sql", "pandas"))
    validate.add_argument("--table", help="validate another table with this suite (e.g. a staging copy)")
    validate.add_argument("--where", help="SQL over alias t restricting the batch")
    validate.add_argument("--run-id", default="manual")
    validate.add_argument("--run-time", help="ISO timestamp: the run's logical time (orders distribution history)")
    runs = sub.add_parser("runs", help="list recent validation runs")
    runs.add_argument("--suite")
    runs.add_argument("--limit", type=int, default=20)
    docs = sub.add_parser("docs", help="build the Data Docs from the recorded runs")
    docs.add_argument("--out", help="folder (default <SMARKETING_DATA_DIR>/data_docs)")
    for command in (validate, runs, docs):
        command.add_argument("--url", required=True, help="PostgreSQL URL of the warehouse")
    args = parser.parse_args(argv)
    engine = make_engine(args.url)
    try:
        return {"validate": _validate, "runs": _runs, "docs": _docs}[args.command](engine, args)
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
