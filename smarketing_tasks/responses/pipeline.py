"""Incremental, idempotent load of responses: window from the watermark, validate, check, attribute, upsert.

Per batch, in one transaction: shape rules in Python (``validate``), then the batch is COPYed into a
temporary stage where SQL resolves customers (by id, reviewer email, order, token or referral code),
rejects what the warehouse contradicts (unknown customer, order, sku; a review received twice),
attributes each response to the ask that produced it (token first, else the latest ask to the same
customer and order within ``attribution_window``), upserts it, and — for unsubscribes, hard bounces and
complaints — writes the suppression at once, so the very next outreach planning honours it.
The watermark moves after the last batch; reruns of any interval leave the tables as they were.
While a batch's transaction runs, the next batch is read, checked and written as CSV in a thread
(``_one_ahead``): the server's work and Python's overlap, the commits stay one per batch and in order.

Reviews get their text signals (language-aware tone, the lukewarm rule, the best quote:
``smarketing.review_signals``) in the same transaction that loads them: this is the one place every new
or changed review passes, scoring reads the signals before the marts are built, and a rerun recomputes
nothing (the content hash is unchanged).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

import sqlalchemy as sa

from smarketing_tasks import bulk
from smarketing_tasks.db import copy_csv_blocks, csv_blocks
from smarketing_tasks.frame_rules import reject_frame
from smarketing_tasks.ingest.pipeline import IngestResult, finish_run, quarantine_rows, read_watermark
from smarketing_tasks.responses.settings import ResponsesSettings
from smarketing_tasks.responses.validate import CheckedBatch, validate_responses
from smarketing_tasks.scoring.text_store import remember_text_signals
from smarketing_tasks.sources.base import Source, Window

if TYPE_CHECKING:
    import pandas as pd

    from smarketing_tasks.marts.review_signals import SignalRules

Progress = Callable[[str], None]
T = TypeVar("T")
R = TypeVar("R")

REVIEW_KINDS = "('review_request', 'review_reminder')"
SHARE_KINDS = "('share_ask', 'referral_ask')"

_STAGE = {
    "reviews": "_row integer, review_id text, order_id text, customer_id text, sku text, rating smallint, "
               "title text, body text, consent_to_publish boolean, incentivized boolean, language text, "
               "language_source text, created_at timestamptz, token_message_id text, reviewer_email text, "
               "message_id text, attribution text",
    "social_posts": "_row integer, post_id text, platform text, author_handle text, customer_id text, "
                    "referral_code text, body text, followers integer, url text, posted_at timestamptz, "
                    "token_message_id text, message_id text, attribution text",
    "email_events": "_row integer, event_id text, email text, phone text, customer_id text, event_type text, "
                    "bounce_type text, channel text, message_id text, occurred_at timestamptz",
}
# A first load into an empty table drops their secondary indexes and the keys pointing at it (review_signals'
# key to reviews, checked row by row otherwise) and builds them once after its last batch (smarketing_tasks.bulk).
_TARGETS = {"reviews": "smarketing.reviews", "social_posts": "smarketing.social_posts",
            "email_events": "smarketing.email_events"}
_REFERENCING = {"reviews": ["smarketing.review_signals"], "social_posts": [], "email_events": []}
_STAGE_COLUMNS = {dataset: [part.split()[0] for part in spec.split(", ")] for dataset, spec in _STAGE.items()}
_PRODUCT_SLUG = "trim(both '-' from regexp_replace(lower({}), '[^a-z0-9]+', '-', 'g'))"
# The batch's skus the shop sold, with one line's product-name slug each: one index probe per distinct sku (a
# best-seller has a line per order, so reading every line of the batch's skus grew with history).
KNOWN_SKUS_SQL = (
    "select s.sku, " + _PRODUCT_SLUG.format("line.product_name") + " as slug "
    "from (select distinct sku from stage_reviews where sku is not null) s "
    "cross join lateral (select i.product_name from smarketing.order_items i where i.sku = s.sku limit 1) line")


def latest_contact_by_email(address: str) -> str:
    """SQL for the customer whose contact has ``address`` (lowercased), the latest contact if several.

    customer_contacts_email_latest_idx (lower(email), updated_at desc, customer_id) holds the rows in this
    order, so a probe reads its first entry: no sort per looked-up row (issue 9)."""
    return (f"(select c.customer_id from smarketing.customer_contacts c where lower(c.email) = {address} "
            "order by c.updated_at desc, c.customer_id limit 1)")


@contextmanager
def _index_scans_only(conn: sa.Connection) -> Iterator[None]:
    """Keep a probe on its index: with few distinct skus the planner expects an early match in a sequential
    scan, which for a sku the shop never sold reads every order line."""
    previous = conn.exec_driver_sql("select current_setting('enable_seqscan')").scalar()
    conn.exec_driver_sql("select set_config('enable_seqscan', 'off', true)")
    try:
        yield
    finally:
        conn.execute(sa.text("select set_config('enable_seqscan', :previous, true)"), {"previous": previous})


def signing_keys(warehouse: sa.Engine, settings: ResponsesSettings, warn: Progress = print) -> list[bytes]:
    """The link-signing key outreach signs with (configured, or generated once in smarketing.secrets),
    then the keys retired by a rotation, so that links sent before it still attribute until they expire."""
    from smarketing_tasks.tokens import get_or_create_secret

    current = get_or_create_secret(warehouse, "link_signing_key", settings.link_signing_key or None, warn=warn)
    retired = [k.strip().encode() for k in settings.link_signing_keys_retired.split(",") if k.strip()]
    return [current, *retired]


def _has_column(conn: sa.Connection, table: str, column: str) -> bool:
    return bool(conn.execute(sa.text(
        "select 1 from information_schema.columns where table_schema = 'smarketing' and table_name = :t "
        "and column_name = :c"), {"t": table, "c": column}).scalar())


def _rejects(conn: sa.Connection, stage: str,
             checks: list[tuple[str | tuple[str, ...], str]]) -> list[tuple[int, str, str]]:
    """Run (rule, SQL returning _row and reason) checks against the stage; drop the rows that fail.

    A check of several rules (one pass over a table they share) names them in a tuple and returns _row, rule
    and reason; its rows are recorded rule by rule in that order, as separate checks would have."""
    found: list[tuple[int, str, str]] = []
    seen: set[tuple[int, str]] = set()
    for rules, query in checks:
        rows = conn.exec_driver_sql(query).all()
        if isinstance(rules, str):
            failed = [(row, rules, reason) for row, reason in rows]
        else:
            failed = sorted(rows, key=lambda r: rules.index(r[1]))  # stable: each rule's rows in the query's order
        for row, rule, reason in failed:
            if (int(row), rule) not in seen:  # one record per row and rule, the first reason found
                seen.add((int(row), rule))
                found.append((int(row), rule, reason))
    if found:
        conn.execute(sa.text(f"delete from {stage} where _row = any(:rows)"), {"rows": sorted({r for r, _, _ in found})})
    return found


def _window_pick(stage: str, moment: str, kinds: str, match_order: bool) -> str:
    """SQL that attributes unattributed stage rows to the latest matching ask sent before them in the window."""
    order_rule = "and (s.order_id is null or m.order_id = s.order_id)" if match_order else ""
    return f"""
        with pick as (
            select s._row, (select m.message_id from smarketing.outreach_messages m
                            where m.customer_id = s.customer_id and m.status = 'sent' and m.kind in {kinds}
                              and m.sent_at <= s.{moment} and m.sent_at > s.{moment} - (:window)::interval
                              {order_rule}
                            order by m.sent_at desc, m.message_id limit 1) as message_id
            from {stage} s where s.message_id is null and s.customer_id is not null)
        update {stage} s set message_id = pick.message_id, attribution = 'window'
        from pick where pick._row = s._row and pick.message_id is not null"""


def _load_reviews(conn: sa.Connection, settings: ResponsesSettings, source_name: str):
    stage = "stage_reviews"
    # Who wrote it: the id given, else the ask behind the token, else the reviewer's email, else the order.
    conn.exec_driver_sql(f"""
        update {stage} s set customer_id = coalesce(s.customer_id,
            (select m.customer_id from smarketing.outreach_messages m where m.message_id = s.token_message_id),
            {latest_contact_by_email("s.reviewer_email")},
            (select o.customer_id from smarketing.orders o where o.order_id = s.order_id))
        where s.customer_id is null""")
    conn.exec_driver_sql(f"""
        update {stage} s set order_id = m.order_id from smarketing.outreach_messages m
        where s.order_id is null and m.message_id = s.token_message_id""")
    # A product named by handle or name (platform exports) becomes the shop's sku.
    # Skus the shop sold come by the order_items sku index, one line per distinct sku of the batch (a
    # best-seller has a line per order: reading them all grew with history); only names/handles that are
    # not skus need the slug of every order line, so that scan runs only when a batch has one.
    with _index_scans_only(conn):
        conn.exec_driver_sql(f"create temporary table known_products on commit drop as {KNOWN_SKUS_SQL}")
    if conn.exec_driver_sql(
            "select exists (select 1 from stage_reviews s where s.sku is not null "
            "and not exists (select 1 from known_products p where p.sku = s.sku))").scalar():
        conn.exec_driver_sql(
            "insert into known_products select distinct on (sku) sku, " + _PRODUCT_SLUG.format("product_name")
            + " from smarketing.order_items where " + _PRODUCT_SLUG.format("product_name")
            + " in (select lower(sku) from stage_reviews) and sku not in (select sku from known_products) order by sku")
    conn.exec_driver_sql(f"""
        update {stage} s set sku = (select p.sku from known_products p where p.slug = lower(s.sku) order by p.sku limit 1)
        where s.sku is not null and not exists (select 1 from known_products p where p.sku = s.sku)
          and exists (select 1 from known_products p where p.slug = lower(s.sku))""")
    late = _rejects(conn, stage, [
        ("unknown_customer", f"select _row, 'customer_id ' || quote_literal(left(customer_id, 80)) || "
         f"' is not a known customer' from {stage} s where customer_id is not null and not exists "
         f"(select 1 from smarketing.customers c where c.customer_id = s.customer_id)"),
        # Both order rules in one join: a batch as large as a full load hashes itself against every order, once.
        (("unknown_order", "order_of_another_customer"), f"""
            select s._row, case when o.order_id is null then 'unknown_order' else 'order_of_another_customer' end,
                   case when o.order_id is null
                        then 'order_id ' || quote_literal(left(s.order_id, 80)) || ' is not a known order'
                        else 'order ' || s.order_id || ' belongs to customer ' || o.customer_id || ', not '
                             || s.customer_id end
            from {stage} s left join smarketing.orders o on o.order_id = s.order_id
            where s.order_id is not null
              and (o.order_id is null or (s.customer_id is not null and o.customer_id <> s.customer_id))"""),
        ("unknown_sku", f"select _row, 'sku ' || quote_literal(left(sku, 80)) || ' is not a product the shop sold' "
         f"from {stage} s where sku is not null and not exists (select 1 from known_products p where p.sku = s.sku)"),
        # The first earlier copy of each staged review, as a join rather than a probe per row: a first load
        # builds reviews_customer_order_sku_idx only after its last batch, and without it a per-row probe
        # reads every loaded review (batch 2 at 1M: hours). With the index a small stage still probes it.
        ("duplicate_review", f"""
            (select distinct on (s._row) s._row,
                    'the same review (customer, order, product, rating and text) was already received as '
                    || r.review_id
             from {stage} s join smarketing.reviews r
               on r.customer_id = s.customer_id and r.rating = s.rating and r.review_id <> s.review_id
              and r.order_id is not distinct from s.order_id and r.sku is not distinct from s.sku
              and r.body is not distinct from s.body and r.title is not distinct from s.title
             order by s._row, r.created_at, r.review_id)
            union all
            select _row, 'the same review (customer, order, product, rating and text) came first as ' || first_id
            from (select _row, review_id, first_value(review_id) over (
                      partition by customer_id, order_id, sku, rating, title, body
                      order by created_at, review_id) as first_id
                  from {stage} where customer_id is not null) batch
            where first_id <> review_id"""),
    ])
    conn.exec_driver_sql(f"""
        update {stage} s set message_id = m.message_id, attribution = 'token' from smarketing.outreach_messages m
        where m.message_id = s.token_message_id""")
    conn.execute(sa.text(_window_pick(stage, "created_at", REVIEW_KINDS, match_order=True)),
                 {"window": settings.attribution_window})
    conn.exec_driver_sql(f"update {stage} set attribution = 'none' where message_id is null")
    # A review that names no order is about the order its ask was about (so outreach sees it as reviewed).
    conn.exec_driver_sql(f"""
        update {stage} s set order_id = m.order_id from smarketing.outreach_messages m
        where s.order_id is null and m.message_id = s.message_id and m.order_id is not null""")
    if _has_column(conn, "outreach_messages", "incentive_offered"):
        # An answer to an ask that offered an incentive is an incentivised review (FTC 16 CFR 465), whatever it says.
        conn.exec_driver_sql(f"""
            update {stage} s set incentivized = true from smarketing.outreach_messages m
            where m.message_id = s.message_id and m.incentive_offered and not s.incentivized""")
    columns = ("review_id, order_id, customer_id, sku, rating, title, body, consent_to_publish, incentivized, "
               "language, language_source, created_at, message_id, attribution")
    updates = [c.strip() for c in columns.split(",") if c.strip() != "review_id"]
    return late, _upsert(conn, "smarketing.reviews", stage, columns, "review_id", updates, source_name)


def _load_posts(conn: sa.Connection, settings: ResponsesSettings, source_name: str):
    stage = "stage_social_posts"
    conn.exec_driver_sql(f"""
        update {stage} s set customer_id = coalesce(
            (select m.customer_id from smarketing.outreach_messages m where m.message_id = s.token_message_id),
            (select r.customer_id from smarketing.referral_codes r where r.referral_code = s.referral_code))
        where s.customer_id is null""")
    late = _rejects(conn, stage, [
        ("unknown_customer", f"select _row, 'customer_id ' || quote_literal(left(customer_id, 80)) || "
         f"' is not a known customer' from {stage} s where customer_id is not null and not exists "
         f"(select 1 from smarketing.customers c where c.customer_id = s.customer_id)"),
    ])
    conn.exec_driver_sql(f"""
        update {stage} s set message_id = m.message_id, attribution = 'token' from smarketing.outreach_messages m
        where m.message_id = s.token_message_id""")
    conn.execute(sa.text(_window_pick(stage, "posted_at", SHARE_KINDS, match_order=False)),
                 {"window": settings.attribution_window})
    conn.exec_driver_sql(f"update {stage} set attribution = 'none' where message_id is null")
    columns = ("post_id, platform, author_handle, customer_id, referral_code, body, followers, url, posted_at, "
               "message_id, attribution")
    updates = [c.strip() for c in columns.split(",") if c.strip() != "post_id"]
    loaded = _upsert(conn, "smarketing.social_posts", stage, columns, "post_id", updates, source_name)
    # Language and sentiment of each new text, once (smarketing.text_signals): scoring reads them instead of
    # analysing every poster's text on its first run.
    bodies = [body for (body,) in conn.exec_driver_sql(f"select distinct body from {stage} where body is not null")]
    remember_text_signals(conn, bodies, text_processes(settings))
    return late, loaded


def text_processes(settings: ResponsesSettings) -> int:
    """How many processes a large batch's text analysis may use: the setting, or the cores this process may use."""
    import os

    if settings.text_processes > 0:
        return settings.text_processes
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


SUPPRESSING = ("(s.event_type in ('unsubscribe', 'complaint') "
               "or (s.event_type = 'bounce' and s.bounce_type = 'hard'))")


def _load_events(conn: sa.Connection, settings: ResponsesSettings, source_name: str):
    stage = "stage_email_events"
    conn.exec_driver_sql(f"""
        update {stage} s set customer_id = coalesce(
            {latest_contact_by_email("s.email")},
            (select m.customer_id from (select c.customer_id, c.updated_at from smarketing.customer_contacts c
                                        where s.email is null
                                          and regexp_replace(c.phone, '[^0-9+]', '', 'g') = s.phone offset 0) m
             order by m.updated_at desc, m.customer_id limit 1))""")
    # (offset 0 keeps the phone lookup on its index: without it the planner may walk the updated_at index
    # backwards for the "latest" row and, for an unknown phone, read every contact.)
    # An SMS STOP names a phone; the suppression list is keyed by address, so use the customer's email.
    conn.exec_driver_sql(f"""
        update {stage} s set email = coalesce(lower(c.email), 'sms:' || s.phone)
        from smarketing.customer_contacts c where s.email is null and c.customer_id = s.customer_id""")
    conn.exec_driver_sql(f"update {stage} set email = 'sms:' || phone where email is null")
    # Opens, clicks and soft bounces of an address we never wrote to say nothing; opt-outs are kept anyway.
    late = _rejects(conn, stage, [
        ("unknown_email", f"select _row, 'no customer has the address ' || quote_literal(left(email, 80)) || "
         f"' (only opt-outs are kept for unknown addresses)' from {stage} s where customer_id is null and not "
         + SUPPRESSING),
    ])
    conn.exec_driver_sql(f"""
        update {stage} s set message_id = null where message_id is not null
        and not exists (select 1 from smarketing.outreach_messages m where m.message_id = s.message_id)""")
    conn.execute(sa.text(f"""
        with pick as (
            select s._row, (select m.message_id from smarketing.outreach_messages m
                            where m.customer_id = s.customer_id and m.status = 'sent'
                              and m.channel = case when s.channel = 'sms' then 'sms' else m.channel end
                              and m.sent_at <= s.occurred_at and m.sent_at > s.occurred_at - (:window)::interval
                            order by m.sent_at desc, m.message_id limit 1) as message_id
            from {stage} s where s.message_id is null and s.customer_id is not null)
        update {stage} s set message_id = pick.message_id from pick where pick._row = s._row"""),
                 {"window": settings.attribution_window})
    columns = "event_id, email, customer_id, event_type, bounce_type, channel, message_id, occurred_at"
    updates = [c.strip() for c in columns.split(",") if c.strip() != "event_id"]
    loaded = _upsert(conn, "smarketing.email_events", stage, columns, "event_id", updates, source_name)
    conn.exec_driver_sql(f"""
        insert into smarketing.suppressions as t (email, customer_id, reason, source, suppressed_at)
        select distinct on (s.email) s.email, s.customer_id,
               case s.event_type when 'bounce' then 'hard_bounce' else s.event_type end, 'email_events', s.occurred_at
        from {stage} s where {SUPPRESSING}
        order by s.email, s.occurred_at, s.event_id
        on conflict (email) do update set reason = excluded.reason, source = excluded.source,
            suppressed_at = excluded.suppressed_at, customer_id = coalesce(t.customer_id, excluded.customer_id)
        where excluded.suppressed_at < t.suppressed_at and t.reason not in ('erasure', 'manual')""")
    return late, loaded


def _upsert(conn: sa.Connection, table: str, stage: str, columns: str, key: str, updates: list[str],
            source_name: str) -> int:
    """Insert new rows; update a row only when its content changed (so a rerun touches nothing)."""
    set_clause = ", ".join(f"{c} = excluded.{c}" for c in updates)
    changed = (f"({', '.join(f't.{c}' for c in updates)}) is distinct from "
               f"({', '.join(f'excluded.{c}' for c in updates)})")
    result = conn.execute(sa.text(
        f"insert into {table} as t ({columns}, source) select {columns}, :source from {stage} "
        f"on conflict ({key}) do update set {set_clause}, source = excluded.source, loaded_at = now() where {changed}"),
        {"source": source_name})
    return max(result.rowcount, 0)


_LOADERS = {"reviews": _load_reviews, "social_posts": _load_posts, "email_events": _load_events}


@dataclass
class _Prepared:
    checked: CheckedBatch
    csv: list[str]
    rejects: pd.DataFrame


def _concat(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    return second if first.empty else pd.concat([first, second], ignore_index=True)


def _one_ahead(items: Iterator[T], work: Callable[[T], R], *, ahead: bool = True) -> Iterator[R]:
    """``work(item)`` for each item in order; with ``ahead``, the next item's work runs in a thread while the
    caller handles this one (psycopg releases the GIL while the server works, so the two overlap).

    Results come in order and an item's error is raised where it would have been without the thread: after
    the caller handled every item before it. At most one item is worked on beyond the one handed out."""
    if not ahead:
        yield from (work(item) for item in items)
        return
    from concurrent.futures import ThreadPoolExecutor

    done = object()

    def step():
        item = next(items, done)
        return done if item is done else work(item)

    try:
        with ThreadPoolExecutor(1, thread_name_prefix="responses-prepare") as pool:
            pending = pool.submit(step)
            while (result := pending.result()) is not done:
                pending = pool.submit(step)
                yield result
    finally:  # the thread is done with the source: release its connection now, not when collected
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _bulk_tables(dataset: str) -> list[str]:
    return [_TARGETS[dataset], *_REFERENCING[dataset]]


def defer_for_bulk_load(warehouse: sa.Engine, dataset: str) -> list[str]:
    """For a first load into an empty table: drop its secondary indexes and the keys pointing at it (recorded)."""
    target = _TARGETS[dataset]
    return (bulk.defer_indexes_if_empty(warehouse, target, _bulk_tables(dataset))
            + bulk.defer_foreign_keys_if_empty(warehouse, target, _REFERENCING[dataset]))


def restore_after_bulk_load(warehouse: sa.Engine, dataset: str, *, analyze: bool = True) -> None:
    """Build what ``defer_for_bulk_load`` dropped (by this run or a crashed one): indexes, statistics, keys.

    The keys come last: adding one checks every row by one join, which plans on the fresh statistics."""
    tables = _bulk_tables(dataset)
    bulk.rebuild_deferred_indexes(warehouse, tables)
    if analyze:  # statistics now, so the next stages do not plan on an "empty" table (the signals: autovacuum's)
        with warehouse.begin() as conn:
            conn.exec_driver_sql(f"analyze {_TARGETS[dataset]}")
    bulk.restore_deferred_foreign_keys(warehouse, tables)


def ingest_responses(
    source: Source,
    dataset: str,
    warehouse: sa.Engine,
    *,
    until: datetime,
    run_id: str,
    settings: ResponsesSettings | None = None,
    keys: list[bytes] | None = None,
    progress: Progress = lambda _: None,
    signal_rules: SignalRules | None = None,
) -> IngestResult:
    """Load the responses of ``dataset`` made after the watermark (minus the overlap) and up to ``until``.

    ``rows_loaded`` counts rows inserted or changed (a rerun loads 0); quarantined rows are counted once each.
    ``signal_rules``: the marts' quote and lukewarm settings the review signals are computed with
    (``SignalRules.from_settings(MartSettings)``; defaults when None).
    """
    started = time.perf_counter()
    settings = settings or ResponsesSettings()
    keys = keys if keys is not None else signing_keys(warehouse, settings, progress)
    restore_after_bulk_load(warehouse, dataset, analyze=False)  # left over by a crashed bulk load
    with warehouse.connect() as conn:
        watermark = read_watermark(conn, source.name, dataset)
    since = None if watermark is None else min(watermark - settings.responses_overlap, until)
    window = Window(since=since, until=until)
    progress(f"{dataset}: reading {source.name} responses in ({since or 'the beginning'}, {until}]")

    deferred = defer_for_bulk_load(warehouse, dataset)
    if deferred:
        progress(f"{dataset}: first load into an empty table; {', '.join(deferred)} are built at the end")
    try:
        rows_read, rows_loaded, rows_quarantined, signals, high = _load_batches(
            source, dataset, warehouse, window, until, run_id, settings, keys, progress, signal_rules, watermark)
    except Exception:
        if deferred:  # give readers their indexes back now; if this fails too, the next run builds them
            with contextlib.suppress(Exception):
                restore_after_bulk_load(warehouse, dataset)
        raise
    if deferred:
        restore_after_bulk_load(warehouse, dataset)
        progress(f"{dataset}: indexes and keys rebuilt, statistics taken")

    result = IngestResult(source.name, dataset, since, until, rows_read, rows_loaded, rows_quarantined,
                          time.perf_counter() - started, high)
    finish_run(warehouse, result, run_id)
    return result


def _load_batches(source: Source, dataset: str, warehouse: sa.Engine, window: Window, until: datetime, run_id: str,
                  settings: ResponsesSettings, keys: list[bytes], progress: Progress,
                  signal_rules: SignalRules | None, watermark: datetime | None):
    """Each batch of the window in a transaction of its own; returns (read, loaded, quarantined, signals, high)."""
    from smarketing_tasks.marts.review_signals import refresh_review_signals

    rows_read = rows_loaded = rows_quarantined = signals = 0
    high = watermark
    stage = f"stage_{dataset}"
    columns = _STAGE_COLUMNS[dataset]

    def prepare(frame: pd.DataFrame) -> _Prepared:
        """The batch's Python work before its transaction: the rules, its CSV for COPY, its early rejects."""
        checked = validate_responses(dataset, frame, until, settings, keys)
        clean = checked.clean
        for column in columns:
            if column not in clean.columns:
                clean[column] = None
        csv = list(csv_blocks(clean, columns, exact=False))
        return _Prepared(checked, csv, reject_frame(dataset, checked.frame, checked.rejects))

    # Forking text pools beside a running thread could copy a lock it holds into the children: those run alone.
    alone = settings.language_processes > 1 or text_processes(settings) > 1
    batches = source.read(dataset, window, settings.responses_batch_rows)
    with closing(_one_ahead(batches, prepare, ahead=not alone)) as prepared:
        for batch_no, ready in enumerate(prepared, start=1):
            checked = ready.checked
            with warehouse.begin() as conn:
                # Concurrent runs (a backfill beside the hourly run) take turns per dataset: upserts of the same
                # rows in different orders could otherwise deadlock, and attribution reads what the other wrote.
                conn.execute(sa.text("select pg_advisory_xact_lock(hashtext(:lock))"), {"lock": f"smarketing_responses:{dataset}"})
                conn.exec_driver_sql(f"create temporary table {stage} ({_STAGE[dataset]}) on commit drop")
                copy_csv_blocks(conn, stage, columns, ready.csv)
                conn.exec_driver_sql(f"analyze {stage}")  # temporary tables get no autovacuum statistics
                late, loaded = _LOADERS[dataset](conn, settings, source.name)
                if dataset == "reviews":
                    signals += refresh_review_signals(conn, signal_rules, review_ids_from=stage,
                                                      processes=text_processes(settings))
                rejects = ready.rejects
                if late:
                    rejects = _concat(rejects, reject_frame(dataset, checked.frame, late))
                rows_quarantined += quarantine_rows(conn, dataset, source.name, rejects, run_id)
                rows_loaded += loaded
            rows_read += len(checked.frame)
            if checked.max_change is not None and (high is None or checked.max_change > high):
                high = checked.max_change
            progress(f"{dataset}: batch {batch_no}: {rows_read:,} read, {rows_loaded:,} new or changed, "
                     f"{rows_quarantined:,} quarantined" + (f", {signals:,} review signals computed" if signals else ""))
    return rows_read, rows_loaded, rows_quarantined, signals, high
