"""Outreach: plan review requests, one reminder and share asks into the outbox, then send each once.

``plan_outreach`` and ``send_outreach`` are what the DAG and the CLI call; the parts live in
``eligibility`` (the rules), ``planner`` (set-based SQL), ``rendering`` (templates, links, headers),
``channels`` (SMTP, webhook, sink) and ``sender`` (claim, re-check, send, record).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from smarketing_tasks.outreach.planner import PlanResult, plan
from smarketing_tasks.outreach.settings import OutreachSettings
from smarketing_tasks.outreach.variants import discover_variants, templates_root

if TYPE_CHECKING:
    from smarketing_tasks.outreach.channels import Channel, SmtpParams
    from smarketing_tasks.outreach.sender import ChannelDown, SendReport

# Sending's modules (SMTP, Jinja2, the email package) load when first used, not with the planner: a planning
# task imports this package and pays for nothing it does not run.
_LAZY = {"ChannelDown": "sender", "SendReport": "sender", "SmtpParams": "channels"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"smarketing_tasks.outreach.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["ChannelDown", "OutreachSettings", "PlanResult", "SendReport", "SmtpParams", "build_channels",
           "parse_send_shard", "plan_outreach", "send_outreach", "send_shards", "shard_settings", "signing_key", "verification_keys"]


def signing_key(engine: sa.Engine, settings: OutreachSettings, warn: Callable[[str], None] = print) -> bytes:
    from smarketing_tasks.tokens import get_or_create_secret

    return get_or_create_secret(engine, "link_signing_key", settings.link_signing_key or None, warn=warn)


def verification_keys(engine: sa.Engine, settings: OutreachSettings, warn: Callable[[str], None] = print) -> list[bytes]:
    """The current signing key, then retired ones: links sent before a key rotation keep working until they expire."""
    retired = [k.strip().encode() for k in settings.link_signing_keys_retired.split(",") if k.strip()]
    return [signing_key(engine, settings, warn), *retired]


def sink_directory(settings: OutreachSettings) -> Path:
    from smarketing_tasks.paths import DATA_DIR

    return Path(settings.sink_dir) if settings.sink_dir else DATA_DIR / "mailbox"


def build_channels(settings: OutreachSettings, smtp: SmtpParams | None, key: bytes,
                   clock: Callable[[], datetime]) -> dict[str, Channel]:
    """Outbox channel → delivery channel: email over SMTP (or the sink), SMS over the webhook (or the sink)."""
    from smarketing_tasks.outreach.channels import SinkChannel, SmtpChannel, WebhookChannel

    sink = SinkChannel(sink_directory(settings))
    email: Channel = SmtpChannel(smtp, settings.from_address) if (
        settings.email_transport == "smtp" and smtp is not None) else sink
    secret = settings.webhook_secret.encode() if settings.webhook_secret else key
    sms: Channel = WebhookChannel(settings.webhook_url, secret, lambda: clock().timestamp()) \
        if settings.webhook_url else sink
    return {"email": email, "sms": sms, "webhook": sms}


def plan_outreach(engine: sa.Engine, as_of: datetime, settings: OutreachSettings, run_id: str = "manual") -> PlanResult:
    return plan(engine, as_of, settings, discover_variants(templates_root(settings)), run_id=run_id)


def send_shards(channels: list[str], shards: int) -> list[str]:
    """The send tasks of a run: one per channel and shard, named ``email 1/2``; with one shard per channel,
    the channel's name alone (as before sharding existed)."""
    if shards < 1:
        raise ValueError(f"send_shards must be at least 1, not {shards}")
    if shards == 1:
        return list(channels)
    return [f"{channel} {shard}/{shards}" for channel in channels for shard in range(1, shards + 1)]


def parse_send_shard(name: str) -> tuple[str, int]:
    """``email 1/2`` -> ("email", 2): the outbox channel and how many shards share it; ``email`` -> ("email", 1)."""
    channel, _, shard = name.partition(" ")
    if not shard:
        return channel, 1
    number, _, shards = shard.partition("/")
    if not (number.isdigit() and shards.isdigit() and 1 <= int(number) <= int(shards)):
        raise ValueError(f"not a send shard: {name!r} (expected a channel, or 'channel n/N')")
    return channel, int(shards)


def shard_settings(settings: OutreachSettings, shards: int) -> OutreachSettings:
    """One of ``shards`` senders of a channel: its share of the channel's rate limits (0 stays unlimited)."""
    return replace(settings, email_rate_per_second=settings.email_rate_per_second / shards,
                   webhook_rate_per_second=settings.webhook_rate_per_second / shards)


def send_outreach(engine: sa.Engine, as_of: datetime, settings: OutreachSettings, smtp: SmtpParams | None,
                  clock: Callable[[], datetime], worker: str, channels: list[str] | None = None,
                  warn: Callable[[str], None] = print, shards: int = 1) -> SendReport:
    """Send the due messages of ``channels``; ``shards``: how many senders share each channel at once, which
    split its rate limits (the claim already keeps them from taking the same message)."""
    from smarketing_tasks.outreach.rendering import Renderer
    from smarketing_tasks.outreach.sender import send_due

    settings = shard_settings(settings, shards)
    key = signing_key(engine, settings, warn)
    available = build_channels(settings, smtp, key, clock)
    wanted = {name: available[name] for name in (channels or ["email", "sms", "webhook"])}
    return send_due(engine, wanted, Renderer(settings, key), settings, as_of=as_of, clock=clock, worker=worker)
