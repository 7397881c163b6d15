"""
### smarketing_outreach — ask for reviews, remind once, ask happy customers to share; send each message once

Runs when `smarketing_ingest` announces new purchases (Asset `smarketing://purchases`) **and** every
hour, so that reminders and delayed asks go out on time without new purchases.

1. **plan** writes every due ask into the outbox `smarketing.outreach_messages` (set-based SQL), one
   row per idempotency key `customer:order:kind:step` (ids percent-escaped, so no two asks share one),
   `planned` or `skipped` with the reason: suppression, consent, contact, returned/cancelled order, already
   reviewed, cooldown (120 days), global cap (3 per 30 days). Review asks are never gated by ratings, sentiment or scores. A normal run
   reads only the asks due and the orders loaded since the last planning run (docs/operations.md).
2. **send** (one mapped task per channel, or per channel and shard with `SMARKETING_SEND_SHARDS`: email
   over the `smarketing_smtp` connection, SMS over the webhook) claims due messages with `FOR UPDATE SKIP LOCKED`, re-checks suppression and reviews,
   expires stale messages against the real clock (a backfill never sends old asks), and records each
   result as soon as the server accepted it. Transient trouble is retried with backoff; if a channel
   stays down the task fails and Airflow retries it later; permanent rejections fail the message.
3. **audit_outbox** validates the outbox rows planned or sent in this run with the Great Expectations
   suite `expectations/outreach_messages.json` (docs/data-quality.md); a breach fails without retries.
4. **publish** emits the Asset `smarketing://outreach` with the counts.

* **Connections**: `smarketing_warehouse`, `smarketing_smtp` (absent: emails go to the Maildir sink).
* **Settings**: `OutreachSettings` (env `SMARKETING_*` or the `smarketing_settings` Variable).
* **Reruns and backfills** plan nothing twice and send nothing twice; the staleness guard expires
  what is too old to send.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, get_current_context, task
from smarketing_airflow.assets import OUTREACH, PURCHASES
from smarketing_airflow.defaults import DEFAULT_ARGS, SMTP_POOL, tags
from smarketing_airflow.runtime import migrate_warehouse, run_time

SEND_CHANNELS = ["email", "sms"]


@dag(
    dag_id="smarketing_outreach",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("15 * * * *", timezone="UTC"), assets=PURCHASES),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=tags("outreach", "email"),
    doc_md=__doc__,
)
def smarketing_outreach():
    @task
    def plan() -> dict:
        """Write every due ask into the outbox, planned or skipped with its reason."""
        from smarketing_airflow.connections import settings, warehouse_engine

        from smarketing_tasks.outreach import OutreachSettings, plan_outreach

        context = get_current_context()
        result = plan_outreach(warehouse_engine(), run_time(context), settings(OutreachSettings), run_id=context["run_id"])
        print(f"{result.mode} planning ({result.reason}): planned {result.planned:,}, skipped {result.skipped:,}: "
              f"{result.as_dict()['skipped_by_reason']}")
        return result.as_dict()

    @task
    def shards() -> list[str]:
        """The send tasks of this run: one per channel, or per channel and shard (SMARKETING_SEND_SHARDS)."""
        from smarketing_airflow.connections import settings

        from smarketing_tasks.outreach import OutreachSettings, send_shards

        return send_shards(SEND_CHANNELS, settings(OutreachSettings).send_shards)

    @task(map_index_template="{{ shard }}", pool=SMTP_POOL)  # all workers together respect the server's limit
    def send(shard: str, planned: dict) -> dict:
        """Claim and send due messages of one channel (``email``, or one of its shards: ``email 1/2``), each once."""
        import os
        import socket

        from smarketing_airflow.connections import settings, smtp_params, warehouse_engine

        from smarketing_tasks.outreach import OutreachSettings, parse_send_shard, send_outreach

        channel, shards = parse_send_shard(shard)
        context = get_current_context()
        report = send_outreach(
            warehouse_engine(), run_time(context), settings(OutreachSettings), smtp_params(),
            clock=lambda: pendulum.now("UTC"),  # the staleness guard's real clock
            worker=f"{socket.gethostname()}:{os.getpid()}:{context['run_id']}:{shard}",
            channels=[channel], shards=shards,
        )
        print(f"{shard}: {report.as_dict()}")
        return report.as_dict()

    @task
    def audit_outbox(reports: list[dict]) -> list[dict]:
        """Validate the outbox rows planned or sent in this run (GX suite outreach_messages) before publishing."""
        from smarketing_airflow.connections import warehouse_engine
        from smarketing_airflow.quality import quality_gate, quality_settings

        from smarketing_tasks.quality import audit_outbox as audit

        context = get_current_context()
        with quality_gate():
            return audit(warehouse_engine(), run_id=context["run_id"], run_time=run_time(context),
                         settings=quality_settings())

    @task(outlets=[OUTREACH])
    def publish(planned: dict, reports: list[dict]) -> dict:
        """Announce what went out to downstream DAGs (scoring, marts)."""
        summary = {**planned, "sent": sum(r["sent"] for r in reports),
                   "failed": sum(sum(r["failed"].values()) for r in reports),
                   "expired": sum(r["rechecked"].get("expired", 0) for r in reports)}
        get_current_context()["outlet_events"][OUTREACH].extra = summary
        print(summary)
        return summary

    planned = plan()
    migrate_warehouse() >> planned
    reports = send.partial(planned=planned).expand(shard=shards())
    audit_outbox(reports) >> publish(planned, reports)


smarketing_outreach()
