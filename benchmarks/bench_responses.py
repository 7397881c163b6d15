"""Benchmark: response ingestion (reviews with langdetect, posts, events with suppression, referrals).

    .venv/bin/python benchmarks/bench_responses.py --reviews 100000 --customers 50000 [--language-processes 2]

Builds a shop with N reviews, N/2 posts and N email events for a warehouse of customers with sent asks,
then times each dataset through ``ingest_responses`` (the DAG's code), a rerun of the same interval
(which must change nothing), and langdetect alone on the review texts. Prints figures as JSON.
Uses the embedded PostgreSQL under .data/bench-postgres unless --pg-url names another server.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

T0 = datetime(2026, 6, 1, tzinfo=UTC)
TEXTS = ("Good.", "Absolutely love this tee, the fabric is soft and it keeps its shape after washing.",
         "Sehr schönes Shirt, angenehmer Stoff und schnelle Lieferung.", "Fell apart after two washes, disappointed.",
         "Très bonne qualité, livraison rapide, je recommande.", "Ok", "<b>Great</b> 😍 would buy again")


def build(shop, warehouse, customers: int, reviews: int) -> None:
    import hashlib

    import numpy as np
    import pandas as pd

    from smarketing_tasks.db import copy_frame
    from smarketing_tasks.demo_shop import write_shop

    rng = np.random.default_rng(7)
    ids = pd.Series([f"C{n:07d}" for n in range(customers)])
    write_shop(shop, {})
    with warehouse.begin() as conn:
        copy_frame(conn, "smarketing.customers", pd.DataFrame({
            "customer_id": ids, "country": "DE", "accepts_marketing": True, "accepts_sms": False,
            "created_at": T0 - timedelta(days=90), "updated_at": T0 - timedelta(days=90), "source": "bench"}))
        copy_frame(conn, "smarketing.customer_contacts", pd.DataFrame({
            "customer_id": ids, "email": ids.str.lower() + "@example.com", "first_name": "X", "phone": None,
            "updated_at": T0 - timedelta(days=90)}))
        orders = pd.DataFrame({"order_id": "O" + ids.str[1:], "customer_id": ids, "ordered_at": T0 - timedelta(days=20),
                               "status": "delivered", "total_amount": 30.0, "currency": "EUR",
                               "updated_at": T0 - timedelta(days=10), "source": "bench"})
        copy_frame(conn, "smarketing.orders", orders)
        copy_frame(conn, "smarketing.order_items", pd.DataFrame({
            "order_id": orders["order_id"], "line_no": 1, "sku": "SKU-TEE-001", "product_name": "Organic cotton tee",
            "quantity": 1, "unit_price": 30.0}))
        keys = ids + ":" + orders["order_id"] + ":review_request:1"
        copy_frame(conn, "smarketing.outreach_messages", pd.DataFrame({
            "message_id": keys.map(lambda k: hashlib.sha256(k.encode()).hexdigest()[:32]), "idempotency_key": keys,
            "customer_id": ids, "order_id": orders["order_id"], "kind": "review_request", "step": 1,
            "channel": "email", "template_variant": "A", "status": "sent", "due_at": T0, "expires_at": T0 + timedelta(days=30),
            "planned_at": T0, "sent_at": T0}))
        conn.exec_driver_sql("analyze")
    who = rng.integers(0, customers, reviews)
    at = T0 + pd.to_timedelta(rng.uniform(60, 14 * 86400, reviews), unit="s")
    with shop.begin() as conn:
        copy_frame(conn, "shop.reviews", pd.DataFrame({
            "review_id": [f"R{n:08d}" for n in range(reviews)], "order_id": "O" + ids[who].str[1:].to_numpy(),
            "customer_id": ids[who].to_numpy(), "sku": "SKU-TEE-001", "rating": rng.integers(0, 7, reviews),
            "title": None, "body": np.array(TEXTS)[rng.integers(0, len(TEXTS), reviews)] + " #" + pd.Series(
                range(reviews)).astype(str), "consent_to_publish": True, "incentivized": False, "created_at": at}))
        posts = reviews // 2
        copy_frame(conn, "shop.social_posts", pd.DataFrame({
            "post_id": [f"P{n:08d}" for n in range(posts)], "platform": "instagram", "author_handle": "@x",
            "customer_id": ids[who[:posts]].to_numpy(), "referral_code": None, "body": "Love it",
            "followers": rng.integers(-5, 5000, posts), "url": "https://instagram.example/p", "posted_at": at[:posts]}))
        kinds = np.array(["open", "click", "open", "unsubscribe", "bounce", "complaint", "open"])
        copy_frame(conn, "shop.email_events", pd.DataFrame({
            "event_id": [f"E{n:08d}" for n in range(reviews)], "email": ids[who].str.lower().to_numpy() + "@example.com",
            "event_type": kinds[rng.integers(0, len(kinds), reviews)], "occurred_at": at}))
        conn.exec_driver_sql("analyze")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reviews", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--language-processes", type=int, default=1)
    parser.add_argument("--pg-url")
    args = parser.parse_args()

    from smarketing_tasks.benchmark import bench_server, fresh_database
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.migrations import migrate
    from smarketing_tasks.responses import (
        ResponseSqlSource,
        ResponsesSettings,
        ingest_responses,
        redeem_referrals,
    )
    from smarketing_tasks.responses.text import detect_language

    admin = bench_server(args.pg_url)
    shop = make_engine(fresh_database(admin, "bench_resp_shop"))
    warehouse = make_engine(fresh_database(admin, "bench_resp_wh"))
    migrate(warehouse)
    started = time.perf_counter()
    build(shop, warehouse, args.customers, args.reviews)
    figures: dict = {"reviews": args.reviews, "customers": args.customers,
                     "build_seconds": round(time.perf_counter() - started, 1)}
    until = T0 + timedelta(days=15)
    settings = ResponsesSettings(language_processes=args.language_processes)
    figures["language_processes"] = args.language_processes
    source = ResponseSqlSource(shop)
    for run in ("first", "rerun"):
        for dataset in ("reviews", "social_posts", "email_events"):
            result = ingest_responses(source, dataset, warehouse, until=until, run_id=run, settings=settings,
                                      keys=[b"bench"])
            figures[f"{run}_{dataset}"] = {"rows": result.rows_read, "loaded": result.rows_loaded,
                                           "quarantined": result.rows_quarantined,
                                           "seconds": round(result.seconds, 2),
                                           "rows_per_second": round(result.rows_read / max(result.seconds, 1e-9))}
        with warehouse.begin() as conn:
            conn.exec_driver_sql("delete from smarketing.watermarks")  # the rerun reads the same interval again
    referrals = redeem_referrals(warehouse, until=until, run_id="bench")
    figures["referrals_seconds"] = round(referrals.seconds, 2)
    sample = [TEXTS[n % len(TEXTS)] + f" #{n}" for n in range(5_000)]
    started = time.perf_counter()
    for text in sample:
        detect_language(text)
    figures["langdetect_texts_per_second"] = round(len(sample) / (time.perf_counter() - started))
    figures["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
