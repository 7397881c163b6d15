"""What every smarketing DAG needs from a running task: its "now", and an up-to-date warehouse schema."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import task


def run_time(context: Any) -> pendulum.DateTime:
    """The run's "now" for every rule: its data-interval end, or, for manual and asset-triggered runs
    without one, the moment it was asked to run. Never the wall clock, so reruns and backfills agree."""
    return context.get("data_interval_end") or context["dag_run"].run_after


@task
def migrate_warehouse() -> list[str]:
    """Apply pending warehouse migrations (idempotent; serialised by an advisory lock)."""
    from smarketing_airflow.connections import warehouse_engine
    from smarketing_tasks.migrations import migrate

    applied = migrate(warehouse_engine())
    print(f"migrations applied: {applied or 'none, schema up to date'}")
    return applied
