"""Settings of the quality gate (``SMARKETING_<NAME>`` or the ``smarketing_settings`` Variable)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from smarketing_tasks.paths import DATA_DIR


@dataclass(frozen=True)
class QualitySettings:
    """Data quality gates (``smarketing_tasks.quality``); suites may set their own threshold."""

    # Default share of a batch's rows that may break row-level expectations (and be quarantined) before the
    # gate fails; a suite's meta.smarketing.max_bad_share wins.
    max_bad_share: float = 0.05
    # Offending values quoted in a failure message, per expectation.
    sample_size: int = 5
    # Most rows one suite run quarantines; a run above it fails (a source this broken needs a person).
    quarantine_cap: int = 100_000
    # "sql" or "pandas" forces every suite to validate there (benchmarks, debugging); empty: each suite's choice.
    force_mode: str = ""
    # Where Data Docs HTML is built; empty: <SMARKETING_DATA_DIR>/data_docs.
    data_docs_dir: str = ""
    # Per-suite thresholds that win over the suite files, e.g. "orders=0.2,customers=0.1": the operator's lever
    # to let a known-bad batch pass once, so that its broken rows move to the quarantine and the loop goes on.
    threshold_overrides: str = ""
    # PostgreSQL parallel workers per GX query (max_parallel_workers_per_gather of the validation sessions); -1: the
    # server's setting. The suites of a stage already validate at once, and GX's compound-key check repeats its
    # whole grouping in every worker: 0 saved a quarter of PostgreSQL's CPU on 1M purchases (docs/benchmarks/validation.md).
    gx_parallel_workers: int = 0

    def threshold_for(self, suite: str, suite_default: float | None) -> float:
        for item in filter(None, (part.strip() for part in self.threshold_overrides.split(","))):
            name, _, value = item.partition("=")
            if name.strip() == suite:
                return float(value)
        return suite_default if suite_default is not None else self.max_bad_share

    def data_docs_path(self) -> Path:
        if self.data_docs_dir:
            return Path(self.data_docs_dir)
        # Read at call time: the demo and tests point SMARKETING_DATA_DIR at their own folder.
        return Path(os.environ.get("SMARKETING_DATA_DIR", DATA_DIR)) / "data_docs"
