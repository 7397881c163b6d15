"""DAG-level policy shared by every smarketing DAG: owner, retries with backoff, tags."""

from __future__ import annotations

from datetime import timedelta

OWNER = "smarketing"
TAGS_BASE = ["smarketing"]

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}


def tags(*extra: str) -> list[str]:
    return [*TAGS_BASE, *extra]
