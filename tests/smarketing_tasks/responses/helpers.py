"""Warehouse and shop fixtures for response tests: customers, orders, sent asks and signed links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from smarketing_tasks.outreach import eligibility
from smarketing_tasks.tokens import Purpose, sign

T0 = datetime(2026, 6, 1, tzinfo=UTC)
KEY = b"responses-test-key"


def message_id_for(customer_id: str, order_id: str | None, kind: str, step: int = 1) -> str:
    """The outbox contract: first 32 hex chars of sha256 of the idempotency key."""
    return eligibility.message_id_for(eligibility.idempotency_key(customer_id, order_id, kind, step))


def add_customer(conn, customer_id: str, email: str | None = None, phone: str | None = None,
                 created_at: datetime = T0 - timedelta(days=60)) -> None:
    conn.execute(sa.text(
        "insert into smarketing.customers (customer_id, country, accepts_marketing, created_at, updated_at, source) "
        "values (:c, 'DE', true, :t, :t, 'test')"), {"c": customer_id, "t": created_at})
    conn.execute(sa.text(
        "insert into smarketing.customer_contacts (customer_id, email, first_name, phone, updated_at) "
        "values (:c, :e, 'Test', :p, :t)"), {"c": customer_id, "e": email or f"{customer_id.lower()}@example.com",
                                             "p": phone, "t": created_at})


def add_many_contacts(conn, count: int, column: str, value_sql: str) -> None:
    """``count`` customers C1..Cn whose contact ``column`` is ``value_sql`` (SQL over ``g``, 1..n), analysed:
    enough rows that the planner's choice of index is the one a full warehouse gets."""
    conn.exec_driver_sql("insert into smarketing.customers (customer_id, updated_at, source) "
                         f"select 'C' || g, now(), 'test' from generate_series(1, {count}) g")
    conn.exec_driver_sql(f"insert into smarketing.customer_contacts (customer_id, {column}, updated_at) "
                         f"select 'C' || g, {value_sql}, now() from generate_series(1, {count}) g")
    conn.exec_driver_sql("analyze smarketing.customer_contacts")


def add_order(conn, order_id: str, customer_id: str, ordered_at: datetime, sku: str = "SKU-TEE-001",
              product_name: str = "Organic cotton tee", status: str = "delivered", discount_code: str | None = None,
              total: float = 40.0) -> None:
    conn.execute(sa.text(
        "insert into smarketing.orders (order_id, customer_id, ordered_at, status, delivered_at, total_amount, currency, "
        "discount_code, updated_at, source) values (:o, :c, :t, :s, :d, :a, 'EUR', :code, :t, 'test')"),
        {"o": order_id, "c": customer_id, "t": ordered_at, "s": status,
         "d": ordered_at + timedelta(days=2) if status == "delivered" else None, "a": total, "code": discount_code})
    conn.execute(sa.text(
        "insert into smarketing.order_items (order_id, line_no, sku, product_name, quantity, unit_price) "
        "values (:o, 1, :sku, :name, 1, :a)"), {"o": order_id, "sku": sku, "name": product_name, "a": total})


def add_sent_message(conn, customer_id: str, order_id: str | None, kind: str, sent_at: datetime, step: int = 1,
                     channel: str = "email", variant: str = "A", incentive: bool = False) -> str:
    message_id = message_id_for(customer_id, order_id, kind, step)
    conn.execute(sa.text(
        "insert into smarketing.outreach_messages (message_id, idempotency_key, customer_id, order_id, kind, step, "
        "channel, template_variant, consent_basis, status, due_at, expires_at, planned_at, sent_at) values "
        "(:m, :k, :c, :o, :kind, :step, :ch, :v, 'marketing_consent', 'sent', :t, :e, :t, :t)"),
        {"m": message_id, "k": eligibility.idempotency_key(customer_id, order_id, kind, step), "c": customer_id,
         "o": order_id, "kind": kind, "step": step, "ch": channel, "v": variant, "t": sent_at,
         "e": sent_at + timedelta(days=30)})
    if incentive:
        conn.execute(sa.text("update smarketing.outreach_messages set incentive_offered = true where message_id = :m"),
                     {"m": message_id})
    return message_id


def token(message_id: str, purpose: Purpose = Purpose.REVIEW, expires_at: datetime = T0 + timedelta(days=60),
          key: bytes = KEY) -> str:
    return sign(key, message_id, purpose, expires_at)


def shop_insert(conn, table: str, **values) -> None:
    """Insert a row into shop.<table>, adding optional response columns the reference schema lacks."""
    for column in values:
        conn.exec_driver_sql(f"alter table shop.{table} add column if not exists {column} text")
    columns = ", ".join(values)
    conn.execute(sa.text(f"insert into shop.{table} ({columns}) values ({', '.join(':' + c for c in values)})"), values)


def snapshot(engine) -> dict[str, list]:
    tables = ("reviews", "social_posts", "email_events", "suppressions", "referrals", "quarantine")
    with engine.connect() as conn:
        found = {t: [tuple(r) for r in conn.execute(sa.text(f"select * from smarketing.{t} order by 1, 2")).all()]
                 for t in tables}
        found["watermarks"] = [tuple(r) for r in conn.execute(sa.text(
            "select source, dataset, high_watermark from smarketing.watermarks order by 1, 2")).all()]
    return found


class Watched:
    """A response source that calls ``asked(n)`` before it hands out its n-th batch (and may fail there)."""

    def __init__(self, inner, asked) -> None:
        self.inner, self.name, self.asked = inner, inner.name, asked

    def read(self, dataset, window, batch_rows):
        for n, frame in enumerate(self.inner.read(dataset, window, batch_rows), start=1):
            self.asked(n)
            yield frame
