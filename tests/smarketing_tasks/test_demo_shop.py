"""The demo shop behaves like a shop: deterministic, delivery lags, lost deliveries, returns, repeat buyers."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from smarketing_tasks.demo_shop import ShopSpec, generate
from smarketing_tasks.schema import SOURCE_COLUMNS

END = datetime(2026, 11, 22, tzinfo=UTC)


@pytest.fixture(scope="module")
def shop():
    return generate(ShopSpec(customers=3_000, days=180, end=END, seed=42))


def test_same_seed_same_shop_other_seed_other_shop(shop):
    again = generate(ShopSpec(customers=3_000, days=180, end=END, seed=42))
    other = generate(ShopSpec(customers=3_000, days=180, end=END, seed=43))
    for name in shop:
        pd.testing.assert_frame_equal(shop[name], again[name])
    assert not shop["orders"]["total_amount"].equals(other["orders"]["total_amount"])


def test_orders_follow_the_post_purchase_timeline(shop):
    orders = shop["orders"]
    delivered = orders[orders["delivered_at"].notna()]
    lag_days = (delivered["delivered_at"] - delivered["shipped_at"]).dt.total_seconds() / 86_400
    assert lag_days.between(1, 11).all(), "delivery 1-10 days (and hours) after shipping"
    assert (orders["shipped_at"].dropna() >= orders.loc[orders["shipped_at"].notna(), "ordered_at"]).all()
    assert (orders[["ordered_at", "updated_at"]].max(axis=1) <= END).all()
    shares = orders["status"].value_counts(normalize=True)
    assert 0.01 < shares["returned"] < 0.1 and 0.01 < shares["cancelled"] < 0.06
    old_shipped = orders[(orders["status"] == "shipped") & (orders["shipped_at"] < pd.Timestamp(END) - pd.Timedelta(days=12))]
    assert len(old_shipped) > 0, "some orders never get a delivery event"
    assert orders["discount_code"].notna().mean() == pytest.approx(0.1, abs=0.03)


def test_customers_have_locale_consent_and_repeat_purchases(shop):
    customers, orders = shop["customers"], shop["orders"]
    assert customers["time_zone"].nunique() >= 8
    assert 0.6 < customers["accepts_marketing"].mean() < 0.85
    assert 0.25 < customers["accepts_sms"].mean() < 0.45
    per_customer = orders.groupby("customer_id").size()
    assert (per_customer > 1).mean() > 0.2, "repeat buyers"
    assert customers["email"].is_unique


def test_clean_demo_shop_passes_ingest_validation(check_rows, shop):
    for dataset in ("customers", "orders"):
        text = shop[dataset][list(SOURCE_COLUMNS[dataset])].astype("string")
        text = text.apply(lambda col: col.str.replace(" ", "T", n=1) if col.name.endswith("_at") else col)
        result = check_rows(dataset, text.astype(object).where(text.notna(), None), END)
        assert result.rejects.empty, result.rejects.head().to_dict("records")


def test_bad_row_share_breaks_rows_of_every_kind():
    broken = generate(ShopSpec(customers=500, days=60, end=END, seed=1, bad_row_share=0.02))
    orders = broken["orders"]
    assert (orders["status"] == "lost_in_space").any()
    assert (orders["total_amount"].astype(float) < 0).any()
    assert orders["customer_id"].isna().any()
    assert (broken["customers"]["email"] == "not-an-email").any()


def test_generated_review_and_post_texts_are_mostly_distinct_but_short_answers_stay_word_for_word():
    """The bench times the text analysis, which runs once per distinct text: texts that repeated (20 bodies for
    100,000 reviews) timed a cache. Short answers stay as customers write them, so "Good." is still lukewarm."""
    from smarketing_tasks.demo_shop import REVIEW_TEXTS, generate_responses

    spec = ShopSpec(customers=20_000, days=365, end=datetime(2026, 11, 22, tzinfo=UTC), seed=5)
    responses = generate_responses(generate(spec), spec)
    reviews, posts = responses["reviews"], responses["social_posts"]
    short = reviews["body"].str.len() < 16
    assert reviews.loc[~short, "body"].nunique() > 0.8 * (~short).sum()  # 15% are a base sentence alone
    assert posts["body"].nunique() > 0.7 * len(posts)
    assert set(reviews.loc[short, "body"]) <= {t for texts in REVIEW_TEXTS.values() for t in texts}
    assert (reviews["body"] == "Good.").sum() > 0.05 * len(reviews)
    for rating, texts in REVIEW_TEXTS.items():  # each text starts with a sentence of its own rating
        bodies = reviews.loc[reviews["rating"] == rating, "body"]
        assert bodies.map(lambda b, texts=texts: any(b.startswith(t) for t in texts)).all()
    again = generate_responses(generate(spec), spec)["reviews"]["body"]
    assert again.equals(reviews["body"]), "same seed, same texts"
