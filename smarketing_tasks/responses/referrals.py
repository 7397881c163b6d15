"""Referral redemptions: orders whose discount code is another customer's referral code.

Rules (each rejected order is quarantined as dataset ``referrals`` with its reason):

- the code must be a referral code we issued (``unknown_referral_code``; ordinary promotions such as
  ``WELCOME10`` are not referral-shaped and are ignored), and issued before the order (``code_not_yet_issued``);
- no self-referral: the same customer (``self_referral``), the same email address once tags and, for
  Gmail, dots are ignored (``self_referral_same_email``), or the same phone (``self_referral_same_phone``;
  the reference schema carries no postal address, so the phone stands in for the household);
- a cancelled order earns nothing (``order_cancelled``);
- only a referred customer's first order counts (``not_first_order``), and the first referrer keeps the
  credit (``already_referred``; a unique index on the referred customer makes it hold under concurrency).

Set-based SQL over the warehouse's orders up to the run's time, so reruns and late orders are harmless;
each accepted redemption is attributed to the referrer's latest share or referral ask within the window.
A run examines only the orders with a discount code written since the last run (``referral_changes``, kept by
triggers, also when a code an order used is issued) and those still pending (``referral_pending``: ordered
after the run's time, a code not issued yet, waiting for another first order), not every discount order.
"""

from __future__ import annotations

import time
from datetime import datetime

import sqlalchemy as sa

from smarketing_tasks.ingest.pipeline import IngestResult
from smarketing_tasks.responses.settings import ResponsesSettings

SOURCE_NAME = "warehouse"
# Rejections no later data can change; such orders are not re-examined (the others are, each run).
FINAL_RULES = ("self_referral", "self_referral_same_email", "self_referral_same_phone", "order_cancelled",
               "not_first_order", "already_referred")
_NORMAL_EMAIL = ("case when split_part(lower({0}), '@', 2) in ('gmail.com', 'googlemail.com') "
                 "then replace(regexp_replace(split_part(lower({0}), '@', 1), '\\+.*$', ''), '.', '') || '@gmail.com' "
                 "else regexp_replace(split_part(lower({0}), '@', 1), '\\+.*$', '') || '@' || split_part(lower({0}), '@', 2) "
                 "end")
_DIGITS = "nullif(regexp_replace({0}, '[^0-9]', '', 'g'), '')"

# An order (alias o, its code's owner rc) that redeems a referral code and is neither redeemed nor rejected for good.
_OPEN = """o.discount_code is not null
              and (rc.customer_id is not null or upper(trim(o.discount_code)) ~ :pattern)
              and not exists (select 1 from smarketing.referrals r where r.referred_order_id = o.order_id)
              and not exists (select 1 from smarketing.quarantine q where q.dataset = 'referrals'
                              and q.record_key = o.order_id and q.rule = any(:final_rules))"""

_RULES = [
    ("unknown_referral_code", "c.referrer is null",
     "'discount code ' || c.code || ' looks like a referral code but no customer has it'"),
    ("code_not_yet_issued", "c.code_created_at > c.ordered_at",
     "'referral code ' || c.code || ' was used before it was issued to ' || c.referrer"),
    ("self_referral", "c.referrer = c.referred", "'customer ' || c.referred || ' used their own referral code'"),
    ("self_referral_same_email", "c.referrer_email is not null and c.referrer_email = c.referred_email",
     "'customers ' || c.referrer || ' and ' || c.referred || ' share an email address: a self-referral'"),
    ("self_referral_same_phone", "c.referrer_phone is not null and c.referrer_phone = c.referred_phone",
     "'customers ' || c.referrer || ' and ' || c.referred || ' share a phone number: a self-referral'"),
    ("order_cancelled", "c.status = 'cancelled'", "'order ' || c.order_id || ' was cancelled'"),
    ("not_first_order", "c.earlier_order is not null",
     "'only a referred customer''s first order counts; ' || c.referred || ' ordered before (' || c.earlier_order || ')'"),
    ("already_referred", "c.credited_to is not null",
     "'customer ' || c.referred || ' was already referred by ' || c.credited_to || ' (the first referrer keeps the credit)'"),
]


def redeem_referrals(warehouse: sa.Engine, *, until: datetime, run_id: str,
                     settings: ResponsesSettings | None = None) -> IngestResult:
    """Record redemptions of orders up to ``until`` and quarantine the rejected ones with their reason."""
    settings = settings or ResponsesSettings()
    started = time.perf_counter()
    open_params = {"until": until, "pattern": f"^{settings.referral_code_pattern}$", "final_rules": list(FINAL_RULES)}
    with warehouse.begin() as conn:
        conn.execute(sa.text("select pg_advisory_xact_lock(hashtext('smarketing_responses:referrals'))"))
        # Claimed in this transaction: a change committed while the run goes on stays logged for the next run.
        conn.exec_driver_sql("create temporary table examined_orders (order_id text primary key) on commit drop")
        conn.exec_driver_sql(
            "with claimed as (delete from smarketing.referral_changes returning order_id) "
            "insert into examined_orders select order_id from claimed union select order_id from smarketing.referral_pending")
        conn.exec_driver_sql("analyze examined_orders")
        conn.execute(sa.text(f"""
            create temporary table candidate_referrals on commit drop as
            select o.order_id, o.customer_id as referred, upper(trim(o.discount_code)) as code, o.ordered_at,
                   o.total_amount, o.status, rc.customer_id as referrer, rc.created_at as code_created_at,
                   {_NORMAL_EMAIL.format('ce.email')} as referred_email, {_NORMAL_EMAIL.format('re.email')} as referrer_email,
                   {_DIGITS.format('ce.phone')} as referred_phone, {_DIGITS.format('re.phone')} as referrer_phone,
                   (select e.order_id from smarketing.orders e where e.customer_id = o.customer_id
                      and e.status <> 'cancelled' and (e.ordered_at, e.order_id) < (o.ordered_at, o.order_id)
                    order by e.ordered_at, e.order_id limit 1) as earlier_order,
                   (select r.referrer_customer_id from smarketing.referrals r
                    where r.referred_customer_id = o.customer_id and r.referred_order_id <> o.order_id) as credited_to
            from examined_orders x
            join smarketing.orders o on o.order_id = x.order_id
            left join smarketing.referral_codes rc on rc.referral_code = upper(trim(o.discount_code))
            left join smarketing.customer_contacts ce on ce.customer_id = o.customer_id
            left join smarketing.customer_contacts re on re.customer_id = rc.customer_id
            where o.ordered_at <= :until and {_OPEN}"""), open_params)
        candidates = conn.exec_driver_sql("select count(*) from candidate_referrals").scalar_one()
        conn.exec_driver_sql("alter table candidate_referrals add column rule text, add column reason text")
        for rule, condition, reason in _RULES:
            conn.exec_driver_sql(f"update candidate_referrals c set rule = '{rule}', reason = {reason} "
                                 f"where c.rule is null and {condition}")
        conn.execute(sa.text("""
            with raw as (
                select order_id, rule, reason, jsonb_build_object('order_id', order_id, 'customer_id', referred,
                       'discount_code', code, 'ordered_at', ordered_at, 'referrer_customer_id', referrer) as raw
                from candidate_referrals where rule is not null)
            insert into smarketing.quarantine (dataset, source, record_key, rule, reason, raw, raw_hash, run_id)
            select 'referrals', :source, order_id, rule, reason, raw, encode(sha256(convert_to(raw::text, 'UTF8')), 'hex'),
                   :run_id from raw
            on conflict (dataset, raw_hash, rule) do nothing"""), {"source": SOURCE_NAME, "run_id": run_id})
        rejected = conn.exec_driver_sql("select count(*) from candidate_referrals where rule is not null").scalar_one()
        # Two first orders of one new customer at the same moment: the earlier order id wins, the other waits.
        loaded = conn.execute(sa.text("""
            insert into smarketing.referrals (referred_order_id, referral_code, referrer_customer_id,
                                              referred_customer_id, revenue, redeemed_at, message_id)
            select distinct on (c.referred) c.order_id, c.code, c.referrer, c.referred, c.total_amount, c.ordered_at,
                   (select m.message_id from smarketing.outreach_messages m
                    where m.customer_id = c.referrer and m.status = 'sent' and m.kind in ('share_ask', 'referral_ask')
                      and m.sent_at <= c.ordered_at and m.sent_at > c.ordered_at - (:window)::interval
                    order by m.sent_at desc, m.message_id limit 1)
            from candidate_referrals c where c.rule is null
            order by c.referred, c.ordered_at, c.order_id
            on conflict do nothing"""), {"window": settings.attribution_window}).rowcount
        # What this run examined and may still change stays pending (orders after ``until`` included).
        conn.exec_driver_sql("delete from smarketing.referral_pending p using examined_orders x "
                             "where p.order_id = x.order_id")
        conn.execute(sa.text(f"""
            insert into smarketing.referral_pending (order_id)
            select o.order_id from examined_orders x
            join smarketing.orders o on o.order_id = x.order_id
            left join smarketing.referral_codes rc on rc.referral_code = upper(trim(o.discount_code))
            where {_OPEN}"""), open_params)
        conn.execute(sa.text(
            "insert into smarketing.ingest_runs (run_id, source, dataset, window_start, window_end, rows_read, "
            "rows_loaded, rows_quarantined, seconds) values (:run_id, :source, 'referrals', null, :end, :read, "
            ":loaded, :quarantined, :seconds) on conflict (run_id, source, dataset) do update set "
            "window_end = excluded.window_end, rows_read = excluded.rows_read, rows_loaded = excluded.rows_loaded, "
            "rows_quarantined = excluded.rows_quarantined, seconds = excluded.seconds, finished_at = now()"),
            {"run_id": run_id, "source": SOURCE_NAME, "end": until, "read": candidates, "loaded": loaded,
             "quarantined": rejected, "seconds": time.perf_counter() - started})
    return IngestResult(SOURCE_NAME, "referrals", None, until, int(candidates), int(loaded), int(rejected),
                        time.perf_counter() - started, None)
