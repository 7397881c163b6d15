"""DAG-level policy shared by every smarketing DAG: owner, retries with backoff, failure alerts, pools, tags."""

from __future__ import annotations

from datetime import timedelta

from smarketing_airflow.callbacks import alert_on_failure

OWNER = "smarketing"
TAGS_BASE = ["smarketing"]

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    # After the last retry: webhook (connection smarketing_alerts) and/or email (SMARKETING_ALERT_EMAILS).
    "on_failure_callback": alert_on_failure,
}

# Tasks that talk to the one shared SMTP server use this pool (pool="smarketing_smtp"), so that all
# workers together never open more connections than its slots; create it with
# `airflow pools set smarketing_smtp 4 "SMTP server"` (docker-compose's airflow-init does).
SMTP_POOL = "smarketing_smtp"
SMTP_POOL_SLOTS = 4


def tags(*extra: str) -> list[str]:
    return [*TAGS_BASE, *extra]
