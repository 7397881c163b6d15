"""Benchmark: erasing one customer, and the daily retention sweep, on a warehouse of a given size.

    .venv/bin/python benchmarks/bench_privacy.py --customers 200000
    .venv/bin/python benchmarks/bench_privacy.py --customers 200000 --pg-url postgresql://postgres@127.0.0.1:5432/postgres

Fills a fresh warehouse with SQL (generate_series): per customer a contact, two orders with two lines
each, two email events, a sent outreach message, a review for half of them, a score row, and a
quarantined raw row for 5%. Then times `erase_customer` for a few people (by id and by email) and
`apply_retention` with a cutoff that strips about half the contacts. Prints the figures; the results
go to docs/benchmarks/privacy.md. Uses the embedded PostgreSQL under .data/bench-postgres unless
--pg-url names another server.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 11, 22, tzinfo=UTC)

FILL = """
insert into smarketing.customers (customer_id, country, accepts_marketing, created_at, updated_at, source)
select 'C' || g, 'DE', true, :now - (g % 1000) * interval '1 day', :now - (g % 1000) * interval '1 day', 'bench'
  from generate_series(1, :n) g;
insert into smarketing.customer_contacts (customer_id, email, first_name, phone, updated_at)
select 'C' || g, 'c' || g || '@mail.test', 'N' || g, '+49151' || g, :now - (g % 1000) * interval '1 day'
  from generate_series(1, :n) g;
insert into smarketing.orders (order_id, customer_id, ordered_at, status, delivered_at, total_amount, currency,
                               updated_at, source)
select 'O' || g || '-' || k, 'C' || g, :now - (g % 1000) * interval '1 day', 'delivered',
       :now - (g % 1000) * interval '1 day', 40, 'EUR', :now - (g % 1000) * interval '1 day', 'bench'
  from generate_series(1, :n) g, generate_series(1, 2) k;
insert into smarketing.order_items
select o.order_id, l, 'SKU-' || l, 'Mug', 1, 20 from smarketing.orders o, generate_series(1, 2) l;
insert into smarketing.email_events (event_id, email, customer_id, event_type, occurred_at, source)
select 'E' || g || '-' || k, 'c' || g || '@mail.test', 'C' || g, 'open', :now - (g % 1000) * interval '1 day', 'bench'
  from generate_series(1, :n) g, generate_series(1, 2) k;
insert into smarketing.outreach_messages (message_id, idempotency_key, customer_id, order_id, kind, channel,
       template_variant, status, due_at, expires_at, planned_at, sent_at)
select md5('C' || g), 'C' || g || ':' || 'O' || g || '-1' || ':review_request:1', 'C' || g, 'O' || g || '-1', 'review_request',
       'email', 'a', 'sent', :now, :now, :now, :now
  from generate_series(1, :n) g;
insert into smarketing.reviews (review_id, order_id, customer_id, sku, rating, body, created_at, source)
select 'R' || g, 'O' || g || '-1', 'C' || g, 'SKU-1', 4, 'fine', :now, 'bench'
  from generate_series(1, :n, 2) g;
insert into smarketing.advocate_scores (customer_id, score_date, advocate_score, segment, scored_at)
select 'C' || g, :now ::date, 50, 'promising', :now from generate_series(1, :n) g;
insert into smarketing.quarantine (dataset, source, record_key, rule, reason, raw, raw_hash, quarantined_at)
select 'customers', 'bench', 'C' || g, 'email_format', 'bad',
       jsonb_build_object('customer_id', 'C' || g, 'email', 'c' || g || '@mail.test'), md5(g::text),
       :now - (g % 200) * interval '1 day'
  from generate_series(1, :n, 20) g;
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--erasures", type=int, default=5)
    parser.add_argument("--pg-url")
    args = parser.parse_args()

    from smarketing_tasks.benchmark import bench_server
    from smarketing_tasks.db import drop_database, ensure_database, make_engine, with_database
    from smarketing_tasks.migrations import migrate
    from smarketing_tasks.privacy import PrivacySettings, apply_retention, erase_customer

    admin = bench_server(args.pg_url)
    name = f"bench_privacy_{uuid.uuid4().hex[:8]}"
    ensure_database(admin, name)
    engine = make_engine(with_database(admin, name))
    try:
        migrate(engine)
        started = time.perf_counter()
        with engine.begin() as conn:
            for statement in FILL.split(";"):
                if statement.strip():
                    conn.execute(sa.text(statement), {"n": args.customers, "now": NOW})
        with engine.connect() as conn:
            rows = sum(conn.execute(sa.text(f"select count(*) from smarketing.{t}")).scalar_one() for t in (
                "customers", "customer_contacts", "orders", "order_items", "email_events", "outreach_messages",
                "reviews", "advocate_scores", "quarantine"))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("analyze")
        print(f"filled {args.customers:,} customers ({rows:,} rows) in {time.perf_counter() - started:.1f}s")

        timings = []
        for i in range(args.erasures):
            g = 1 + i * (args.customers // max(args.erasures, 1))
            kwargs = {"customer_id": f"C{g}"} if i % 2 == 0 else {"email": f"C{g}@MAIL.test"}
            started = time.perf_counter()
            result = erase_customer(engine, requested_at=NOW, request_ref=f"bench-{i}", **kwargs)
            timings.append(time.perf_counter() - started)
            assert result.customers_found == 1, result
        print(f"erase one customer: median {statistics.median(timings):.2f}s, max {max(timings):.2f}s "
              f"over {len(timings)} (by id and by email; {result.total_deleted} rows each)")

        started = time.perf_counter()
        touched = apply_retention(engine, now=NOW, settings=PrivacySettings(contact_retention_days=500,
                                                                             quarantine_contact_retention_days=100))
        first = time.perf_counter() - started
        started = time.perf_counter()
        apply_retention(engine, now=NOW, settings=PrivacySettings(contact_retention_days=500,
                                                                  quarantine_contact_retention_days=100))
        again = time.perf_counter() - started
        print(f"retention sweep: {first:.1f}s ({touched}); rerun with nothing to do: {again:.1f}s")
    finally:
        engine.dispose()
        drop_database(admin, name)


if __name__ == "__main__":
    main()
