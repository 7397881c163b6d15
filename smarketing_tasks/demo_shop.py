"""A demo shop with realistic post-purchase behaviour, deterministic for a seed.

Customers in several countries and time zones with consent flags; first purchases spread over the period
and repeat buyers; orders that ship after 0-3 days and arrive 1-10 days later, some never reporting a
delivery, some returned or cancelled; a few discount codes; and, optionally, a small share of broken rows
of the kinds real shop systems produce, so the quarantine has something to show.
Vectorised with NumPy so that a million orders take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import sqlalchemy as sa

COUNTRIES = (
    # country, time zone, phone prefix, currency, share
    ("US", "America/New_York", "+1", "USD", 0.22),
    ("US", "America/Chicago", "+1", "USD", 0.10),
    ("US", "America/Los_Angeles", "+1", "USD", 0.12),
    ("GB", "Europe/London", "+44", "GBP", 0.14),
    ("DE", "Europe/Berlin", "+49", "EUR", 0.12),
    ("FR", "Europe/Paris", "+33", "EUR", 0.08),
    ("CA", "America/Toronto", "+1", "CAD", 0.07),
    ("AU", "Australia/Sydney", "+61", "AUD", 0.07),
    ("JP", "Asia/Tokyo", "+81", "JPY", 0.04),
    ("IN", "Asia/Kolkata", "+91", "INR", 0.04),
)

PRODUCTS = (
    ("SKU-TEE-001", "Organic cotton tee", 24.00), ("SKU-TEE-002", "Heavyweight pocket tee", 32.00),
    ("SKU-HOO-001", "Recycled fleece hoodie", 68.00), ("SKU-HOO-002", "Zip hoodie", 74.00),
    ("SKU-JKT-001", "Packable rain jacket", 129.00), ("SKU-JKT-002", "Quilted liner jacket", 149.00),
    ("SKU-PNT-001", "Everyday chino", 79.00), ("SKU-PNT-002", "Trail pant", 89.00),
    ("SKU-SHO-001", "Canvas sneaker", 65.00), ("SKU-SHO-002", "Trail runner", 139.00),
    ("SKU-SOC-001", "Merino socks (3 pairs)", 29.00), ("SKU-SOC-002", "Ankle socks (5 pairs)", 19.00),
    ("SKU-BAG-001", "Roll-top backpack", 110.00), ("SKU-BAG-002", "Canvas tote", 28.00),
    ("SKU-CAP-001", "Six-panel cap", 26.00), ("SKU-BEA-001", "Rib beanie", 22.00),
    ("SKU-BTL-001", "Insulated bottle", 35.00), ("SKU-MUG-001", "Enamel camp mug", 18.00),
    ("SKU-GLV-001", "Touchscreen gloves", 31.00), ("SKU-SCF-001", "Wool scarf", 45.00),
)
# Catalogue prices are in USD; other currencies get a rounded local price.
PRICE_FACTOR = {"USD": 1.0, "GBP": 0.8, "EUR": 0.9, "CAD": 1.4, "AUD": 1.5, "JPY": 150.0, "INR": 85.0}
DISCOUNT_CODES = ("WELCOME10", "SPRING15", "FRIENDS20", "VIP25")


@dataclass(frozen=True)
class ShopSpec:
    customers: int = 2_000
    days: int = 120
    end: datetime = datetime(2026, 11, 22, tzinfo=UTC)
    seed: int = 7
    repeat_rate: float = 0.45  # chance a customer orders again after each order
    bad_row_share: float = 0.0  # share of customers/orders deliberately broken


def generate(spec: ShopSpec) -> dict[str, pd.DataFrame]:
    """Build customers, orders and order items as typed DataFrames in the reference columns."""
    import numpy as np
    import pandas as pd

    if spec.end.tzinfo is None:
        raise ValueError("ShopSpec.end must be timezone-aware")
    rng = np.random.default_rng(spec.seed)
    end = pd.Timestamp(spec.end)
    start = end - pd.Timedelta(days=spec.days)
    n = spec.customers

    customers = _customers(rng, n, start, end)
    orders = _orders(rng, customers, spec, start, end)
    items = _items(rng, orders)
    orders["total_amount"] = (
        items.assign(line=items["quantity"] * items["unit_price"]).groupby("order_id")["line"].sum()
        .reindex(orders["order_id"]).to_numpy()
    )
    discounted = orders["discount_code"].notna().to_numpy()
    orders.loc[discounted, "total_amount"] = (orders.loc[discounted, "total_amount"] * 0.85).round(2)
    tables = {"customers": customers, "orders": orders, "order_items": items}
    if spec.bad_row_share > 0:
        tables = break_some_rows(tables, spec.bad_row_share, rng)
    return tables


def _customers(rng: np.random.Generator, n: int, start, end) -> pd.DataFrame:
    import numpy as np
    import pandas as pd
    from faker import Faker

    fake = Faker(["en_US", "en_GB", "de_DE", "fr_FR"])
    fake.seed_instance(int(rng.integers(0, 2**31)))
    first_names = np.array([fake.first_name() for _ in range(400)])
    last_names = np.array(["".join(ch for ch in fake.last_name().lower() if ch.isascii() and ch.isalnum()) or "x"
                           for _ in range(400)])
    shares = np.array([c[4] for c in COUNTRIES])
    region = rng.choice(len(COUNTRIES), size=n, p=shares / shares.sum())
    ids = np.arange(1, n + 1)
    first = first_names[rng.integers(0, len(first_names), n)]
    last = last_names[rng.integers(0, len(last_names), n)]
    import unicodedata

    ascii_first = np.array([
        "".join(ch for ch in unicodedata.normalize("NFKD", f).encode("ascii", "ignore").decode().lower() if ch.isalnum())
        for f in first
    ])
    emails = pd.Series(ascii_first).str.cat(pd.Series(last), sep=".") + pd.Series(ids.astype(str)) + "@example.com"
    prefixes = np.array([c[2] for c in COUNTRIES])[region]
    phones = pd.Series(prefixes) + " " + pd.Series(rng.integers(200_000_000, 999_999_999, n).astype(str))
    created = start + pd.to_timedelta(rng.uniform(0, (end - start).total_seconds(), n), unit="s")
    created = created.floor("s")
    return pd.DataFrame({
        "customer_id": pd.Series(ids).map("C{:07d}".format),
        "email": emails,
        "first_name": first,
        "phone": phones,
        "country": np.array([c[0] for c in COUNTRIES])[region],
        "time_zone": np.array([c[1] for c in COUNTRIES])[region],
        "accepts_marketing": rng.random(n) < 0.72,
        "accepts_sms": rng.random(n) < 0.35,
        "created_at": created,
        "updated_at": created,
        "_currency": np.array([c[3] for c in COUNTRIES])[region],
    })


def _orders(rng: np.random.Generator, customers: pd.DataFrame, spec: ShopSpec, start, end) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    n = len(customers)
    # Orders per customer: 1 + geometric repeats, so most buy once and a loyal tail buys often.
    counts = 1 + rng.geometric(1 - spec.repeat_rate, n) - 1
    owner = np.repeat(np.arange(n), counts)
    first_at = customers["created_at"].to_numpy()[owner]
    gaps_days = rng.exponential(25, len(owner))
    order_rank = np.concatenate([np.arange(c) for c in counts]) if n else np.array([], dtype=int)
    offsets = pd.Series(gaps_days).groupby(owner).cumsum().to_numpy() - gaps_days[0:0].sum()
    offsets = np.where(order_rank == 0, 0.0, offsets)
    ordered = pd.DatetimeIndex(first_at) + pd.to_timedelta(offsets, unit="D")
    keep = ordered <= end
    owner, ordered = owner[keep], ordered[keep]
    m = len(owner)
    ordered = ordered.floor("s")

    ship_after = pd.to_timedelta(rng.uniform(0.1, 3.0, m), unit="D")
    deliver_after = pd.to_timedelta(rng.integers(1, 11, m) + rng.uniform(0, 0.9, m), unit="D")
    return_after = pd.to_timedelta(rng.uniform(3, 25, m), unit="D")
    cancelled = rng.random(m) < 0.03
    lost_delivery_event = rng.random(m) < 0.06
    returned = rng.random(m) < 0.05

    shipped = (ordered + ship_after).floor("s")
    delivered = (shipped + deliver_after).floor("s")
    returned_at = (delivered + return_after).floor("s")

    status = np.full(m, "placed", dtype=object)
    shipped_ok = (~cancelled) & (shipped <= end)
    delivered_ok = shipped_ok & (~lost_delivery_event) & (delivered <= end)
    returned_ok = delivered_ok & returned & (returned_at <= end)
    status[shipped_ok] = "shipped"
    status[delivered_ok] = "delivered"
    status[returned_ok] = "returned"
    cancel_at = (ordered + pd.to_timedelta(rng.uniform(0.01, 0.5, m), unit="D")).floor("s")
    cancelled_ok = cancelled & (cancel_at <= end)
    status[cancelled_ok] = "cancelled"

    updated = pd.Series(ordered)
    updated = updated.where(~shipped_ok, pd.Series(shipped))
    updated = updated.where(~delivered_ok, pd.Series(delivered))
    updated = updated.where(~returned_ok, pd.Series(returned_at))
    updated = updated.where(~cancelled_ok, pd.Series(cancel_at))

    codes = np.where(rng.random(m) < 0.1, rng.choice(np.array(DISCOUNT_CODES), m), None)
    frame = pd.DataFrame({
        "order_id": "",
        "customer_id": customers["customer_id"].to_numpy()[owner],
        "ordered_at": ordered,
        "status": status,
        "shipped_at": pd.Series(shipped).where(shipped_ok),
        "delivered_at": pd.Series(delivered).where(delivered_ok),
        "total_amount": 0.0,
        "currency": customers["_currency"].to_numpy()[owner],
        "discount_code": codes,
        "updated_at": updated,
    })
    frame = frame.sort_values("ordered_at", kind="stable").reset_index(drop=True)
    frame["order_id"] = [f"O{i:08d}" for i in range(1, m + 1)]
    return frame


def _items(rng: np.random.Generator, orders: pd.DataFrame) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    m = len(orders)
    lines = rng.choice([1, 1, 1, 2, 2, 3, 4], m)
    order_index = np.repeat(np.arange(m), lines)
    line_no = np.concatenate([np.arange(1, k + 1) for k in lines]) if m else np.array([], dtype=int)
    product = rng.integers(0, len(PRODUCTS), len(order_index))
    return pd.DataFrame({
        "order_id": orders["order_id"].to_numpy()[order_index],
        "line_no": line_no,
        "sku": np.array([p[0] for p in PRODUCTS])[product],
        "product_name": np.array([p[1] for p in PRODUCTS])[product],
        "quantity": rng.choice([1, 1, 1, 1, 2, 3], len(order_index)),
        "unit_price": np.array([p[2] for p in PRODUCTS])[product]
        * orders["currency"].map(PRICE_FACTOR).fillna(1.0).to_numpy()[order_index],
    })


def break_some_rows(tables: dict[str, pd.DataFrame], share: float, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """Damage a share of rows the way real sources do (each kind once at least), to exercise the quarantine."""
    import pandas as pd

    customers = tables["customers"].copy()
    orders = tables["orders"].copy()
    customers["email"] = customers["email"].astype(object)
    for column in ("status", "currency", "customer_id"):
        orders[column] = orders[column].astype(object)
    for column in ("total_amount",):
        orders[column] = orders[column].astype(object)
    k_customers = max(1, int(len(customers) * share))
    k_orders = max(4, int(len(orders) * share))
    picks = rng.choice(len(customers), size=min(k_customers, len(customers)), replace=False)
    customers.loc[customers.index[picks], "email"] = "not-an-email"
    order_picks = rng.choice(len(orders), size=min(k_orders, len(orders)), replace=False)
    kinds = ("negative_total", "unknown_status", "missing_customer", "delivered_before_shipped")
    for number, index in enumerate(orders.index[order_picks]):
        kind = kinds[number % len(kinds)]
        if kind == "negative_total":
            orders.at[index, "total_amount"] = -abs(float(orders.at[index, "total_amount"]) or 1.0)
        elif kind == "unknown_status":
            orders.at[index, "status"] = "lost_in_space"
        elif kind == "missing_customer":
            orders.at[index, "customer_id"] = None
        else:
            orders.at[index, "delivered_at"] = orders.at[index, "ordered_at"] - pd.Timedelta(days=2)
            orders.at[index, "status"] = "delivered"
    return {**tables, "customers": customers, "orders": orders}


def write_shop(engine: sa.Engine, tables: dict[str, pd.DataFrame], replace: bool = True) -> dict[str, int]:
    """Create the reference schema in the shop database and COPY the tables in."""
    from smarketing_tasks.db import copy_frame
    from smarketing_tasks.paths import SQL_DIR
    from smarketing_tasks.schema import SOURCE_COLUMNS

    counts: dict[str, int] = {}
    with engine.begin() as conn:
        if replace:
            conn.exec_driver_sql("drop schema if exists shop cascade")
        conn.exec_driver_sql((SQL_DIR / "shop" / "create_reference_schema.sql").read_text())
        for dataset, frame in tables.items():
            columns = [c for c in SOURCE_COLUMNS[dataset] if c in frame.columns and not (
                dataset == "order_items" and c == "updated_at")]
            counts[dataset] = copy_frame(conn, f"shop.{dataset}", frame, columns)
        conn.exec_driver_sql("analyze")
    return counts


REVIEW_TEXTS = {
    1: ("Arrived broken and nobody answered my emails.", "Terrible quality, fell apart after one wash.",
        "Never again. Wrong size and the return was a nightmare."),
    2: ("Disappointed, the colour is nothing like the photos.", "Too small and the seams came loose.",
        "Slow delivery and the box was damaged."),
    3: ("Good.", "ok", "It was alright.", "Fine I guess.", "Does the job."),
    4: ("Good.", "Nice fit, fast delivery.", "Pretty good overall, the sleeves are a bit long.", "Fine."),
    5: ("Absolutely love it! Best purchase this year.", "Great quality and super fast shipping, thank you!",
        "Perfect fit, lovely fabric. Already ordered another one.", "Fantastic service, highly recommend."),
}


# Details that make generated texts as distinct as real ones: a real shop's reviews rarely repeat word for
# word, and the text analysis (language, sentiment) costs per distinct text, so a bench whose texts repeat
# would time a cache, not the analysis.
_DETAILS = (
    "Ordered the {item} in size {size} for my {who} and it took {days} days to arrive.",
    "Bought the {item} as a gift for my {who}; worn it {days} times so far.",
    "This was my {nth} order here: the {item}, size {size}.",
    "My {who} tried the {item} on straight away, size {size} after {days} days of waiting.",
)
_ITEMS = ("hoodie", "tee", "jacket", "sweater", "cap", "scarf", "jeans", "dress", "shirt", "parka", "vest", "socks")
_SIZES = ("XS", "S", "M", "L", "XL", "XXL")
_WHO = ("sister", "brother", "partner", "dad", "mum", "friend", "son", "daughter", "colleague", "neighbour")
# the short answers that real customers give word for word, and that the lukewarm rule looks for
_SHORT = frozenset(text for texts in REVIEW_TEXTS.values() for text in texts if len(text) < 16)


def _with_details(rng, bases, plain_share: float):
    """Each base text, most followed by a detail sentence drawn from ~100,000 combinations."""
    import numpy as np

    n = len(bases)
    template, item, size, who = (rng.integers(0, len(x), n) for x in (_DETAILS, _ITEMS, _SIZES, _WHO))
    days, nth, plain = rng.integers(1, 40, n), rng.integers(2, 60, n), rng.random(n) < plain_share
    return np.array([base if keep else f"{base} " + _DETAILS[t].format(
        item=_ITEMS[i], size=_SIZES[z], who=_WHO[w], days=d, nth=_ordinal(o))
        for base, keep, t, i, z, w, d, o in zip(bases, plain, template, item, size, who, days, nth, strict=True)],
        dtype=object)


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def review_bodies(rng, ratings):
    """A review text per star rating: a base sentence of that rating and, for most, a detail sentence.

    Short answers ("Good.", "ok", "Fine.") stay as they are, word for word, as customers write them."""
    import numpy as np

    picks = rng.integers(0, 12, len(ratings))
    bases = np.array([REVIEW_TEXTS[r][i % len(REVIEW_TEXTS[r])] for r, i in zip(ratings, picks, strict=True)],
                     dtype=object)
    detailed = _with_details(rng, bases, plain_share=0.15)
    short = np.array([base in _SHORT for base in bases], dtype=bool)
    return np.where(short, bases, detailed)


def generate_responses(tables: dict[str, pd.DataFrame], spec: ShopSpec, review_share: float = 0.12,
                       poster_share: float = 0.02) -> dict[str, pd.DataFrame]:
    """Reviews, social posts and email events at scale (vectorised), for benchmarks of the whole loop.

    The demo itself uses the customer simulator, which answers the messages actually sent; this
    generator only needs plausible volumes and mixes: stars skewed high, a share of faint "Good."
    answers, consent to publish for most, a few incentivised reviews, posts with follower counts,
    unsubscribes, bounces and complaints.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(spec.seed + 1)
    end = pd.Timestamp(spec.end)
    orders, items, customers = tables["orders"], tables["order_items"], tables["customers"]
    delivered = orders[orders["delivered_at"].notna()]
    reviewed = delivered.sample(frac=review_share, random_state=int(rng.integers(0, 2**31)))
    n = len(reviewed)
    ratings = rng.choice([1, 2, 3, 4, 5], n, p=[0.05, 0.05, 0.12, 0.30, 0.48])
    bodies = review_bodies(rng, ratings)
    created = (reviewed["delivered_at"] + pd.to_timedelta(rng.uniform(0.5, 14, n), unit="D")).dt.floor("s")
    first_sku = items.drop_duplicates("order_id").set_index("order_id")["sku"]
    reviews = pd.DataFrame({
        "review_id": [f"R{i:09d}" for i in range(1, n + 1)],
        "order_id": reviewed["order_id"].to_numpy(),
        "customer_id": reviewed["customer_id"].to_numpy(),
        "sku": first_sku.reindex(reviewed["order_id"]).to_numpy(),
        "rating": ratings,
        "title": None,
        "body": bodies,
        "consent_to_publish": rng.random(n) < 0.6,
        "incentivized": rng.random(n) < 0.03,
        "created_at": created.to_numpy(),
    })
    reviews = reviews[reviews["created_at"] <= end].reset_index(drop=True)

    posters = customers.sample(frac=poster_share, random_state=int(rng.integers(0, 2**31)))
    m = len(posters)
    posted = (posters["created_at"] + pd.to_timedelta(rng.uniform(1, 60, m), unit="D")).dt.floor("s")
    posts = pd.DataFrame({
        "post_id": [f"P{i:08d}" for i in range(1, m + 1)],
        "platform": rng.choice(["instagram", "tiktok", "x", "facebook"], m),
        "author_handle": "@" + posters["customer_id"].str.lower().to_numpy(),
        "customer_id": posters["customer_id"].to_numpy(),
        "referral_code": None,
        "body": _with_details(rng, rng.choice(["Loving my new hoodie from @shop!", "Best tee ever", "meh, it's ok"],
                                              m).astype(object), plain_share=0.1),
        "followers": rng.lognormal(5, 1.5, m).astype(int),
        "url": [f"https://social.example/p/{i}" for i in range(1, m + 1)],
        "posted_at": posted.to_numpy(),
    })
    posts = posts[posts["posted_at"] <= end].reset_index(drop=True)

    contacts = customers.sample(frac=0.25, random_state=int(rng.integers(0, 2**31)))
    k = len(contacts)
    kinds = rng.choice(["open", "click", "unsubscribe", "bounce", "complaint"], k, p=[0.7, 0.22, 0.05, 0.025, 0.005])
    occurred = (contacts["created_at"] + pd.to_timedelta(rng.uniform(1, 30, k), unit="D")).dt.floor("s")
    events = pd.DataFrame({
        "event_id": [f"E{i:09d}" for i in range(1, k + 1)],
        "email": contacts["email"].to_numpy(),
        "event_type": kinds,
        "occurred_at": occurred.to_numpy(),
    })
    events = events[events["occurred_at"] <= end].reset_index(drop=True)
    return {"reviews": reviews, "social_posts": posts, "email_events": events}
