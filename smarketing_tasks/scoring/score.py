"""From per-customer facts to an advocate score, a segment, reasons in plain words, and follow-ups.

DataFrame in, DataFrames out, no I/O: ``smarketing_tasks.scoring.pipeline`` feeds it one partition of the
aggregates that SQL prepared, and writes what it returns. Everything here is vectorised over customers
except the reason and question texts, which are built per row only for the customers who need them.

Input columns (one row per customer; missing facts are NULL/NaN):
customer_id, orders_count, lifetime_value, recency_days, last_order_returned, x, t_x_days, T_days,
mean_repeat_value, rfm_r, rfm_f, rfm_m, reviews_count, last_rating, review_text, review_language,
review_age_days, nps_score, nps_comment, nps_age_days, social_posts_count, social_reach, post_text,
post_language, referrals_count, referral_revenue, complaints_count.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass

import numpy as np
import pandas as pd

from smarketing_tasks.scoring import clv
from smarketing_tasks.scoring.settings import ScoringSettings
from smarketing_tasks.scoring.text import analyse_texts, excerpt
from smarketing_tasks.values import each_distinct

SEGMENTS = ("champion", "advocate", "promising", "lukewarm", "at_risk", "detractor", "silent")
FOLLOW_UP_SEGMENTS = {"lukewarm": "customer_success", "at_risk": "sales", "detractor": "support"}
LANGUAGE_NAMES = {"de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "nl": "Dutch",
                  "pt": "Portuguese", "pl": "Polish", "sv": "Swedish", "da": "Danish", "no": "Norwegian",
                  "fi": "Finnish", "tr": "Turkish", "ja": "Japanese", "zh": "Chinese", "ru": "Russian"}


@dataclass(frozen=True)
class ValueModel:
    """Fitted population parameters (None where the documented fallbacks apply)."""

    bgnbd: clv.BgNbdParams | None
    gamma_gamma: clv.GammaGammaParams | None
    population_mean_value: float
    # RFM quintile cut points of the population at the fit (last order in epoch microseconds, orders, kept
    # revenue): bucket = 1 + the number of cut points at or below the value; None = no buyer reached it.
    rfm_cuts: tuple[tuple[float | None, ...], ...] | None = None


def _num(frame: pd.DataFrame, column: str, default: float = np.nan) -> np.ndarray:
    if column not in frame:
        return np.full(len(frame), default, dtype="float64")
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _text(frame: pd.DataFrame, column: str) -> list[str | None]:
    if column not in frame:
        return [None] * len(frame)
    values = frame[column]
    # vectorised: a per-value isinstance/isnan test cost ~1 µs a customer and column
    return values.astype(object).where(values.notna(), None).tolist()


def _flag(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.zeros(len(frame), bool)
    return frame[column].fillna(False).astype(bool).to_numpy()


def _given_sentiments(signal: np.ndarray, sentiment: np.ndarray) -> list:
    """For ``analyse_texts``: a stored compound (None: stored as not scored) where a signal exists, else ``...``."""
    return [(None if v != v else v) if s else ... for s, v in zip(signal.tolist(), sentiment.tolist(), strict=True)]


def _alive_and_expected(model: ValueModel, x: np.ndarray, t_x: np.ndarray, T: np.ndarray,
                        horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """P(still active) and expected purchases over ``horizon`` (all in the model's time unit)."""
    t_x = np.minimum(t_x, T)
    if model.bgnbd is not None:
        return (clv.probability_alive(model.bgnbd, x, t_x, T),
                clv.expected_purchases(model.bgnbd, horizon, x, t_x, T))
    # Fallback (too few customers to fit): the customer's own purchase rate, damped by how long they
    # have been quiet compared with their usual gap between purchases.
    rate = (x + 1) / (T + horizon)  # one purchase of prior credit, spread over the observed time + horizon
    gap = np.where(x > 0, t_x / np.maximum(x, 1), np.maximum(T, 1.0))
    p_alive = np.where(x > 0, np.exp(-np.maximum(T - t_x, 0) / np.maximum(2 * gap, 1.0)), 1.0)
    return p_alive, rate * horizon * p_alive


def _purchase_history(frame: pd.DataFrame, settings: ScoringSettings) -> tuple[np.ndarray, ...]:
    unit = settings.clv_time_unit_days
    x = np.nan_to_num(_num(frame, "x"), nan=0.0)
    t_x = np.nan_to_num(_num(frame, "t_x_days"), nan=0.0) / unit
    T = np.nan_to_num(_num(frame, "T_days"), nan=0.0) / unit
    return x, t_x, T


def value_estimates(frame: pd.DataFrame, model: ValueModel, settings: ScoringSettings) -> pd.DataFrame:
    """Expected purchases and value over the horizon, and P(still active), per customer."""
    x, t_x, T = _purchase_history(frame, settings)
    buyer = np.nan_to_num(_num(frame, "orders_count"), nan=0.0) > 0
    p_alive, expected = _alive_and_expected(model, x, t_x, T, settings.value_horizon_days / settings.clv_time_unit_days)
    order_value = clv.expected_order_value(model.gamma_gamma, x, _num(frame, "mean_repeat_value"),
                                           model.population_mean_value)
    expected = np.where(buyer, expected, 0.0)
    return pd.DataFrame({
        "expected_purchases_90d": np.round(expected, 4),
        "predicted_value_90d": np.round(expected * order_value, 2),
        "p_alive": np.where(buyer, p_alive, np.nan),
    }, index=frame.index)


def rfm_buckets(frame: pd.DataFrame, model: ValueModel) -> pd.DataFrame:
    """RFM quintiles 1-5 from the model's cut points (the population's percent_rank buckets at the fit).

    Compared exactly: the last order in integer microseconds, revenue in cents. NaN for non-buyers.
    """
    buyer = np.nan_to_num(_num(frame, "orders_count"), nan=0.0) > 0
    values = {"rfm_r": np.round(_num(frame, "last_order_us")), "rfm_f": _num(frame, "orders_count"),
              "rfm_m": np.round(_num(frame, "lifetime_value") * 100)}
    out = {}
    for (column, value), cuts in zip(values.items(), model.rfm_cuts or ((), (), ()), strict=True):
        bucket = np.ones(len(frame))
        for cut in cuts:
            if cut is not None:
                bucket += value >= (round(cut * 100) if column == "rfm_m" else cut)
        out[column] = np.where(buyer & ~np.isnan(value) & bool(model.rfm_cuts), bucket, np.nan)
    return pd.DataFrame(out, index=frame.index)


def days_to_time_boundary(frame: pd.DataFrame, scored: pd.DataFrame, model: ValueModel, settings: ScoringSettings,
                          horizon_days: int) -> np.ndarray:
    """Days from the scoring date until the customer's segment may change with time alone (-1: not within
    ``horizon_days``), holding every input fixed.

    Time moves a segment only through P(alive), which falls as T grows: at_risk starts below
    ``at_risk_p_alive``, a quiet repeat buyer stops being promising below 0.5, and the score (which holds
    0.4 x P(alive) of the value part) can fall under the champion or advocate minimum. The next of these
    thresholds below today's P(alive) is found by bisection over whole days with the model's own P(alive);
    the score thresholds are taken a rounding step early, so a customer is rescored on the day or a day early.
    """
    n = len(frame)
    days = np.full(n, -1, dtype="int64")
    x, t_x, T = _purchase_history(frame, settings)
    buyer = np.nan_to_num(_num(frame, "orders_count"), nan=0.0) > 0
    p_now = scored["ctx_p_alive"].to_numpy(dtype="float64")
    candidates = [np.full(n, settings.at_risk_p_alive), np.full(n, 0.5)]
    slope = 100 * settings.weights()["value"] * 0.4  # score points per unit of P(alive)
    if slope > 0:
        base = scored["ctx_score_base"].to_numpy(dtype="float64")
        for minimum in (settings.champion_min_score, settings.advocate_min_score):
            candidates.append((minimum - 0.05 - base) / slope + 1e-9)
    thresholds = np.stack(candidates, axis=1)
    below = np.where(thresholds <= p_now[:, None], thresholds, -np.inf)
    target = below.max(axis=1)
    live = buyer & (x > 0) & np.isfinite(target) & (target > 0) & ~np.isnan(p_now)
    if not live.any():
        return days
    unit = settings.clv_time_unit_days
    xs, txs, Ts, goal = x[live], t_x[live], T[live], target[live]

    def crossed(offset: np.ndarray) -> np.ndarray:
        p, _ = _alive_and_expected(model, xs, txs, Ts + offset / unit, 1.0)
        return p < goal

    lo = np.zeros(len(xs))
    hi = np.full(len(xs), float(horizon_days))
    reached = crossed(hi)
    while True:
        open_ = reached & (hi - lo > 1)
        if not open_.any():
            break
        mid = np.floor((lo + hi) / 2)
        hit = crossed(mid)
        hi = np.where(open_ & hit, mid, hi)
        lo = np.where(open_ & ~hit, mid, lo)
    days[np.flatnonzero(live)[reached]] = hi[reached].astype("int64")
    return days


def _nps_level(score: np.ndarray) -> np.ndarray:
    return np.select([score >= 9, score >= 7, score >= 0], ["promoter", "passive", "detractor"], default="")


def _stars_level(rating: np.ndarray, settings: ScoringSettings) -> np.ndarray:
    return np.select(
        [rating >= settings.stars_promoter_min, rating >= settings.stars_passive_min, rating >= 1],
        ["promoter", "passive", "detractor"], default="")


def feedback(frame: pd.DataFrame, settings: ScoringSettings) -> pd.DataFrame:
    """The lukewarm rule and NPS class from each customer's latest feedback (review or NPS answer).

    The latest of the review and the NPS answer counts (an NPS answer wins a tie). Its level comes from the
    NPS score (9-10 / 7-8 / 0-6) or, for a review, from stars (5 / 3-4 / 1-2). Then:
    - clearly negative words (VADER compound <= negative_compound) or a detractor level: detractor;
    - a passive level (3-4 stars, NPS 7-8) with neutral, faint or no words: lukewarm;
    - a promoter level (5 stars, NPS 9-10) with faint words ("Good.", "ok"): lukewarm, not a promoter.
    Non-English words are not scored: short ones on a passive level count as lukewarm, longer ones are only
    flagged for a human reader (they may be glowing).
    """
    rules = settings.text_rules()
    nps = _num(frame, "nps_score")
    rating = _num(frame, "last_rating")
    nps_age = _num(frame, "nps_age_days")
    review_age = _num(frame, "review_age_days")
    has_nps = ~np.isnan(nps)
    has_review = ~np.isnan(rating)
    use_nps = has_nps & (~has_review | (nps_age <= np.nan_to_num(review_age, nan=np.inf)))
    level = np.where(use_nps, _nps_level(np.nan_to_num(nps, nan=-1)),
                     _stars_level(np.nan_to_num(rating, nan=0), settings))
    review_text = _text(frame, "review_text")
    nps_comment = _text(frame, "nps_comment")
    texts = [c if u else r for u, c, r in zip(use_nps, nps_comment, review_text, strict=True)]
    # A review's sentiment is computed once, when it is loaded (smarketing.review_signals), an NPS comment's
    # once per distinct text (smarketing.text_signals, attached by the pipeline); VADER runs here only for
    # texts without a signal.
    signal = np.where(use_nps, _flag(frame, "nps_signal"), _flag(frame, "review_signal"))
    signal_sentiment = np.where(use_nps, _num(frame, "nps_signal_sentiment"), _num(frame, "review_sentiment"))
    signal_language = [n if u else r for u, n, r in zip(use_nps, _text(frame, "nps_signal_language"),
                                                        _text(frame, "review_signal_language"), strict=True)]
    given_language = [(sl if s and sl else None) if u else (sl if s and sl else lang) for u, s, sl, lang in
                      zip(use_nps, signal, signal_language, _text(frame, "review_language"), strict=True)]
    sentiments = _given_sentiments(signal, signal_sentiment)
    analysed = analyse_texts(texts, rules, given_language, sentiments)
    compound = analysed["compound"].to_numpy()
    scored = analysed["scored"].to_numpy()
    faint = analysed["faint"].to_numpy()
    has_text = analysed["words"].to_numpy() > 0
    negative = scored & (compound <= rules.negative_compound)
    detractor = (level == "detractor") | negative
    # Words we cannot read (another language) count as neutral only when short ("Gut."); a longer text
    # in German may be glowing, so it is flagged for a human instead of being called lukewarm.
    short = analysed["words"].to_numpy() <= rules.short_words
    neutral = ~has_text | (~scored & short) | (scored & ((compound < rules.strong_compound) | faint))
    # Stars in the lukewarm band (3-4 by default) or an NPS 7-8 with neutral words; or top marks, faint words.
    band = np.where(use_nps, level == "passive",
                    (rating >= settings.lukewarm_stars_min) & (rating <= settings.lukewarm_stars_max))
    lukewarm = ~detractor & ((band & neutral) | ((level == "promoter") & scored & faint))
    nps_class = np.where(detractor & (level != ""), "detractor",
                         np.where(lukewarm, "passive", level))
    return pd.DataFrame({
        "feedback_from": np.where(use_nps, "nps", np.where(has_review, "review", "")),
        "feedback_level": level,
        "feedback_text": texts,
        "feedback_language": np.where(has_text, analysed["language"].to_numpy(), None),
        "feedback_scored": scored,
        "feedback_compound": compound,
        "feedback_faint": faint,
        "feedback_negative": negative,
        "is_lukewarm": lukewarm,
        "nps_class": np.where(nps_class == "", None, nps_class),
    }, index=frame.index)


def score_customers(frame: pd.DataFrame, model: ValueModel, settings: ScoringSettings) -> pd.DataFrame:
    """One scored row per customer: the advocate_scores columns plus what follow-ups need."""
    frame = frame.reset_index(drop=True)
    weights = settings.weights()
    fb = feedback(frame, settings)
    value = value_estimates(frame, model, settings)
    post_signal = _flag(frame, "post_signal")
    post_language = [sl if s else lang for s, sl, lang in
                     zip(post_signal, _text(frame, "post_signal_language"), _text(frame, "post_language"), strict=True)]
    posts = analyse_texts(_text(frame, "post_text"), settings.text_rules(), post_language,
                          _given_sentiments(post_signal, _num(frame, "post_signal_sentiment")))

    orders = np.nan_to_num(_num(frame, "orders_count"), nan=0.0)
    reviews = np.nan_to_num(_num(frame, "reviews_count"), nan=0.0)
    post_count = np.nan_to_num(_num(frame, "social_posts_count"), nan=0.0)
    reach = np.nan_to_num(_num(frame, "social_reach"), nan=0.0)
    referrals = np.nan_to_num(_num(frame, "referrals_count"), nan=0.0)
    complaints = np.nan_to_num(_num(frame, "complaints_count"), nan=0.0)
    returned = frame["last_order_returned"].fillna(False).astype(bool).to_numpy() \
        if "last_order_returned" in frame else np.zeros(len(frame), bool)
    nps = _num(frame, "nps_score")
    rating = _num(frame, "last_rating")

    # Satisfaction: the answer they gave, on 0..1; unknown counts a little below the middle.
    use_nps = (fb["feedback_from"] == "nps").to_numpy()
    satisfaction = np.where(use_nps, nps / 10.0, (rating - 1) / 4.0)
    satisfaction = np.where(np.isnan(satisfaction), 0.4, satisfaction)
    satisfaction = np.where(fb["is_lukewarm"], np.minimum(satisfaction, settings.lukewarm_satisfaction_cap),
                            satisfaction)
    # Sentiment: the latest English words we have (feedback first, else their post).
    compound = fb["feedback_compound"].to_numpy()
    compound = np.where(np.isnan(compound), posts["compound"].to_numpy(), compound)
    sentiment_part = np.where(np.isnan(compound), 0.5, (compound + 1) / 2)
    # Advocacy: what they did for us, saturating so that no single action buys the whole score.
    points = 0.5 * np.minimum(reviews, 6) + 1.0 * np.minimum(post_count, 6) + 0.5 * np.log10(1 + reach) \
        + 2.0 * referrals
    advocacy = 1 - np.exp(-points / 3.0)
    # Value: RFM quintiles and the chance they are still buying.
    rfm = (_num(frame, "rfm_r") + _num(frame, "rfm_f") + _num(frame, "rfm_m") - 3) / 12.0
    p_alive = value["p_alive"].to_numpy()
    value_part = np.where(orders > 0, 0.6 * np.nan_to_num(rfm, nan=0.0) + 0.4 * np.nan_to_num(p_alive, nan=0.0), 0.0)
    raw_score = 100 * (weights["satisfaction"] * satisfaction + weights["sentiment"] * sentiment_part
                       + weights["advocacy"] * advocacy + weights["value"] * value_part)
    score = np.clip(np.round(raw_score, 1), 0, 100)
    # the score without its P(alive) share: where time alone moves it (days_to_time_boundary)
    score_base = raw_score - 100 * weights["value"] * 0.4 * np.where(orders > 0, np.nan_to_num(p_alive, nan=0.0), 0.0)

    level = fb["feedback_level"].to_numpy()
    acted = (post_count > 0) | (referrals > 0)
    has_voice = (level != "") | acted | (reviews > 0)
    # Saying it in public counts too: a clearly negative post about us makes a detractor.
    post_negative = posts["scored"].to_numpy() & (posts["compound"].to_numpy() <= settings.negative_compound)
    detractor = (fb["nps_class"] == "detractor").to_numpy() | fb["feedback_negative"].to_numpy() \
        | (complaints > 0) | post_negative
    at_risk = ((orders >= settings.at_risk_min_orders) & (np.nan_to_num(p_alive, nan=1.0) < settings.at_risk_p_alive)) \
        | returned
    promoter = level == "promoter"
    segment = np.select(
        [detractor, fb["is_lukewarm"].to_numpy(), at_risk,
         (promoter | (level == "")) & acted & (score >= settings.champion_min_score),
         (promoter | acted) & (score >= settings.advocate_min_score),
         has_voice | ((orders >= 2) & (np.nan_to_num(p_alive, nan=0.0) >= 0.5))],
        ["detractor", "lukewarm", "at_risk", "champion", "advocate", "promising"], default="silent")

    last_text = fb["feedback_text"].to_numpy()
    scored_sentiment = np.where(np.isnan(compound), np.nan, np.round(compound, 4))
    result = pd.DataFrame({
        "customer_id": frame["customer_id"].astype(str),
        "advocate_score": score,
        "segment": segment,
        "is_lukewarm": fb["is_lukewarm"].to_numpy(),
        "nps_class": fb["nps_class"].to_numpy(),
        "last_rating": pd.array(np.where(np.isnan(rating), None, rating), dtype="Int16"),
        "sentiment": scored_sentiment,
        "reviews_count": reviews.astype("int64"),
        "social_posts_count": post_count.astype("int64"),
        "social_reach": reach.astype("int64"),
        "referrals_count": referrals.astype("int64"),
        "referral_revenue": np.round(np.nan_to_num(_num(frame, "referral_revenue"), nan=0.0), 2),
        "orders_count": orders.astype("int64"),
        "lifetime_value": np.round(np.nan_to_num(_num(frame, "lifetime_value"), nan=0.0), 2),
        "recency_days": pd.array(np.where(np.isnan(_num(frame, "recency_days")), None,
                                          np.floor(_num(frame, "recency_days"))), dtype="Int32"),
        "rfm_r": pd.array(np.where(np.isnan(_num(frame, "rfm_r")), None, _num(frame, "rfm_r")), dtype="Int16"),
        "rfm_f": pd.array(np.where(np.isnan(_num(frame, "rfm_f")), None, _num(frame, "rfm_f")), dtype="Int16"),
        "rfm_m": pd.array(np.where(np.isnan(_num(frame, "rfm_m")), None, _num(frame, "rfm_m")), dtype="Int16"),
        "expected_purchases_90d": value["expected_purchases_90d"].to_numpy(),
        "predicted_value_90d": value["predicted_value_90d"].to_numpy(),
    })
    facts = pd.DataFrame({
        "level": level, "source": fb["feedback_from"].to_numpy(), "text": last_text,
        "language": fb["feedback_language"].to_numpy(), "scored": fb["feedback_scored"].to_numpy(),
        "nps": nps, "rating": rating, "p_alive": p_alive, "returned": returned, "complaints": complaints,
        "referral_revenue": result["referral_revenue"].to_numpy(),
        "feedback_age": np.where(use_nps, _num(frame, "nps_age_days"), _num(frame, "review_age_days")),
        "recency": _num(frame, "recency_days"),
        "post_text": _text(frame, "post_text"), "post_negative": post_negative,
    })
    # Plain Python lists, not itertuples over pandas arrays: this loop runs once per customer.
    row_columns = {
        "segment": segment, "nps_class": fb["nps_class"].to_numpy(), "is_lukewarm": fb["is_lukewarm"].to_numpy(),
        "referrals_count": referrals.astype("int64"), "social_posts_count": post_count.astype("int64"),
        "social_reach": reach.astype("int64"), "reviews_count": reviews.astype("int64"),
        "orders_count": orders.astype("int64"), "lifetime_value": result["lifetime_value"].to_numpy(),
        "rfm_r": _num(frame, "rfm_r"), "rfm_f": _num(frame, "rfm_f"), "rfm_m": _num(frame, "rfm_m"),
    }
    # Most customers have nothing but orders to tell (silent, at risk or promising on orders alone): their
    # reasons come from one format string (the same words ``explain`` gives them); the two records and
    # ``explain`` are built only for the others (~3 µs a customer).
    plain = _silent_buyers(segment, level, post_negative, complaints, referrals, post_count, reviews, returned)
    best = (row_columns["rfm_r"] == 5) & (row_columns["rfm_f"] == 5) & (row_columns["rfm_m"] == 5)
    reasons = np.empty(len(frame), dtype=object)
    reasons[plain] = _silent_buyer_reasons(*(column[plain] for column in (
        row_columns["orders_count"], row_columns["lifetime_value"], best, segment, returned,
        facts["recency"].to_numpy(), p_alive)))
    rest = np.flatnonzero(~plain)
    if len(rest):
        rows = zip(*(row_columns[c][rest].tolist() for c in _ROW_FIELDS), strict=True)
        fact_rows = zip(*(facts[c].to_numpy()[rest].tolist() for c in _Facts._fields), strict=True)
        reasons[rest] = ["; ".join(explain(_Row._make(r), _Facts._make(f), settings))
                         for r, f in zip(rows, fact_rows, strict=True)]
    result["reasons"] = reasons.tolist()
    post_texts = facts["post_text"].tolist()
    result["ctx_feedback_text"] = [p if (t is None or t != t) and negative else t  # a critic's post speaks for them
                                   for t, p, negative in zip(last_text, post_texts, post_negative.tolist(), strict=True)]
    result["ctx_feedback_language"] = facts["language"].to_numpy()
    result["ctx_feedback_age_days"] = facts["feedback_age"].to_numpy()
    result["ctx_feedback_level"] = level
    result["ctx_feedback_from"] = facts["source"].to_numpy()
    result["ctx_nps_score"] = nps
    result["ctx_p_alive"] = p_alive
    result["ctx_score_base"] = score_base
    return result


_ROW_FIELDS = ("segment", "nps_class", "is_lukewarm", "referrals_count", "social_posts_count", "social_reach",
               "reviews_count", "orders_count", "lifetime_value", "rfm_r", "rfm_f", "rfm_m")
_Row = namedtuple("_Row", _ROW_FIELDS)
_Facts = namedtuple("_Facts", ("level", "source", "text", "language", "scored", "nps", "rating", "p_alive",
                               "returned", "complaints", "referral_revenue", "feedback_age", "recency",
                               "post_text", "post_negative"))


def _silent_buyers(segment, level, post_negative, complaints, referrals, post_count, reviews, returned) -> np.ndarray:
    """Customers whose reasons ``_silent_buyer_reasons`` gives: no feedback, post, complaint, referral or second
    review, so nothing but their orders to tell (silent, at risk or promising on orders alone)."""
    return ((level == "") & ~post_negative & (complaints == 0) & (referrals == 0) & (post_count == 0)
            & (reviews <= 1))


def _silent_buyer_reasons(orders: np.ndarray, lifetime_value: np.ndarray, best: np.ndarray, segment: np.ndarray,
                          returned: np.ndarray, recency: np.ndarray, p_alive: np.ndarray) -> list[str]:
    """``explain`` for customers with no feedback, post, complaint, referral or second review, column-wise:
    each distinct order count and amount is worded once, the at-risk line only where it is said."""
    bought = orders != 0
    order_words = each_distinct(orders, lambda n: "1 order" if n == 1 else f"{n} orders")
    spent = each_distinct(lifetime_value, lambda v: f"{v:,.0f}")
    lapsed = bought & (segment == "at_risk") & ~returned
    later = np.full(len(orders), None, dtype=object)
    later[lapsed] = [f"last order {int(days)} days ago; {'<1%' if p < 0.01 else f'{p:.0%}'} chance still buying"
                     for days, p in zip(recency[lapsed].tolist(), p_alive[lapsed].tolist(), strict=True)]
    later[bought & ~lapsed & best] = "among our best customers (RFM 5-5-5)"
    parts = (np.where(returned, "returned their last order", None),
             np.where(bought, order_words + ", " + spent + " spent", None),
             later,
             np.where(segment == "silent", np.where(bought, "no review, post or referral yet",
                                                    "no purchases or feedback yet"), None))
    return ["; ".join(filter(None, said)) for said in zip(*parts, strict=True)]


def _stars(value: float) -> str:
    return f"{int(value)}★"


def _said(text: str | None, limit: int = 60) -> str:
    return f"'{excerpt(text, limit)}'"


def _feedback_label(f) -> str:
    return f"NPS {int(f.nps)}" if f.source == "nps" else _stars(f.rating)


def explain(r, f, settings: ScoringSettings) -> list[str]:
    """Reasons in a marketer's words, most telling first."""
    reasons: list[str] = []
    has_feedback = f.level != ""
    words = f.text if isinstance(f.text, str) and f.text.strip() else None
    foreign = words is not None and not f.scored and f.language not in (None, "en")
    if has_feedback:
        label = _feedback_label(f)
        if foreign:
            name = LANGUAGE_NAMES.get(f.language, "another language" if f.language == "und" else f.language)
            reasons.append(f"{label}; wrote in {name} {_said(words)}, not scored by the sentiment model — "
                           f"read it")
        elif r.segment == "detractor" or r.nps_class == "detractor":
            reasons.append(f"{label}: {_said(words)}" if words else f"{label} and no words")
            reasons.append(f"may tell ~{settings.word_of_mouth_reach} people")
        elif r.is_lukewarm:
            reasons.append(f"{label} but only said {_said(words)}" if words else f"{label} and no words")
        elif words:
            reasons.append(f"{label}: {_said(words)}")
        else:
            reasons.append(label)
    if f.post_negative:
        reasons.append(f"posted negatively about us: {_said(f.post_text)}")
    if f.complaints > 0:
        reasons.append("complained about our email" if f.complaints == 1 else f"complained {int(f.complaints)} times")
    if r.referrals_count > 0:
        friends = "friend" if r.referrals_count == 1 else "friends"
        reasons.append(f"referred {r.referrals_count} {friends} ({f.referral_revenue:,.0f} in revenue)")
    if r.social_posts_count > 0:
        times = "once" if r.social_posts_count == 1 else f"{r.social_posts_count} times"
        reasons.append(f"posted about us {times} to {r.social_reach:,} followers")
    if r.reviews_count > 1:
        reasons.append(f"wrote {r.reviews_count} reviews")
    if f.returned:
        reasons.append("returned their last order")
    if r.orders_count > 0:
        orders = "1 order" if r.orders_count == 1 else f"{r.orders_count} orders"
        reasons.append(f"{orders}, {r.lifetime_value:,.0f} spent")
        if r.segment == "at_risk" and not f.returned:
            chance = "<1%" if f.p_alive < 0.01 else f"{f.p_alive:.0%}"
            reasons.append(f"last order {int(f.recency)} days ago; {chance} chance still buying")
        elif r.rfm_r == 5 and r.rfm_f == 5 and r.rfm_m == 5:
            reasons.append("among our best customers (RFM 5-5-5)")
    if r.segment == "silent":
        reasons.append("no review, post or referral yet" if r.orders_count else "no purchases or feedback yet")
    return reasons


# --- follow-ups --------------------------------------------------------------------------------------------

TOPICS: dict[str, tuple[tuple[str, ...], str]] = {
    "delivery": (("deliver", "shipping", "shipped", "arrive", "late", "courier", "package", "parcel", "slow"),
                 "How did the delivery go — did it arrive when and how you expected?"),
    "price": (("price", "expensive", "cost", "cheap", "money", "worth", "value"),
              "Did it feel worth what you paid? What would have made it worth more?"),
    "quality": (("broke", "broken", "quality", "flimsy", "cheaply", "defect", "stopped working", "leak",
                 "scratch", "faulty"),
                "What exactly went wrong with it, and when did you notice?"),
    "fit": (("size", "fit", "small", "large", "tight", "loose"),
            "How is the size and fit — what would you have needed instead?"),
    "service": (("support", "service", "customer service", "rude", "no answer", "waited", "refund", "return"),
                "How did our team handle it, and what should we have done differently?"),
    "instructions": (("instructions", "manual", "setup", "set up", "install", "confusing", "hard to use"),
                     "Which part of getting started was harder than it should be?"),
}


def topics_in(text: str | None) -> list[str]:
    if not text:
        return []
    lowered = text.lower()
    return [name for name, (keys, _) in TOPICS.items() if any(k in lowered for k in keys)]


def suggest_questions(reason: str, text: str | None, level: str, label: str, language: str | None,
                      recency_days: float | None) -> list[str]:
    """Probing questions (seed 004) fitted to what the customer said and why they need a call."""
    questions: list[str] = []
    quoted = excerpt(text, 60) if text else ""
    if reason == "lukewarm":
        if quoted:
            questions.append(f"You told us \"{quoted}\" — what would have made it great?")
        else:
            questions.append(f"You gave us {label} without a comment — what held it back from a 5?")
        questions.append("What nearly stopped you from recommending us to a friend?")
        questions.append("If you could change one thing about the product or the service, what would it be?")
    elif reason == "detractor":
        questions.append(f"You told us \"{quoted}\" — what happened, in your own words?" if quoted
                         else "What went wrong for you, in your own words?")
        questions.append("What can we do now to put it right for you?")
        questions.append("Have you told anyone else about it? We'd like to make it right with them too.")
    else:  # at_risk
        if recency_days is not None and not np.isnan(recency_days):
            questions.append(f"It has been {int(recency_days)} days since your last order — is there "
                             f"anything that kept you from ordering again?")
        questions.append("Did you find what you needed somewhere else? What did they do better?")
        questions.append("What would make it worth coming back for?")
    topic_questions = [TOPICS[t][1] for t in topics_in(text)]
    questions[1:1] = topic_questions[:2]
    if isinstance(language, str) and language not in ("en", "und"):
        name = LANGUAGE_NAMES.get(language, language)
        questions.insert(0, f"(They wrote in {name}: ask in {name} if you can.)")
    return questions[:5]


def follow_up_candidates(scored: pd.DataFrame, settings: ScoringSettings) -> pd.DataFrame:
    """One row per customer needing a call: reason, owner team, excerpt, questions and a priority weight.

    The weight is predicted value (at least lifetime value / 10, so new customers count) times a recency
    decay of the feedback (or the last order, for at-risk customers); finalize turns it into priorities 1-5
    over all partitions, 1 = call first.
    """
    need = scored[scored["segment"].isin(list(FOLLOW_UP_SEGMENTS))]
    if need.empty:
        return pd.DataFrame(columns=["customer_id", "reason", "owner_team", "review_excerpt",
                                     "suggested_questions", "priority_weight", "priority_log_weight"])
    age = need["ctx_feedback_age_days"].to_numpy(dtype="float64")
    age = np.where((need["segment"].to_numpy() == "at_risk") | np.isnan(age),
                   need["recency_days"].astype("float64").fillna(365).to_numpy(), age)
    value = np.maximum(need["predicted_value_90d"].astype("float64").fillna(0).to_numpy(),
                       need["lifetime_value"].astype("float64").to_numpy() / 10) + 1.0
    halvings = np.nan_to_num(age, nan=365.0) / settings.follow_up_recency_half_life_days
    weight = value * 0.5 ** halvings
    questions, excerpts = [], []
    columns = [need[c].astype("object").tolist() if str(need[c].dtype) in ("Int16", "Int32") else need[c].tolist()
               for c in ("segment", "ctx_feedback_level", "ctx_feedback_from", "ctx_nps_score", "last_rating",
                         "ctx_feedback_text", "ctx_feedback_language", "recency_days")]
    # The same facts give the same card: most candidates are at risk without words, whose questions differ
    # only by the whole days since their last order, so each distinct set of facts is worded once.
    cards: dict[tuple, tuple[str, str | None]] = {}
    for row in zip(*columns, strict=True):
        segment, level, source, nps, rating, text, language, recency = row
        key = (segment, level, source, None if nps != nps else nps, rating, text, language, recency)
        card = cards.get(key)
        if card is None:
            label = (f"NPS {int(nps)}" if source == "nps"
                     else f"{int(rating)}★" if not pd.isna(rating) else "a rating")
            text = text if isinstance(text, str) else None
            card = ("\n".join(suggest_questions(segment, text, level, label, language,
                                                None if pd.isna(recency) else float(recency))),
                    excerpt(text, 200) if text else None)
            cards[key] = card
        questions.append(card[0])
        excerpts.append(card[1])
    return pd.DataFrame({
        "customer_id": need["customer_id"].to_numpy(),
        "reason": need["segment"].to_numpy(),
        "owner_team": need["segment"].map(FOLLOW_UP_SEGMENTS).to_numpy(),
        "review_excerpt": excerpts,
        "suggested_questions": questions,
        "priority_weight": np.round(weight, 6),
        # log of the weight without rounding: never -inf for old feedback, and shifts uniformly with the date
        "priority_log_weight": np.log(value) - np.log(2) * halvings,
    })
