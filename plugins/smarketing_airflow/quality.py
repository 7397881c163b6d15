"""Quality gates inside tasks: a breached suite fails the task at once, without retries.

Retrying cannot fix data: the same batch breaks the same suite again, and three retries with backoff only
delay the alert. Other errors (a database restart, a network blip) still retry as usual.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quality_gate() -> Iterator[None]:
    """``with quality_gate(): audit_...(...)`` — turn ``QualityGateFailed`` into a no-retry task failure."""
    from airflow.sdk.exceptions import AirflowFailException

    from smarketing_tasks.quality import QualityGateFailed

    try:
        yield
    except QualityGateFailed as failure:
        raise AirflowFailException(str(failure)) from failure


def quality_settings():
    """The gate's settings from ``SMARKETING_*`` and the ``smarketing_settings`` Variable."""
    from smarketing_airflow.connections import settings
    from smarketing_tasks.quality import QualitySettings

    return settings(QualitySettings)
