"""Simulated customers for the demo: they read what the demo sent and some of them answer.

Each customer has a hidden satisfaction (0–1, drawn from the seed and their id). Reading the demo
mailbox (the Maildir the local SMTP server or the sink fills, ``<SMARKETING_DATA_DIR>/mailbox``),
they behave as people do:

- some addresses are dead and bounce hard; a few unhappy people mark the email as spam (complaint)
  or unsubscribe; many open, fewer click;
- after a review request or reminder some write a review — glowing when happy, a lukewarm "Good."
  in the middle, angry when unhappy — mostly through the review link (so the review carries the
  signed token), sometimes on the website without it (so attribution falls back to the time window);
- after a share ask happy customers post on social media with their referral code, and some bring a
  friend who orders with that code (a new customer and order in the shop); now and then someone
  tries their own code.

Everything is written into the demo shop's reference tables (``shop.reviews``, ``social_posts``,
``email_events``, ``customers``, ``orders``, ``order_items``) where ingestion picks it up. Ids are
derived from the message, so a second run adds nothing; the same seed and mailbox give the same
responses. Times are ``max(start, sent_at)`` plus a delay inside ``horizon``, never the wall clock.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import sqlalchemy as sa

REVIEW_LINK = re.compile(r"/r/([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)")
SHARE_LINK = re.compile(r"https?://\S+/s/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
REFERRAL_CODE = re.compile(r"\bREF-[A-Z2-7]{8}\b")

GLOWING = (
    ("Love it", "Absolutely love my {product}. The quality is outstanding and it arrived quickly. "
                "Already ordered another one!"),
    ("Best purchase this year", "Best purchase this year 😍 The {product} fits perfectly and feels great. "
                                "Would buy again."),
    ("Perfekt", "Super Qualität, passt perfekt und kam schnell an. Sehr zu empfehlen!"),
    ("Parfait", "Très bonne qualité, livraison rapide, je recommande vivement ce produit !"),
)
LUKEWARM = (("", "Good."), ("", "Ok."), ("Fine", "Fine."), ("", "It's fine, does the job."), ("Good", "Good"))
ANGRY = (
    ("Disappointed", "The {product} fell apart after two washes. Really disappointed, I won't buy again."),
    ("Never again", "Arrived late and in the wrong size. Support never answered my emails."),
    ("Not worth it", "Terrible quality for the price. I want a refund!"),
)
PLATFORMS = ("instagram", "tiktok", "x", "facebook")
FRIEND_NAMES = ("Alex", "Sam", "Robin", "Kim", "Jo", "Noa", "Lee", "Mika", "Charlie", "Eli")
FRIEND_PRODUCTS = (("SKU-TEE-001", "Organic cotton tee", 24.00), ("SKU-HOO-001", "Recycled fleece hoodie", 68.00),
                   ("SKU-SOC-001", "Merino socks (3 pairs)", 29.00), ("SKU-CAP-001", "Six-panel cap", 26.00))


@dataclass(frozen=True)
class SimulatorSettings:
    seed: int = 7
    horizon: timedelta = timedelta(days=2)  # responses come within this long after the message
    dead_address_share: float = 0.03  # addresses that bounce hard
    review_rate: float = 0.45  # chance to review, scaled up for strong feelings either way
    without_link_share: float = 0.2  # reviews written on the website, without the link's token
    share_rate: float = 0.55  # chance a happy customer posts after a share ask
    friend_rate: float = 0.4  # chance a post brings a friend who orders with the code
    self_referral_share: float = 0.08  # sharers who try their own code


@dataclass
class SimulationReport:
    messages: int = 0
    actions: Counter = field(default_factory=Counter)
    acted_until: datetime | None = None

    def as_dict(self) -> dict:
        return {"messages": self.messages, **dict(sorted(self.actions.items())),
                "acted_until": self.acted_until.isoformat() if self.acted_until else None}


@dataclass(frozen=True)
class ReceivedMessage:
    message_id: str
    kind: str
    customer_id: str
    channel: str
    text: str


def read_mailbox(directory: Path) -> list[ReceivedMessage]:
    """Every smarketing message in the Maildir (emails, and SMS the sink keeps as JSON), by message id."""
    found: dict[str, ReceivedMessage] = {}
    for folder in ("new", "cur"):
        path = Path(directory) / folder
        if not path.is_dir():
            continue
        for item in sorted(path.iterdir()):
            received = _parse(item)
            if received is not None:
                found[received.message_id] = received
    return [found[k] for k in sorted(found)]


def _parse(path: Path) -> ReceivedMessage | None:
    data = path.read_bytes()
    if path.name.endswith(".json"):
        try:
            payload = json.loads(data)
        except ValueError:
            return None
        if not isinstance(payload, dict) or not payload.get("message_id"):
            return None
        return ReceivedMessage(str(payload["message_id"]), str(payload.get("kind", "")),
                               str(payload.get("customer_id", "")), "sms", str(payload.get("text", "")))
    message = message_from_bytes(data, policy=policy.default)
    message_id = (message.get("X-Smarketing-Message-Id") or "").strip()
    if not message_id:
        return None
    parts = [message.get_body(("plain",)), message.get_body(("html",))]
    text = "\n".join(p.get_content() for p in parts if p is not None)
    return ReceivedMessage(message_id, (message.get("X-Smarketing-Kind") or "").strip(),
                           (message.get("X-Smarketing-Customer-Id") or "").strip(), "email", text)


def _unit(*parts: object) -> float:
    """A number in [0, 1) fixed by its inputs (the hidden satisfaction, who has a dead address, ...)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def satisfaction(seed: int, customer_id: str) -> float:
    """Hidden satisfaction in [0, 1]: most customers are content, a tail is unhappy."""
    u = _unit(seed, "satisfaction", customer_id)
    return round(u ** 0.6, 4)  # skewed towards content, as real rating distributions are


def _rating_and_text(rng: random.Random, feeling: float, product: str) -> tuple[int, str, str]:
    if feeling >= 0.8:
        title, body = rng.choice(GLOWING)
        return 5 if feeling >= 0.88 or rng.random() < 0.5 else 4, title, body.format(product=product)
    if feeling >= 0.45:
        title, body = rng.choice(LUKEWARM)
        return rng.choice((3, 4, 4)), title, body
    title, body = rng.choice(ANGRY)
    return (1 if feeling < 0.25 else 2), title, body.format(product=product)


_OPTIONAL_SHOP_COLUMNS = {
    "reviews": ("review_token",),
    "email_events": ("bounce_type", "message_id", "channel", "phone"),
}


class _Writer:
    """Collects rows per shop table and inserts those whose id is not there yet (reruns add nothing)."""

    KEYS = {"reviews": "review_id", "social_posts": "post_id", "email_events": "event_id",
            "customers": "customer_id", "orders": "order_id", "order_items": "order_id"}

    def __init__(self) -> None:
        self.rows: dict[str, list[dict]] = {t: [] for t in self.KEYS}

    def add(self, table: str, **row) -> None:
        self.rows[table].append(row)

    def flush(self, shop: sa.Engine) -> Counter:
        written: Counter = Counter()
        with shop.begin() as conn:
            for table, columns in _OPTIONAL_SHOP_COLUMNS.items():
                for column in columns:
                    conn.exec_driver_sql(f"alter table shop.{table} add column if not exists {column} text")
            for table, rows in self.rows.items():
                if not rows:
                    continue
                key = self.KEYS[table]
                names = list(rows[0])
                existing = set(conn.execute(sa.text(f"select {key} from shop.{table} where {key} = any(:ids)"),
                                            {"ids": sorted({r[key] for r in rows})}).scalars())
                fresh = [r for r in rows if r[key] not in existing]
                if fresh:
                    conn.execute(sa.text(f"insert into shop.{table} ({', '.join(names)}) values "
                                         f"({', '.join(':' + n for n in names)})"), fresh)
                written[table] = len(fresh)
        return written


def _context(warehouse: sa.Engine, message_ids: list[str]) -> dict[str, dict]:
    """Per message: the order, the first product, when it was sent, and the customer's email and phone."""
    if not message_ids:
        return {}
    with warehouse.connect() as conn:
        rows = conn.execute(sa.text("""
            select m.message_id, m.order_id, m.sent_at, m.due_at, c.email, c.phone, c.first_name,
                   (select i.sku from smarketing.order_items i where i.order_id = m.order_id order by i.line_no limit 1) as sku,
                   (select i.product_name from smarketing.order_items i where i.order_id = m.order_id
                    order by i.line_no limit 1) as product,
                   (select r.referral_code from smarketing.referral_codes r where r.customer_id = m.customer_id) as code
            from smarketing.outreach_messages m
            left join smarketing.customer_contacts c on c.customer_id = m.customer_id
            where m.message_id = any(:ids)"""), {"ids": message_ids}).mappings().all()
    return {r["message_id"]: dict(r) for r in rows}


def simulate_customers(mailbox_dir: Path, shop: sa.Engine, warehouse: sa.Engine, *, start: datetime,
                       settings: SimulatorSettings | None = None) -> SimulationReport:
    """Let the customers who received the demo's messages respond; returns what they did."""
    settings = settings or SimulatorSettings()
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    report = SimulationReport()
    messages = read_mailbox(mailbox_dir)
    report.messages = len(messages)
    if not messages:
        return report
    context = _context(warehouse, [m.message_id for m in messages])
    writer = _Writer()
    gone: set[str] = set()  # customers who bounced, complained or unsubscribed: they do nothing more
    reviewed: set[tuple[str, str | None]] = set()
    for message in sorted(messages, key=lambda m: (m.customer_id, m.message_id)):
        info = context.get(message.message_id, {})
        if message.customer_id in gone or not message.customer_id:
            continue
        rng = random.Random(f"{settings.seed}:{message.message_id}")
        feeling = satisfaction(settings.seed, message.customer_id)
        sent = max(start, info.get("sent_at") or info.get("due_at") or start)

        def at(fraction: float, sent: datetime = sent) -> datetime:
            moment = sent + timedelta(minutes=5) + (settings.horizon - timedelta(minutes=5)) * fraction
            moment = moment.replace(microsecond=0)
            report.acted_until = max(report.acted_until or moment, moment)
            return moment

        email = (info.get("email") or "").lower() or None
        event = _event_writer(writer, message, email, info.get("phone"))
        if _unit(settings.seed, "dead-address", message.customer_id) < settings.dead_address_share:
            event("bounce", at(0.001), bounce_type="hard")
            report.actions["bounced"] += 1
            gone.add(message.customer_id)
            continue
        if feeling < 0.2 and rng.random() < 0.08:
            event("complaint", at(rng.random() * 0.3))
            report.actions["complained"] += 1
            gone.add(message.customer_id)
            continue
        if rng.random() < 0.45 + 0.3 * feeling:
            event("open", at(rng.random() * 0.2))
            report.actions["opened"] += 1
        if message.kind in ("review_request", "review_reminder"):
            _maybe_review(writer, report, rng, settings, message, info, feeling, reviewed, at, event)
        elif message.kind in ("share_ask", "referral_ask"):
            _maybe_share(writer, report, rng, settings, message, info, feeling, at, event)
        if feeling < 0.35 and rng.random() < 0.25:
            event("unsubscribe", at(0.5 + rng.random() * 0.5))
            report.actions["unsubscribed"] += 1
            gone.add(message.customer_id)
    written = writer.flush(shop)
    report.actions.update({f"rows_{table}": n for table, n in written.items()})
    return report


def _event_writer(writer: _Writer, message: ReceivedMessage, email: str | None, phone: str | None):
    def event(kind: str, moment: datetime, bounce_type: str | None = None) -> None:
        sms = message.channel == "sms"
        writer.add("email_events", event_id=f"SIM-{kind}-{message.message_id}", email=None if sms else email,
                   event_type="stop" if sms and kind == "unsubscribe" else kind, occurred_at=moment,
                   bounce_type=bounce_type, message_id=message.message_id, channel=message.channel,
                   phone=phone if sms else None)
    return event


def _maybe_review(writer, report, rng, settings, message, info, feeling, reviewed, at, event) -> None:
    order_id = info.get("order_id")
    strength = abs(feeling - 0.55) / 0.45  # strong feelings either way make people write
    if (message.customer_id, order_id) in reviewed or rng.random() >= settings.review_rate * (0.5 + strength):
        return
    reviewed.add((message.customer_id, order_id))
    rating, title, body = _rating_and_text(rng, feeling, info.get("product") or "order")
    token = REVIEW_LINK.search(message.text)
    via_link = token is not None and rng.random() >= settings.without_link_share
    moment = at(0.2 + rng.random() * 0.6)
    event("click", moment - timedelta(minutes=2))
    writer.add("reviews", review_id=f"SIM-R-{message.message_id}", order_id=None if via_link else order_id,
               customer_id=None if via_link else message.customer_id, sku=info.get("sku"), rating=rating,
               title=title or None, body=body, consent_to_publish=feeling >= 0.5 and rng.random() < 0.85,
               incentivized=False, created_at=moment, review_token=token.group(1) if via_link else None)
    report.actions["clicked"] += 1
    bucket = "glowing" if rating == 5 else "lukewarm" if rating >= 3 else "angry"
    report.actions[f"reviews_{bucket}"] += 1


def _maybe_share(writer, report, rng, settings, message, info, feeling, at, event) -> None:
    if feeling < 0.6 or rng.random() >= settings.share_rate:
        return
    code_match = REFERRAL_CODE.search(message.text)
    code = code_match.group(0) if code_match else info.get("code")
    link = SHARE_LINK.search(message.text)
    platform = rng.choice(PLATFORMS)
    handle = f"@{(info.get('first_name') or 'fan').lower()}_{message.customer_id[-4:].lower()}"
    followers = int(rng.lognormvariate(5.5, 1.6))
    body = f"Obsessed with my new {info.get('product') or 'gear'}! Use my code {code} for a welcome discount"
    body += f" {link.group(0)}" if link and rng.random() < 0.5 else ""
    moment = at(0.1 + rng.random() * 0.5)
    writer.add("social_posts", post_id=f"SIM-P-{message.message_id}", platform=platform, author_handle=handle,
               customer_id=None, referral_code=code, body=body, followers=followers,
               url=f"https://{platform}.example/{handle.lstrip('@')}/{message.message_id[:10]}", posted_at=moment)
    report.actions["social_posts"] += 1
    if not code:
        return
    if _unit(settings.seed, "self-referral", message.customer_id) < settings.self_referral_share:
        _order(writer, f"SIM-O-SELF-{message.message_id[:16]}", message.customer_id, code, at(0.7), rng)
        report.actions["self_referral_attempts"] += 1
    elif rng.random() < settings.friend_rate:
        friend = "SIM-F-" + hashlib.sha256(message.message_id.encode()).hexdigest()[:10].upper()
        name = rng.choice(FRIEND_NAMES)
        moment = at(0.6 + rng.random() * 0.4)
        writer.add("customers", customer_id=friend, email=f"{name.lower()}.{friend[-6:].lower()}@friends.example",
                   first_name=name, phone=None, country="US", time_zone="America/New_York", accepts_marketing=True,
                   accepts_sms=False, created_at=moment, updated_at=moment)
        _order(writer, f"SIM-O-{friend}", friend, code, moment, rng)
        report.actions["referred_friends"] += 1


def _order(writer: _Writer, order_id: str, customer_id: str, code: str, moment: datetime, rng: random.Random) -> None:
    sku, name, price = rng.choice(FRIEND_PRODUCTS)
    writer.add("orders", order_id=order_id, customer_id=customer_id, ordered_at=moment, status="placed",
               shipped_at=None, delivered_at=None, total_amount=round(price * 0.85, 2), currency="USD",
               discount_code=code, updated_at=moment)
    writer.add("order_items", order_id=order_id, line_no=1, sku=sku, product_name=name, quantity=1, unit_price=price)
