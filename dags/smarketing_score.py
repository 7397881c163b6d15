"""
### smarketing_score — score advocates and queue follow-ups

Runs whenever new purchases **or** new responses arrive (Assets `smarketing://purchases` |
`smarketing://responses`), for the run's logical time ("now"), and keeps history per score date.

1. **migrate_warehouse** — applies pending migrations (idempotent).
2. **prepare_scoring** — decides who is scored: on a normal day only the customers whose inputs changed
   since the last run (a change log that triggers fill) and those whose segment may change with time alone
   today (`score_state.rescore_on`); everyone on the first run, on a backfill, or when forced (param
   `full_rescore`, setting `full_rescore`). One SQL statement builds `smarketing.score_inputs` for them (a full
   run: `input_builders` statements at once, each for its share of the partitions):
   orders, BG/NBD inputs, latest review (with its stored sentiment) / NPS answer / post, reach, referrals,
   complaints, and a partition number `hash(customer_id) mod partitions`. The value model (BG/NBD +
   Gamma-Gamma, by maximum likelihood, and the RFM cut points) is refitted on its cadence
   (`model_refit_days`, `model_refit_changed_share`) and kept in `smarketing.score_models`.
3. **score_partition** (dynamic task mapping, one task per partition, spread over workers) — the lukewarm
   rule, NPS class, value, advocacy, `advocate_score` 0–100, segment and reasons in plain words; replaces the
   partition's rows of the date in `smarketing.advocate_scores` (a customer's current score is their latest
   row) and their `score_state`.
4. **audit_scores** — validates the date's scores with the Great Expectations suite `advocate_scores`;
   a breach fails without retries, so no follow-up or mart is built from bad scores.
5. **finalize_follow_ups** — ranks lukewarm, at-risk and detractor customers by value and recency into
   priorities 1–5 and upserts `smarketing.follow_ups` (one row per customer and reason; reruns update,
   never duplicate; a closed item reopens only when the customer said something new); records the run and
   the segment counts of the whole customer base in `smarketing.score_runs`.
6. **publish_marts** — brings the marts (docs/data-dictionary.md) up to date in schema `marketing_build`:
   on a normal day only the rows of the customers and days whose inputs changed since the last publish (a
   change log that triggers fill), in full on the first run, a backfill, changed mart SQL or settings, or
   when forced (param `full_rebuild_marts`, setting `full_rebuild`); audits them there with the mart suites
   and publishes them into `marketing` in one transaction (a failed build or audit leaves the last good
   version); emits the Asset `smarketing://marts`.
7. **write_report** — the self-contained HTML report in `<SMARKETING_DATA_DIR>/reports/`, mailed to the
   staff in setting `report_recipients` (if any) through `smarketing_smtp`.
8. **build_data_docs** — Great Expectations Data Docs from the recorded validation runs.

Settings: `smarketing_tasks.scoring.settings.ScoringSettings` (env `SMARKETING_*` or the Variable
`smarketing_settings`), e.g. `partitions`, the lukewarm thresholds and the score weights.
Rules and the check on the real CDNOW history: docs/scoring.md.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from smarketing_airflow.assets import MARTS, PURCHASES, RESPONSES
from smarketing_airflow.defaults import DEFAULT_ARGS, tags
from smarketing_airflow.runtime import migrate_warehouse, run_time


@dag(
    dag_id="smarketing_score",
    schedule=(PURCHASES | RESPONSES),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=tags("score", "advocates"),
    doc_md=__doc__,
    params={"full_rescore": Param(False, type="boolean",
                                  description="rescore every customer, not only those whose inputs changed"),
            "full_rebuild_marts": Param(False, type="boolean",
                                        description="rebuild every mart from the whole history, not only what "
                                                    "changed since the last publish")},
)
def smarketing_score():
    @task
    def prepare_scoring() -> list[int]:
        """Who to score, their aggregates in SQL, the value model when due; returns the partitions to score."""
        from smarketing_airflow.connections import settings, warehouse_engine

        from smarketing_tasks.scoring import ScoringSettings
        from smarketing_tasks.scoring.pipeline import prepare

        context = get_current_context()
        prepared = prepare(warehouse_engine(), run_time(context), settings(ScoringSettings),
                           full=bool(context["params"].get("full_rescore")))
        print(prepared.as_dict())
        return list(range(prepared.partitions))

    @task(map_index_template="partition {{ partition }}")
    def score_partition(partition: int) -> dict:
        """Score one partition of customers (hash of customer_id)."""
        from smarketing_airflow.connections import settings, warehouse_engine

        from smarketing_tasks.scoring import ScoringSettings
        from smarketing_tasks.scoring.pipeline import score_partition as score

        result = score(warehouse_engine(), run_time(get_current_context()), partition, settings(ScoringSettings))
        print(result)
        return result

    @task
    def finalize_follow_ups(results: list[dict]) -> dict:
        """Check every partition was scored, then rank and upsert the follow-ups."""
        from smarketing_airflow.connections import warehouse_engine

        from smarketing_tasks.scoring.pipeline import finalize

        summary = finalize(warehouse_engine(), run_time(get_current_context()))
        print(summary)
        return summary

    @task
    def audit_scores() -> list[dict]:
        """Validate this date's advocate scores (GX suite advocate_scores) before follow-ups and marts use them."""
        from smarketing_airflow.connections import warehouse_engine
        from smarketing_airflow.quality import quality_gate, quality_settings

        from smarketing_tasks.quality import audit_scores as audit
        from smarketing_tasks.scoring.pipeline import score_date_of

        context = get_current_context()
        now = run_time(context)
        with quality_gate():
            return audit(warehouse_engine(), run_id=context["run_id"], run_time=now, score_date=score_date_of(now),
                         settings=quality_settings())

    @task(outlets=[MARTS])
    def publish_marts(summary: dict) -> dict:
        """Update the marts in a staging schema (what changed, or all), audit them there, publish atomically."""
        from smarketing_airflow.connections import settings, warehouse_engine
        from smarketing_airflow.quality import quality_gate, quality_settings

        from smarketing_tasks.marts import MartSettings
        from smarketing_tasks.marts import publish_marts as publish
        from smarketing_tasks.quality import mart_gate

        context = get_current_context()
        now = run_time(context)
        with quality_gate():
            result = publish(warehouse_engine(), now, settings(MartSettings), progress=print,
                             before_publish=mart_gate(run_id=context["run_id"], run_time=now,
                                                      settings=quality_settings()),
                             full=bool(context["params"].get("full_rebuild_marts")))
        context["outlet_events"][MARTS].extra = {
            "score_date": summary["score_date"], "customers": summary["customers"], "mart_rows": result["rows"]}
        return result

    @task
    def write_report(published: dict) -> str:
        """Write the HTML report to <SMARKETING_DATA_DIR>/reports and mail it to report_recipients, if any."""
        from smarketing_airflow.connections import settings, smtp_params, warehouse_engine

        from smarketing_tasks.marts import MartSettings
        from smarketing_tasks.marts.headline import headline_numbers
        from smarketing_tasks.paths import DATA_DIR
        from smarketing_tasks.report import write_report as write
        from smarketing_tasks.report.mail import recipients, report_email, send_report

        engine, now, mart_settings = warehouse_engine(), run_time(get_current_context()), settings(MartSettings)
        path = write(engine, DATA_DIR / "reports", now)
        to, smtp = recipients(mart_settings.report_recipients), smtp_params()
        if to and smtp:
            send_report(smtp, report_email(path, headline_numbers(engine), now, mart_settings.report_from, to))
        print(f"report: {path}" + (f", mailed to {len(to)} recipient(s)" if to and smtp else ""))
        return str(path)

    @task
    def build_data_docs(published: dict) -> str:
        """Render Great Expectations Data Docs from the recorded validation runs."""
        from smarketing_airflow.connections import warehouse_engine
        from smarketing_airflow.quality import quality_settings

        from smarketing_tasks.quality import build_data_docs as build

        index = build(warehouse_engine(), quality_settings())
        print(f"Data Docs: {index}")
        return str(index)

    partitions = prepare_scoring()
    scored = score_partition.expand(partition=partitions)
    migrate_warehouse() >> partitions
    follow_ups = finalize_follow_ups(scored)
    scored >> audit_scores() >> follow_ups
    published = publish_marts(follow_ups)
    write_report(published)
    build_data_docs(published)


smarketing_score()
