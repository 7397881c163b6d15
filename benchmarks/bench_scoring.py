"""Benchmark: advocate scoring of N customers with 3N orders and 0.3N reviews (issue 6's target: 1,000,000
customers in under 2 minutes and 2 GiB on a 2-core machine).

    .venv/bin/python benchmarks/bench_scoring.py --customers 100000 1000000 --workers 2

For each size: a fresh warehouse is migrated and filled by COPY with generated customers, orders, reviews
(texts drawn from realistic fragments, so that most are unique), social posts, referrals and NPS answers;
then the same code as the DAG runs: prepare (SQL + model fit), the partitions (``--workers`` processes
working through them, as Celery workers would), finalize. Every step runs in a fresh process, as Airflow runs
each task; prints seconds per step, the Python CPU seconds, and each process's peak RSS (the PostgreSQL
server's memory and CPU are its own and not counted). Uses the embedded PostgreSQL
under .data/bench-postgres unless --pg-url names another server.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 11, 22, tzinfo=UTC)
SHORT = ["Good.", "ok", "Fine", "Great!", "Love it!", "It was alright", "Nice", "Excellent", "Not bad",
         "Terrible", "Perfect", "Does the job.", "Meh", "Superb", "Okay I guess"]
OPENERS = ["The {p} arrived {when}", "Bought the {p} for my {who}", "I've used the {p} for {n} weeks",
           "Second {p} I've ordered", "Ordered the {p} on a whim", "Got the {p} as a gift for my {who}"]
MIDDLES = ["and it works {how}", "and the quality is {quality}", "but the {part} feels {quality}",
           "and setup was {ease}", "though delivery was {when}", "and the price was {price}"]
CLOSERS = ["Would buy again.", "Not sure I'd recommend it.", "Really happy with it!", "It's fine.",
           "Returning it.", "Five stars from me.", "Customer service was {service}.", "Good value.", ""]
WORDS = {
    "p": ["kettle", "blender", "jacket", "speaker", "lamp", "backpack", "mug set", "headphones", "desk chair",
          "yoga mat", "coffee grinder", "rain boots", "phone case", "toaster", "duvet"],
    "when": ["quickly", "two days late", "on time", "a week late", "the next morning", "in a damaged box"],
    "who": ["dad", "sister", "partner", "office", "kids", "neighbour"],
    "n": [str(i) for i in range(1, 12)],
    "how": ["perfectly", "as expected", "most of the time", "fine", "brilliantly", "only sometimes"],
    "quality": ["excellent", "cheap", "solid", "flimsy", "great", "okay", "disappointing"],
    "part": ["lid", "handle", "zip", "strap", "button", "cable"],
    "ease": ["easy", "confusing", "a breeze", "a nightmare"],
    "price": ["fair", "too high", "a bargain", "steep"],
    "service": ["lovely", "slow to answer", "brilliant", "useless"],
}
FOREIGN = ["Sehr gut, schnelle Lieferung, gerne wieder.", "Produit conforme, livraison un peu lente.",
           "Está bien, pero la batería dura poco.", "Ottimo prodotto, consigliato!"]


def review_texts(rng: np.random.Generator, n: int) -> list[str]:
    texts = []
    kinds = rng.random(n)
    for kind in kinds:
        if kind < 0.3:
            texts.append(SHORT[rng.integers(len(SHORT))])
        elif kind < 0.32:
            texts.append(FOREIGN[rng.integers(len(FOREIGN))])
        else:
            parts = [OPENERS[rng.integers(len(OPENERS))], MIDDLES[rng.integers(len(MIDDLES))]]
            sentence = " ".join(parts) + ". " + CLOSERS[rng.integers(len(CLOSERS))]
            texts.append(sentence.format(**{k: v[rng.integers(len(v))] for k, v in WORDS.items()}).strip())
    return texts


def _copy(conn, table: str, frame: pd.DataFrame) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, na_rep="\\N")
    buffer.seek(0)
    with conn.cursor() as cur, cur.copy(
            f"copy {table} ({', '.join(frame.columns)}) from stdin with (format csv, null '\\N')") as copy:
        while chunk := buffer.read(1 << 20):
            copy.write(chunk)


def _purchases(rng: np.random.Generator, customers: int, n_orders: int) -> tuple[np.ndarray, np.ndarray]:
    """Purchase histories from the BG/NBD story itself (so the value model has something real to find):
    each customer starts within the last two years, buys at a Gamma-distributed weekly rate, and may drop
    out after each purchase with a Beta-distributed probability. Exactly n_orders are kept (all first
    purchases, then repeat purchases at random)."""
    weeks = 104.0
    birth = rng.uniform(0, weeks, customers)
    rate = rng.gamma(0.6, 1 / 3.0, customers)  # purchases per week, mean 0.2
    dropout = rng.beta(0.8, 4.0, customers)
    owners, times = [np.arange(customers)], [birth]
    alive = np.ones(customers, bool)
    current = birth.copy()
    for _ in range(80):
        alive &= rng.random(customers) >= dropout
        current = current + rng.exponential(1.0, customers) / np.maximum(rate, 1e-6)
        active = alive & (current < weeks)
        if not active.any():
            break
        owners.append(np.flatnonzero(active))
        times.append(current[active])
    first = len(owners[0])
    repeat_owner, repeat_time = np.concatenate(owners[1:]), np.concatenate(times[1:])
    keep = rng.choice(len(repeat_owner), min(n_orders - first, len(repeat_owner)), replace=False)
    owner = np.concatenate([owners[0], repeat_owner[keep]])
    week = np.concatenate([times[0], repeat_time[keep]])
    return owner, (weeks - week) * 7.0


def generate(url: str, customers: int, seed: int = 6) -> dict[str, int]:
    import psycopg

    from smarketing_tasks.db import libpq_url

    rng = np.random.default_rng(seed)
    ids = np.char.add("c", np.char.zfill(np.arange(customers).astype(str), 8))
    n_orders = 3 * customers
    owner, days_ago = _purchases(rng, customers, n_orders)
    ordered_at = pd.Timestamp(NOW) - pd.to_timedelta(days_ago, unit="D")
    status = rng.choice(["delivered", "shipped", "returned", "cancelled"], len(owner), p=[0.9, 0.05, 0.03, 0.02])
    orders = pd.DataFrame({
        "order_id": np.char.add("o", np.arange(len(owner)).astype(str)), "customer_id": ids[owner],
        "ordered_at": ordered_at, "status": status, "total_amount": np.round(rng.gamma(2.0, 30.0, len(owner)), 2),
        "currency": "EUR", "updated_at": ordered_at, "source": "bench"})
    n_reviews = int(0.3 * customers)
    review_owner = rng.choice(owner, n_reviews)
    reviews = pd.DataFrame({
        "review_id": np.char.add("r", np.arange(n_reviews).astype(str)), "customer_id": ids[review_owner],
        "rating": rng.choice([5, 4, 3, 2, 1], n_reviews, p=[0.55, 0.2, 0.1, 0.06, 0.09]),
        "body": review_texts(rng, n_reviews),
        "created_at": pd.Timestamp(NOW) - pd.to_timedelta(rng.uniform(0, 700, n_reviews), unit="D"),
        "source": "bench"})
    n_posts = int(0.02 * customers)
    posts = pd.DataFrame({
        "post_id": np.char.add("p", np.arange(n_posts).astype(str)), "platform": "instagram",
        "customer_id": ids[rng.choice(owner, n_posts)], "body": review_texts(rng, n_posts),
        "followers": np.round(rng.lognormal(5, 1.5, n_posts)).astype(int),
        "posted_at": pd.Timestamp(NOW) - pd.to_timedelta(rng.uniform(0, 700, n_posts), unit="D"), "source": "bench"})
    n_referrals = int(0.01 * customers)
    referrals = pd.DataFrame({
        "referred_order_id": np.char.add("x", np.arange(n_referrals).astype(str)), "referral_code": "REF-BENCH",
        "referrer_customer_id": ids[rng.choice(owner, n_referrals)],
        "referred_customer_id": np.char.add("new", np.arange(n_referrals).astype(str)),
        "revenue": np.round(rng.gamma(2.0, 30.0, n_referrals), 2),
        "redeemed_at": pd.Timestamp(NOW) - pd.to_timedelta(rng.uniform(0, 700, n_referrals), unit="D")})
    n_nps = int(0.05 * customers)
    nps = pd.DataFrame({
        "answer_id": np.char.add("n", np.arange(n_nps).astype(str)), "customer_id": ids[rng.choice(owner, n_nps)],
        "score": rng.integers(0, 11, n_nps), "comment": review_texts(rng, n_nps),
        "answered_at": pd.Timestamp(NOW) - pd.to_timedelta(rng.uniform(0, 700, n_nps), unit="D"),
        "source": "bench"})
    with psycopg.connect(libpq_url(url)) as conn:
        _copy(conn, "smarketing.customers", pd.DataFrame({"customer_id": ids, "updated_at": NOW, "source": "bench"}))
        _copy(conn, "smarketing.orders", orders)
        _copy(conn, "smarketing.reviews", reviews)
        _copy(conn, "smarketing.social_posts", posts)
        _copy(conn, "smarketing.referrals", referrals)
        _copy(conn, "smarketing.nps_answers", nps)
        conn.execute("analyze")
    return {"customers": customers, "orders": len(orders), "reviews": n_reviews, "social_posts": n_posts,
            "referrals": n_referrals, "nps_answers": n_nps}


def _counts(url: str) -> dict[str, int]:
    import sqlalchemy as sa

    from smarketing_tasks.db import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        counts = {t: conn.execute(sa.text(f"select count(*) from smarketing.{t}")).scalar()
                  for t in ("customers", "orders", "reviews", "social_posts", "referrals", "nps_answers")}
    engine.dispose()
    return counts


def _clear_outputs(url: str) -> None:
    from smarketing_tasks.db import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("truncate smarketing.advocate_scores, smarketing.follow_ups, smarketing.score_models, "
                             "smarketing.score_inputs, smarketing.follow_up_candidates, smarketing.score_runs, "
                             "smarketing.score_state, smarketing.score_queue, smarketing.score_changes")
    engine.dispose()


def _usage() -> dict:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"peak_rss": usage.ru_maxrss * 1024, "cpu_s": usage.ru_utime + usage.ru_stime}


def _prepare(url: str, partitions: int) -> tuple[float, dict, str]:
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.scoring import ScoringSettings
    from smarketing_tasks.scoring.pipeline import prepare

    started = time.perf_counter()
    prepared = prepare(make_engine(url), NOW, ScoringSettings(partitions=partitions))
    return time.perf_counter() - started, {**_usage(), "phases": prepared.seconds}, prepared.notes


def _score_partitions(url: str, partitions: list[int], partition_count: int) -> tuple[float, dict]:
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.scoring import ScoringSettings
    from smarketing_tasks.scoring.pipeline import score_partition

    engine = make_engine(url)
    started = time.perf_counter()
    phases: dict[str, float] = {}
    for partition in partitions:
        result = score_partition(engine, NOW, partition, ScoringSettings(partitions=partition_count))
        for phase, seconds in result["seconds"].items():
            phases[phase] = phases.get(phase, 0.0) + seconds
    engine.dispose()
    return time.perf_counter() - started, {**_usage(), "phases": phases}


def _finalize(url: str) -> tuple[float, dict, dict]:
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.scoring.pipeline import finalize

    started = time.perf_counter()
    summary = finalize(make_engine(url), NOW)
    return time.perf_counter() - started, _usage(), summary


def _in_child(function, *args):
    """Each step in a fresh process, as Airflow runs each task: its peak RSS is its own."""
    with ProcessPoolExecutor(1) as pool:
        return pool.submit(function, *args).result()


def run(url: str, partitions: int, workers: int) -> dict:
    prepare_s, prepare_usage, notes = _in_child(_prepare, url, partitions)
    started = time.perf_counter()
    shares = [list(range(partitions))[w::workers] for w in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(_score_partitions, [url] * workers, shares, [partitions] * workers))
    score_s = time.perf_counter() - started
    finalize_s, finalize_usage, summary = _in_child(_finalize, url)
    peaks = [prepare_usage["peak_rss"], finalize_usage["peak_rss"], *(r[1]["peak_rss"] for r in results)]
    return {"prepare_s": round(prepare_s, 1), "score_s": round(score_s, 1), "finalize_s": round(finalize_s, 1),
            "total_s": round(prepare_s + score_s + finalize_s, 1),
            "python_cpu_s": round(prepare_usage["cpu_s"] + finalize_usage["cpu_s"]
                                  + sum(r[1]["cpu_s"] for r in results), 1),
            "prepare_phases_s": prepare_usage["phases"],
            "score_phases_s": {k: round(sum(r[1]["phases"].get(k, 0) for r in results), 1)
                               for k in ("read", "score", "delete", "write")},
            "peak_rss_mib": round(max(peaks) / 2**20),
            "peak_rss_prepare_mib": round(prepare_usage["peak_rss"] / 2**20),
            "peak_rss_score_worker_mib": round(max(r[1]["peak_rss"] for r in results) / 2**20),
            "customers_scored": summary["customers"], "segments": summary["segments"],
            "follow_ups": summary["follow_ups_written"], "model_notes": notes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--pg-url", help="admin URL of a PostgreSQL server (default: embedded)")
    parser.add_argument("--keep", action="store_true", help="keep the generated databases (bench_scoring_<N>)")
    parser.add_argument("--reuse", action="store_true", help="reuse kept databases instead of generating again")
    parser.add_argument("--rerun", action="store_true",
                        help="with --reuse: keep the previous scores, measuring a rerun of the same date")
    args = parser.parse_args()

    from smarketing_tasks.db import drop_database, ensure_database, make_engine, with_database
    from smarketing_tasks.migrations import migrate

    if args.pg_url:
        admin = args.pg_url
    else:
        from smarketing_tasks.embedded import ensure_running

        admin = ensure_running(ROOT / ".data" / "bench-postgres", preferred_port=54349).url()
    results = []
    for n in args.customers:
        name = f"bench_scoring_{n}"
        url = with_database(admin, name)
        if args.reuse and not ensure_database(admin, name):
            counts = _counts(url)
            if not args.rerun:  # measure the first scoring of the date, as after generation
                _clear_outputs(url)
            print(f"reusing {name}: {counts}" + (" (rerun: last run's scores kept)" if args.rerun else ""),
                  flush=True)
        else:
            drop_database(admin, name)
            ensure_database(admin, name)
            migrate(make_engine(url))
            started = time.perf_counter()
            counts = _in_child(generate, url, n)  # generation's memory stays out of the measured steps
            print(f"generated {counts} in {time.perf_counter() - started:.0f}s", flush=True)
        result = {**counts, "workers": args.workers, "partitions": args.partitions,
                  **run(url, args.partitions, args.workers)}
        print(json.dumps(result), flush=True)
        results.append(result)
        if not args.keep:
            drop_database(admin, name)
    if len(results) > 1:
        small, large = results[0], results[-1]
        ratio = (large["total_s"] / small["total_s"]) / (large["customers"] / small["customers"])
        print(f"scaling: {large['customers'] / small['customers']:.0f}x customers took "
              f"{large['total_s'] / small['total_s']:.1f}x the time (1.0 = linear: {ratio:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
