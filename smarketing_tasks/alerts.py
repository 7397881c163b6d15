"""Alerts to people when the loop breaks: what an alert says, and delivery by webhook or email.

Airflow's failure callbacks (``smarketing_airflow.callbacks``) turn a task's context into an ``Alert``;
this module formats it and delivers it. Delivery is best effort by design: a broken alert channel is
logged and reported, never raised, so that it cannot hide the failure it was announcing.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from dataclasses import asdict, dataclass
from email.message import EmailMessage


@dataclass(frozen=True)
class AlertSettings:
    """Failure alerts (callbacks in every DAG's default_args)."""

    alert_emails: str = ""  # comma-separated recipients of failure emails, sent through smarketing_smtp; empty: none
    alert_timeout_seconds: float = 10.0  # give up on a webhook or SMTP server after this long
    alert_subject_prefix: str = "[smarketing]"  # start of every alert's email subject and webhook text

    @property
    def email_recipients(self) -> list[str]:
        return [a.strip() for a in self.alert_emails.split(",") if a.strip()]


@dataclass(frozen=True)
class Alert:
    """What went wrong, where, and where to look."""

    kind: str  # task_failed | deadline_missed
    dag_id: str
    run_id: str
    task_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None
    max_tries: int | None = None
    logical_date: str | None = None
    error: str | None = None
    log_url: str | None = None

    def where(self) -> str:
        task = "" if self.task_id is None else f".{self.task_id}"
        mapped = "" if self.map_index in (None, -1) else f"[{self.map_index}]"
        return f"{self.dag_id}{task}{mapped}"

    def subject(self, prefix: str = "[smarketing]") -> str:
        what = "failed" if self.kind == "task_failed" else "missed its deadline"
        return f"{prefix} {self.where()} {what} (run {self.run_id})"

    def text(self, prefix: str = "[smarketing]") -> str:
        lines = [self.subject(prefix)]
        if self.try_number is not None:
            lines.append(f"attempt {self.try_number} of {self.max_tries if self.max_tries is not None else '?'}")
        if self.logical_date:
            lines.append(f"logical date: {self.logical_date}")
        if self.error:
            lines.append(f"error: {self.error}")
        if self.log_url:
            lines.append(f"log: {self.log_url}")
        lines.append("Runbook: docs/operations.md, 'Re-run a failed interval'.")
        return "\n".join(lines)

    def payload(self, prefix: str = "[smarketing]") -> dict:
        """JSON for a webhook: every field, plus ``text`` so that Slack/Teams/Mattermost hooks show it as is."""
        return {"text": self.text(prefix), **asdict(self)}


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int = 25
    login: str | None = None
    password: str | None = None
    use_ssl: bool = False  # SMTPS from the first byte (port 465)
    use_starttls: bool = False
    sender: str = "smarketing@localhost"


def post_webhook(url: str, alert: Alert, prefix: str, timeout_s: float, headers: dict[str, str] | None = None) -> int:
    """POST the alert as JSON; returns the HTTP status, raises on a non-2xx answer or a network error."""
    import httpx

    response = httpx.post(url, json=alert.payload(prefix), headers=headers or {}, timeout=timeout_s)
    response.raise_for_status()
    return response.status_code


def send_email(target: SmtpTarget, recipients: list[str], alert: Alert, prefix: str, timeout_s: float) -> None:
    message = EmailMessage()
    message["Subject"] = alert.subject(prefix)
    message["From"] = target.sender
    message["To"] = ", ".join(recipients)
    message["X-Smarketing-Alert"] = alert.kind
    message.set_content(alert.text(prefix))
    if target.use_ssl:
        client: smtplib.SMTP = smtplib.SMTP_SSL(target.host, target.port, timeout=timeout_s,
                                                context=ssl.create_default_context())
    else:
        client = smtplib.SMTP(target.host, target.port, timeout=timeout_s)
    with client:
        if target.use_starttls:
            client.starttls(context=ssl.create_default_context())
        if target.login:
            client.login(target.login, target.password or "")
        client.send_message(message)


def deliver(alert: Alert, channels: dict[str, Callable[[], object]], log: Callable[[str], None] = print) -> list[str]:
    """Run each delivery channel; return the names that succeeded. Failures are logged, never raised."""
    delivered = []
    for name, send in channels.items():
        try:
            send()
            delivered.append(name)
        except Exception as error:  # an alert channel must never mask the original failure
            log(f"alert via {name} failed: {type(error).__name__}: {error}")
    if not channels:
        log(f"no alert channel configured for: {alert.subject()}")
    return delivered
