"""Data quality gates: Great Expectations suites (``expectations/*.json``) between write and publish.

    from smarketing_tasks.quality import gate
    gate(engine, "orders", run_id=run_id, run_time=now, since=window_start, until=window_end)
    checked = gate(frame, "reviews", warehouse=engine, run_id=run_id, source="reviews_api").clean

Stage helpers (``audit_purchases``, ``audit_responses``, ``audit_outbox``, ``audit_scores``, ``mart_gate``)
run a stage's suites and raise one ``QualityGateFailed``. GX itself is imported only when a suite runs.
docs/data-quality.md explains each suite and threshold.
"""

from smarketing_tasks.quality.data_docs import build_data_docs
from smarketing_tasks.quality.gate import QualityGateFailed, SuiteResult, gate, run_suite
from smarketing_tasks.quality.settings import QualitySettings
from smarketing_tasks.quality.stages import (
    audit_loaded,
    audit_marts,
    audit_outbox,
    audit_purchases,
    audit_responses,
    audit_scores,
    audit_suites,
    mart_gate,
)
from smarketing_tasks.quality.suites import SuiteError, load_suite, suite_names

__all__ = ["QualityGateFailed", "QualitySettings", "SuiteError", "SuiteResult", "audit_loaded", "audit_marts", "audit_outbox",
           "audit_purchases", "audit_responses", "audit_scores", "audit_suites", "build_data_docs", "gate",
           "load_suite", "mart_gate", "run_suite", "suite_names"]
