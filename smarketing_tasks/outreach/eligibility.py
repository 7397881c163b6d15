"""The rules of who is asked what and when, as pure functions (times are arguments, never the clock).

The planner applies the same rules set-wise in SQL (``planner.py``) so that a million orders plan in
one pass; these functions are the readable statement of each rule, are used where one decision is
made at a time (the sender's SMS window), and the tests check that both agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from smarketing_tasks.outreach.settings import OutreachSettings

CLOSED_STATUSES = frozenset({"returned", "cancelled"})
KINDS = ("review_request", "review_reminder", "share_ask", "referral_ask", "thank_you")


def _key_part(value: str) -> str:
    """An id as a key component: ``%`` and ``:`` percent-escaped (``%`` first), so no component holds a ``:``."""
    return value.replace("%", "%25").replace(":", "%3A")


def idempotency_key(customer_id: str, order_id: str | None, kind: str, step: int) -> str:
    """Interface: ``customer:order:kind:step``, ``-`` for no order, ids percent-escaped (an order id that is
    exactly ``-`` becomes ``%2D``), so two asks never share a key; ids without ``%``, ``:`` or a lone ``-`` are
    as they are. The planner's SQL (``smarketing.outreach_key``, migration 0026) computes the same."""
    order = "-" if order_id is None else "%2D" if order_id == "-" else _key_part(order_id)
    return f"{_key_part(customer_id)}:{order}:{kind}:{step}"


def message_id_for(key: str) -> str:
    """Interface: the first 32 hex characters of sha256(idempotency_key); also the Message-ID's local part.

    Set when a message is planned and never changed: rows planned before migration 0026 escaped the key keep
    the id of their old key, and a new ask whose id is taken by such a row gets sha256(key + "#") instead."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def variant_for(key: str, variants: Sequence[str]) -> str:
    """A/B variant by hash: stable for a message, even across reruns; the planner's SQL does the same."""
    ordered = sorted(variants)
    return ordered[hashlib.sha256(key.encode("utf-8")).digest()[0] % len(ordered)]


def review_ask_at(delivered_at: datetime | None, shipped_at: datetime | None, ordered_at: datetime,
                  settings: OutreachSettings) -> datetime:
    """When to ask for a review: N days after delivery; without a delivery event, after shipping, else ordering."""
    if delivered_at is not None:
        return delivered_at + settings.days("review_delay")
    if shipped_at is not None:
        return shipped_at + settings.days("ship_fallback")
    return ordered_at + settings.days("order_fallback")


def is_due(ask_at: datetime, as_of: datetime, settings: OutreachSettings) -> bool:
    """Due once its moment has come (exactly N days counts), and not once the ask window (or the ttl) has passed."""
    window = min(settings.days("ask_window"), settings.days("request_ttl"))
    return as_of - window < ask_at <= as_of


def consent_basis(channel: str, accepts_marketing: bool, accepts_sms: bool, kind: str,
                  settings: OutreachSettings) -> str | None:
    """The lawful basis recorded with a message, or None when there is none (then nothing is sent)."""
    if channel == "sms":
        return "sms_consent" if accepts_sms else None
    if accepts_marketing:
        return "marketing_consent"
    if settings.soft_opt_in and kind in ("review_request", "review_reminder"):
        return "soft_opt_in"
    return None


def zone(name: str | None, settings: OutreachSettings) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo(settings.default_time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(settings.default_time_zone)


def in_sms_window(moment: datetime, time_zone: str | None, settings: OutreachSettings) -> bool:
    """SMS only from sms_start_hour (inclusive) to sms_end_hour (exclusive), recipient's local time."""
    local = moment.astimezone(zone(time_zone, settings)).time()
    return time(settings.sms_start_hour) <= local < time(settings.sms_end_hour)


def next_sms_slot(moment: datetime, time_zone: str | None, settings: OutreachSettings) -> datetime:
    """``moment`` if inside the SMS window, else the next opening of the window in the recipient's zone."""
    tz = zone(time_zone, settings)
    local = moment.astimezone(tz)
    if in_sms_window(moment, time_zone, settings):
        return moment
    day = local.date() if local.time() < time(settings.sms_start_hour) else local.date() + timedelta(days=1)
    return datetime.combine(day, time(settings.sms_start_hour), tzinfo=tz).astimezone(moment.tzinfo)


@dataclass(frozen=True)
class PriorMessage:
    kind: str
    due_at: datetime
    status: str


LIVE_STATUSES = frozenset({"planned", "sending", "sent"})


def within_cap(prior: Sequence[PriorMessage], due_at: datetime, settings: OutreachSettings) -> bool:
    """Global cap across flows: fewer than ``global_cap`` live messages in the window ending at ``due_at``."""
    window_start = due_at - settings.days("cap_window")
    live = [m for m in prior if m.status in LIVE_STATUSES and window_start < m.due_at <= due_at]
    return len(live) < settings.global_cap


def outside_cooldown(prior: Sequence[PriorMessage], kind: str, due_at: datetime, settings: OutreachSettings) -> bool:
    """No second ask of the same kind within ``cooldown_days`` (either side, so backfills obey it too)."""
    cooldown = settings.days("cooldown")
    return not any(m.kind == kind and m.status in LIVE_STATUSES and abs(m.due_at - due_at) < cooldown for m in prior)


@dataclass(frozen=True)
class ReviewAskFacts:
    """Everything the public-review ask may depend on. Ratings, sentiment and scores are deliberately absent."""

    order_status: str
    ever_closed: bool  # returned or cancelled at any time (order_status_history)
    already_reviewed: bool
    suppressed: bool
    has_address: bool
    consent: str | None


def review_ask_skip_reason(facts: ReviewAskFacts) -> str | None:
    """Why a due review ask is not sent (first rule that applies, in this order), or None to send it."""
    if facts.suppressed:
        return "suppressed"
    if facts.consent is None:
        return "no consent"
    if not facts.has_address:
        return "no contact address"
    if facts.order_status in CLOSED_STATUSES or facts.ever_closed:
        return "order returned or cancelled"
    if facts.already_reviewed:
        return "already reviewed"
    return None
