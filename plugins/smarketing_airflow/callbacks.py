"""Failure alerts for every smarketing DAG: a webhook (connection ``smarketing_alerts``) and/or email.

``alert_on_failure`` is the ``on_failure_callback`` in ``defaults.DEFAULT_ARGS``: it runs after a task's
last retry failed (retries with exponential backoff come first) and tells people through every channel
that is configured:

* **webhook**: Airflow connection ``smarketing_alerts``; an ``http(s)://`` URI (Slack, Teams or
  Mattermost incoming webhook, or any endpoint taking JSON), or ``{"extra": {"url": ..., "headers": {...}}}``.
  The JSON body has ``text`` (ready to show) and every field of the alert.
* **email**: to ``SMARKETING_ALERT_EMAILS`` (comma-separated) through connection ``smarketing_smtp``,
  with the SMTP provider's meaning of its extras (``disable_ssl``, ``disable_tls``, ``from_email``).

``deadline_alert(interval)`` gives a DAG an Airflow 3 ``DeadlineAlert``: when a run is still not done
``interval`` after it was queued, the triggerer sends the same alert with kind ``deadline_missed``.
A channel that fails is logged and skipped; alerting never raises.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from smarketing_tasks.alerts import Alert, SmtpTarget

ALERTS_CONN_ID = "smarketing_alerts"
SMTP_CONN_ID = "smarketing_smtp"
log = logging.getLogger(__name__)


def _connection(conn_id: str):
    """The connection, or None when it is not configured (missing connections are not an error here)."""
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception:  # AirflowNotFoundException, whichever module raises it in this Airflow version
        return None


def webhook_target(conn) -> tuple[str, dict[str, str]]:
    """URL and headers of a webhook connection: ``extra.url``, else the URI it was given."""
    extra = conn.extra_dejson if conn.extra else {}
    if extra.get("url"):
        return extra["url"], extra.get("headers", {})
    scheme = conn.conn_type if conn.conn_type in ("http", "https") else "https"
    port = f":{conn.port}" if conn.port else ""
    path = (conn.schema or "").lstrip("/")
    return f"{scheme}://{conn.host}{port}/{path}", extra.get("headers", {})


def smtp_target(conn) -> SmtpTarget:
    """An SMTP connection read the way the SMTP provider reads it (SSL unless disable_ssl; STARTTLS unless disable_tls)."""
    from smarketing_tasks.alerts import SmtpTarget

    extra = conn.extra_dejson if conn.extra else {}

    def flag(name: str) -> bool:
        value = extra.get(name, False)
        return value if isinstance(value, bool) else str(value).lower() in {"1", "true", "yes"}

    use_ssl = not flag("disable_ssl")
    return SmtpTarget(host=conn.host or "localhost", port=int(conn.port or (465 if use_ssl else 25)),
                      login=conn.login or None, password=conn.password or None, use_ssl=use_ssl,
                      use_starttls=not use_ssl and not flag("disable_tls"),
                      sender=extra.get("from_email") or "smarketing-alerts@localhost")


def send_alert(alert: Alert) -> list[str]:
    """Deliver ``alert`` through every configured channel; returns the channels that worked."""
    from smarketing_airflow.connections import settings
    from smarketing_tasks.alerts import AlertSettings, deliver, post_webhook, send_email

    config = settings(AlertSettings)
    prefix, timeout = config.alert_subject_prefix, config.alert_timeout_seconds
    channels: dict[str, Any] = {}
    hook = _connection(ALERTS_CONN_ID)
    if hook is not None:
        url, headers = webhook_target(hook)
        channels["webhook"] = lambda: post_webhook(url, alert, prefix, timeout, headers)
    recipients = config.email_recipients
    if recipients:
        smtp = _connection(SMTP_CONN_ID)
        if smtp is None:
            log.warning("SMARKETING_ALERT_EMAILS is set but connection %s is missing", SMTP_CONN_ID)
        else:
            target = smtp_target(smtp)
            channels["email"] = lambda: send_email(target, recipients, alert, prefix, timeout)
    delivered = deliver(alert, channels, log=log.warning)
    log.info("alert %s delivered via %s", alert.subject(prefix), delivered or "nothing")
    return delivered


def alert_from_context(context: Any) -> Alert:
    from smarketing_tasks.alerts import Alert

    ti = context["ti"]
    exception = context.get("exception")
    logical = context.get("logical_date")
    return Alert(
        kind="task_failed", dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
        map_index=getattr(ti, "map_index", None), try_number=getattr(ti, "try_number", None),
        max_tries=getattr(ti, "max_tries", None), logical_date=logical.isoformat() if logical else None,
        error=f"{type(exception).__name__}: {exception}"[:2000] if exception else None,
        log_url=getattr(ti, "log_url", None),
    )


def alert_on_failure(context: Any) -> None:
    """``on_failure_callback``: a task failed for good (after its retries)."""
    try:
        send_alert(alert_from_context(context))
    except Exception:  # an alert must never turn into a second failure
        log.exception("could not build or send the failure alert")


async def deadline_missed(context: dict | None = None, **_: Any) -> list[str]:
    """Deadline callback (runs in the triggerer): the run is late; alert like a failure."""
    import asyncio

    from smarketing_tasks.alerts import Alert

    run = (context or {}).get("dag_run", {})
    deadline = (context or {}).get("deadline", {})
    alert = Alert(kind="deadline_missed", dag_id=run.get("dag_id", "?"), run_id=run.get("dag_run_id", "?"),
                  logical_date=run.get("logical_date"), error=f"not finished by {deadline.get('deadline_time')}")
    return await asyncio.to_thread(send_alert, alert)


def deadline_alert(interval: timedelta):
    """An Airflow 3 DeadlineAlert: alert when a run is not done ``interval`` after it was queued."""
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

    return DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=interval,
                         callback=AsyncCallback(deadline_missed))
