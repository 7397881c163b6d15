"""Incremental scoring: a normal day rescores who changed (and who crossed a time boundary), and gives them
exactly what a full rescore would; unchanged customers keep their last score; reruns never duplicate."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from smarketing_tasks.scoring import clv
from smarketing_tasks.scoring.pipeline import SCORE_COLUMNS, run_all
from smarketing_tasks.scoring.score import ValueModel, days_to_time_boundary, score_customers
from smarketing_tasks.scoring.settings import ScoringSettings
from tests.smarketing_tasks.scoring.test_pipeline import NOW, _seed

DAY2 = NOW + timedelta(days=1)
# no refit between the two days, so that the full rescore of day 2 uses the same model as the incremental run
STEADY = ScoringSettings(partitions=2, model_refit_days=1000, model_refit_changed_share=100.0)
COMPARED = [c for c in SCORE_COLUMNS if c != "scored_at"]


def _quiet(_: str) -> None:
    pass


def _change_some_customers(engine: sa.Engine) -> set[str]:
    """Every kind of input a customer's score reads, changed for one customer each, during day 1."""
    t = NOW + timedelta(hours=6)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "insert into smarketing.orders (order_id, customer_id, ordered_at, status, total_amount, currency, "
            "updated_at, source) values ('o11-new', 'c11', :t, 'placed', 70, 'EUR', :t, 't')"), {"t": t})
        conn.execute(sa.text("update smarketing.orders set status = 'returned', updated_at = :t "
                             "where order_id = 'o12-1'"), {"t": t})
        conn.execute(sa.text(
            "insert into smarketing.reviews (review_id, customer_id, rating, body, created_at, source) values "
            "('r13', 'c13', 4, 'ok', :t, 't'), ('r18', 'c18', 5, 'Great!', :t, 't')"), {"t": t})
        # the review's sentiment comes from review_signals, computed once where reviews load
        conn.execute(sa.text(
            "insert into smarketing.review_signals (review_id, content_hash, rules_version, language, sentiment, "
            "is_lukewarm, computed_at) values ('r18', 'h', 'test', 'en', -0.9, false, :t)"), {"t": t})
        conn.execute(sa.text(
            "insert into smarketing.nps_answers (answer_id, customer_id, score, comment, answered_at, source) "
            "values ('n14', 'c14', 3, 'Too slow', :t, 't')"), {"t": t})
        conn.execute(sa.text(
            "insert into smarketing.social_posts (post_id, platform, customer_id, body, followers, posted_at, source) "
            "values ('p15', 'instagram', 'c15', 'Love my new kettle', 900, :t, 't')"), {"t": t})
        conn.execute(sa.text(
            "insert into smarketing.referrals (referred_order_id, referral_code, referrer_customer_id, "
            "referred_customer_id, revenue, redeemed_at) values ('x16', 'REF-C16', 'c16', 'n16', 55, :t)"), {"t": t})
        conn.execute(sa.text(
            "insert into smarketing.email_events (event_id, email, customer_id, event_type, occurred_at, source) "
            "values ('e17', 'c17@example.com', 'c17', 'complaint', :t, 't')"), {"t": t})
        conn.execute(sa.text("insert into smarketing.customers (customer_id, created_at, updated_at, source) "
                             "values ('c100', :t, :t, 't')"), {"t": t})
    # c7's order is dated day 2 (the seed's order "after now"): it counts from day 2 on
    return {"c7", "c11", "c12", "c13", "c14", "c15", "c16", "c17", "c18", "c100"}


def _rows(engine: sa.Engine, score_date) -> pd.DataFrame:
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text(f"select {', '.join(COMPARED)} from smarketing.advocate_scores "
                                    "where score_date = :d order by customer_id"), conn, params={"d": score_date})
    return frame.set_index("customer_id")


def test_incremental_run_gives_changed_customers_the_full_rescore_and_keeps_the_rest(warehouse):
    _seed(warehouse)
    run_all(warehouse, NOW, STEADY, say=_quiet)
    day1 = _rows(warehouse, NOW.date())
    changed = _change_some_customers(warehouse)

    summary = run_all(warehouse, DAY2, STEADY, say=_quiet)
    incremental = _rows(warehouse, DAY2.date())
    assert summary["mode"] == "incremental" and not summary["refitted"]
    assert set(incremental.index) == changed  # nobody else was touched ...
    assert _rows(warehouse, NOW.date()).equals(day1)  # ... and everyone else keeps their last score
    assert incremental.loc["c18", "sentiment"] == -0.9  # read from review_signals, not recomputed
    assert incremental.loc["c13", "segment"] == "lukewarm" and incremental.loc["c14", "segment"] == "detractor"
    with warehouse.connect() as conn:
        counted = conn.execute(sa.text("select * from smarketing.score_runs where score_date = :d"),
                               {"d": DAY2.date()}).mappings().one()
        current = conn.execute(sa.text("""
            select count(*) as customers_scored, count(*) filter (where segment = 'lukewarm') as segment_lukewarm,
                   count(*) filter (where nps_class = 'detractor') as detractors
            from (select distinct on (customer_id) * from smarketing.advocate_scores
                  order by customer_id, score_date desc) latest""")).mappings().one()
    assert {k: counted[k] for k in current} == dict(current) == {**current, "customers_scored": 81}

    summary = run_all(warehouse, DAY2, STEADY, say=_quiet, full=True)  # the same date, everybody rescored
    full = _rows(warehouse, DAY2.date())
    assert summary["mode"] == "full" and len(full) == 81
    pd.testing.assert_frame_equal(incremental, full.loc[incremental.index])


def test_reruns_of_an_incremental_date_leave_the_same_tables(warehouse):
    _seed(warehouse)
    run_all(warehouse, NOW, STEADY, say=_quiet)
    _change_some_customers(warehouse)
    first = run_all(warehouse, DAY2, STEADY, say=_quiet)
    again = run_all(warehouse, DAY2 + timedelta(minutes=5), STEADY, say=_quiet)  # a retry of the date
    assert again["customers"] == first["customers"] == 10
    assert again["population"] == first["population"] == 81
    with warehouse.connect() as conn:
        rows = conn.execute(sa.text("select count(*), count(distinct (customer_id, score_date)) "
                                    "from smarketing.advocate_scores")).one()
        follow_ups = conn.execute(sa.text("select count(*), count(distinct (customer_id, reason)) "
                                          "from smarketing.follow_ups")).one()
        leftovers = conn.execute(sa.text("select (select count(*) from smarketing.score_queue) "
                                         "+ (select count(*) from smarketing.score_inputs)")).scalar()
    assert rows[0] == rows[1] == 80 + 10 and follow_ups[0] == follow_ups[1] and leftovers == 0
    nothing_new = run_all(warehouse, DAY2 + timedelta(days=1), STEADY, say=_quiet)
    assert nothing_new["customers"] == 0 and nothing_new["population"] == 81


def test_customers_due_by_time_are_rescored_without_a_change(warehouse):
    _seed(warehouse)
    run_all(warehouse, NOW, STEADY, say=_quiet)
    with warehouse.begin() as conn:  # as if c20's P(alive) crosses a segment threshold on day 2
        conn.execute(sa.text("update smarketing.score_state set rescore_on = :d where customer_id = 'c20'"),
                     {"d": DAY2.date()})
    summary = run_all(warehouse, DAY2, STEADY, say=_quiet)
    assert (summary["changed"], summary["due"]) == (1, 1)  # c7's order dated day 2, and c20
    assert set(_rows(warehouse, DAY2.date()).index) == {"c7", "c20"}


def test_the_value_model_is_refitted_on_its_cadence(warehouse):
    _seed(warehouse)
    settings = ScoringSettings(partitions=2, model_refit_days=2, model_refit_changed_share=100.0)
    for day in range(4):
        run_all(warehouse, NOW + timedelta(days=day), settings, say=_quiet)
    with warehouse.connect() as conn:
        fits = conn.execute(sa.text("select score_date from smarketing.score_models order by 1")).scalars().all()
        used = conn.execute(sa.text("select model_date from smarketing.score_runs order by score_date")).scalars().all()
    assert fits == [NOW.date(), NOW.date() + timedelta(days=2)]
    assert used == [fits[0], fits[0], fits[1], fits[1]]
    # growth: enough changed customers since the fit trigger a refit the next day, whatever its age
    _change_some_customers(warehouse)
    grown = ScoringSettings(partitions=2, model_refit_days=1000, model_refit_changed_share=0.05)
    assert run_all(warehouse, NOW + timedelta(days=4), grown, say=_quiet)["refitted"]


# --- the time boundary, against the scorer itself ------------------------------------------------------------

CDNOW_MODEL = ValueModel(clv.BgNbdParams(0.243, 4.414, 0.793, 2.426, 0.0), None, 40.0,
                         ((1.0, 2.0, 3.0, 4.0), (2.0, 3.0, 4.0, 5.0), (50.0, 100.0, 200.0, 400.0)))


def _history(**overrides) -> pd.DataFrame:
    rows = {
        "customer_id": ["quiet-repeat", "champion", "one-time", "no-orders"],
        "orders_count": [4, 6, 1, 0], "lifetime_value": [300.0, 900.0, 50.0, 0.0], "recency_days": [20.0] * 4,
        "last_order_returned": [False] * 4, "x": [3.0, 5.0, 0.0, np.nan], "t_x_days": [100.0, 150.0, 0.0, np.nan],
        "T_days": [120.0, 170.0, 20.0, np.nan], "mean_repeat_value": [75.0, 150.0, np.nan, np.nan],
        "rfm_r": [4.0, 5.0, 3.0, np.nan], "rfm_f": [4.0, 5.0, 1.0, np.nan], "rfm_m": [3.0, 5.0, 1.0, np.nan],
        "reviews_count": [0, 2, 0, 0], "last_rating": [np.nan, 5.0, np.nan, np.nan],
        "review_text": [None, "Absolutely love it, best purchase this year!", None, None],
        "review_age_days": [np.nan, 10.0, np.nan, np.nan], "social_posts_count": [0, 2, 0, 0],
        "social_reach": [0, 5000, 0, 0], "referrals_count": [0, 2, 0, 0], "referral_revenue": [0.0, 200.0, 0, 0],
        "complaints_count": [0] * 4,
    }
    rows.update(overrides)
    return pd.DataFrame(rows)


def test_the_time_boundary_is_the_first_day_the_segment_changes():
    """Follow each customer from boundary to boundary (rescoring there, as the runs do): the segment is the
    same the day before each boundary, and every change of segment happens on a boundary day."""
    settings = ScoringSettings()
    frame = _history()
    scored = score_customers(frame, CDNOW_MODEL, settings)
    days = days_to_time_boundary(frame, scored, CDNOW_MODEL, settings, horizon_days=3000)
    assert days[2] == days[3] == -1  # no repeat purchase: P(alive) stays 1, nothing changes with time
    for row in (0, 1):
        offset, segment, changes = 0, scored.loc[row, "segment"], []
        for _ in range(10):
            current = frame.assign(T_days=frame["T_days"] + offset)
            step = days_to_time_boundary(current, score_customers(current, CDNOW_MODEL, settings), CDNOW_MODEL,
                                         settings, horizon_days=3000)[row]
            if step < 0:
                break
            before = score_customers(frame.assign(T_days=frame["T_days"] + offset + step - 1), CDNOW_MODEL, settings)
            assert before.loc[row, "segment"] == segment, (row, offset, step)
            offset += step
            now = score_customers(frame.assign(T_days=frame["T_days"] + offset), CDNOW_MODEL, settings)
            if now.loc[row, "segment"] != segment:
                changes.append((offset, segment, now.loc[row, "segment"]))
                segment = now.loc[row, "segment"]
        assert changes, row  # time alone does move these two (down to at_risk in the end)
        assert segment == "at_risk"


@pytest.mark.parametrize("weight_value", [0.2, 0.0])
def test_no_segment_change_before_the_boundary(weight_value):
    """Walk day by day: the segment never changes before the computed boundary."""
    settings = ScoringSettings(weight_value=weight_value)
    frame = _history()
    scored = score_customers(frame, CDNOW_MODEL, settings)
    days = days_to_time_boundary(frame, scored, CDNOW_MODEL, settings, horizon_days=3000)
    for step in range(1, int(max(days[:2])) + 1, 7):
        segments = score_customers(frame.assign(T_days=frame["T_days"] + step), CDNOW_MODEL, settings)["segment"]
        for row in (0, 1):
            if step < days[row]:
                assert segments[row] == scored.loc[row, "segment"], (row, step)


def test_post_and_nps_texts_are_analysed_once_and_read_back_the_same(warehouse, monkeypatch):
    """A normal day's customers mostly said things already analysed (their post did not change, or others used
    the same words): their language and sentiment come from smarketing.text_signals, and equal a fresh analysis."""
    from smarketing_tasks.scoring import text

    _seed(warehouse)
    run_all(warehouse, NOW, STEADY, say=_quiet)
    with warehouse.connect() as conn:
        stored = conn.execute(sa.text("select language, sentiment from smarketing.text_signals")).all()
    # "My new favourite kettle!" and "fine": two texts, both English, each with a sentiment
    assert sorted(language for language, _ in stored) == ["en", "en"]
    assert all(sentiment is not None for _, sentiment in stored)
    t = NOW + timedelta(hours=6)
    with warehouse.begin() as conn:  # the same words again, from other customers; c4 (who said "fine") orders
        conn.execute(sa.text(
            "insert into smarketing.social_posts (post_id, platform, customer_id, body, followers, posted_at, source) "
            "values ('p2', 'instagram', 'c21', '  My new favourite kettle!', 10, :t, 't')"), {"t": t})
        conn.execute(sa.text(
            "insert into smarketing.nps_answers (answer_id, customer_id, score, comment, answered_at, source) "
            "values ('n2', 'c22', 8, 'fine', :t, 't')"), {"t": t})
        conn.execute(sa.text(
            "insert into smarketing.orders (order_id, customer_id, ordered_at, status, total_amount, currency, "
            "updated_at, source) values ('o4-new', 'c4', :t, 'placed', 70, 'EUR', :t, 't')"), {"t": t})

    def not_again(*_args, **_kwargs):
        raise AssertionError("a text with a stored signal was analysed again")

    with monkeypatch.context() as patch:
        patch.setattr(text, "detect_language", not_again)
        patch.setattr(text, "_analyzer", not_again)
        summary = run_all(warehouse, DAY2, STEADY, say=_quiet)
    incremental = _rows(warehouse, DAY2.date())
    assert summary["mode"] == "incremental" and set(incremental.index) == {"c4", "c7", "c21", "c22"}  # c7: an order dated day 2
    assert incremental.loc["c22", "segment"] == "lukewarm"  # NPS 8 with a faint "fine", from the stored signal

    with warehouse.begin() as conn:
        conn.exec_driver_sql("delete from smarketing.text_signals")
    run_all(warehouse, DAY2, STEADY, say=_quiet, full=True)  # everything analysed afresh
    fresh = _rows(warehouse, DAY2.date())
    # none of these customers has a rating: the column comes back as None here, NaN among everyone
    pd.testing.assert_frame_equal(incremental.astype({"last_rating": "float64"}), fresh.loc[incremental.index])
