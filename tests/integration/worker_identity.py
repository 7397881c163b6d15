"""A per-process hostname for task instances, so that two Celery workers on one machine can be told apart.

Airflow records ``task_instance.hostname`` from ``[core] hostname_callable``; in containers every worker
has its own hostname anyway, but here both workers share the machine's, so each gets a name by env var.
"""

from __future__ import annotations

import os
import socket


def worker_name() -> str:
    return os.environ.get("SMARKETING_WORKER_NAME") or socket.getfqdn()
