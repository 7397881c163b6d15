"""
### smarketing_ingest — pull purchases from the shop, incrementally

Reads customers, orders and order items changed since the last load (a watermark kept in
`smarketing.watermarks`, minus a small overlap for late commits) and up to this run's logical time,
validates every row, upserts the good ones into schema `smarketing` and quarantines the rest in
`smarketing.quarantine` with a reason per row. Then it emits the Asset `smarketing://purchases`,
which starts `smarketing_outreach` and `smarketing_score`.

* **Connections**: `smarketing_shop` (source), `smarketing_warehouse` (target).
* **Reruns and backfills** are safe: upserts only move a row forward in time, quarantine is keyed by
  the raw row, and a rerun of an interval changes nothing.
* **Fails loudly** when a dataset quarantines more than `max_quarantine_share` of its rows
  (default 5%): the rows stay loaded and quarantined, but no Asset event is emitted.
* **Audits before it publishes**: `audit_purchases` validates the rows loaded in this window with the
  Great Expectations suites `expectations/{customers,orders,order_items}.json` (docs/data-quality.md),
  moves rows breaking a row-level expectation to the quarantine, records each run in
  `smarketing.validation_runs`, and fails without retries (no Asset event) when a suite crosses its threshold.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task
from smarketing_airflow.assets import PURCHASES
from smarketing_airflow.defaults import DEFAULT_ARGS, tags
from smarketing_airflow.runtime import migrate_warehouse, run_time

PURCHASE_DATASETS = ["customers", "orders", "order_items"]


@dag(
    dag_id="smarketing_ingest",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=tags("ingest", "purchases"),
    doc_md=__doc__,
)
def smarketing_ingest():
    @task(map_index_template="{{ dataset }}")
    def ingest(dataset: str) -> dict:
        """Load one dataset's changes for this run's window."""
        from smarketing_airflow.connections import settings, shop_source, warehouse_engine

        from smarketing_tasks.config import IngestSettings
        from smarketing_tasks.ingest import ingest_dataset

        context = get_current_context()
        config = settings(IngestSettings)
        result = ingest_dataset(
            shop_source(), dataset, warehouse_engine(),
            until=run_time(context), run_id=context["run_id"],
            overlap=config.overlap, batch_rows=config.batch_rows, progress=print,
        )
        print(f"{dataset}: {result.rows_loaded:,} loaded, {result.rows_quarantined:,} quarantined "
              f"of {result.rows_read:,} read in {result.seconds:.1f}s")
        return result.as_dict()

    @task(outlets=[PURCHASES])
    def publish_purchases(results: list[dict]) -> dict:
        """Check quarantine shares, then announce new purchases to downstream DAGs."""
        from smarketing_airflow.connections import settings

        from smarketing_tasks.config import IngestSettings
        from smarketing_tasks.ingest.report import check_quarantine_shares, summarize

        check_quarantine_shares(results, settings(IngestSettings).max_quarantine_share)
        summary = summarize(results)
        get_current_context()["outlet_events"][PURCHASES].extra = summary
        print(summary)
        return summary

    @task
    def audit_purchases(results: list[dict]) -> list[dict]:
        """Validate the loaded interval with the customers, orders and order_items GX suites (before publish)."""
        from smarketing_airflow.connections import warehouse_engine
        from smarketing_airflow.quality import quality_gate, quality_settings

        from smarketing_tasks.quality import audit_purchases as audit

        context = get_current_context()
        with quality_gate():
            return audit(warehouse_engine(), results, run_id=context["run_id"], run_time=run_time(context),
                         settings=quality_settings())

    loaded = ingest.expand(dataset=PURCHASE_DATASETS)
    migrate_warehouse() >> loaded
    audit_purchases(loaded) >> publish_purchases(loaded)


smarketing_ingest()
