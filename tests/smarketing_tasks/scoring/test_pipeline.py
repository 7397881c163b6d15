"""Scoring against a real warehouse: SQL aggregates, partitions, history by date, follow-ups upserted."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from smarketing_tasks.scoring.pipeline import finalize, prepare, run_all, score_partition
from smarketing_tasks.scoring.settings import ScoringSettings
from tests.conftest import DEMO_END

pytestmark = pytest.mark.integration
NOW = DEMO_END


def _seed(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(
            "insert into smarketing.customers (customer_id, updated_at, source) "
            "select 'c' || g, :t, 'test' from generate_series(1, 80) g"), {"t": NOW})
        # c1..c80: 1 to 4 orders each, spread over the last year; two orders of c5 on one day.
        conn.execute(sa.text(
            "insert into smarketing.orders (order_id, customer_id, ordered_at, status, total_amount, currency, "
            "updated_at, source) select 'o' || g || '-' || k, 'c' || g, :t - make_interval(days => 5 + g * k), "
            "'delivered', 10 + g, 'EUR', :t, 'test' from generate_series(1, 80) g, generate_series(1, 1 + g % 4) k"),
            {"t": NOW})
        conn.execute(sa.text(
            "insert into smarketing.orders (order_id, customer_id, ordered_at, status, total_amount, currency, "
            "updated_at, source) values ('o5-same-day', 'c5', :t - interval '10 days', 'delivered', 99, 'EUR', :t, 't'),"
            "('o6-cancelled', 'c6', :t - interval '1 day', 'cancelled', 500, 'EUR', :t, 't'),"
            "('o7-future', 'c7', :t + interval '1 day', 'delivered', 500, 'EUR', :t, 't')"), {"t": NOW})
        conn.execute(sa.text(
            "insert into smarketing.reviews (review_id, customer_id, rating, title, body, created_at, source) values "
            "('r1', 'c1', 5, 'Good', 'Good.', :t - interval '2 days', 't'),"
            "('r1-old', 'c1', 2, null, 'Bad', :t - interval '90 days', 't'),"
            "('r2', 'c2', 5, 'Love it', 'Best kettle I have ever owned, already bought one for my dad', "
            " :t - interval '3 days', 't'),"
            "('r3', 'c3', 1, null, 'Arrived broken and the delivery was two weeks late', :t - interval '1 day', 't'),"
            "('r-anon', null, 5, null, 'Great', :t - interval '1 day', 't')"), {"t": NOW})
        conn.execute(sa.text(
            "insert into smarketing.social_posts (post_id, platform, customer_id, body, followers, posted_at, source) "
            "values ('p1', 'instagram', 'c2', 'My new favourite kettle!', 12400, :t - interval '2 days', 't')"),
            {"t": NOW})
        conn.execute(sa.text(
            "insert into smarketing.referrals (referred_order_id, referral_code, referrer_customer_id, "
            "referred_customer_id, revenue, redeemed_at) values "
            "('x1', 'REF-C2', 'c2', 'n1', 80, :t - interval '1 day'), ('x2', 'REF-C2', 'c2', 'n2', 40, :t - interval '1 day')"),
            {"t": NOW})
        conn.execute(sa.text(
            "insert into smarketing.nps_answers (answer_id, customer_id, score, comment, answered_at, source) values "
            "('n1', 'c4', 9, 'fine', :t - interval '1 day', 't')"), {"t": NOW})


def _scores(engine, score_date=None) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select * from smarketing.advocate_scores where score_date = coalesce(:d, score_date)"),
            {"d": score_date}).mappings().all()
    return {r["customer_id"]: dict(r) for r in rows}


def test_scores_every_customer_from_sql_aggregates(warehouse):
    _seed(warehouse)
    summary = run_all(warehouse, NOW, ScoringSettings(partitions=3), say=lambda _: None)
    scores = _scores(warehouse)
    assert len(scores) == 80 == summary["customers"]
    assert scores["c1"]["segment"] == "lukewarm" and scores["c1"]["last_rating"] == 5  # latest review counts
    assert scores["c1"]["reasons"].startswith("5★ but only said 'Good.'")
    assert scores["c1"]["reviews_count"] == 2
    assert scores["c2"]["segment"] == "champion"
    assert (scores["c2"]["referrals_count"], float(scores["c2"]["referral_revenue"])) == (2, 120.0)
    assert (scores["c2"]["social_posts_count"], scores["c2"]["social_reach"]) == (1, 12400)
    assert scores["c3"]["segment"] == "detractor"
    assert scores["c4"]["segment"] == "lukewarm" and "NPS 9 but only said 'fine'" in scores["c4"]["reasons"]
    # Orders of one day are one purchase occasion for BG/NBD, but every order counts for orders_count;
    # cancelled orders and orders after "now" do not count at all.
    assert scores["c5"]["orders_count"] == 3
    assert scores["c6"]["orders_count"] == 3 and float(scores["c6"]["lifetime_value"]) == 3 * 16
    assert scores["c7"]["orders_count"] == 4
    assert {s["rfm_r"] for s in scores.values()} == {1, 2, 3, 4, 5}

    with warehouse.connect() as conn:
        follow_ups = {(r.customer_id, r.reason): r for r in conn.execute(sa.text("select * from smarketing.follow_ups"))}
        model = conn.execute(sa.text("select * from smarketing.score_models")).mappings().one()
        leftovers = conn.execute(sa.text("select count(*) from smarketing.score_inputs")).scalar()
    assert {("c1", "lukewarm"), ("c3", "detractor"), ("c4", "lukewarm")} <= set(follow_ups)
    assert {r.priority for r in follow_ups.values()} <= {1, 2, 3, 4, 5}
    assert "delivery" in follow_ups[("c3", "detractor")].suggested_questions
    assert model["customers"] == 80 and model["buyers"] == 80
    # 80 made-up customers buying like clockwork fit no dropout process: whatever the fit makes of it, the
    # predictions stay finite and sane, and a rejected fit is said in the notes.
    assert model["bgnbd_r"] is not None or "fallback" in model["notes"]
    assert all(0 <= s["expected_purchases_90d"] < 50 for s in scores.values())
    assert leftovers == 0


def test_reruns_replace_and_history_accumulates(warehouse):
    _seed(warehouse)
    settings = ScoringSettings(partitions=2)
    run_all(warehouse, NOW, settings, say=lambda _: None)
    first = _scores(warehouse)
    with warehouse.begin() as conn:  # sales works the queue
        conn.execute(sa.text("update smarketing.follow_ups set status = 'contacted', outcome = 'called' "
                             "where customer_id = 'c1'"))
    run_all(warehouse, NOW + timedelta(hours=1), settings, say=lambda _: None)  # same score date, rerun
    again = _scores(warehouse)
    assert again.keys() == first.keys()
    assert {k: v["segment"] for k, v in again.items()} == {k: v["segment"] for k, v in first.items()}
    with warehouse.connect() as conn:
        follow_ups = conn.execute(sa.text("select customer_id, reason, status, outcome from smarketing.follow_ups "
                                          "order by 1, 2")).all()
    assert len(follow_ups) == len({(r.customer_id, r.reason) for r in follow_ups})
    assert ("c1", "lukewarm", "contacted", "called") in follow_ups  # the team's work is kept

    # Next day: history by date, and only who changed is rescored (c7's order dated the day after counts now).
    summary = run_all(warehouse, NOW + timedelta(days=1), settings, say=lambda _: None)
    with warehouse.connect() as conn:
        per_date = conn.execute(sa.text(
            "select score_date, count(*) from smarketing.advocate_scores group by 1 order by 1")).all()
        c7 = conn.execute(sa.text("select orders_count from smarketing.advocate_scores where customer_id = 'c7' "
                                  "order by score_date")).scalars().all()
    assert [n for _, n in per_date] == [80, 1] and summary["mode"] == "incremental"
    assert c7 == [first["c7"]["orders_count"], first["c7"]["orders_count"] + 1]
    assert summary["population"] == 80


def test_partitioning_does_not_change_scores(warehouse):
    _seed(warehouse)
    run_all(warehouse, NOW, ScoringSettings(partitions=1), say=lambda _: None)
    one = {k: (v["advocate_score"], v["segment"], v["reasons"]) for k, v in _scores(warehouse).items()}
    run_all(warehouse, NOW, ScoringSettings(partitions=5), say=lambda _: None)
    five = {k: (v["advocate_score"], v["segment"], v["reasons"]) for k, v in _scores(warehouse).items()}
    assert one == five


def _inputs(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text("select * from smarketing.score_inputs order by customer_id")).all()


def test_inputs_built_by_statements_at_once_are_the_inputs_of_one_statement(warehouse, monkeypatch):
    from smarketing_tasks.scoring import pipeline

    _seed(warehouse)
    prepare(warehouse, NOW, ScoringSettings(partitions=3, input_builders=1))
    one = _inputs(warehouse)
    builders = []
    real = pipeline._build_inputs_at_once
    monkeypatch.setattr(pipeline, "_build_inputs_at_once",
                        lambda engine, params, n: builders.append(n) or real(engine, params, n))
    prepared = prepare(warehouse, NOW, ScoringSettings(partitions=3, input_builders=2))  # a rerun of the date
    at_once = _inputs(warehouse)
    assert builders == [2]
    assert len(one) == 80 == prepared.customers
    assert at_once == one
    # Every source reached its customer's row: orders, reviews, NPS, posts, referrals.
    by_customer = {row.customer_id: row for row in at_once}
    assert by_customer["c5"].orders_count == 3 and by_customer["c1"].reviews_count == 2
    assert by_customer["c4"].nps_score == 9 and by_customer["c2"].social_posts_count == 1
    assert by_customer["c2"].referrals_count == 2
    assert {row.partition_no for row in at_once} == {0, 1, 2}


def test_inputs_name_everyone_a_source_knows_once_with_the_counts_and_latest_of_each_source(warehouse):
    """Who gets inputs: the customers known by "now" and whoever orders, reviews, posts, referrals or NPS
    answers name (complaints alone name nobody), each once however many sources name them; a source's count
    and its latest row come from the same rows."""
    day = timedelta(days=1)
    with warehouse.begin() as conn:
        conn.execute(sa.text(
            "insert into smarketing.customers (customer_id, created_at, updated_at, source) values "
            "('k-only', null, :t, 't'), ('k-later', :t + interval '1 day', :t, 't'), ('k-all', :t - interval '9 days', :t, 't')"),
            {"t": NOW})
        conn.execute(sa.text(
            "insert into smarketing.orders (order_id, customer_id, ordered_at, status, total_amount, currency, "
            "updated_at, source) values ('ob1', 'b-only', :t - interval '3 days', 'delivered', 10, 'EUR', :t, 't'), "
            "('ob2', 'b-only', :t - interval '3 days', 'returned', 5, 'EUR', :t, 't'), "
            "('oa1', 'k-all', :t - interval '8 days', 'delivered', 7, 'EUR', :t, 't')"), {"t": NOW})
        conn.execute(sa.text(
            "insert into smarketing.reviews (review_id, customer_id, rating, title, body, created_at, source) values "
            "('ra', 'r-only', 2, null, 'Old', :t - interval '5 days', 't'), "
            "('rb', 'r-only', 4, 'Nice', 'Nice kettle', :t - interval '2 days', 't'), "
            "('rc', 'r-only', 5, null, 'Same moment, larger id', :t - interval '2 days', 't'), "
            "('rk', 'k-all', 3, null, 'Fine', :t - interval '1 day', 't'), "
            "('rz', 'k-all', 1, null, 'Not yet', :t + interval '1 day', 't')"), {"t": NOW})
        conn.execute(sa.text(
            "insert into smarketing.review_signals (review_id, content_hash, rules_version, language, sentiment, "
            "is_lukewarm, computed_at) values ('rc', 'h', 'v', 'en', 0.25, false, :t), ('ra', 'h', 'v', 'en', -0.5, false, :t)"),
            {"t": NOW})
        conn.execute(sa.text(
            "insert into smarketing.social_posts (post_id, platform, customer_id, body, followers, posted_at, source) "
            "values ('p1', 'x', 'p-only', 'First', 100, :t - interval '4 days', 't'), "
            "('p2', 'x', 'p-only', 'Second', null, :t - interval '1 day', 't'), "
            "('p3', 'x', 'k-later', 'Early poster', 7, :t - interval '1 day', 't'), "
            "('p4', 'x', 'k-all', 'Mine', 3, :t - interval '1 day', 't')"), {"t": NOW})
        conn.execute(sa.text(
            "insert into smarketing.referrals (referred_order_id, referral_code, referrer_customer_id, "
            "referred_customer_id, revenue, redeemed_at) values ('x1', 'R', 'f-only', 'z1', 30, :t - interval '1 day'), "
            "('x2', 'R', 'k-all', 'z2', 12, :t - interval '1 day')"), {"t": NOW})
        conn.execute(sa.text(
            "insert into smarketing.nps_answers (answer_id, customer_id, score, comment, answered_at, source) values "
            "('n1', 'n-only', 3, 'meh', :t - interval '6 days', 't'), ('n2', 'n-only', 10, ' great ', :t - interval '1 day', 't'), "
            "('n3', 'k-all', 8, null, :t - interval '1 day', 't')"), {"t": NOW})
        conn.execute(sa.text(
            "insert into smarketing.email_events (event_id, customer_id, event_type, occurred_at, source) values "
            "('e1', 'e-only', 'complaint', :t - interval '1 day', 't'), ('e2', 'k-all', 'complaint', :t - interval '1 day', 't'), "
            "('e3', 'k-all', 'complaint', :t - interval '2 days', 't'), ('e4', 'k-all', 'open', :t - interval '1 day', 't')"),
            {"t": NOW})
    prepare(warehouse, NOW, ScoringSettings(partitions=2))
    rows = {row.customer_id: row for row in _inputs(warehouse)}
    assert sorted(rows) == ["b-only", "f-only", "k-all", "k-later", "k-only", "n-only", "p-only", "r-only"]
    assert (rows["k-only"].orders_count, rows["k-only"].reviews_count, rows["k-only"].social_posts_count) == (0, 0, 0)
    b = rows["b-only"]
    assert (b.orders_count, float(b.lifetime_value), b.x, b.last_order_returned) == (2, 10.0, 0, True)
    r = rows["r-only"]
    assert (r.reviews_count, r.review_id, r.last_rating, r.review_text) == (3, "rc", 5, "Same moment, larger id")
    assert (r.review_signal, r.review_sentiment, r.review_signal_language) == (True, 0.25, "en")
    assert r.review_age_days == pytest.approx(2.0)
    p = rows["p-only"]
    assert (p.social_posts_count, p.social_reach, p.post_text) == (2, 100, "Second")
    assert (rows["k-later"].social_posts_count, rows["k-later"].orders_count) == (1, 0)
    assert (rows["f-only"].referrals_count, float(rows["f-only"].referral_revenue)) == (1, 30.0)
    n = rows["n-only"]
    assert (n.nps_score, n.nps_comment, n.nps_age_days) == (10, "great", pytest.approx(1.0))
    k = rows["k-all"]
    assert (k.orders_count, k.reviews_count, k.review_id, k.review_signal, k.social_posts_count, k.social_reach,
            k.referrals_count, k.nps_score, k.complaints_count) == (1, 1, "rk", False, 1, 3, 1, 8, 2)
    assert k.first_day == (NOW - 8 * day).date() and k.mean_repeat_value is None


def test_a_full_run_retried_after_its_build_failed_still_counts_the_claimed_changes(warehouse, monkeypatch):
    from smarketing_tasks.scoring import pipeline

    _seed(warehouse)
    settings = ScoringSettings(partitions=2, input_builders=2)
    run_all(warehouse, NOW, settings, say=lambda _: None)
    later = NOW + timedelta(days=1)
    with warehouse.begin() as conn:  # c2 and c3 order again: two changed customers for the next run
        conn.execute(sa.text(
            "insert into smarketing.orders (order_id, customer_id, ordered_at, status, total_amount, currency, "
            "updated_at, source) values ('o-new-2', 'c2', :t, 'delivered', 20, 'EUR', :t, 't'), "
            "('o-new-3', 'c3', :t, 'delivered', 30, 'EUR', :t, 't')"), {"t": later - timedelta(hours=1)})

    def failing(engine, params, builders):
        raise RuntimeError("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "_build_inputs_at_once", failing)
        with pytest.raises(RuntimeError, match="went away"):
            prepare(warehouse, later, settings, full=True)
    with warehouse.connect() as conn:
        left = conn.execute(sa.text("select count(*) from smarketing.score_changes where effective_at <= :t"),
                            {"t": later}).scalar()
        claimed = conn.execute(sa.text("select (select count(*) from smarketing.score_queue), "
                                       "(select changed from smarketing.score_claims)")).one()
    assert left == 0  # the failed attempt's claim committed ...
    assert tuple(claimed) == (0, 3)  # ... as a count: a full run writes no queue row per customer
    prepared = prepare(warehouse, later, settings, full=True)
    assert prepared.mode == "full" and prepared.changed == 3  # ... and its retry counts it (and c7's order, dated then)
    for partition in range(settings.partitions):
        score_partition(warehouse, later, partition, settings)
    summary = finalize(warehouse, later)
    assert summary["changed"] == 3 and summary["customers"] == prepared.customers
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("select (select count(*) from smarketing.score_queue) "
                                    "+ (select count(*) from smarketing.score_claims)")).scalar() == 0


def test_finalize_refuses_when_a_partition_is_missing(warehouse):
    _seed(warehouse)
    settings = ScoringSettings(partitions=3)
    prepare(warehouse, NOW, settings)
    score_partition(warehouse, NOW, 0, settings)
    with pytest.raises(RuntimeError, match="partition is missing"):
        finalize(warehouse, NOW)


def test_closed_follow_up_reopens_only_when_the_customer_says_something_new(warehouse):
    _seed(warehouse)
    settings = ScoringSettings(partitions=1)
    run_all(warehouse, NOW, settings, say=lambda _: None)
    with warehouse.begin() as conn:
        conn.execute(sa.text("update smarketing.follow_ups set status = 'resolved' where customer_id in ('c1', 'c3')"))
        conn.execute(sa.text("insert into smarketing.reviews (review_id, customer_id, rating, body, created_at, source) "
                             "values ('r1-new', 'c1', 4, 'ok', :t, 't')"), {"t": NOW + timedelta(hours=12)})
    run_all(warehouse, NOW + timedelta(days=1), settings, say=lambda _: None)
    with warehouse.connect() as conn:
        status = dict(conn.execute(sa.text("select customer_id, status from smarketing.follow_ups "
                                           "where customer_id in ('c1', 'c3')")).all())
    assert status == {"c1": "open", "c3": "resolved"}


def test_empty_warehouse_scores_nothing_and_succeeds(warehouse):
    summary = run_all(warehouse, NOW, ScoringSettings(partitions=2), say=lambda _: None)
    assert summary["customers"] == 0 and summary["segments"] == {}


def test_naive_times_are_refused(warehouse):
    with pytest.raises(ValueError, match="timezone-aware"):
        prepare(warehouse, NOW.replace(tzinfo=None), ScoringSettings())


def test_sql_prepare_reproduces_the_published_cdnow_fit(warehouse):
    """The real CDNOW sample through the warehouse: SQL builds the same (x, t_x, T) as FHL's calibration
    summary, so the stored model has their parameters (r=0.243, alpha=4.414, a=0.793, b=2.426)."""
    from datetime import UTC, datetime

    from smarketing_tasks.db import copy_frame
    from smarketing_tasks.scoring import cdnow_eval
    from smarketing_tasks.sources.cdnow import CdnowSource

    tables = CdnowSource(cdnow_eval.CDNOW_DIR / "CDNOW_sample.txt").tables()
    calibration_end = datetime(1997, 9, 30, 23, 59, 59, tzinfo=UTC)  # the last day of week 39
    with warehouse.begin() as conn:
        customers = tables["customers"].assign(source="cdnow")
        copy_frame(conn, "smarketing.customers", customers, ["customer_id", "country", "accepts_marketing",
                                                              "accepts_sms", "created_at", "updated_at", "source"])
        orders = tables["orders"].assign(source="cdnow")
        copy_frame(conn, "smarketing.orders", orders, ["order_id", "customer_id", "ordered_at", "status",
                                                        "total_amount", "currency", "updated_at", "source"])
    prepared = prepare(warehouse, calibration_end, ScoringSettings(partitions=2))
    assert prepared.customers == 2357 and prepared.notes == ""
    with warehouse.connect() as conn:
        model = conn.execute(sa.text("select * from smarketing.score_models")).mappings().one()
        repeat = conn.execute(sa.text("select sum(x) from smarketing.score_inputs")).scalar()
    assert repeat == 2457
    published = cdnow_eval.PUBLISHED_SAMPLE
    for name in ("r", "alpha", "a", "b"):
        assert model[f"bgnbd_{name}"] == pytest.approx(published[name], rel=0.01), name
    assert (model["gg_p"], model["gg_q"], model["gg_gamma"]) == pytest.approx((6.25, 3.74, 15.44), rel=0.01)

    # The value component as the scorer writes it ranks who bought again in weeks 40-78 as well as the
    # stand-alone evaluation does (AUC 0.77 there; docs/scoring.md).
    for partition in (0, 1):
        score_partition(warehouse, calibration_end, partition, ScoringSettings(partitions=2))
    with warehouse.connect() as conn:
        expected = dict(conn.execute(sa.text(
            "select customer_id, expected_purchases_90d from smarketing.advocate_scores")).all())
    holdout = cdnow_eval.calibration_holdout(cdnow_eval.read_cdnow(cdnow_eval.CDNOW_DIR / "CDNOW_sample.txt"))
    scores = holdout.index.map(expected).to_numpy(dtype=float)
    assert not np.isnan(scores).any()
    assert cdnow_eval.auc(scores, holdout["holdout_purchases"].to_numpy() > 0) > 0.76


# The cut points' definition in SQL, as they were computed in PostgreSQL before the ranking moved to numpy.
_CUTS_BY_WINDOW = """
    with ranked as (select v, least(5, 1 + floor(5 * percent_rank() over (order by v)))::int as b from cut_values)
    select array[min(v) filter (where b >= 2), min(v) filter (where b >= 3), min(v) filter (where b >= 4),
                 min(v) filter (where b >= 5)] from ranked"""


def test_rfm_cut_points_are_the_cut_points_of_postgresql_percent_rank(warehouse):
    """``quintile_cuts`` ranks as ``percent_rank()`` does: ties share the lower bucket, NULLs sort last as one
    peer group, a single row ranks 0; checked against PostgreSQL on sizes around multiples of five."""
    from smarketing_tasks.scoring.pipeline import quintile_cuts

    rng = np.random.default_rng(7)
    with warehouse.begin() as conn:
        conn.exec_driver_sql("create temp table cut_values (v float8)")
        for n in (0, 1, 2, 3, 4, 5, 6, 10, 11, 16, 21, 99, 100, 101, 1000):
            for spread, null_share in ((3, 0.0), (1000, 0.0), (5, 0.3), (1000, 0.9), (1, 1.0)):
                values = rng.integers(0, spread, n) / 7
                values[rng.random(n) < null_share] = np.nan
                conn.exec_driver_sql("truncate cut_values")
                conn.execute(sa.text("insert into cut_values select unnest(cast(:v as float8[]))"),
                             {"v": [None if np.isnan(v) else float(v) for v in values]})
                expected = tuple(conn.exec_driver_sql(_CUTS_BY_WINDOW).scalar())
                assert quintile_cuts(values) == expected, (n, spread, null_share)


def _score_indexes(engine) -> tuple[set[str], set[str]]:
    """(secondary indexes the scoring tables have, those recorded as deferred)."""
    with engine.connect() as conn:
        present = set(conn.execute(sa.text(
            "select indexname from pg_indexes where schemaname = 'smarketing' "
            "and tablename in ('advocate_scores', 'score_state', 'follow_ups') and indexname not like '%pkey'"
        )).scalars())
        deferred = set(conn.execute(sa.text("select index_name from smarketing.deferred_indexes")).scalars())
    return present, deferred


SCORE_INDEXES = {"advocate_scores_date_idx", "score_state_rescore_idx", "follow_ups_created_day_idx",
                 "follow_ups_updated_day_idx"}


def test_a_first_full_run_builds_the_secondary_indexes_of_its_tables_once_at_the_end(warehouse):
    _seed(warehouse)
    settings = ScoringSettings(partitions=2)
    assert _score_indexes(warehouse) == (SCORE_INDEXES, set())
    prepare(warehouse, NOW, settings)
    assert _score_indexes(warehouse) == (set(), SCORE_INDEXES), "dropped while the empty tables fill"
    for partition in range(settings.partitions):
        score_partition(warehouse, NOW, partition, settings)
    finalize(warehouse, NOW)
    assert _score_indexes(warehouse) == (SCORE_INDEXES, set())
    with warehouse.connect() as conn:
        analysed = conn.execute(sa.text(
            "select count(*) from pg_stat_user_tables where schemaname = 'smarketing' "
            "and relname in ('advocate_scores', 'score_state', 'follow_ups') and last_analyze is not null")).scalar()
    assert analysed == 3, "statistics taken: the next stages do not plan on empty tables"

    # Later runs write into tables with rows: every index stays.
    prepare(warehouse, NOW + timedelta(days=1), settings, full=True)
    assert _score_indexes(warehouse) == (SCORE_INDEXES, set())


def test_a_first_run_that_died_before_finalize_gets_its_indexes_back_from_the_next_prepare(warehouse):
    _seed(warehouse)
    settings = ScoringSettings(partitions=2)
    prepare(warehouse, NOW, settings)
    score_partition(warehouse, NOW, 0, settings)  # ... and the run dies here
    assert _score_indexes(warehouse) == (set(), SCORE_INDEXES)
    prepare(warehouse, NOW, settings)  # the retry: advocate_scores has rows now, so it builds them back
    present, deferred = _score_indexes(warehouse)
    assert SCORE_INDEXES - {"follow_ups_created_day_idx", "follow_ups_updated_day_idx"} <= present
    assert deferred == SCORE_INDEXES - present, "follow_ups is still empty: deferred again, and recorded"
    summary = run_all(warehouse, NOW, settings, say=lambda _: None)
    assert summary["customers"] == 80 and _score_indexes(warehouse) == (SCORE_INDEXES, set())


def test_a_first_full_run_inserts_the_follow_ups_the_upsert_would(warehouse, monkeypatch):
    from smarketing_tasks.scoring import pipeline

    _seed(warehouse)
    settings = ScoringSettings(partitions=2)
    prepare(warehouse, NOW, settings)
    for partition in range(settings.partitions):
        score_partition(warehouse, NOW, partition, settings)
    statements = []

    def record(conn, cursor, statement, *rest):
        statements.append(statement)

    sa.event.listen(warehouse, "before_cursor_execute", record)
    first = finalize(warehouse, NOW, keep_inputs=True)
    sa.event.remove(warehouse, "before_cursor_execute", record)
    follow_ups = "select * from smarketing.follow_ups order by customer_id, reason"
    with warehouse.begin() as conn:
        inserted = conn.execute(sa.text(follow_ups)).all()
        conn.execute(sa.text("delete from smarketing.follow_ups"))
    writes = [s for s in statements if "insert into smarketing.follow_ups" in s]
    assert len(writes) == 1 and "on conflict" not in writes[0], "an empty table needs no conflict check"
    monkeypatch.setattr(pipeline, "FIRST_FOLLOW_UPS_SQL", pipeline.FINALIZE_SQL)  # the upsert, as before
    again = finalize(warehouse, NOW)
    with warehouse.connect() as conn:
        upserted = conn.execute(sa.text(follow_ups)).all()
    assert inserted == upserted and len(inserted) > 0
    assert first["follow_ups_written"] == again["follow_ups_written"] == len(inserted)
