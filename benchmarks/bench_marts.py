"""Benchmark: building and publishing the marts (schema marketing) and writing the report, at scale.

    .venv/bin/python benchmarks/bench_marts.py --customers 100000
    .venv/bin/python benchmarks/bench_marts.py --customers 100000 --pg-url postgresql://postgres@127.0.0.1:5432/postgres

Fills a fresh warehouse with synthetic core rows in SQL (generate_series, fixed seed): per customer about
2 orders, 3 order lines, 2.4 messages, 0.5 reviews, 3 score runs; then times publish_marts (build in the
staging schema vs the atomic swap, per mart) and write_report, and prints the figures as JSON. Uses the
embedded PostgreSQL under .data/bench-postgres unless --pg-url names another server.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AS_OF = datetime(2026, 11, 22, tzinfo=UTC)

FILL = """
select setseed(0.42);
insert into smarketing.customers (customer_id, country, created_at, updated_at, source)
select 'c' || i, (array['DE','FR','US','GB','NL'])[1 + i % 5], ts, ts, 'bench'
from (select i, timestamptz '2025-01-01' + (i % 600) * interval '1 day' as ts
      from generate_series(1, :n) as i) as s;

insert into smarketing.orders (order_id, customer_id, ordered_at, status, shipped_at, delivered_at, total_amount,
                               currency, discount_code, updated_at, source)
select 'o' || i, 'c' || (1 + (i * 7919) % :n), at,
       case when i % 20 = 0 then 'returned' when i % 50 = 0 then 'cancelled' else 'delivered' end,
       at + interval '1 day', at + interval '3 days', round((20 + random() * 180)::numeric, 2), 'EUR',
       case when i % 100 = 0 then 'REF-' || (1 + i % :n) end, at + interval '3 days', 'bench'
from (select i, timestamptz '2026-11-21' - (random() * 365) * interval '1 day' as at
      from generate_series(1, 2 * :n) as i) as s;

insert into smarketing.order_items
select order_id, line, 'SKU-' || (1 + (hashtext(order_id || line) & 511)), 'Product ' || (1 + (hashtext(order_id || line) & 511)),
       1 + (line % 3), round((5 + random() * 95)::numeric, 2)
from smarketing.orders cross join generate_series(1, 2) as line
where line = 1 or hashtext(order_id) % 2 = 0;

insert into smarketing.outreach_messages (message_id, idempotency_key, customer_id, order_id, kind, step, channel,
    template_variant, status, due_at, expires_at, planned_at, sent_at)
select md5(order_id || kind), order_id || ':' || kind, customer_id, order_id, kind, 1,
       case when hashtext(order_id) % 10 = 0 then 'sms' else 'email' end,
       (array['A','B','C'])[1 + abs(hashtext(order_id || kind)) % 3], 'sent',
       delivered_at + interval '7 days', delivered_at + interval '37 days', delivered_at,
       delivered_at + case kind when 'review_request' then interval '7 days' when 'review_reminder'
                                 then interval '12 days' else interval '20 days' end
from smarketing.orders
cross join (values ('review_request'), ('review_reminder'), ('share_ask')) as k(kind)
where status = 'delivered'
  and (kind = 'review_request' or (kind = 'review_reminder' and hashtext(order_id) % 2 = 0)
       or (kind = 'share_ask' and hashtext(order_id) % 10 = 1));
delete from smarketing.outreach_messages where sent_at >= timestamptz '2026-11-22';

insert into smarketing.email_events (event_id, customer_id, event_type, bounce_type, message_id, occurred_at, source)
select message_id || ':' || e, customer_id, e, case when e = 'bounce' then 'hard' end, message_id,
       sent_at + interval '2 hours', 'bench'
from smarketing.outreach_messages
cross join (values ('open'), ('click'), ('bounce'), ('unsubscribe')) as t(e)
where (e = 'open' and abs(hashtext(message_id)) % 10 < 4) or (e = 'click' and abs(hashtext(message_id)) % 10 = 0)
   or (e = 'bounce' and abs(hashtext(message_id)) % 50 = 7) or (e = 'unsubscribe' and abs(hashtext(message_id)) % 200 = 3);

insert into smarketing.reviews (review_id, order_id, customer_id, sku, rating, title, body, consent_to_publish,
                                incentivized, language, created_at, source, message_id, attribution)
select 'r' || o.order_id, o.order_id, o.customer_id, i.sku, r.rating, null,
       (array['good', 'ok', 'Love it, the fabric is soft and warm and it packs small!',
              'The zipper broke after a week. Very disappointed.', 'It was okay I guess',
              'Excellent quality and great fit. Would buy again.', 'fine', 'Arrived late but works well.'])
           [1 + abs(hashtext(o.order_id)) % 8],
       abs(hashtext(o.order_id)) % 2 = 0, false, 'en', m.sent_at + interval '1 day', 'bench', m.message_id, 'token'
from smarketing.orders o
join smarketing.order_items i on i.order_id = o.order_id and i.line_no = 1
join smarketing.outreach_messages m on m.order_id = o.order_id and m.kind = 'review_request'
cross join lateral (select 1 + abs(hashtext(o.order_id || 'r')) % 5 as rating) as r
where abs(hashtext(o.order_id)) % 4 = 0 and m.sent_at + interval '1 day' < timestamptz '2026-11-22';

insert into smarketing.social_posts (post_id, platform, customer_id, followers, posted_at, source)
select 'p' || i, 'instagram', 'c' || i, (random() * 5000)::int,
       timestamptz '2026-11-21' - random() * 300 * interval '1 day', 'bench'
from generate_series(1, :n / 20) as i;

insert into smarketing.referrals (referred_order_id, referral_code, referrer_customer_id, referred_customer_id,
                                  revenue, redeemed_at)
select order_id, discount_code, 'c' || substr(discount_code, 5), customer_id, total_amount, ordered_at
from (select distinct on (customer_id) * from smarketing.orders where discount_code is not null
      order by customer_id, ordered_at) as first_use;

insert into smarketing.advocate_scores (customer_id, score_date, advocate_score, segment, is_lukewarm, nps_class,
    last_rating, sentiment, reviews_count, orders_count, lifetime_value, reasons, scored_at)
select 'c' || i, d, s, (array['champion','advocate','promising','lukewarm','at_risk','detractor','silent'])[1 + (i + k) % 7],
       (i + k) % 7 = 3, (array['promoter','passive','detractor', null])[1 + (i + k) % 4], 1 + i % 5, 0.2, 1, 2, 150,
       'bench', d
from generate_series(1, :n) as i
cross join lateral (select k, date '2026-11-22' - 7 * k as d, round((random() * 100)::numeric, 1) as s
                    from generate_series(0, 2) as k) as runs;

insert into smarketing.follow_ups (customer_id, reason, priority, owner_team, review_excerpt, suggested_questions,
                                   status, created_at, updated_at)
select 'c' || i, 'lukewarm', 1 + i % 5, (array['sales','support','customer_success'])[1 + i % 3], 'good',
       'What would have made it great?', (array['open','contacted','resolved','dismissed'])[1 + i % 4],
       timestamptz '2026-11-01' + (i % 20) * interval '1 day', timestamptz '2026-11-21'
from generate_series(1, :n, 10) as i;

insert into smarketing.rewards
select referrer_customer_id, 'referral_converted', 'RW-' || referred_order_id, referred_order_id, redeemed_at
from smarketing.referrals;
analyze;
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--pg-url", help="admin URL of a PostgreSQL server (default: embedded)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    import sqlalchemy as sa

    from smarketing_tasks.benchmark import bench_server
    from smarketing_tasks.db import drop_database, ensure_database, make_engine, with_database
    from smarketing_tasks.marts import publish_marts
    from smarketing_tasks.migrations import migrate
    from smarketing_tasks.report import write_report

    admin = bench_server(args.pg_url)
    name = f"smkt_bench_marts_{uuid.uuid4().hex[:8]}"
    ensure_database(admin, name)
    engine = make_engine(with_database(admin, name))
    try:
        migrate(engine)
        started = time.perf_counter()
        with engine.begin() as conn:
            for statement in (s.strip() for s in FILL.split(";\n")):
                if statement:
                    conn.execute(sa.text(statement), {"n": args.customers})
        fill_seconds = time.perf_counter() - started
        with engine.connect() as conn:
            sizes = {t: conn.execute(sa.text(f"select count(*) from smarketing.{t}")).scalar() for t in (
                "customers", "orders", "order_items", "outreach_messages", "email_events", "reviews",
                "social_posts", "referrals", "advocate_scores", "follow_ups", "rewards")}

        timings: dict[str, float] = {}
        last = [time.perf_counter()]

        def clock(message: str) -> None:
            now = time.perf_counter()
            if message.startswith("built ") or message.startswith("review signals"):
                timings[message.split(":")[0].replace("built ", "")] = round(now - last[0], 3)
            last[0] = now

        result = publish_marts(engine, AS_OF, progress=clock)
        republish = publish_marts(engine, AS_OF)  # a rerun: same input, replaces the published version
        started = time.perf_counter()
        with __import__("tempfile").TemporaryDirectory() as out:
            page = write_report(engine, Path(out), AS_OF)
            report_bytes = page.stat().st_size
            report_seconds = time.perf_counter() - started
        figures = {
            "customers": args.customers, "core_rows": sizes, "fill_seconds": round(fill_seconds, 1),
            "mart_rows": result["rows"], "build_seconds": result["build_seconds"],
            "swap_seconds": result["publish_seconds"], "per_step_seconds": timings,
            "rerun_build_seconds": republish["build_seconds"], "rerun_swap_seconds": republish["publish_seconds"],
            "report_seconds": round(report_seconds, 3), "report_bytes": report_bytes,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        print(json.dumps(figures, indent=2))
    finally:
        engine.dispose()
        if not args.keep:
            drop_database(admin, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
