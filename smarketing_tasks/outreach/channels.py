"""Delivery channels behind one small interface: ``open()`` a session for a batch, ``send()`` each message.

Errors are told apart: ``TransientSendError`` (try again later: 4xx, dropped connection, timeout, 5xx of
an HTTP API) and ``PermanentSendError`` (never retry: 5xx SMTP reply, 4xx HTTP reply, bad recipient).
A session reopens itself after a transient error, so one dropped connection costs one reconnect.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import mailbox
import os
import smtplib
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from smarketing_tasks.outreach.rendering import RenderedMessage


class SendError(Exception):
    kind = "transient"

    def __init__(self, message: str, code: int | None = None, hard_bounce: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.hard_bounce = hard_bounce


class TransientSendError(SendError):
    kind = "transient"


class PermanentSendError(SendError):
    kind = "permanent"


class ChannelSession(Protocol):
    def send(self, message: RenderedMessage) -> str:
        """Deliver one message; return the provider's id for it (or ours). Raise a SendError."""

    def close(self) -> None: ...


class Channel(Protocol):
    name: str

    def open(self) -> ChannelSession: ...


# --- SMTP ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SmtpParams:
    """What the ``smarketing_smtp`` connection holds (read by smarketing_airflow.connections.smtp_params)."""

    host: str = "127.0.0.1"
    port: int = 25
    login: str | None = None
    password: str | None = None
    starttls: bool = False  # STARTTLS after EHLO (port 587)
    use_ssl: bool = False  # implicit TLS (port 465)
    timeout: float = 30.0
    from_email: str | None = None  # overrides the settings' from_address when set


def _smtp_error(error: Exception) -> SendError:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        code = max(codes) if codes else 550
        text = "; ".join(f"{addr}: {c} {m!r}" for addr, (c, m) in error.recipients.items())
        if 400 <= code < 500:
            return TransientSendError(f"recipient deferred: {text}", code)
        return PermanentSendError(f"recipient refused: {text}", code, hard_bounce=code in (550, 551, 553))
    if isinstance(error, smtplib.SMTPResponseException):
        detail = error.smtp_error.decode(errors="replace") if isinstance(error.smtp_error, bytes) else str(error.smtp_error)
        if 400 <= error.smtp_code < 500:
            return TransientSendError(f"{error.smtp_code} {detail}", error.smtp_code)
        return PermanentSendError(f"{error.smtp_code} {detail}", error.smtp_code)
    # Disconnects, timeouts, refused connections, TLS trouble: the server may be fine a moment later.
    return TransientSendError(f"{type(error).__name__}: {error}")


class SmtpSession:
    """One SMTP connection reused for a batch (Airflow's send_email opens one per message)."""

    def __init__(self, params: SmtpParams, from_address: str) -> None:
        self.params = params
        self.from_address = params.from_email or from_address
        self._client: smtplib.SMTP | None = None
        self.connections_opened = 0

    def _connect(self) -> smtplib.SMTP:
        p = self.params
        if p.use_ssl:
            client: smtplib.SMTP = smtplib.SMTP_SSL(p.host, p.port, timeout=p.timeout,
                                                   context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(p.host, p.port, timeout=p.timeout)
            if p.starttls:
                client.starttls(context=ssl.create_default_context())
        if p.login:
            client.login(p.login, p.password or "")
        self.connections_opened += 1
        return client

    def send(self, message: RenderedMessage) -> str:
        if self.params.from_email:
            message = dataclasses.replace(message, from_address=self.params.from_email)
        try:
            if self._client is None:
                self._client = self._connect()
            refused = self._client.sendmail(message.envelope_from, [message.envelope_to], message.raw)
        except (TimeoutError, smtplib.SMTPException, OSError) as error:
            self._drop()
            raise _smtp_error(error) from error
        if refused:
            raise _smtp_error(smtplib.SMTPRecipientsRefused(refused))
        return message.message_id

    def _drop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError):
                self._client.close()
        self._client = None

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._client.quit()
        self._drop()


class SmtpChannel:
    name = "smtp"

    def __init__(self, params: SmtpParams, from_address: str) -> None:
        self.params = params
        self.from_address = from_address

    def open(self) -> SmtpSession:
        return SmtpSession(self.params, self.from_address)


def send_one_connection_per_message(params: SmtpParams, message: RenderedMessage) -> None:
    """The baseline the benchmark compares with: connect (and TLS, login), send, quit for every message."""
    session = SmtpSession(params, message.from_address)
    try:
        session.send(message)
    finally:
        session.close()


# --- signed JSON webhook (SMS providers, email-service APIs) -------------------------------------------

def webhook_signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of ``timestamp.body``: receivers recompute it and reject stale timestamps."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookSession:
    def __init__(self, url: str, secret: bytes, timeout: float, clock_seconds) -> None:
        import httpx

        self.url = url
        self.secret = secret
        self.clock_seconds = clock_seconds
        self.client = httpx.Client(timeout=timeout)

    def send(self, message: RenderedMessage) -> str:
        import httpx

        body = json.dumps(message.to_json(), separators=(",", ":"), sort_keys=True).encode()
        timestamp = str(int(self.clock_seconds()))
        headers = {"Content-Type": "application/json", "Idempotency-Key": message.message_id,
                   "X-Smarketing-Timestamp": timestamp,
                   "X-Smarketing-Signature": webhook_signature(self.secret, timestamp, body)}
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as error:
            raise TransientSendError(f"{type(error).__name__}: {error}") from error
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientSendError(f"HTTP {response.status_code}: {response.text[:200]}", response.status_code)
        if response.status_code >= 400:
            raise PermanentSendError(f"HTTP {response.status_code}: {response.text[:200]}", response.status_code)
        try:
            return str(response.json().get("id") or message.message_id)
        except ValueError:
            return message.message_id

    def close(self) -> None:
        self.client.close()


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, secret: bytes, clock_seconds, timeout: float = 10.0) -> None:
        self.url, self.secret, self.clock_seconds, self.timeout = url, secret, clock_seconds, timeout

    def open(self) -> WebhookSession:
        return WebhookSession(self.url, self.secret, self.timeout, self.clock_seconds)


# --- local sink (demo, tests): a Maildir, one file per Message-ID --------------------------------------

class SinkSession:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        mailbox.Maildir(str(directory), create=True)  # creates new/ cur/ tmp/

    def send(self, message: RenderedMessage) -> str:
        # Named by message id and moved into new/ atomically: a resend replaces, never duplicates.
        if message.channel == "sms":
            payload = json.dumps(message.to_json(), sort_keys=True).encode()
            name = f"{message.message_id}.sms.json"
        else:
            payload = message.raw
            name = f"{message.message_id}.eml"
        handle, temp = tempfile.mkstemp(dir=self.directory / "tmp")
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
        os.replace(temp, self.directory / "new" / name)
        return message.message_id

    def close(self) -> None:
        pass


class SinkChannel:
    name = "sink"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def open(self) -> SinkSession:
        return SinkSession(self.directory)
