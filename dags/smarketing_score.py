"""
### smarketing_score — score advocates and queue follow-ups

Runs whenever new purchases **or** new responses arrive (Assets `smarketing://purchases` |
`smarketing://responses`), for the run's logical time ("now"), and keeps history per score date.

1. **migrate_warehouse** — applies pending migrations (idempotent).
2. **prepare_scoring** — one SQL statement builds `smarketing.score_inputs` for the date: per-customer
   orders, RFM quintiles, BG/NBD inputs, latest review / NPS answer / post, reach, referrals, complaints,
   and a partition number `hash(customer_id) mod partitions`. The value model (BG/NBD + Gamma-Gamma, by
   maximum likelihood) is fitted once for all customers and kept in `smarketing.score_models`.
3. **score_partition** (dynamic task mapping, one task per partition, spread over workers) — VADER
   sentiment with a language check, the lukewarm rule, NPS class, value, advocacy, `advocate_score` 0–100,
   segment and reasons in plain words; replaces the partition's rows in `smarketing.advocate_scores`.
4. **finalize_follow_ups** — ranks lukewarm, at-risk and detractor customers by value and recency into
   priorities 1–5 and upserts `smarketing.follow_ups` (one row per customer and reason; reruns update,
   never duplicate; a closed item reopens only when the customer said something new).
5. **publish_marts** — emits the Asset `smarketing://marts` (the marts DAG/tasks build from it).

Settings: `smarketing_tasks.scoring.settings.ScoringSettings` (env `SMARKETING_*` or the Variable
`smarketing_settings`), e.g. `partitions`, the lukewarm thresholds and the score weights.
Rules and the check on the real CDNOW history: docs/scoring.md.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task
from smarketing_airflow.assets import MARTS, PURCHASES, RESPONSES
from smarketing_airflow.defaults import DEFAULT_ARGS, tags


def _run_time(context) -> pendulum.DateTime:
    """The run's "now": its data-interval end, or when it was asked to run for manual/asset runs without one."""
    return context.get("data_interval_end") or context["dag_run"].run_after


@dag(
    dag_id="smarketing_score",
    schedule=(PURCHASES | RESPONSES),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=tags("score", "advocates"),
    doc_md=__doc__,
)
def smarketing_score():
    @task
    def migrate_warehouse() -> list[str]:
        """Apply pending schema migrations (idempotent, serialised by an advisory lock)."""
        from smarketing_airflow.connections import warehouse_engine

        from smarketing_tasks.migrations import migrate

        return migrate(warehouse_engine())

    # HOOK (data quality): the validation gate of the responses/quality stage goes here, between
    # migrate_warehouse and prepare_scoring, so that scoring only reads validated rows.

    @task
    def prepare_scoring() -> list[int]:
        """Per-customer aggregates in SQL and the value model; returns the partitions to score."""
        from smarketing_airflow.connections import settings, warehouse_engine

        from smarketing_tasks.scoring import ScoringSettings
        from smarketing_tasks.scoring.pipeline import prepare

        prepared = prepare(warehouse_engine(), _run_time(get_current_context()), settings(ScoringSettings))
        print(prepared.as_dict())
        return list(range(prepared.partitions))

    @task(map_index_template="partition {{ partition }}")
    def score_partition(partition: int) -> dict:
        """Score one partition of customers (hash of customer_id)."""
        from smarketing_airflow.connections import settings, warehouse_engine

        from smarketing_tasks.scoring import ScoringSettings
        from smarketing_tasks.scoring.pipeline import score_partition as score

        result = score(warehouse_engine(), _run_time(get_current_context()), partition, settings(ScoringSettings))
        print(result)
        return result

    @task
    def finalize_follow_ups(results: list[dict]) -> dict:
        """Check every partition was scored, then rank and upsert the follow-ups."""
        from smarketing_airflow.connections import warehouse_engine

        from smarketing_tasks.scoring.pipeline import finalize

        summary = finalize(warehouse_engine(), _run_time(get_current_context()))
        print(summary)
        return summary

    # HOOK (marts): mart publishing (schema marketing) goes here, after finalize_follow_ups; until it does,
    # this task only announces that fresh scores exist.
    @task(outlets=[MARTS])
    def publish_marts(summary: dict) -> dict:
        """Announce fresh scores to the marts (Asset smarketing://marts)."""
        get_current_context()["outlet_events"][MARTS].extra = {
            "score_date": summary["score_date"], "customers": summary["customers"]}
        return summary

    partitions = prepare_scoring()
    scored = score_partition.expand(partition=partitions)
    migrate_warehouse() >> partitions
    publish_marts(finalize_follow_ups(scored))


smarketing_score()
