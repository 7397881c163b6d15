"""Test helpers for outreach: a tiny warehouse writer and a real SMTP server (aiosmtpd) with faults."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import sqlalchemy as sa

AS_OF = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class Warehouse:
    """Writes rows straight into the warehouse's core tables, with defaults that make a message due."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def customer(self, customer_id: str, *, email: str | None = "auto", first_name: str = "Ann",
                 phone: str | None = None, time_zone: str | None = "Europe/Berlin", marketing: bool = True,
                 sms: bool = False) -> str:
        email = f"{customer_id}@example.com" if email == "auto" else email
        with self.engine.begin() as conn:
            conn.execute(sa.text(
                "insert into smarketing.customers (customer_id, country, time_zone, accepts_marketing, accepts_sms,"
                " created_at, updated_at, source) values (:c, 'DE', :tz, :m, :s, :t, :t, 'test')"),
                {"c": customer_id, "tz": time_zone, "m": marketing, "s": sms, "t": AS_OF - timedelta(days=400)})
            conn.execute(sa.text(
                "insert into smarketing.customer_contacts (customer_id, email, first_name, phone, updated_at)"
                " values (:c, :e, :f, :p, :t)"),
                {"c": customer_id, "e": email, "f": first_name, "p": phone, "t": AS_OF - timedelta(days=400)})
        return customer_id

    def order(self, order_id: str, customer_id: str, *, delivered_at: datetime | None = None,
              shipped_at: datetime | None = None, ordered_at: datetime | None = None, status: str = "delivered",
              items: list[tuple[str, str]] | None = None, history: list[str] | None = None) -> str:
        if delivered_at is None and shipped_at is None and ordered_at is None:
            delivered_at = AS_OF - timedelta(days=7)
        ordered_at = ordered_at or (delivered_at or shipped_at) - timedelta(days=3)
        with self.engine.begin() as conn:
            conn.execute(sa.text(
                "insert into smarketing.orders (order_id, customer_id, ordered_at, status, shipped_at, delivered_at,"
                " total_amount, currency, updated_at, source) values (:o, :c, :oa, :st, :sa, :da, 10, 'EUR', :oa, 't')"),
                {"o": order_id, "c": customer_id, "oa": ordered_at, "st": status, "sa": shipped_at, "da": delivered_at})
            for line, (sku, name) in enumerate(items or [("SKU-1", "Blue Mug")], start=1):
                conn.execute(sa.text(
                    "insert into smarketing.order_items (order_id, line_no, sku, product_name, quantity, unit_price)"
                    " values (:o, :l, :s, :n, 1, 10)"), {"o": order_id, "l": line, "s": sku, "n": name})
            for seen in history or []:
                conn.execute(sa.text("insert into smarketing.order_status_history values (:o, :s, :t)"),
                             {"o": order_id, "s": seen, "t": ordered_at})
        return order_id

    def review(self, review_id: str, order_id: str, customer_id: str, rating: int, body: str = "Love it",
               created_at: datetime | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(
                "insert into smarketing.reviews (review_id, order_id, customer_id, sku, rating, body, created_at, source)"
                " values (:r, :o, :c, 'SKU-1', :rt, :b, :t, 'test')"),
                {"r": review_id, "o": order_id, "c": customer_id, "rt": rating, "b": body,
                 "t": created_at or AS_OF - timedelta(days=3)})

    def score(self, customer_id: str, *, score: float = 50, sentiment: float = 0.0, lukewarm: bool = False,
              segment: str = "promising") -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(
                "insert into smarketing.advocate_scores (customer_id, score_date, advocate_score, segment, is_lukewarm,"
                " sentiment, scored_at) values (:c, :d, :s, :seg, :l, :se, :t)"),
                {"c": customer_id, "d": AS_OF.date(), "s": score, "seg": segment, "l": lukewarm, "se": sentiment,
                 "t": AS_OF})

    def suppress(self, email: str, reason: str = "unsubscribe", customer_id: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(
                "insert into smarketing.suppressions (email, customer_id, reason, source, suppressed_at)"
                " values (:e, :c, :r, 'test', :t)"), {"e": email.lower(), "c": customer_id, "r": reason, "t": AS_OF})

    def message(self, customer_id: str, kind: str, due_at: datetime, status: str = "sent",
                order_id: str | None = None) -> None:
        """A message already in the outbox (history for caps and cooldowns)."""
        from smarketing_tasks.outreach.eligibility import idempotency_key, message_id_for

        key = idempotency_key(customer_id, order_id or f"old-{due_at:%Y%m%d%H%M}-{kind}", kind, 1)
        with self.engine.begin() as conn:
            conn.execute(sa.text(
                "insert into smarketing.outreach_messages (message_id, idempotency_key, customer_id, order_id, kind,"
                " step, channel, template_variant, consent_basis, status, due_at, expires_at, planned_at, sent_at)"
                " values (:m, :k, :c, :o, :kind, 1, 'email', 'A', 'marketing_consent', :st, :d, :d + interval '7 days',"
                " :d, case when :st = 'sent' then :d end)"),
                {"m": message_id_for(key), "k": key, "c": customer_id, "o": order_id, "kind": kind, "st": status,
                 "d": due_at})

    def messages(self) -> list:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(
                "select * from smarketing.outreach_messages order by customer_id, kind, due_at")).all()

    def by_order(self, kind: str = "review_request") -> dict[str, tuple[str, str | None]]:
        return {m.order_id: (m.status, m.status_reason) for m in self.messages() if m.kind == kind}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Faults:
    """What the test SMTP server does wrong: counted over messages it accepted."""

    drop_after: int | None = None  # close the connection (no reply) instead of taking message k+1
    refuse_after: int | None = None  # answer 421 to message k+1 (and then close)
    fail_times: int = 1  # how many times the fault fires
    kill_pid_after: int | None = None  # SIGKILL this process instead of taking message k+1 ...
    kill_pid: int | None = None  # ... (the sender, mid-batch)
    on_message: object = None  # callable(count) run after each accepted message (e.g. drop DB connections)
    reject_recipients: set[str] = field(default_factory=set)  # 550 for these addresses


class RecordingHandler:
    """aiosmtpd handler keeping every accepted message (parsed) and counting by Message-ID."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self.messages: list = []
        self.lock = threading.Lock()
        self.fired = 0
        self.fired_at: set[int] = set()
        self.connections = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.faults.reject_recipients:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        f = self.faults
        count = len(self.messages)
        if f.kill_pid is not None and f.kill_pid_after is not None and count == f.kill_pid_after and not self.fired:
            self.fired += 1
            os.kill(f.kill_pid, signal.SIGKILL)
            return "451 4.3.0 sender went away"
        # Each fault fires once per k accepted messages (every k-th message fails once, then goes through).
        every = f.drop_after or f.refuse_after
        if every and self.fired < f.fail_times and count and count % every == 0 and count not in self.fired_at:
            self.fired += 1
            self.fired_at.add(count)
            if f.drop_after:
                server.transport.close()  # no reply at all: the client sees a dropped connection
                return "421 closing"
            return "421 4.7.0 try again later"
        with self.lock:
            self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
            if f.on_message is not None:
                f.on_message(len(self.messages))
        return "250 OK"

    def per_message_id(self) -> Counter:
        return Counter(m["X-Smarketing-Message-Id"] for m in self.messages)


class SmtpServer:
    def __init__(self, faults: Faults | None = None) -> None:
        from aiosmtpd.controller import Controller

        self.handler = RecordingHandler(faults)
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    @property
    def params(self):
        from smarketing_tasks.outreach.channels import SmtpParams

        return SmtpParams(host="127.0.0.1", port=self.port, timeout=10)
