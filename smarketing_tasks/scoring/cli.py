"""``smarketing score`` and ``smarketing evaluate-cdnow``: scoring outside Airflow (same code as the DAG).

``smarketing_tasks.cli`` registers these with ``add_subcommands(sub, when, say)``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from datetime import datetime


def add_subcommands(sub, when: Callable[[str | None], datetime], say: Callable[[str], None]) -> None:
    def cmd_score(args: argparse.Namespace) -> int:
        from smarketing_tasks.config import load
        from smarketing_tasks.db import make_engine
        from smarketing_tasks.migrations import migrate
        from smarketing_tasks.scoring import ScoringSettings
        from smarketing_tasks.scoring.pipeline import run_all

        overrides = {"partitions": args.partitions} if args.partitions else None
        settings = load(ScoringSettings, os.environ, overrides)
        engine = make_engine(args.warehouse)
        migrate(engine)
        summary = run_all(engine, when(args.until), settings, say=say, full=args.full or None)
        say(f"scored {summary['customers']:,} customers for {summary['score_date']} ({summary['mode']} run; "
            f"{summary['population']:,} customers in all): "
            + ", ".join(f"{segment} {n:,}" for segment, n in summary["segments"].items()))
        say(f"follow-ups written: {summary['follow_ups_written']:,}; open: {summary['follow_ups_open']:,}")
        return 0

    def cmd_evaluate_cdnow(args: argparse.Namespace) -> int:
        from pathlib import Path

        from smarketing_tasks.scoring.cdnow_eval import CDNOW_DIR, report

        say(report(Path(args.data_dir) if args.data_dir else CDNOW_DIR))
        return 0

    score = sub.add_parser("score", help="score advocates and queue follow-ups without Airflow")
    score.add_argument("--warehouse", required=True, help="PostgreSQL URL of the warehouse")
    score.add_argument("--until", help="the scoring run's 'now' (ISO, default today 00:00 UTC)")
    score.add_argument("--partitions", type=int, help="customer partitions (default: setting partitions)")
    score.add_argument("--full", action="store_true",
                       help="rescore every customer (default: only those whose inputs changed or who are due by time)")
    score.set_defaults(func=cmd_score)

    cdnow = sub.add_parser("evaluate-cdnow",
                           help="fit the value model on CDNOW weeks 1-39 and check it on weeks 40-78")
    cdnow.add_argument("--data-dir", help="folder with CDNOW_sample.txt and CDNOW_master.txt (default data/cdnow)")
    cdnow.set_defaults(func=cmd_evaluate_cdnow)
