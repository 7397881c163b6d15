"""Plan the outbox: one row per intended message in ``smarketing.outreach_messages``, set-based in SQL.

Every ask whose moment has come becomes a row, either ``planned`` or ``skipped`` with the reason
in words, so that marketers see who was not asked and why. Rules apply in a fixed order (the first
that applies is the reason): suppression, consent, contact address, closed order, already reviewed,
cooldown, global cap. The idempotency key (customer, order, kind, step; ids percent-escaped so that no two
asks share one) makes a rerun or a backfill plan nothing twice. The public-review ask reads nothing derived from ratings, sentiment or scores.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from smarketing_tasks import bulk
from smarketing_tasks.outreach.settings import OutreachSettings

OUTBOX = "smarketing.outreach_messages"

PRIORITY = {"review_request": 1, "review_reminder": 2, "share_ask": 3}


def referral_code(customer_id: str) -> str:
    """Interface: ``REF-`` + 8 upper-case base32 characters derived from the customer id."""
    digest = hashlib.sha256(f"referral:{customer_id}".encode()).digest()
    return "REF-" + base64.b32encode(digest).decode("ascii")[:8]


@dataclass
class PlanResult:
    counts: Counter = field(default_factory=Counter)  # (kind, status, reason) -> messages newly written
    step_seconds: dict[str, float] = field(default_factory=dict)  # where planning spent its time
    mode: str = "full"  # full: the whole ask window was read; incremental: what came or changed since the last run
    moments_from: datetime | None = None  # asks whose moment is after this were read
    reason: str = ""  # why this mode

    @property
    def planned(self) -> int:
        return sum(n for (_, status, _), n in self.counts.items() if status == "planned")

    @property
    def skipped(self) -> int:
        return sum(n for (_, status, _), n in self.counts.items() if status == "skipped")

    def as_dict(self) -> dict:
        reasons: Counter = Counter()
        for (_, status, reason), n in self.counts.items():
            if status == "skipped":
                reasons[reason] += n
        return {"planned": self.planned, "skipped": self.skipped, "skipped_by_reason": dict(reasons),
                "step_seconds": {k: round(v, 2) for k, v in self.step_seconds.items()},
                "mode": self.mode, "mode_reason": self.reason,
                "moments_from": self.moments_from.isoformat() if self.moments_from else None}


_SETUP = """
create temp table outreach_candidates (
    idempotency_key    text primary key,
    customer_id        text not null,
    order_id           text,
    kind               text not null,
    step               smallint not null,
    channel            text not null,
    due_at             timestamptz not null,
    consent_basis      text,
    skip_reason        text,
    time_zone          text,
    incentive_offered  boolean not null default false
) on commit drop;
-- customers whose share asks are re-decided from every ask of theirs in the window (incremental runs only)
create temp table outreach_share_recheck (customer_id text primary key) on commit drop;
create temp table outreach_valid_zones on commit drop as select name from pg_timezone_names;
create unique index on outreach_valid_zones (name);
"""

# The recipient: consent flags, a valid time zone, contact presence, and the suppression that wins.
_RECIPIENT = """
    left join smarketing.customers c on c.customer_id = {alias}.customer_id
    left join smarketing.customer_contacts cc on cc.customer_id = {alias}.customer_id
    left join outreach_valid_zones vz on vz.name = c.time_zone
    left join lateral (
        select coalesce(
            (select s.reason from smarketing.suppressions s where s.email = lower(btrim(cc.email)) limit 1),
            (select s.reason from smarketing.suppressions s where s.customer_id = {alias}.customer_id limit 1)
        ) as reason
    ) sup on true
"""

_CHANNEL = ("case when :preferred_channel = 'sms' and c.accepts_sms and nullif(btrim(cc.phone), '') is not null "
            "then 'sms' else 'email' end")

# Move an SMS's due time into the recipient's window [start, end) of local time.
_SMS_DUE = """
    case when x.channel <> 'sms' then x.ask_at
         when extract(hour from x.ask_at at time zone x.tz) < :sms_start
              then (date_trunc('day', x.ask_at at time zone x.tz) + make_interval(hours => :sms_start)) at time zone x.tz
         when extract(hour from x.ask_at at time zone x.tz) >= :sms_end
              then (date_trunc('day', x.ask_at at time zone x.tz) + make_interval(days => 1, hours => :sms_start))
                   at time zone x.tz
         else x.ask_at end
"""

_CONSENT = """
    case when x.channel = 'sms' then case when x.accepts_sms then 'sms_consent' end
         when x.accepts_marketing then 'marketing_consent'
         when :soft_opt_in and x.kind in ('review_request', 'review_reminder') then 'soft_opt_in' end
"""

_COMMON_SKIPS = """
    when not x.known then 'unknown customer'
    when x.suppression is not null then 'suppressed: ' || x.suppression
    when x.consent is null then 'no consent'
    when x.channel = 'email' and x.email is null then 'no contact address'
    when x.order_closed then 'order returned or cancelled'
"""

_RECIPIENT_COLUMNS = """
    c.customer_id is not null as known, coalesce(c.accepts_marketing, false) as accepts_marketing,
    coalesce(c.accepts_sms, false) as accepts_sms, coalesce(vz.name, :default_tz) as tz,
    nullif(btrim(cc.email), '') as email, sup.reason as suppression
"""



# "offset 0" keeps an EXISTS a per-row probe by index: without it PostgreSQL may turn the test into a hash
# of the whole table (every status change, every review ever written), which costs the history, not the day.
def _order_closed(alias: str) -> str:
    return f"""({alias}.status in ('returned', 'cancelled') or exists (
    select 1 from smarketing.order_status_history h
    where h.order_id = {alias}.order_id and h.status in ('returned', 'cancelled') offset 0))"""


def _reviewed(alias: str) -> str:
    return f"exists (select 1 from smarketing.reviews rv where rv.order_id = {alias}.order_id offset 0)"


_ORDER_CLOSED = _order_closed("o")


def _in_window(column: str, days_before: str, start: str = ":moments_from") -> str:
    """``column`` within the asks' moments (``start``, as_of] moved ``days_before`` earlier, both ends bounded
    (with a day of slack each, for day arithmetic across daylight-saving changes) so that an index range reads
    those rows, not the history nor the rows whose ask is still ahead. ``:moments_from`` is where an
    incremental run starts reading (the previous run's as-of less the overlap), ``:window_from`` the window's
    start (as_of - the ask window), which a full run reads from."""
    return (f"{column} > {start} - make_interval(days => {days_before} + 1) "
            f"and {column} <= :as_of - make_interval(days => {days_before} - 1)")


def _candidates_insert(select_sql: str, extra_skips: str) -> str:
    """Wrap a select of asks (with recipient columns) into the candidates insert with consent and skips."""
    return f"""
insert into outreach_candidates (idempotency_key, customer_id, order_id, kind, step, channel, due_at,
                                 consent_basis, skip_reason, time_zone, incentive_offered)
select smarketing.outreach_key(x.customer_id, x.order_id, x.kind, x.step),
       x.customer_id, x.order_id, x.kind, x.step, x.channel, x.due_at, x.consent,
       case {_COMMON_SKIPS} {extra_skips} end,
       x.tz, x.kind in ('review_request', 'review_reminder') and :incentive <> ''
from (
    select x.*, {_SMS_DUE} as due_at, {_CONSENT} as consent
    from ({select_sql}) x
) x
on conflict (idempotency_key) do nothing
"""


_REVIEW_REQUESTS = _candidates_insert(f"""
    select o.customer_id, o.order_id, 'review_request'::text as kind, 1 as step, t.ask_at,
           {_CHANNEL} as channel, {_RECIPIENT_COLUMNS},
           {_ORDER_CLOSED} as order_closed,
           {_reviewed("o")} as reviewed
    from smarketing.orders o
    cross join lateral (select coalesce(o.delivered_at + make_interval(days => :review_delay),
                                        o.shipped_at + make_interval(days => :ship_fallback),
                                        o.ordered_at + make_interval(days => :order_fallback)) as ask_at) t
    {_RECIPIENT.format(alias="o")}
    where t.ask_at <= :as_of and t.ask_at > :as_of - make_interval(days => least(:ask_window, :request_ttl))
      -- the same test per branch of ask_at, in a form indexes serve (0016): a day's orders, not a year's
      -- (an incremental run: only the moments since the previous run, and the orders changed since, e.g. a
      -- delivery event that arrived late; a full run reads the window and the last arm finds nothing)
      and ({_in_window("o.delivered_at", ":review_delay")}
           or (o.delivered_at is null and {_in_window("o.shipped_at", ":ship_fallback")})
           or (o.delivered_at is null and o.shipped_at is null and {_in_window("o.ordered_at", ":order_fallback")})
           or o.updated_at > :orders_changed_since)
      and (t.ask_at > :moments_from or o.updated_at > :orders_changed_since)  -- the same, exactly
      and not exists (select 1 from smarketing.outreach_messages m
                      where m.order_id = o.order_id and m.kind = 'review_request')
""", "when x.reviewed then 'already reviewed'")

# One reminder at most (step 2), only for a request that went out, cancelled by a review of the order;
# due reminder_delay after the request reached the customer (its due time, or later if it went out late).
_REMINDERS = _candidates_insert(f"""
    select r.customer_id, r.order_id, 'review_reminder'::text as kind, 2 as step,
           greatest(r.due_at, r.sent_at) + make_interval(days => :reminder_delay) as ask_at, r.channel, {_RECIPIENT_COLUMNS},
           coalesce({_ORDER_CLOSED}, false) as order_closed,
           {_reviewed("r")} as reviewed
    -- The whole window: a request's status turns 'sent' with no mark a watermark could read, and the sent
    -- requests of a window are one index range. Reminded already: dropped before the recipient is read.
    from (select r.customer_id, r.order_id, r.due_at, r.sent_at, r.channel
          from smarketing.outreach_messages r
          where r.kind = 'review_request' and r.status = 'sent'
            and {_in_window("greatest(r.due_at, r.sent_at)", ":reminder_delay", ":window_from")}  -- by index (0016)
            and greatest(r.due_at, r.sent_at) + make_interval(days => :reminder_delay) <= :as_of
            and greatest(r.due_at, r.sent_at) + make_interval(days => :reminder_delay) > :window_from
            and not exists (select 1 from smarketing.outreach_messages m
                            where m.order_id = r.order_id and m.kind = 'review_reminder')
          offset 0) r
    left join smarketing.orders o on o.order_id = r.order_id
    {_RECIPIENT.format(alias="r")}
""", "when x.reviewed then 'cancelled: order reviewed'")

# Share asks may target happy customers: a recent 4-5 star review whose text scoring found positive,
# or a repeat buyer. This is the only place that reads ratings or scores.
_SHARE_ASKS = _candidates_insert(f"""
    select h.customer_id, h.order_id, 'share_ask'::text as kind, 1 as step, h.ask_at,
           {_CHANNEL} as channel, {_RECIPIENT_COLUMNS}, false as order_closed
    from (select * from (
        select distinct on (customer_id) customer_id, order_id, ask_at from (
            select rv.customer_id, rv.order_id, rv.created_at + make_interval(days => :share_delay) as ask_at,
                   'review' as kind_source, rv.created_at as review_at
            from smarketing.reviews rv
            join lateral (select s.sentiment, s.is_lukewarm from smarketing.advocate_scores s
                          where s.customer_id = rv.customer_id order by s.score_date desc limit 1) sc on true
            where rv.rating >= :share_min_rating and sc.sentiment >= :share_min_sentiment and not sc.is_lukewarm
              and rv.customer_id is not null and rv.order_id is not null
              and {_in_window("rv.created_at", ":share_delay", ":window_from")}  -- by reviews_created_at_idx
            union all
            select customer_id, order_id, ask_at, 'repeat', null::timestamptz from (
                -- nth: the order's place among the customer's delivered, open orders by (delivered_at, order_id),
                -- counted for the orders whose ask is due only (by index) rather than ranked over all orders;
                -- own: the order itself is among them, i.e. it is open (one status-history probe, not two)
                select o.customer_id, o.order_id, o.ask_at, n.nth, n.own
                from (
                    select o.customer_id, o.order_id, o.delivered_at, o.ask_at
                    -- the orders whose moment came since the previous run, and every order of the customers
                    -- whose earlier asks may have changed (outreach_share_recheck; a full run: the window)
                    from (select o.customer_id, o.order_id, o.delivered_at, o.status, t.ask_at
                          from smarketing.orders o
                          cross join lateral (select o.delivered_at + make_interval(days => :review_delay + :share_delay)
                                              as ask_at) t
                          where {_in_window("o.delivered_at", ":review_delay + :share_delay")}
                            and o.status = 'delivered' and t.ask_at <= :as_of and t.ask_at > :moments_from
                          union
                          select o.customer_id, o.order_id, o.delivered_at, o.status, t.ask_at
                          from smarketing.orders o  -- by orders_customer_idx
                          cross join lateral (select o.delivered_at + make_interval(days => :review_delay + :share_delay)
                                              as ask_at) t
                          where o.customer_id = any (array(select customer_id from outreach_share_recheck))
                            and o.status = 'delivered' and t.ask_at <= :as_of and t.ask_at > :window_from) o
                    offset 0  -- the exact window first, then the count per order
                ) o
                cross join lateral (
                    select count(*) as nth, count(*) filter (where p.order_id = o.order_id) as own
                    from smarketing.orders p
                    where p.customer_id = o.customer_id and p.status = 'delivered' and p.delivered_at is not null
                      and not {_order_closed("p")}
                      and (p.delivered_at, p.order_id) <= (o.delivered_at, o.order_id)) n
            ) repeat where own = 1 and nth >= :share_repeat_orders
              -- not a repeat buyer who has just told us they are unhappy
              and not exists (select 1 from smarketing.reviews rv
                              where rv.customer_id = repeat.customer_id and rv.rating < :share_min_rating
                                and rv.created_at > :as_of - make_interval(days => :share_review_window))
        ) asks
        where ask_at <= :as_of and ask_at > :as_of - make_interval(days => least(:ask_window, :request_ttl))
          and (kind_source = 'repeat' or review_at > :as_of - make_interval(days => :share_review_window))
        order by customer_id, ask_at desc, order_id
    ) latest
    -- asked already (most of the window was planned by earlier runs): dropped before the recipient is read
    where not exists (select 1 from smarketing.outreach_messages m
                      where m.customer_id = latest.customer_id and m.order_id = latest.order_id
                        and m.kind = 'share_ask')
    offset 0) h
    {_RECIPIENT.format(alias="h")}
""", "")

# An incremental run re-decides a customer's share ask from all of the customer's asks in the window when an
# earlier ask of theirs may have changed: an order whose moment is before the moments read changed since the
# previous run (a late delivery, a return), the customer has a review ask in the window (it competes with
# their repeat-buyer asks for the latest one), or an unhappy review stops counting against them.
_SHARE_RECHECK = f"""
insert into outreach_share_recheck (customer_id)
select o.customer_id from smarketing.orders o
where o.updated_at > :orders_changed_since
  and o.delivered_at <= :moments_from - make_interval(days => :review_delay + :share_delay - 1)
union
select rv.customer_id from smarketing.reviews rv
where rv.customer_id is not null and rv.rating >= :share_min_rating
  and {_in_window("rv.created_at", ":share_delay", ":window_from")}
  and rv.created_at + make_interval(days => :share_delay) <= :moments_from
union
select rv.customer_id from smarketing.reviews rv
where rv.customer_id is not null and rv.rating < :share_min_rating
  and rv.created_at > :previous_as_of - make_interval(days => :share_review_window + 1)
  and rv.created_at <= :as_of - make_interval(days => :share_review_window)
"""

_COOLDOWN = """
update outreach_candidates k set skip_reason = 'cooldown: asked within ' || :cooldown || ' days'
where k.skip_reason is null and k.kind in ('review_request', 'share_ask')
  and exists (select 1 from smarketing.outreach_messages m
              where m.customer_id = k.customer_id and m.kind = k.kind and m.status in ('planned', 'sending', 'sent')
                and m.due_at > k.due_at - make_interval(days => :cooldown)
                and m.due_at < k.due_at + make_interval(days => :cooldown));
update outreach_candidates k set skip_reason = 'cooldown: asked within ' || :cooldown || ' days'
from (select idempotency_key, due_at,
             first_value(due_at) over (partition by customer_id, kind order by due_at, idempotency_key) as first_due,
             row_number() over (partition by customer_id, kind order by due_at, idempotency_key) as nth
      from outreach_candidates
      where skip_reason is null and kind in ('review_request', 'share_ask')) r
where r.idempotency_key = k.idempotency_key and r.nth > 1
  and r.due_at - r.first_due < make_interval(days => :cooldown);
"""

# Global cap across flows: live messages in the window ending at the candidate's due time, plus the
# earlier candidates of this run (by due time, then priority), must stay within the cap.
_CAP = """
update outreach_candidates k
set skip_reason = 'global cap: ' || :cap || ' messages in ' || :cap_window || ' days'
from (select q.idempotency_key,
             row_number() over (partition by q.customer_id order by q.due_at,
                                case q.kind when 'review_request' then 1 when 'review_reminder' then 2 else 3 end,
                                q.idempotency_key) as nth,
             (select count(*) from smarketing.outreach_messages m
              where m.customer_id = q.customer_id and m.status in ('planned', 'sending', 'sent')
                and m.due_at > q.due_at - make_interval(days => :cap_window) and m.due_at <= q.due_at) as prior
      from outreach_candidates q where q.skip_reason is null) r
where r.idempotency_key = k.idempotency_key and r.prior + r.nth > :cap
"""

_WRITE = """
with written as (
insert into smarketing.outreach_messages (
    message_id, idempotency_key, customer_id, order_id, kind, step, channel, template_variant, consent_basis,
    status, status_reason, due_at, expires_at, planned_at, planned_run_id, incentive_offered, recipient_time_zone)
select left(encode(d.message_digest, 'hex'), 32), k.idempotency_key,
       k.customer_id, k.order_id, k.kind, k.step, k.channel,
       (cast(:variants as jsonb) -> k.kind) ->> (get_byte(d.digest, 0)
                                                 % jsonb_array_length(cast(:variants as jsonb) -> k.kind)),
       k.consent_basis,
       case when k.skip_reason is null then 'planned' else 'skipped' end, k.skip_reason,
       k.due_at, k.due_at + make_interval(days => :request_ttl), :as_of, :run_id,
       k.incentive_offered, k.time_zone
from outreach_candidates k
cross join lateral (select sha256(convert_to(k.idempotency_key, 'UTF8')) as digest) h
-- A row planned before migration 0026 kept the message id of its old key, which may be this key (its ids held a
-- `%`, or its order was `-`): then sha256(key + '#'), no key's hash. Other keys never meet one (no probe).
cross join lateral (select case when k.order_id is not null and strpos(k.idempotency_key, '%') = 0 then h.digest
                                 when exists (select 1 from smarketing.outreach_messages m
                                              where m.message_id = left(encode(h.digest, 'hex'), 32))
                                 then sha256(convert_to(k.idempotency_key || '#', 'UTF8'))
                                 else h.digest end as message_digest, h.digest) d
on conflict (idempotency_key) do nothing
returning kind, status, coalesce(status_reason, '') as reason, customer_id
)
-- Counts, not rows, come back (a million orders plan in bounded memory); the few new share-ask
-- customers come back to get their referral codes.
select kind, status, reason, count(*) as n,
       array_agg(customer_id) filter (where kind = 'share_ask' and status = 'planned') as share_customers
from written group by kind, status, reason
"""


NEVER = datetime(9999, 12, 31, tzinfo=UTC)  # "changed since never": a full run reads no changed-orders arm


def _params(settings: OutreachSettings, as_of: datetime, run_id: str, variants: dict[str, list[str]]) -> dict:
    """The statements' parameters, bounds as a full run reads them (``plan`` narrows them when incremental)."""
    window_from = as_of - timedelta(days=min(settings.ask_window_days, settings.request_ttl_days))
    return {
        "window_from": window_from, "moments_from": window_from, "orders_changed_since": NEVER,
        "previous_as_of": window_from,
        "as_of": as_of, "run_id": run_id, "variants": json.dumps({k: sorted(v) for k, v in variants.items()}),
        "review_delay": settings.review_delay_days, "ship_fallback": settings.ship_fallback_days,
        "order_fallback": settings.order_fallback_days, "reminder_delay": settings.reminder_delay_days,
        "ask_window": settings.ask_window_days, "request_ttl": settings.request_ttl_days,
        "cooldown": settings.cooldown_days, "cap": settings.global_cap, "cap_window": settings.cap_window_days,
        "soft_opt_in": settings.soft_opt_in, "preferred_channel": settings.preferred_channel,
        "sms_start": settings.sms_start_hour, "sms_end": settings.sms_end_hour,
        "default_tz": settings.default_time_zone, "incentive": settings.review_incentive,
        "share_delay": settings.share_delay_days, "share_min_rating": settings.share_min_rating,
        "share_min_sentiment": settings.share_min_sentiment, "share_repeat_orders": settings.share_repeat_orders,
        "share_review_window": settings.share_review_window_days,
    }


# Settings that decide which asks exist and when (not the rules applied to them): a run planned with other
# values says nothing about this run's window, so a change of any of them means a full re-plan.
_CANDIDATE_SETTINGS = ("review_delay", "ship_fallback", "order_fallback", "reminder_delay", "ask_window",
                       "request_ttl", "share_delay", "share_min_rating", "share_min_sentiment",
                       "share_repeat_orders", "share_review_window")


def _digest(params: dict, share_asks: bool) -> str:
    values = {k: params[k] for k in _CANDIDATE_SETTINGS} | {"share_asks": share_asks}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def _choose_mode(conn: sa.Connection, as_of: datetime, settings: OutreachSettings, digest: str,
                 watermarks: dict[str, datetime]) -> tuple[str, str, datetime, datetime, datetime]:
    """(mode, reason, moments_from, orders_changed_since, previous_as_of) for this run.

    Incremental from the latest committed run at or before ``as_of`` (a failed run recorded nothing; a
    backfill compares with the runs before it): that run planned every ask whose moment lay in its window
    from the rows it could see, so this one needs the moments after it (less the overlap) and the orders
    the ingest loaded since (their source ``updated_at`` is above the orders watermark that run saw, less
    the overlap, which must exceed the ingest's own)."""
    window_from = as_of - timedelta(days=min(settings.ask_window_days, settings.request_ttl_days))

    def full(reason: str) -> tuple[str, str, datetime, datetime, datetime]:
        return "full", reason, window_from, NEVER, window_from

    if not settings.plan_incremental:
        return full("SMARKETING_PLAN_INCREMENTAL is off")
    previous = conn.execute(sa.text(
        "select as_of, orders_watermarks, settings_digest from smarketing.outreach_plan_runs "
        "where as_of <= :as_of order by as_of desc, plan_id desc limit 1"), {"as_of": as_of}).first()
    if previous is None:
        return full("no earlier planning run")
    if previous.settings_digest != digest:
        return full("the ask timing or share settings changed since the last run")
    if previous.as_of <= window_from:
        return full(f"the last run (as of {previous.as_of.isoformat()}) is older than the ask window")
    seen = {source: datetime.fromisoformat(value) for source, value in previous.orders_watermarks.items()}
    if not seen or not set(watermarks) <= set(seen):
        return full("orders were loaded without an ingest watermark the last run saw")
    overlap = timedelta(hours=settings.plan_overlap_hours)
    return ("incremental", f"changes since the run as of {previous.as_of.isoformat()}",
            max(window_from, previous.as_of - overlap), min(seen.values()) - overlap, previous.as_of)


def _bind(conn: sa.Connection, sql: str, params: dict) -> None:
    statement = sa.text(sql)
    used = {name for name in statement._bindparams}  # only the parameters a statement names
    conn.execute(statement, {k: v for k, v in params.items() if k in used})


def plan(engine: sa.Engine, as_of: datetime, settings: OutreachSettings, variants: dict[str, list[str]],
         run_id: str = "manual") -> PlanResult:
    """Write every due ask into the outbox (planned or skipped with a reason); returns what was new."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    for kind in PRIORITY:
        if not variants.get(kind):
            raise ValueError(f"no template variants for {kind}")
    params = _params(settings, as_of, run_id, variants)
    bulk.rebuild_deferred_indexes(engine, [OUTBOX])  # left by a first run that died before it rebuilt them
    # A first run into an empty outbox (at 1M purchases, 28,708 rows) writes its rows without the secondary
    # indexes and builds them once at the end. The planner's own reads of the outbox meet an empty table then,
    # and the one it makes while writing (the message-id probe) reads the primary key, which stays. The partial
    # indexes stay too: they hold sent rows only, and the planner writes none.
    started = time.perf_counter()
    deferred = bulk.defer_indexes_if_empty(engine, OUTBOX, partial=False)
    seconds = time.perf_counter() - started
    try:
        result = _plan(engine, as_of, settings, params)
    finally:
        if deferred:
            started = time.perf_counter()
            bulk.rebuild_deferred_indexes(engine, [OUTBOX])
            seconds += time.perf_counter() - started
    if deferred:
        result.step_seconds["indexes"] = seconds
    return result


def _plan(engine: sa.Engine, as_of: datetime, settings: OutreachSettings, params: dict) -> PlanResult:
    run_id = params["run_id"]
    result = PlanResult()
    with engine.begin() as conn:
        # Planning runs one at a time per warehouse; concurrent runs wait instead of double-counting caps.
        conn.execute(sa.text("select pg_advisory_xact_lock(hashtext('smarketing_outreach_plan'))"))
        # The watermarks first: every order at or below them was committed before this run's statements began.
        watermarks = dict(conn.execute(sa.text(
            "select source, high_watermark from smarketing.watermarks where dataset = 'orders'")).all())
        digest = _digest(params, settings.share_asks)
        result.mode, result.reason, params["moments_from"], params["orders_changed_since"], \
            params["previous_as_of"] = _choose_mode(conn, as_of, settings, digest, watermarks)
        result.moments_from = params["moments_from"]
        for statement in _SETUP.split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)
        steps = [("review_requests", _REVIEW_REQUESTS), ("reminders", _REMINDERS)]
        if settings.share_asks:
            steps += [("share_asks", _SHARE_RECHECK)] if result.mode == "incremental" else []
            steps += [("share_asks", _SHARE_ASKS)]
        steps += [("cooldown", s) for s in _COOLDOWN.split(";") if s.strip()] + [("cap", _CAP)]
        for name, statement in steps:
            started = time.perf_counter()
            _bind(conn, statement, params)
            result.step_seconds[name] = result.step_seconds.get(name, 0.0) + time.perf_counter() - started
        started = time.perf_counter()
        share_customers = set()
        for row in conn.execute(sa.text(_WRITE), {k: params[k] for k in ("variants", "request_ttl", "as_of", "run_id")}):
            result.counts[(row.kind, row.status, row.reason)] += row.n
            share_customers.update(row.share_customers or ())
        ensure_referral_codes(conn, share_customers, as_of)
        conn.execute(sa.text(
            "insert into smarketing.outreach_plan_runs (run_id, as_of, mode, moments_from, orders_watermarks, "
            "settings_digest, counts) values (:run_id, :as_of, :mode, :moments_from, cast(:seen as jsonb), "
            ":digest, cast(:counts as jsonb))"),
            {"run_id": run_id, "as_of": as_of, "mode": result.mode, "moments_from": result.moments_from,
             "seen": json.dumps({k: v.isoformat() for k, v in watermarks.items()}), "digest": digest,
             "counts": json.dumps({"planned": result.planned, "skipped": result.skipped})})
        result.step_seconds["write"] = time.perf_counter() - started
    return result


def ensure_referral_codes(conn: sa.Connection, customer_ids: set[str], created_at: datetime) -> None:
    if not customer_ids:
        return
    customers = sorted(customer_ids)
    conn.execute(  # one statement, not one round trip per customer (a day asks a few hundred to share)
        sa.text("insert into smarketing.referral_codes (customer_id, referral_code, created_at) "
                "select c, code, :t from unnest(cast(:customers as text[]), cast(:codes as text[])) as u (c, code) "
                "on conflict do nothing"),
        {"customers": customers, "codes": [referral_code(c) for c in customers], "t": created_at},
    )

