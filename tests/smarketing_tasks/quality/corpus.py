"""The bad-input corpus: one good row per dataset, and the ways real feeds break it.

Each ``Case`` names the suite, how a good row is damaged, the expectation (``rule``) that must catch it and
the reason people will read. ``fatal`` cases break a key or a rule that stops the run whatever the share.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

T0 = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Case:
    suite: str
    name: str
    change: dict[str, Any]
    rule: str
    reason: str  # the start of the quarantine reason
    fatal: bool = False  # the gate must fail (and record the row) instead of moving it
    extra_rows: int = 0  # fatal duplicates: the damaged row is added this many more times

    @property
    def key_value(self) -> str:
        return f"bad-{self.name}"


def customer(n: int) -> dict[str, Any]:
    return {"customer_id": f"c{n}", "country": "DE", "time_zone": "Europe/Berlin", "accepts_marketing": n % 3 == 0,
            "accepts_sms": False, "created_at": T0 - timedelta(days=30), "updated_at": T0 + timedelta(minutes=n),
            "email": f"person{n}@example.com", "phone": "+49 30 1234567"}


def order(n: int) -> dict[str, Any]:
    return {"order_id": f"o{n}", "customer_id": f"c{n % 50}", "ordered_at": T0 + timedelta(minutes=n),
            "status": "delivered", "shipped_at": T0 + timedelta(days=1, minutes=n),
            "delivered_at": T0 + timedelta(days=3, minutes=n), "total_amount": 10.0 + n % 90, "currency": "USD",
            "discount_code": None, "updated_at": T0 + timedelta(days=3, minutes=n), "source": "test"}


def order_item(n: int) -> dict[str, Any]:
    return {"order_id": f"o{n}", "line_no": 1, "sku": f"SKU-{n % 7:03d}", "product_name": "Tee", "quantity": 1 + n % 3,
            "unit_price": 24.0}


def review(n: int) -> dict[str, Any]:
    return {"review_id": f"r{n}", "order_id": f"o{n}", "customer_id": f"c{n % 50}", "sku": "SKU-001",
            "rating": 1 + n % 5, "title": "Nice", "body": "Fits well and arrived quickly.",
            "consent_to_publish": n % 2 == 0, "incentivized": False, "language": "en",
            "created_at": T0 + timedelta(minutes=n), "source": "test", "message_id": None, "attribution": "window"}


def social_post(n: int) -> dict[str, Any]:
    return {"post_id": f"p{n}", "platform": "instagram", "author_handle": f"@fan{n}", "customer_id": f"c{n % 50}",
            "referral_code": "REF-ABCDEFGH", "body": "Love it", "followers": 100 + n,
            "url": f"https://instagram.com/p/{n}", "posted_at": T0 + timedelta(minutes=n), "source": "test",
            "message_id": None, "attribution": "none"}


def email_event(n: int) -> dict[str, Any]:
    kind = ("open", "click", "open", "bounce", "unsubscribe")[n % 5]
    return {"event_id": f"e{n}", "email": f"person{n}@example.com", "customer_id": f"c{n % 50}",
            "event_type": kind, "bounce_type": "soft" if kind == "bounce" else None, "channel": "email",
            "message_id": None, "occurred_at": T0 + timedelta(minutes=n), "source": "test"}


def outreach_message(n: int) -> dict[str, Any]:
    key = f"c{n}:o{n}:review_request:1"
    return {"message_id": hashlib.sha256(key.encode()).hexdigest()[:32], "idempotency_key": key,
            "customer_id": f"c{n}", "order_id": f"o{n}", "kind": "review_request", "step": 1, "channel": "email",
            "template_variant": "a", "consent_basis": "marketing_consent", "status": "sent", "status_reason": None,
            "due_at": T0, "expires_at": T0 + timedelta(days=14), "planned_at": T0 - timedelta(hours=1),
            "sent_at": T0 + timedelta(minutes=n % 60), "attempts": 1}


def advocate_score(n: int) -> dict[str, Any]:
    segment = ("champion", "advocate", "promising", "silent", "at_risk")[n % 5]
    return {"customer_id": f"c{n}", "score_date": date(2026, 6, 1), "advocate_score": float(n % 100),
            "segment": segment, "is_lukewarm": False, "nps_class": "promoter", "last_rating": 5, "sentiment": 0.5,
            "reviews_count": 1, "social_posts_count": 0, "social_reach": 0, "referrals_count": 0,
            "referral_revenue": 0.0, "orders_count": 2, "lifetime_value": 80.0, "recency_days": 10, "rfm_r": 3,
            "rfm_f": 2, "rfm_m": 4, "reasons": "reviewed with 5 stars", "scored_at": T0}


GOOD_ROWS = {
    "customers": customer, "orders": order, "order_items": order_item, "reviews": review,
    "social_posts": social_post, "email_events": email_event, "outreach_messages": outreach_message,
    "advocate_scores": advocate_score,
}
KEYS = {"customers": "customer_id", "orders": "order_id", "order_items": "order_id", "reviews": "review_id",
        "social_posts": "post_id", "email_events": "event_id", "outreach_messages": "message_id",
        "advocate_scores": "customer_id"}
# Enough good rows that the non-fatal cases of a suite stay under its threshold (outbox 1%, scores 2%).
GOOD_COUNT = {"outreach_messages": 1200, "advocate_scores": 700}

PAIR = "expect_column_pair_values_a_to_be_greater_than_b"
BETWEEN = "expect_column_values_to_be_between"
IN_SET = "expect_column_values_to_be_in_set"
NOT_NULL = "expect_column_values_to_not_be_null"
REGEX = "expect_column_values_to_match_regex"


def _t(days: float) -> datetime:
    return T0 + timedelta(days=days)


CASES: list[Case] = [
    # customers
    Case("customers", "malformed_email", {"email": "not-an-email"}, f"{REGEX}(email)", "email is not a well-formed address"),
    Case("customers", "email_with_space", {"email": "ann smith@example.com"}, f"{REGEX}(email)", "email is not a well-formed address"),
    Case("customers", "email_without_domain", {"email": "ann@localhost"}, f"{REGEX}(email)", "email is not a well-formed address"),
    Case("customers", "phone_as_words", {"phone": "call me maybe"}, f"{REGEX}(phone)", "phone is not a phone number"),
    Case("customers", "country_spelled_out", {"country": "Germany"}, f"{REGEX}(country)", "country is not a 2-letter"),
    Case("customers", "offset_instead_of_zone", {"time_zone": "+02:00"}, f"{REGEX}(time_zone)", "time_zone is not an IANA zone"),
    Case("customers", "consent_missing", {"accepts_marketing": None}, f"{NOT_NULL}(accepts_marketing)", "accepts_marketing is missing"),
    Case("customers", "created_after_updated", {"created_at": _t(400)}, f"{PAIR}(updated_at, created_at)", "created_at is later than updated_at"),
    Case("customers", "no_updated_at", {"updated_at": None}, f"{NOT_NULL}(updated_at)", "updated_at is missing"),
    Case("customers", "duplicate_customer", {}, "expect_column_values_to_be_unique(customer_id)", "customer_id appears more than once", fatal=True, extra_rows=1),
    Case("customers", "null_customer_id", {"customer_id": None}, f"{NOT_NULL}(customer_id)", "customer_id is missing", fatal=True),
    # orders
    Case("orders", "unknown_status", {"status": "lost_in_space"}, f"{IN_SET}(status)", "status is not one of"),
    Case("orders", "negative_total", {"total_amount": -5.0}, f"{BETWEEN}(total_amount)", "total_amount is negative"),
    Case("orders", "lowercase_currency", {"currency": "usd"}, f"{REGEX}(currency)", "currency is not a 3-letter ISO 4217 code"),
    Case("orders", "unknown_currency", {"currency": "XYZ"}, f"{IN_SET}(currency)", "currency is not one the shop sells in"),
    Case("orders", "shipped_before_ordered", {"shipped_at": _t(-1)}, f"{PAIR}(shipped_at, ordered_at)", "shipped_at is earlier than ordered_at"),
    Case("orders", "delivered_before_shipped", {"delivered_at": _t(2)}, f"{PAIR}(delivered_at, shipped_at)", "delivered_at is earlier than shipped_at"),
    Case("orders", "delivered_without_time", {"delivered_at": None}, f"{NOT_NULL}(delivered_at)", "status is delivered but delivered_at is missing"),
    Case("orders", "updated_before_ordered", {"updated_at": _t(-2), "shipped_at": None, "delivered_at": None, "status": "placed"}, f"{PAIR}(updated_at, ordered_at)", "updated_at is earlier than ordered_at"),
    Case("orders", "order_without_customer", {"customer_id": None}, f"{NOT_NULL}(customer_id)", "customer_id is missing"),
    Case("orders", "order_without_time", {"ordered_at": None}, f"{NOT_NULL}(ordered_at)", "ordered_at is missing"),
    Case("orders", "duplicate_order", {}, "expect_column_values_to_be_unique(order_id)", "order_id appears more than once", fatal=True, extra_rows=1),
    Case("orders", "null_order_id", {"order_id": None}, f"{NOT_NULL}(order_id)", "order_id is missing", fatal=True),
    # order items
    Case("order_items", "zero_quantity", {"quantity": 0}, f"{BETWEEN}(quantity)", "quantity is not between 1 and 10,000"),
    Case("order_items", "absurd_quantity", {"quantity": 50000}, f"{BETWEEN}(quantity)", "quantity is not between 1 and 10,000"),
    Case("order_items", "negative_unit_price", {"unit_price": -1.5}, f"{BETWEEN}(unit_price)", "unit_price is negative"),
    Case("order_items", "line_zero", {"line_no": 0}, f"{BETWEEN}(line_no)", "line_no is below 1"),
    Case("order_items", "missing_sku", {"sku": None}, f"{NOT_NULL}(sku)", "sku is missing"),
    Case("order_items", "sku_with_spaces", {"sku": "SKU-001 "}, f"{REGEX}(sku)", "sku has leading or trailing spaces"),
    Case("order_items", "duplicate_line", {}, "expect_compound_columns_to_be_unique(order_id, line_no)", "the same order_id/line_no appears more than once", fatal=True, extra_rows=1),
    # reviews
    Case("reviews", "zero_stars", {"rating": 0}, f"{BETWEEN}(rating)", "rating is not between 1 and 5 stars"),
    Case("reviews", "six_stars", {"rating": 6}, f"{BETWEEN}(rating)", "rating is not between 1 and 5 stars"),
    Case("reviews", "no_rating", {"rating": None}, f"{NOT_NULL}(rating)", "rating is missing"),
    Case("reviews", "consent_unknown", {"consent_to_publish": None}, f"{NOT_NULL}(consent_to_publish)", "consent_to_publish is missing"),
    Case("reviews", "incentive_unknown", {"incentivized": None}, f"{NOT_NULL}(incentivized)", "incentivized is missing"),
    Case("reviews", "made_up_attribution", {"attribution": "guess"}, f"{IN_SET}(attribution)", "attribution is not token|window|none"),
    Case("reviews", "novel_length_body", {"body": "x" * 25_000}, "expect_column_value_lengths_to_be_between(body)", "body is longer than 20,000 characters"),
    Case("reviews", "review_without_time", {"created_at": None}, f"{NOT_NULL}(created_at)", "created_at is missing"),
    Case("reviews", "duplicate_review", {}, "expect_column_values_to_be_unique(review_id)", "review_id appears more than once", fatal=True, extra_rows=1),
    # social posts
    Case("social_posts", "negative_followers", {"followers": -10}, f"{BETWEEN}(followers)", "followers is negative or above any real account"),
    Case("social_posts", "not_a_link", {"url": "instagram post 12"}, f"{REGEX}(url)", "url is not an http(s) link"),
    Case("social_posts", "short_referral_code", {"referral_code": "REF-123"}, f"{REGEX}(referral_code)", "referral_code is not REF- and 8 base32"),
    Case("social_posts", "platform_display_name", {"platform": "Insta Gram"}, f"{REGEX}(platform)", "platform is not a lower-case platform name"),
    Case("social_posts", "post_without_time", {"posted_at": None}, f"{NOT_NULL}(posted_at)", "posted_at is missing"),
    Case("social_posts", "post_attribution_typo", {"attribution": "tokn"}, f"{IN_SET}(attribution)", "attribution is not token|window|none"),
    # email events
    Case("email_events", "unknown_event_type", {"event_type": "delivered"}, f"{IN_SET}(event_type)", "event_type is not one of"),
    Case("email_events", "unknown_bounce_type", {"event_type": "bounce", "bounce_type": "medium"}, f"{IN_SET}(bounce_type)", "bounce_type is not hard|soft"),
    Case("email_events", "bounce_type_on_click", {"event_type": "click", "bounce_type": "hard"}, "expect_column_values_to_be_null(bounce_type)", "bounce_type is set on an event that is not a bounce"),
    Case("email_events", "event_bad_email", {"email": "bob@@example.com"}, f"{REGEX}(email)", "email is not a well-formed address"),
    Case("email_events", "carrier_pigeon", {"channel": "pigeon"}, f"{IN_SET}(channel)", "channel is not email|sms|webhook"),
    Case("email_events", "event_without_time", {"occurred_at": None}, f"{NOT_NULL}(occurred_at)", "occurred_at is missing"),
    # outbox (recorded, never deleted: the row is the send's idempotency record)
    Case("outreach_messages", "unknown_kind", {"kind": "newsletter"}, f"{IN_SET}(kind)", "kind is not one of"),
    Case("outreach_messages", "fax_channel", {"channel": "fax"}, f"{IN_SET}(channel)", "channel is not one of email|sms|webhook"),
    Case("outreach_messages", "unknown_message_status", {"status": "lost"}, f"{IN_SET}(status)", "status is not one of"),
    Case("outreach_messages", "expires_before_due", {"expires_at": T0 - timedelta(days=1)}, f"{PAIR}(expires_at, due_at)", "expires_at is earlier than due_at"),
    Case("outreach_messages", "sent_without_time", {"sent_at": None}, f"{NOT_NULL}(sent_at)", "status is sent but sent_at is missing"),
    Case("outreach_messages", "malformed_idempotency_key", {"idempotency_key": "bad-key"}, f"{REGEX}(idempotency_key)", "idempotency_key is not customer:order:kind:step"),
    Case("outreach_messages", "implied_consent", {"consent_basis": "implied"}, f"{IN_SET}(consent_basis)", "consent_basis is not marketing_consent"),
    Case("outreach_messages", "sent_without_lawful_basis", {"consent_basis": None}, f"{NOT_NULL}(consent_basis)", "a sent message has no recorded lawful basis", fatal=True),
    Case("outreach_messages", "message_id_not_hex", {"message_id": "bad-message-id-not-hex"}, f"{REGEX}(message_id)", "message_id is not 32 hex characters", fatal=True),
    # advocate scores
    Case("advocate_scores", "score_above_100", {"advocate_score": 120.0}, f"{BETWEEN}(advocate_score)", "advocate_score is not between 0 and 100"),
    Case("advocate_scores", "negative_score", {"advocate_score": -3.0}, f"{BETWEEN}(advocate_score)", "advocate_score is not between 0 and 100"),
    Case("advocate_scores", "unknown_segment", {"segment": "superfan"}, f"{IN_SET}(segment)", "segment is not one of champion"),
    Case("advocate_scores", "unknown_nps_class", {"nps_class": "fan"}, f"{IN_SET}(nps_class)", "nps_class is not promoter|passive|detractor"),
    Case("advocate_scores", "seven_star_rating", {"last_rating": 7}, f"{BETWEEN}(last_rating)", "last_rating is not between 1 and 5 stars"),
    Case("advocate_scores", "sentiment_out_of_range", {"sentiment": 1.5}, f"{BETWEEN}(sentiment)", "sentiment is not between -1 and 1"),
    Case("advocate_scores", "negative_orders", {"orders_count": -1}, f"{BETWEEN}(orders_count)", "orders_count is negative"),
    Case("advocate_scores", "rfm_out_of_quintiles", {"rfm_r": 6}, f"{BETWEEN}(rfm_r)", "rfm_r is not an RFM quintile 1-5"),
    Case("advocate_scores", "lukewarm_segment_not_flagged", {"segment": "lukewarm", "is_lukewarm": False}, f"{IN_SET}(is_lukewarm)", "segment is lukewarm but is_lukewarm is false"),
    Case("advocate_scores", "scored_twice_a_day", {}, "expect_compound_columns_to_be_unique(customer_id, score_date)", "the same customer is scored twice on one date", fatal=True, extra_rows=1),
]


def damaged(case: Case) -> dict[str, Any]:
    row = GOOD_ROWS[case.suite](10_000)
    row[KEYS[case.suite]] = case.key_value
    if case.suite == "outreach_messages" and "message_id" not in case.change:
        row["message_id"] = hashlib.sha256(case.name.encode()).hexdigest()[:32]  # a valid id of its own
    if case.suite == "outreach_messages":
        row["idempotency_key"] = f"c-{case.name}:o1:review_request:1"
    row.update(case.change)
    return row


def record_key(case: Case, key_columns: tuple[str, ...]) -> str | None:
    row = damaged(case)
    parts = [row.get(k) for k in key_columns]
    return None if all(p is None for p in parts) else "/".join("" if p is None else str(p) for p in parts)


def batch_for(suite: str, cases: list[Case]) -> list[dict[str, Any]]:
    """Good rows of ``suite`` plus one damaged row per case (and the copies a duplicate case needs)."""
    rows = [GOOD_ROWS[suite](n) for n in range(GOOD_COUNT.get(suite, 300))]
    for case in cases:
        row = damaged(case)
        rows.extend([row] + [dict(row) for _ in range(case.extra_rows)])
    return rows
