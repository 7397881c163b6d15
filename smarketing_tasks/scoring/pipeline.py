"""Scoring against the warehouse: prepare in SQL, score partitions in Python, finalize follow-ups in SQL.

1. ``prepare``: one INSERT … SELECT builds ``smarketing.score_inputs`` for the scoring date (per-customer
   orders, RFM quintiles, BG/NBD inputs, latest review / NPS answer / post, reach, referrals, complaints,
   and a partition number ``hash(customer_id) mod N``); then the value model is fitted once for everybody
   on grouped (x, t_x, T) triples and stored in ``smarketing.score_models``.
2. ``score_partition``: reads one partition (COPY), scores it (``score.py``), and replaces that partition's
   rows of ``smarketing.advocate_scores`` for the date and its follow-up candidates, in one transaction.
3. ``finalize``: ranks candidates of all partitions into priorities 1-5 and upserts ``smarketing.follow_ups``
   (one row per customer and reason: later runs update it, never duplicate it), then drops the working rows.

Every step is idempotent for a scoring date, so retries and reruns leave the same tables.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa

from smarketing_tasks.db import copy_frame, raw_cursor
from smarketing_tasks.scoring import clv
from smarketing_tasks.scoring.score import ValueModel, follow_up_candidates, score_customers
from smarketing_tasks.scoring.settings import ScoringSettings

log = logging.getLogger(__name__)

PREPARE_SQL = """
insert into smarketing.score_inputs (
    score_date, partition_no, customer_id, orders_count, lifetime_value, recency_days, last_order_returned,
    x, t_x_days, T_days, mean_repeat_value, rfm_r, rfm_f, rfm_m, reviews_count, last_rating, review_text,
    review_language, review_age_days, nps_score, nps_comment, nps_age_days, social_posts_count, social_reach,
    post_text, referrals_count, referral_revenue, complaints_count)
with valid_orders as (   -- sorted once by customer in byte order (collate "C": no locale compare per row)
    select cid, ordered_at, amount, status, day, min(day) over (partition by cid) as first_day
    from (select customer_id collate "C" as cid, ordered_at, total_amount::float8 as amount, status,
                 (ordered_at at time zone 'UTC')::date as day
          from smarketing.orders where ordered_at <= :as_of and status <> 'cancelled') as o
),
buyers as (   -- BG/NBD counts purchase occasions: orders of one customer on one day are one
    select cid collate "default" as customer_id, count(*)::integer as orders_count,
           coalesce(sum(amount) filter (where status <> 'returned'), 0) as lifetime_value,
           min(first_day) as first_day, max(day) as last_day, count(distinct day) - 1 as x,
           sum(amount) as amount, sum(amount) filter (where day = first_day) as first_amount,
           max(ordered_at) as last_at,
           coalesce(max(ordered_at) filter (where status = 'returned') = max(ordered_at), false)
               as last_order_returned
    from valid_orders group by cid
),
orders_agg as (
    select b.*, extract(epoch from (:as_of - b.last_at)) / 86400.0 as recency_days,
           (b.last_day - b.first_day)::double precision as t_x_days,
           (:score_date - b.first_day)::double precision as T_days,
           case when b.x > 0 then (b.amount - b.first_amount) / b.x end as mean_repeat_value
    from buyers b
),
rfm as (   -- quintiles among buyers; ties share the lower bucket (percent_rank), 5 = best
    select *,
           least(5, 1 + floor(5 * percent_rank() over (order by recency_days desc)))::smallint as rfm_r,
           least(5, 1 + floor(5 * percent_rank() over (order by orders_count)))::smallint as rfm_f,
           least(5, 1 + floor(5 * percent_rank() over (order by lifetime_value)))::smallint as rfm_m
    from orders_agg
),
review_counts as (
    select customer_id, count(*) as reviews_count from smarketing.reviews
    where customer_id is not null and created_at <= :as_of group by 1
),
last_review as (
    select distinct on (customer_id) customer_id, rating, language, created_at,
           case when lower(btrim(title, ' .!')) = lower(btrim(body, ' .!'))   -- "Good" / "Good.": say it once
                then nullif(btrim(body), '')
                else nullif(concat_ws('. ', nullif(btrim(title, ' .'), ''), nullif(btrim(body), '')), '') end as text
    from smarketing.reviews where customer_id is not null and created_at <= :as_of
    order by customer_id, created_at desc, review_id desc
),
last_nps as (
    select distinct on (customer_id) customer_id, score, comment, answered_at
    from smarketing.nps_answers where answered_at <= :as_of
    order by customer_id, answered_at desc, answer_id desc
),
post_counts as (
    select customer_id, count(*) as posts, coalesce(sum(followers), 0) as reach from smarketing.social_posts
    where customer_id is not null and posted_at <= :as_of group by 1
),
last_post as (
    select distinct on (customer_id) customer_id, body from smarketing.social_posts
    where customer_id is not null and posted_at <= :as_of
    order by customer_id, posted_at desc, post_id desc
),
referral_agg as (
    select referrer_customer_id as customer_id, count(*) as referrals, sum(revenue) as revenue
    from smarketing.referrals where redeemed_at <= :as_of group by 1
),
complaints as (
    select customer_id, count(*) as complaints from smarketing.email_events
    where customer_id is not null and event_type = 'complaint' and occurred_at <= :as_of group by 1
),
people as (   -- everyone known by "now": union of already aggregated (small) sets, not of raw rows
    select customer_id from smarketing.customers where created_at is null or created_at <= :as_of
    union select customer_id from orders_agg
    union select customer_id from review_counts
    union select customer_id from post_counts
    union select customer_id from referral_agg
    union select customer_id from last_nps
)
select :score_date, mod(hashtext(p.customer_id)::bigint + 2147483648, :partitions)::integer, p.customer_id,
       coalesce(o.orders_count, 0), coalesce(o.lifetime_value, 0), o.recency_days,
       coalesce(o.last_order_returned, false), o.x, o.t_x_days, o.T_days, o.mean_repeat_value,
       o.rfm_r, o.rfm_f, o.rfm_m,
       coalesce(rc.reviews_count, 0), lr.rating, lr.text, lr.language,
       extract(epoch from (:as_of - lr.created_at)) / 86400.0,
       ln.score, nullif(btrim(ln.comment), ''), extract(epoch from (:as_of - ln.answered_at)) / 86400.0,
       coalesce(pc.posts, 0), coalesce(pc.reach, 0), lp.body,
       coalesce(ra.referrals, 0), coalesce(ra.revenue, 0), coalesce(c.complaints, 0)
from people p
left join rfm o using (customer_id)
left join review_counts rc using (customer_id)
left join last_review lr using (customer_id)
left join last_nps ln using (customer_id)
left join post_counts pc using (customer_id)
left join last_post lp using (customer_id)
left join referral_agg ra using (customer_id)
left join complaints c using (customer_id)
order by p.customer_id collate "C"   -- fills the primary-key index in order: ~20% faster at 1M customers
"""

INPUT_DTYPES = {
    "customer_id": "str", "orders_count": "int64", "lifetime_value": "float64", "recency_days": "float64",
    "x": "float64", "t_x_days": "float64", "t_days": "float64", "mean_repeat_value": "float64",
    "rfm_r": "float64", "rfm_f": "float64", "rfm_m": "float64", "reviews_count": "int64",
    "last_rating": "float64", "review_text": "str", "review_language": "str", "review_age_days": "float64",
    "nps_score": "float64", "nps_comment": "str", "nps_age_days": "float64", "social_posts_count": "int64",
    "social_reach": "int64", "post_text": "str", "referrals_count": "int64", "referral_revenue": "float64",
    "complaints_count": "int64",
}
SCORE_COLUMNS = [
    "customer_id", "score_date", "advocate_score", "segment", "is_lukewarm", "nps_class", "last_rating",
    "sentiment", "reviews_count", "social_posts_count", "social_reach", "referrals_count", "referral_revenue",
    "orders_count", "lifetime_value", "recency_days", "rfm_r", "rfm_f", "rfm_m", "expected_purchases_90d",
    "predicted_value_90d", "reasons", "scored_at",
]


@dataclass(frozen=True)
class Prepared:
    score_date: date
    partitions: int
    customers: int
    buyers: int
    notes: str
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"score_date": self.score_date.isoformat(), "partitions": self.partitions,
                "customers": self.customers, "buyers": self.buyers, "notes": self.notes, "seconds": self.seconds}


def score_date_of(as_of: datetime) -> date:
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware (the run's logical time)")
    return as_of.astimezone(UTC).date()


def prepare(engine: sa.Engine, as_of: datetime, settings: ScoringSettings) -> Prepared:
    """Build the score inputs for ``as_of`` in SQL and fit the value model for the whole population."""
    if settings.partitions < 1:
        raise ValueError("partitions must be >= 1")
    score_date = score_date_of(as_of)
    params = {"as_of": as_of, "score_date": score_date, "partitions": settings.partitions}
    clock = _Clock()
    with engine.begin() as conn:
        conn.exec_driver_sql("set local timezone = 'UTC'")
        conn.exec_driver_sql("set local work_mem = '256MB'")
        conn.exec_driver_sql("set local jit = off")  # compiling this one-off query costs more than it saves
        conn.execute(sa.text("delete from smarketing.score_inputs where score_date = :d"), {"d": score_date})
        conn.execute(sa.text("delete from smarketing.follow_up_candidates where score_date = :d"), {"d": score_date})
        clock.lap("clear")
        conn.execute(sa.text(PREPARE_SQL), params)
        clock.lap("aggregate")
        conn.exec_driver_sql("analyze smarketing.score_inputs")
        customers, buyers = conn.execute(sa.text(
            "select count(*), count(*) filter (where orders_count > 0) from smarketing.score_inputs "
            "where score_date = :d"), {"d": score_date}).one()
        clock.lap("count")
        model, notes = fit_value_model(conn, score_date, settings)
        clock.lap("fit")
        _save_model(conn, score_date, as_of, settings, customers, buyers, model, notes)
    clock.lap("commit")
    return Prepared(score_date, settings.partitions, int(customers), int(buyers), notes, clock.laps)


def fit_value_model(conn: sa.Connection, score_date: date, settings: ScoringSettings) -> tuple[ValueModel, str]:
    """BG/NBD on grouped (x, t_x, T) of every buyer; Gamma-Gamma on repeat buyers (hash sample if huge)."""
    unit = settings.clv_time_unit_days
    all_buyers = conn.execute(sa.text("select count(*) from smarketing.score_inputs "
                                      "where score_date = :d and orders_count > 0"), {"d": score_date}).scalar()
    # Population parameters need no million rows: above fit_sample_customers, fit on a fixed hash sample.
    keep = int(min(1024, np.ceil(1024 * settings.fit_sample_customers / max(all_buyers, 1))))
    triples = pd.DataFrame(conn.execute(sa.text(
        "select x, t_x_days, T_days, count(*) as n from smarketing.score_inputs "
        "where score_date = :d and orders_count > 0 and (hashtext(customer_id) & 1023) < :keep "
        "group by 1, 2, 3"), {"d": score_date, "keep": keep}).all(),
        columns=["x", "t_x", "T", "n"])
    notes = [] if keep == 1024 else [f"value model fitted on a hash sample of ~{keep / 1024:.0%} of buyers"]
    bgnbd = None
    buyers = int(triples["n"].sum()) if len(triples) else 0
    repeaters = int(triples.loc[triples["x"] > 0, "n"].sum()) if len(triples) else 0
    if buyers >= settings.min_customers_for_fit and repeaters > 0:
        t_x = triples["t_x"].astype(float) / unit
        T = triples["T"].astype(float) / unit
        try:
            bgnbd = clv.fit_bgnbd(triples["x"].astype(float), np.minimum(t_x, T), T, weight=triples["n"])
        except (ValueError, FloatingPointError) as error:
            notes.append(f"BG/NBD fit failed ({error}); recent-rate fallback")
        else:
            if not (bgnbd.converged and clv.plausible(bgnbd, triples["x"].astype(float), np.minimum(t_x, T), T,
                                                      triples["n"])):
                notes.append(f"BG/NBD fit not usable (r={bgnbd.r:.3g}, alpha={bgnbd.alpha:.3g}, "
                             f"a={bgnbd.a:.3g}, b={bgnbd.b:.3g}); recent-rate fallback")
                bgnbd = None
    else:
        notes.append(f"{buyers} buyers / {repeaters} repeat buyers: too few for BG/NBD; recent-rate fallback")
    count, mean_value = conn.execute(sa.text(
        "select count(*), avg(mean_repeat_value) from smarketing.score_inputs "
        "where score_date = :d and x > 0 and mean_repeat_value > 0"), {"d": score_date}).one()
    population_mean = conn.execute(sa.text(
        "select avg(lifetime_value / greatest(orders_count, 1)) from smarketing.score_inputs "
        "where score_date = :d and orders_count > 0"), {"d": score_date}).scalar()
    population_mean = float(mean_value or population_mean or 0.0)
    gamma_gamma = None
    if count and count >= settings.min_customers_for_fit:
        keep = int(min(1024, np.ceil(1024 * settings.fit_sample_customers / count)))
        sample = conn.execute(sa.text(
            "select x, mean_repeat_value from smarketing.score_inputs where score_date = :d and x > 0 "
            "and mean_repeat_value > 0 and (hashtext(customer_id) & 1023) < :keep"),
            {"d": score_date, "keep": keep}).all()
        arr = np.asarray(sample, dtype="float64")
        try:
            gamma_gamma = clv.fit_gamma_gamma(arr[:, 0], arr[:, 1])
        except ValueError as error:
            notes.append(f"Gamma-Gamma fit failed ({error}); shrunk-mean fallback")
        else:
            if gamma_gamma.q <= 1 or gamma_gamma.q > 1e4 or not gamma_gamma.converged:
                notes.append("Gamma-Gamma q <= 1 or not converged; shrunk-mean fallback")
                gamma_gamma = None
    else:
        notes.append(f"{count or 0} repeat buyers with spend: too few for Gamma-Gamma; shrunk-mean fallback")
    return ValueModel(bgnbd, gamma_gamma, population_mean), "; ".join(notes)


def _save_model(conn, score_date, as_of, settings, customers, buyers, model: ValueModel, notes: str) -> None:
    b, g = model.bgnbd, model.gamma_gamma
    conn.execute(sa.text("""
        insert into smarketing.score_models (score_date, scored_at, partitions, customers, buyers, bgnbd_r,
            bgnbd_alpha, bgnbd_a, bgnbd_b, bgnbd_log_likelihood, gg_p, gg_q, gg_gamma, population_mean_value,
            time_unit_days, notes)
        values (:d, :at, :parts, :customers, :buyers, :r, :alpha, :a, :b, :ll, :p, :q, :gamma, :mean, :unit, :notes)
        on conflict (score_date) do update set scored_at = excluded.scored_at, partitions = excluded.partitions,
            customers = excluded.customers, buyers = excluded.buyers, bgnbd_r = excluded.bgnbd_r,
            bgnbd_alpha = excluded.bgnbd_alpha, bgnbd_a = excluded.bgnbd_a, bgnbd_b = excluded.bgnbd_b,
            bgnbd_log_likelihood = excluded.bgnbd_log_likelihood, gg_p = excluded.gg_p, gg_q = excluded.gg_q,
            gg_gamma = excluded.gg_gamma, population_mean_value = excluded.population_mean_value,
            time_unit_days = excluded.time_unit_days, notes = excluded.notes"""), {
        "d": score_date, "at": as_of, "parts": settings.partitions, "customers": customers, "buyers": buyers,
        "r": b and b.r, "alpha": b and b.alpha, "a": b and b.a, "b": b and b.b, "ll": b and b.log_likelihood,
        "p": g and g.p, "q": g and g.q, "gamma": g and g.gamma, "mean": model.population_mean_value,
        "unit": settings.clv_time_unit_days, "notes": notes})


def load_value_model(conn: sa.Connection, score_date: date) -> ValueModel:
    row = conn.execute(sa.text("select * from smarketing.score_models where score_date = :d"),
                       {"d": score_date}).mappings().first()
    if row is None:
        raise LookupError(f"no value model for {score_date}: run prepare first")
    bgnbd = None if row["bgnbd_r"] is None else clv.BgNbdParams(
        row["bgnbd_r"], row["bgnbd_alpha"], row["bgnbd_a"], row["bgnbd_b"], row["bgnbd_log_likelihood"])
    gg = None if row["gg_p"] is None else clv.GammaGammaParams(row["gg_p"], row["gg_q"], row["gg_gamma"])
    return ValueModel(bgnbd, gg, float(row["population_mean_value"]))


def read_partition(conn: sa.Connection, score_date: date, partition: int) -> pd.DataFrame:
    """One partition of the inputs, through COPY (several times faster than a cursor for wide rows)."""
    columns = ", ".join(["customer_id", *[c for c in INPUT_DTYPES if c != "customer_id"], "last_order_returned"])
    query = (f"select {columns} from smarketing.score_inputs "
             f"where score_date = '{score_date.isoformat()}'::date and partition_no = {int(partition)}")
    buffer = io.BytesIO()
    with raw_cursor(conn) as cur, cur.copy(f"copy ({query}) to stdout with (format csv, header true)") as copy:
        for block in copy:
            buffer.write(block)
    buffer.seek(0)
    if buffer.getbuffer().nbytes == 0:
        return pd.DataFrame(columns=[*INPUT_DTYPES, "last_order_returned"])
    frame = pd.read_csv(buffer, dtype={**INPUT_DTYPES, "last_order_returned": "str"}, keep_default_na=False,
                        na_values={c: [""] for c in INPUT_DTYPES if c != "customer_id"})
    frame["last_order_returned"] = frame["last_order_returned"].eq("t")
    for column in ("review_text", "nps_comment", "post_text", "review_language"):
        frame[column] = frame[column].where(frame[column] != "", None)
    return frame.rename(columns={"t_days": "T_days"})


def score_partition(engine: sa.Engine, as_of: datetime, partition: int, settings: ScoringSettings) -> dict:
    """Score one partition and replace its rows for the date; returns counts per segment."""
    score_date = score_date_of(as_of)
    clock = _Clock()
    with engine.connect() as conn:
        model = load_value_model(conn, score_date)
        frame = read_partition(conn, score_date, partition)
    clock.lap("read")
    # In key order, so that the primary-key index of advocate_scores is filled page by page, not at random.
    scored = score_customers(frame.sort_values("customer_id", kind="stable"), model, settings)
    scored["score_date"] = score_date
    scored["scored_at"] = as_of.isoformat()
    candidates = follow_up_candidates(scored, settings)
    candidates["score_date"] = score_date
    candidates["partition_no"] = partition
    clock.lap("score")
    with engine.begin() as conn:
        rerun = conn.execute(sa.text("select exists (select 1 from smarketing.advocate_scores where score_date = :d)"),
                             {"d": score_date}).scalar()
        if rerun:  # a retry or rerun of the date: replace this partition's rows
            conn.execute(sa.text("""
                delete from smarketing.advocate_scores a using smarketing.score_inputs i
                where i.score_date = :d and i.partition_no = :p and a.score_date = :d
                  and a.customer_id = i.customer_id"""), {"d": score_date, "p": partition})
        clock.lap("delete")
        copy_frame(conn, "smarketing.advocate_scores", scored, SCORE_COLUMNS)
        conn.execute(sa.text("delete from smarketing.follow_up_candidates where score_date = :d and partition_no = :p"),
                     {"d": score_date, "p": partition})
        copy_frame(conn, "smarketing.follow_up_candidates", candidates,
                   ["score_date", "partition_no", "customer_id", "reason", "owner_team", "review_excerpt",
                    "suggested_questions", "priority_weight"])
    clock.lap("write")
    counts = scored["segment"].value_counts().to_dict()
    return {"partition": partition, "customers": len(scored), "follow_up_candidates": len(candidates),
            "segments": {k: int(v) for k, v in sorted(counts.items())}, "seconds": clock.laps}


class _Clock:
    """Seconds per phase, for the task log (where a slow partition spends its time)."""

    def __init__(self) -> None:
        import time

        self._now = time.perf_counter
        self._last = self._now()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = self._now()
        self.laps[name] = round(now - self._last, 2)
        self._last = now


FINALIZE_SQL = """
insert into smarketing.follow_ups as f (customer_id, reason, priority, owner_team, review_excerpt,
                                        suggested_questions, status, created_at, updated_at)
select customer_id, reason, ntile(5) over (order by priority_weight desc, customer_id), owner_team,
       review_excerpt, suggested_questions, 'open', :at, :at
from smarketing.follow_up_candidates where score_date = :d
on conflict (customer_id, reason) do update set
    priority = excluded.priority, owner_team = excluded.owner_team, review_excerpt = excluded.review_excerpt,
    suggested_questions = excluded.suggested_questions, updated_at = excluded.updated_at,
    -- a closed item comes back when the customer said something new; otherwise the team's status stands
    status = case when f.status in ('resolved', 'dismissed')
                       and f.review_excerpt is distinct from excluded.review_excerpt then 'open' else f.status end
where f.updated_at <= excluded.updated_at
  and (f.priority, f.owner_team, f.review_excerpt, f.suggested_questions)
      is distinct from (excluded.priority, excluded.owner_team, excluded.review_excerpt, excluded.suggested_questions)
"""


def finalize(engine: sa.Engine, as_of: datetime, keep_inputs: bool = False) -> dict:
    """Rank follow-up candidates across partitions and upsert them; returns counts for the log and XCom."""
    score_date = score_date_of(as_of)
    with engine.begin() as conn:
        expected = conn.execute(sa.text("select count(*) from smarketing.score_inputs where score_date = :d"),
                                {"d": score_date}).scalar()
        scored = conn.execute(sa.text("select count(*) from smarketing.advocate_scores where score_date = :d"),
                              {"d": score_date}).scalar()
        if expected and scored < expected:
            raise RuntimeError(f"only {scored:,} of {expected:,} customers scored for {score_date}: "
                               f"a partition is missing; rerun the score tasks")
        upserted = conn.execute(sa.text(FINALIZE_SQL), {"d": score_date, "at": as_of}).rowcount
        segments = dict(conn.execute(sa.text(
            "select segment, count(*) from smarketing.advocate_scores where score_date = :d group by 1 order by 1"),
            {"d": score_date}).all())
        open_follow_ups = conn.execute(sa.text(
            "select count(*) from smarketing.follow_ups where status = 'open'")).scalar()
        if not keep_inputs:
            conn.execute(sa.text("delete from smarketing.follow_up_candidates where score_date = :d"), {"d": score_date})
            conn.execute(sa.text("delete from smarketing.score_inputs where score_date = :d"), {"d": score_date})
    return {"score_date": score_date.isoformat(), "customers": int(scored), "segments": segments,
            "follow_ups_written": int(upserted), "follow_ups_open": int(open_follow_ups)}


def run_all(engine: sa.Engine, as_of: datetime, settings: ScoringSettings, say=print) -> dict:
    """The whole scoring outside Airflow (CLI, benchmark): prepare, every partition, finalize."""
    prepared = prepare(engine, as_of, settings)
    say(f"prepared {prepared.customers:,} customers ({prepared.buyers:,} buyers) in {prepared.partitions} "
        f"partitions{'; ' + prepared.notes if prepared.notes else ''}")
    for partition in range(prepared.partitions):
        result = score_partition(engine, as_of, partition, settings)
        say(f"partition {partition}: {result['customers']:,} customers scored")
    return finalize(engine, as_of)
