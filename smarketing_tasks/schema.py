"""The reference source schema (DESIGN.md section 4) as data: the columns every source adapter delivers."""

from __future__ import annotations

from typing import Final

ORDER_STATUSES: Final = ("placed", "shipped", "delivered", "returned", "cancelled")
EMAIL_EVENT_TYPES: Final = ("unsubscribe", "bounce", "complaint", "open", "click")

SOURCE_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "customers": (
        "customer_id", "email", "first_name", "phone", "country", "time_zone",
        "accepts_marketing", "accepts_sms", "created_at", "updated_at",
    ),
    "orders": (
        "order_id", "customer_id", "ordered_at", "status", "shipped_at", "delivered_at",
        "total_amount", "currency", "discount_code", "updated_at",
    ),
    # Items have no updated_at of their own: sources deliver the parent order's updated_at with them.
    "order_items": ("order_id", "line_no", "sku", "product_name", "quantity", "unit_price", "updated_at"),
    "reviews": (
        "review_id", "order_id", "customer_id", "sku", "rating", "title", "body",
        "consent_to_publish", "incentivized", "created_at",
    ),
    "social_posts": (
        "post_id", "platform", "author_handle", "customer_id", "referral_code", "body", "followers", "url", "posted_at",
    ),
    "email_events": ("event_id", "email", "event_type", "occurred_at"),
}

# The column that orders each dataset in time, used for incremental windows.
CHANGE_COLUMN: Final[dict[str, str]] = {
    "customers": "updated_at",
    "orders": "updated_at",
    "order_items": "updated_at",
    "reviews": "created_at",
    "social_posts": "posted_at",
    "email_events": "occurred_at",
}

KEY_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "customers": ("customer_id",),
    "orders": ("order_id",),
    "order_items": ("order_id", "line_no"),
    "reviews": ("review_id",),
    "social_posts": ("post_id",),
    "email_events": ("event_id",),
}

PURCHASE_DATASETS: Final = ("customers", "orders", "order_items")
