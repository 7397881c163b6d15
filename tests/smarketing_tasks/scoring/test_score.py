"""Score, segment, reasons and follow-up questions from per-customer facts (no database)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from smarketing_tasks.scoring import clv
from smarketing_tasks.scoring.score import (
    SEGMENTS,
    ValueModel,
    follow_up_candidates,
    score_customers,
    suggest_questions,
)
from smarketing_tasks.scoring.settings import ScoringSettings

MODEL = ValueModel(clv.BgNbdParams(0.243, 4.414, 0.793, 2.426), clv.GammaGammaParams(6.25, 3.74, 15.44), 40.0)
BUYER = dict(orders_count=1, lifetime_value=50.0, recency_days=10.0, x=0, t_x_days=0.0, T_days=10.0,
             rfm_r=4, rfm_f=1, rfm_m=2)


def _customers() -> pd.DataFrame:
    rows = {
        "lukewarm": {**BUYER, "reviews_count": 1, "last_rating": 4, "review_text": "Good.", "review_age_days": 3},
        "champion": {**BUYER, "orders_count": 5, "lifetime_value": 500.0, "x": 4, "t_x_days": 100.0,
                     "T_days": 110.0, "mean_repeat_value": 100.0, "rfm_r": 5, "rfm_f": 5, "rfm_m": 5,
                     "reviews_count": 2, "last_rating": 5, "review_text": "Absolutely love it, best purchase this year!",
                     "review_age_days": 3, "social_posts_count": 2, "social_reach": 12400, "referrals_count": 3,
                     "referral_revenue": 240.0},
        "detractor": {**BUYER, "reviews_count": 1, "last_rating": 2, "review_age_days": 20,
                      "review_text": "Broke after a week and the delivery was late"},
        "at_risk": {**BUYER, "orders_count": 4, "lifetime_value": 300.0, "recency_days": 300.0, "x": 3,
                    "t_x_days": 60.0, "T_days": 360.0, "mean_repeat_value": 70.0, "rfm_r": 1, "rfm_f": 5, "rfm_m": 4},
        "silent": {**BUYER},
        "complainer": {**BUYER, "complaints_count": 1},
        "german": {**BUYER, "reviews_count": 1, "last_rating": 5, "review_age_days": 5,
                   "review_text": "Sehr gut, schnelle Lieferung, gerne wieder"},
        "never_bought": {"orders_count": 0, "lifetime_value": 0.0},
        "public_critic": {**BUYER, "social_posts_count": 1, "social_reach": 900,
                          "post_text": "Worst kettle ever, it leaked all over my counter. Avoid."},
    }
    return pd.DataFrame([{"customer_id": k, **v} for k, v in rows.items()])


@pytest.fixture(scope="module")
def scored() -> pd.DataFrame:
    return score_customers(_customers(), MODEL, ScoringSettings()).set_index("customer_id")


def test_segments(scored):
    assert scored.loc["lukewarm", "segment"] == "lukewarm"
    assert scored.loc["champion", "segment"] == "champion"
    assert scored.loc["detractor", "segment"] == "detractor"
    assert scored.loc["at_risk", "segment"] == "at_risk"
    assert scored.loc["silent", "segment"] == "silent"
    assert scored.loc["complainer", "segment"] == "detractor"
    assert scored.loc["never_bought", "segment"] == "silent"
    assert scored.loc["public_critic", "segment"] == "detractor"
    assert "posted negatively about us: 'Worst kettle ever" in scored.loc["public_critic", "reasons"]
    assert set(scored["segment"]) <= set(SEGMENTS)


def test_scores_are_bounded_and_ordered(scored):
    assert scored["advocate_score"].between(0, 100).all()
    assert scored.loc["champion", "advocate_score"] > scored.loc["lukewarm", "advocate_score"] \
        > scored.loc["detractor", "advocate_score"]


def test_reasons_are_plain_words(scored):
    assert scored.loc["lukewarm", "reasons"].startswith("4★ but only said 'Good.'")
    reasons = scored.loc["champion", "reasons"]
    assert "referred 3 friends (240 in revenue)" in reasons
    assert "posted about us 2 times to 12,400 followers" in reasons
    assert "may tell ~52 people" in scored.loc["detractor", "reasons"]
    assert "days ago" in scored.loc["at_risk", "reasons"] and "chance still buying" in scored.loc["at_risk", "reasons"]
    assert "wrote in German" in scored.loc["german", "reasons"]
    assert "not scored" in scored.loc["german", "reasons"]
    assert np.isnan(scored.loc["german", "sentiment"])


def test_value_columns(scored):
    assert scored.loc["champion", "expected_purchases_90d"] > scored.loc["at_risk", "expected_purchases_90d"]
    assert scored.loc["champion", "predicted_value_90d"] > 0
    assert scored.loc["never_bought", "expected_purchases_90d"] == 0


def test_weights_are_configurable_and_checked():
    frame = _customers()
    default = score_customers(frame, MODEL, ScoringSettings()).set_index("customer_id")
    advocacy_only = score_customers(frame, MODEL, ScoringSettings(
        weight_satisfaction=0, weight_sentiment=0, weight_value=0, weight_advocacy=1)).set_index("customer_id")
    assert advocacy_only.loc["silent", "advocate_score"] == 0
    assert advocacy_only.loc["champion", "advocate_score"] > default.loc["champion", "advocate_score"] - 5
    with pytest.raises(ValueError, match="weights"):
        ScoringSettings(weight_satisfaction=-1).weights()


def test_lukewarm_threshold_is_a_setting():
    frame = pd.DataFrame([{**BUYER, "customer_id": "x", "last_rating": 5, "review_text": "Excellent",
                           "review_age_days": 1}])
    assert score_customers(frame, MODEL, ScoringSettings()).iloc[0]["segment"] != "lukewarm"
    strict = dataclasses.replace(ScoringSettings(), strong_compound=0.6)
    assert score_customers(frame, MODEL, strict).iloc[0]["segment"] == "lukewarm"


def test_follow_ups_for_lukewarm_at_risk_and_detractors_only(scored):
    candidates = follow_up_candidates(scored.reset_index(), ScoringSettings()).set_index("customer_id")
    assert set(candidates.index) == {"lukewarm", "detractor", "at_risk", "complainer", "public_critic"}
    assert candidates.loc["detractor", "owner_team"] == "support"
    assert candidates.loc["lukewarm", "owner_team"] == "customer_success"
    assert candidates.loc["at_risk", "owner_team"] == "sales"
    lukewarm_questions = candidates.loc["lukewarm", "suggested_questions"].splitlines()
    assert lukewarm_questions[0] == 'You told us "Good." — what would have made it great?'
    detractor_questions = candidates.loc["detractor", "suggested_questions"]
    assert "delivery" in detractor_questions and "went wrong with it" in detractor_questions
    assert candidates.loc["lukewarm", "review_excerpt"] == "Good."
    assert candidates.loc["public_critic", "review_excerpt"].startswith("Worst kettle ever")
    assert (candidates["priority_weight"] > 0).all()


def test_questions_fit_what_was_said():
    assert any("worth what you paid" in q for q in suggest_questions(
        "lukewarm", "ok but a bit expensive", "passive", "4★", "en", 10))
    assert suggest_questions("lukewarm", None, "passive", "4★", None, 10)[0].startswith("You gave us 4★ without")
    assert "300 days" in suggest_questions("at_risk", None, "", "", None, 300.0)[0]
    assert suggest_questions("detractor", "Nul", "detractor", "1★", "fr", 3)[0].startswith("(They wrote in French")


def test_recent_valuable_feedback_comes_first():
    base = {**BUYER, "reviews_count": 1, "last_rating": 4, "review_text": "ok"}
    frame = pd.DataFrame([
        {**base, "customer_id": "recent", "review_age_days": 2},
        {**base, "customer_id": "old", "review_age_days": 200},
        {**base, "customer_id": "recent_valuable", "review_age_days": 2, "lifetime_value": 5000.0, "orders_count": 6,
         "x": 5, "t_x_days": 9.0, "mean_repeat_value": 800.0},
    ])
    candidates = follow_up_candidates(score_customers(frame, MODEL, ScoringSettings()), ScoringSettings())
    order = candidates.sort_values("priority_weight", ascending=False)["customer_id"].tolist()
    assert order == ["recent_valuable", "recent", "old"]


def test_silent_buyers_get_the_reasons_explain_gives(monkeypatch):
    """The shortcut for silent customers (most of a shop) writes exactly what ``explain`` writes for them."""
    from smarketing_tasks.scoring import score

    quiet = [{**BUYER, "customer_id": "one"}, {"customer_id": "none", "orders_count": 0, "lifetime_value": 0.0},
             {**BUYER, "customer_id": "best", "orders_count": 3, "lifetime_value": 12345.6, "x": 2, "t_x_days": 8.0,
              "rfm_r": 5, "rfm_f": 5, "rfm_m": 5},
             {**BUYER, "customer_id": "reviewed_once", "reviews_count": 1}]
    frame = pd.concat([_customers(), pd.DataFrame(quiet)], ignore_index=True)
    fast = score_customers(frame, MODEL, ScoringSettings())
    shortcut_rows = score._silent_buyers(fast["segment"].to_numpy(), np.full(len(fast), ""), np.zeros(len(fast), bool),
                                         0, 0, 0, 0, np.zeros(len(fast), bool))
    assert shortcut_rows.sum() >= 4
    monkeypatch.setattr(score, "_silent_buyers", lambda segment, *_: np.zeros(len(segment), bool))
    pd.testing.assert_frame_equal(fast, score_customers(frame, MODEL, ScoringSettings()))
    reasons = fast.set_index("customer_id")["reasons"]
    assert reasons["one"] == "1 order, 50 spent; no review, post or referral yet"
    assert reasons["none"] == "no purchases or feedback yet"


def test_buyers_with_nothing_but_orders_get_the_reasons_explain_gives(monkeypatch):
    """The shortcut covers at-risk and promising buyers with nothing but orders to tell too (returned last
    orders, a near-zero chance of buying, 5-5-5 customers, a customer with no orders but a returned flag)."""
    from smarketing_tasks.scoring import score

    lapsed = {**BUYER, "orders_count": 4, "lifetime_value": 1234.5, "recency_days": 300.7, "x": 3, "t_x_days": 60.0,
              "T_days": 360.0, "mean_repeat_value": 70.0, "rfm_r": 1, "rfm_f": 5, "rfm_m": 4}
    quiet = [{**lapsed, "customer_id": "lapsed"},
             {**lapsed, "customer_id": "long_gone", "recency_days": 2000.2, "T_days": 2100.0},
             {**lapsed, "customer_id": "returned", "last_order_returned": True},
             {**BUYER, "customer_id": "returned_once", "last_order_returned": True},
             {**BUYER, "customer_id": "regular", "orders_count": 3, "lifetime_value": 99999.5, "x": 2,
              "t_x_days": 9.0, "rfm_r": 5, "rfm_f": 5, "rfm_m": 5},
             {**BUYER, "customer_id": "regular_not_best", "orders_count": 2, "x": 1, "t_x_days": 9.0},
             {**BUYER, "customer_id": "rated_nothing", "reviews_count": 1},
             {"customer_id": "no_orders_returned", "orders_count": 0, "lifetime_value": 0.0,
              "last_order_returned": True}]
    frame = pd.concat([_customers(), pd.DataFrame(quiet)], ignore_index=True)
    frame["last_order_returned"] = frame["last_order_returned"].fillna(False).astype(bool)
    fast = score_customers(frame, MODEL, ScoringSettings())
    quiet_ids = [row["customer_id"] for row in quiet]
    assert {"at_risk", "promising"} <= set(fast.set_index("customer_id").loc[quiet_ids, "segment"])
    monkeypatch.setattr(score, "_silent_buyers", lambda segment, *_: np.zeros(len(segment), bool))
    slow = score_customers(frame, MODEL, ScoringSettings())
    pd.testing.assert_frame_equal(fast, slow)
    reasons = fast.set_index("customer_id")["reasons"]
    assert reasons["returned"] == "returned their last order; 4 orders, 1,234 spent"
    assert "chance still buying" in reasons["lapsed"]
