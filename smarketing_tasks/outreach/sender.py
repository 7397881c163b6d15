"""Send due outbox messages exactly once: claim, re-check, send, record.

* **Claim** a batch with ``SELECT … FOR UPDATE SKIP LOCKED`` (status ``planned`` → ``sending`` with a
  lease; the claim counts the first attempt), so two concurrent senders never take the same message.
* **Re-check** before sending: suppression, a review of the order, a return or cancellation since
  planning; and the **staleness guard**: a message whose ``expires_at`` is behind the real clock (a
  backfill, a long outage) becomes ``expired`` instead of going out late. SMS wait for 08:00–21:00
  in the recipient's time zone, judged by the real clock at sending.
* **Send** over ``connections`` lanes, each with one reused connection per channel (SMTP: one
  connection per lane for the whole run, where Airflow's ``send_email`` opens one per message).
* **Record** each result in one small autocommit statement right after the server accepted the
  message, before the lane sends its next one, retried across lost warehouse connections. So a crash
  leaves at most the messages in flight (one per lane) accepted but unrecorded. That window is
  unavoidable without the server's help; the lease runs out, and they are sent again with the same
  ``Message-ID``, which receivers (and our Maildir sink and demo mailbox) de-duplicate.
* **Retries**: a transient error (4xx, disconnect, timeout) is retried with exponential backoff; when
  the channel stays down the rest of the batch goes back to ``planned`` and ``ChannelDown`` is raised
  so that Airflow retries the task later. A permanent error (5xx) fails the message with the reason;
  a hard bounce (550/551/553) adds the address to the suppression list.

The real clock comes in as ``clock`` (the staleness guard and the SMS window need it); everything
else uses the run's logical time ``as_of``.
"""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from psycopg.pq import ExecStatus

from smarketing_tasks.outreach.channels import Channel, ChannelSession, PermanentSendError, SendError
from smarketing_tasks.outreach.eligibility import in_sms_window, next_sms_slot
from smarketing_tasks.outreach.rendering import MessageData, Renderer, RenderError
from smarketing_tasks.outreach.settings import OutreachSettings

Clock = Callable[[], datetime]

_RECHECK = [
    ("reclaimed", """
        update smarketing.outreach_messages
        set status = 'planned', claimed_by = null, lease_expires_at = null,
            status_reason = 'lease expired while sending (outcome unknown; resent with the same Message-ID)'
        where status = 'sending' and lease_expires_at < clock_timestamp()"""),
    ("expired", """
        update smarketing.outreach_messages
        set status = 'expired', status_reason = 'stale: not sent before expires_at (backfill or outage)'
        where status = 'planned' and expires_at < :wall_now"""),
    ("suppressed", """
        update smarketing.outreach_messages m
        set status = 'skipped', status_reason = 'suppressed before sending: ' || s.reason
        from (select m2.message_id, coalesce(
                 (select s.reason from smarketing.suppressions s
                  join smarketing.customer_contacts cc on s.email = lower(btrim(cc.email))
                  where cc.customer_id = m2.customer_id limit 1),
                 (select s.reason from smarketing.suppressions s where s.customer_id = m2.customer_id limit 1)) as reason
              from smarketing.outreach_messages m2 where m2.status = 'planned') s
        where m.message_id = s.message_id and s.reason is not null"""),
    ("reviewed", """
        update smarketing.outreach_messages m
        set status = 'skipped', status_reason = case m.kind when 'review_reminder' then 'cancelled: order reviewed'
                                                            else 'already reviewed' end
        where m.status = 'planned' and m.kind in ('review_request', 'review_reminder')
          and exists (select 1 from smarketing.reviews rv where rv.order_id = m.order_id)"""),
    ("closed", """
        update smarketing.outreach_messages m
        set status = 'skipped', status_reason = 'order returned or cancelled'
        where m.status = 'planned' and m.kind in ('review_request', 'review_reminder')
          and exists (select 1 from smarketing.orders o where o.order_id = m.order_id
                      and (o.status in ('returned', 'cancelled') or exists (
                          select 1 from smarketing.order_status_history h
                          where h.order_id = o.order_id and h.status in ('returned', 'cancelled'))))"""),
]

_CLAIM = """
with picked as (
    select message_id from smarketing.outreach_messages
    where status = 'planned' and due_at <= :as_of and channel = any(:channels) and expires_at >= :wall_now
      and message_id <> all(:seen)
    order by due_at, message_id
    for update skip locked
    limit :n
)
update smarketing.outreach_messages m
set status = 'sending', claimed_at = clock_timestamp(), claimed_by = :worker, attempts = m.attempts + 1,
    lease_expires_at = clock_timestamp() + make_interval(secs => :lease)
from picked where m.message_id = picked.message_id
returning m.message_id
"""

_FETCH = """
select m.message_id, m.customer_id, m.order_id, m.kind, m.step, m.channel, m.template_variant, m.due_at,
       m.expires_at, m.incentive_offered, m.attempts, m.recipient_time_zone, cc.email, cc.first_name, cc.phone,
       rc.referral_code,
       (select array_agg(coalesce(nullif(btrim(oi.product_name), ''), oi.sku) order by oi.line_no)
        from smarketing.order_items oi where oi.order_id = m.order_id) as products
from smarketing.outreach_messages m
left join smarketing.customer_contacts cc on cc.customer_id = m.customer_id
left join smarketing.referral_codes rc on rc.customer_id = m.customer_id
where m.message_id = any(:ids)
order by m.due_at, m.message_id
"""

_ATTEMPT = """
update smarketing.outreach_messages
set attempts = attempts + 1, lease_expires_at = clock_timestamp() + make_interval(secs => :lease)
where message_id = :id and status = 'sending' and claimed_by = :worker
returning attempts
"""

# Renew the lease of the batch's unsent messages; returns those still ours (a lapsed lease may have been
# taken over by another sender, which then owns the message).
_RENEW = """
update smarketing.outreach_messages
set lease_expires_at = clock_timestamp() + make_interval(secs => :lease)
where message_id = any(:ids) and status = 'sending' and claimed_by = :worker
returning message_id
"""

_SENT = """
update smarketing.outreach_messages
set status = 'sent', sent_at = clock_timestamp(), provider_message_id = :provider_id, status_reason = null,
    error_kind = null, last_error = null, lease_expires_at = null
where message_id = :id and claimed_by = :worker and status = 'sending'
"""

_SENT_PQ = (b"update smarketing.outreach_messages set status = 'sent', sent_at = clock_timestamp(), "
            b"provider_message_id = $1, status_reason = null, error_kind = null, last_error = null, "
            b"lease_expires_at = null where message_id = $2 and claimed_by = $3 and status = 'sending'")

_FINISH = """
update smarketing.outreach_messages
set status = :status, status_reason = :reason, error_kind = :error_kind, last_error = :error,
    due_at = coalesce(:due_at, due_at), lease_expires_at = null,
    claimed_by = case when :status = 'planned' then null else claimed_by end
where message_id = :id and claimed_by = :worker and status = 'sending'
"""

# Give back a claimed message that was not attempted (channel down, SMS outside its window): the claim
# counted an attempt, which is returned with it.
_RELEASE = """
update smarketing.outreach_messages
set status = 'planned', status_reason = :reason, claimed_by = null, lease_expires_at = null,
    attempts = greatest(attempts - 1, 0), due_at = coalesce(:due_at, due_at)
where message_id = :id and claimed_by = :worker and status = 'sending'
"""

_SUPPRESS_BOUNCE = """
insert into smarketing.suppressions (email, customer_id, reason, source, suppressed_at)
select lower(btrim(cc.email)), cc.customer_id, 'hard_bounce', 'smtp_reply', clock_timestamp()
from smarketing.customer_contacts cc where cc.customer_id = :customer_id and cc.email is not null
on conflict (email) do nothing
"""


class ChannelDown(RuntimeError):
    """A channel kept failing transiently; unsent messages went back to the queue for a later retry."""


@dataclass
class SendReport:
    sent: int = 0
    failed: Counter = field(default_factory=Counter)  # error kind -> messages failed for good
    requeued: int = 0  # back to planned (transient trouble, SMS outside its window, lost lease)
    rechecked: Counter = field(default_factory=Counter)  # reclaimed/expired/suppressed/reviewed/closed
    channel_down: str | None = None

    def merge(self, other: SendReport) -> None:
        self.sent += other.sent
        self.failed.update(other.failed)
        self.requeued += other.requeued
        self.rechecked.update(other.rechecked)
        self.channel_down = self.channel_down or other.channel_down

    def as_dict(self) -> dict:
        return {"sent": self.sent, "failed": dict(self.failed), "requeued": self.requeued,
                "rechecked": dict(self.rechecked), "channel_down": self.channel_down}


class _Recorder:
    """One autocommit connection for status writes; survives dropped connections by reconnecting."""

    def __init__(self, engine: sa.Engine, attempts: int, sleep: Callable[[float], None]) -> None:
        self.engine, self.attempts, self.sleep = engine, attempts, sleep
        self.conn: sa.Connection | None = None
        self.pending: dict | None = None  # a ``sent`` write whose reply has not been read yet

    def run(self, sql: str, params: Mapping, fetch: bool = False):
        self.finish_sent()
        for attempt in range(self.attempts):
            try:
                if self.conn is None:
                    self.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                    # Status commits need not wait for the WAL flush: a crash of the *sender* loses nothing
                    # committed; only a crash of the database server within ~0.2 s could lose a status,
                    # which the lease turns into a resend with the same Message-ID (the documented window).
                    self.conn.exec_driver_sql("set synchronous_commit = off")
                result = self.conn.execute(sa.text(sql), dict(params))
                return result.all() if fetch else result.rowcount
            except sa.exc.DBAPIError as error:
                lost = error.connection_invalidated or isinstance(
                    error, sa.exc.OperationalError | sa.exc.InterfaceError)
                if not lost:
                    raise
                self._drop()
                if attempt == self.attempts - 1:
                    raise
                self.sleep(min(0.2 * 2 ** attempt, 5.0))
        raise AssertionError("unreachable")

    def record_sent(self, params: Mapping) -> None:
        """Write ``sent`` without waiting for the reply: the statement is on its way to the server (handed to
        the kernel) before the lane starts its next message, and its result is read after that message.

        A sender killed meanwhile still has the statement executed and committed: the server reads what
        reached its socket and commits at the protocol's Sync, before it answers. Any trouble falls back
        to the synchronous, retried write.
        """
        self.finish_sent()
        try:
            if self.conn is None:
                self.run("select 1", {})
            pgconn = self.conn.connection.dbapi_connection.pgconn
            pgconn.send_query_params(_SENT_PQ, [str(params["provider_id"]).encode(), str(params["id"]).encode(),
                                                str(params["worker"]).encode()])
            while pgconn.flush():
                select.select([], [pgconn.socket], [], 1.0)
            self.pending = dict(params)
        except Exception:  # any trouble on the fast path: the slow path below is retried and idempotent
            self._drop()
            self.run(_SENT, params)

    def finish_sent(self) -> None:
        if self.pending is None:
            return
        params, self.pending = self.pending, None
        try:
            pgconn = self.conn.connection.dbapi_connection.pgconn
            pgconn.consume_input()
            while pgconn.is_busy():
                select.select([pgconn.socket], [], [], 1.0)
                pgconn.consume_input()
            result = pgconn.get_result()
            while pgconn.get_result() is not None:  # drain to idle so the connection is usable again
                pass
            if result is None or result.status != ExecStatus.COMMAND_OK:
                raise RuntimeError(result.error_message.decode(errors="replace") if result else "no result")
        except Exception:  # lost connection or error: write it again, synchronously (idempotent)
            self._drop()
            self.run(_SENT, params)

    def close(self) -> None:
        try:
            self.finish_sent()
        finally:
            self._drop()

    def _drop(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):  # a dead connection may fail to close; it is gone anyway
                self.conn.close()
            self.conn = None


class _RateLimiter:
    """Per channel, shared by the lanes: at most ``per_second`` sends, evenly spaced."""

    def __init__(self, per_second: float, sleep: Callable[[float], None]) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.sleep = sleep
        self.next_at = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next_at)
            self.next_at = slot + self.interval
        if slot > now:
            self.sleep(slot - now)


def recheck(engine: sa.Engine, wall_now: datetime, db_attempts: int = 8,
            sleep: Callable[[float], None] = time.sleep) -> Counter:
    """Set-based guards before a send: reclaim lapsed leases, expire stale, skip what became ineligible."""
    recorder = _Recorder(engine, db_attempts, sleep)
    changed: Counter = Counter()
    try:
        for name, sql in _RECHECK:
            changed[name] += recorder.run(sql, {"wall_now": wall_now})
    finally:
        recorder.close()
    return +changed


def _message_data(row) -> MessageData:
    return MessageData(
        message_id=row.message_id, customer_id=row.customer_id, order_id=row.order_id, kind=row.kind,
        step=row.step, channel=row.channel, variant=row.template_variant, due_at=row.due_at,
        email=row.email, phone=row.phone, first_name=row.first_name, products=tuple(row.products or ()),
        referral_code=row.referral_code, incentive_offered=row.incentive_offered,
        time_zone=row.recipient_time_zone, expires_at=row.expires_at)


def send_due(engine: sa.Engine, channels: Mapping[str, Channel], renderer: Renderer, settings: OutreachSettings,
             *, as_of: datetime, clock: Clock, worker: str, limit: int | None = None,
             sleep: Callable[[float], None] = time.sleep, on_sent: Callable[[str], None] | None = None) -> SendReport:
    """Send every due message of the given outbox channels (``email``, ``sms``); returns what happened.

    Each claimed batch is split over ``settings.connections`` lanes; a lane owns one connection per channel
    and one warehouse connection for its status writes, and sends its messages one after another.
    Raises ``ChannelDown`` after requeueing when a channel keeps failing transiently.
    """
    report = SendReport()
    report.rechecked = recheck(engine, clock(), settings.db_retry_attempts, sleep)
    claimer = _Recorder(engine, settings.db_retry_attempts, sleep)
    limiters = {"email": _RateLimiter(settings.email_rate_per_second, sleep),
                "sms": _RateLimiter(settings.webhook_rate_per_second, sleep)}
    base = {"worker": worker, "lease": settings.claim_lease_seconds}
    stop = threading.Event()
    lanes = [_Lane(engine, channels, renderer, settings, clock, sleep, base, limiters, stop, on_sent)
             for _ in range(max(1, settings.connections))]
    remaining = limit
    seen: list[str] = []  # handled in this call: a requeued message waits for the next run
    try:
        with ThreadPoolExecutor(len(lanes), thread_name_prefix="outreach-lane") as pool:
            while (remaining is None or remaining > 0) and not stop.is_set():
                batch = settings.batch_size if remaining is None else min(settings.batch_size, remaining)
                claimed = claimer.run(_CLAIM, {**base, "as_of": as_of, "wall_now": clock(),
                                               "channels": list(channels), "n": batch, "seen": seen}, fetch=True)
                if not claimed:
                    break
                rows = claimer.run(_FETCH, {"ids": [r.message_id for r in claimed]}, fetch=True)
                seen.extend(r.message_id for r in claimed)
                if remaining is not None:
                    remaining -= len(rows)
                shares = [rows[i::len(lanes)] for i in range(len(lanes))]
                for future in [pool.submit(lane.run, share) for lane, share in zip(lanes, shares, strict=True)
                               if share]:
                    future.result()
    finally:
        for lane in lanes:
            lane.close()
            report.merge(lane.report)
        claimer.close()
    if report.channel_down:
        raise ChannelDown(report.channel_down)
    return report


class _Lane:
    """One connection per channel plus one status connection; sends its share of a batch in order."""

    def __init__(self, engine, channels, renderer, settings, clock, sleep, base, limiters, stop, on_sent) -> None:
        self.recorder = _Recorder(engine, settings.db_retry_attempts, sleep)
        self.sessions: dict[str, ChannelSession] = {}
        self.channels, self.renderer, self.settings, self.clock, self.sleep = channels, renderer, settings, clock, sleep
        self.base, self.limiters, self.stop, self.on_sent = base, limiters, stop, on_sent
        self.report = SendReport()

    def run(self, rows: list) -> None:
        renewed_at = time.monotonic()
        owned = {r.message_id for r in rows}
        for index, row in enumerate(rows):
            if self.stop.is_set():  # another lane found the channel down: give the rest back untried
                self._release(rows[index:])
                return
            if time.monotonic() - renewed_at > self.settings.claim_lease_seconds / 3:
                owned = {r.message_id for r in self.recorder.run(
                    _RENEW, {**self.base, "ids": [r.message_id for r in rows[index:]]}, fetch=True)}
                renewed_at = time.monotonic()
            if row.message_id not in owned:
                self.report.requeued += 1
                continue
            data = _message_data(row)
            try:
                _send_one(data, row.attempts, self.recorder, self.sessions, self.channels, self.limiters,
                          self.renderer, self.settings, self.clock, self.sleep, self.base, self.report,
                          self.on_sent)
            except _Outage as outage:
                self.report.channel_down = f"{data.channel}: {outage}"
                self.stop.set()
                self._release(rows[index + 1:])
                return

    def _release(self, rows: list) -> None:
        for row in rows:
            self.recorder.run(_RELEASE, {**self.base, "id": row.message_id, "reason": "requeued: channel down",
                                         "due_at": None})
            self.report.requeued += 1

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()
        self.sessions.clear()
        self.recorder.close()


class _Outage(Exception):
    pass


def _send_one(data: MessageData, attempts_total: int, recorder: _Recorder, sessions: dict, channels: Mapping[str, Channel],
              limiters: dict, renderer: Renderer, settings: OutreachSettings, clock: Clock,
              sleep: Callable[[float], None], base: dict, report: SendReport, on_sent) -> None:
    def finish(status: str, reason: str | None, error_kind: str | None = None, error: str | None = None,
               due_at: datetime | None = None) -> None:
        recorder.run(_FINISH, {**base, "id": data.message_id, "status": status, "reason": reason,
                               "error_kind": error_kind, "error": error, "due_at": due_at})

    now = clock()
    if data.expires_at is not None and now > data.expires_at:
        finish("expired", "stale: expired before it could be sent")
        report.rechecked["expired"] += 1
        return
    if data.channel == "sms" and not in_sms_window(now, data.time_zone, settings):
        recorder.run(_RELEASE, {**base, "id": data.message_id, "reason": "waiting for the SMS window (local time)",
                                "due_at": next_sms_slot(now, data.time_zone, settings)})
        report.requeued += 1
        return
    try:
        rendered = renderer.render(data, now)
    except RenderError as error:
        finish("failed", f"cannot build the message: {error}", "permanent", str(error))
        report.failed["permanent"] += 1
        return
    attempt = 0
    while True:
        if attempt:  # a retry is one more attempt (the claim counted the first)
            rows = recorder.run(_ATTEMPT, {**base, "id": data.message_id}, fetch=True)
            if not rows:  # our lease lapsed and someone else owns it now: leave it to them
                report.requeued += 1
                return
            attempts_total = rows[0].attempts
        attempt += 1
        if data.channel not in sessions:
            sessions[data.channel] = channels[data.channel].open()
        limiters.get(data.channel, limiters["email"]).wait()
        try:
            provider_id = sessions[data.channel].send(rendered)
        except PermanentSendError as error:
            finish("failed", f"rejected: {error}", "permanent", str(error))
            if error.hard_bounce:
                recorder.run(_SUPPRESS_BOUNCE, {"customer_id": data.customer_id})
            report.failed["permanent"] += 1
            return
        except SendError as error:
            if attempts_total >= settings.max_attempts:
                finish("failed", f"gave up after {attempts_total} attempts: {error}", "transient", str(error))
                report.failed["transient"] += 1
            elif attempt >= settings.send_retries:
                finish("planned", f"requeued after transient error: {error}", "transient", str(error))
                report.requeued += 1
            else:
                sleep(min(settings.retry_base_seconds * 2 ** (attempt - 1), settings.retry_max_seconds))
                continue
            if error.code is not None and 400 <= error.code < 500 and error.code != 421:
                return  # the server deferred this recipient only; the channel itself works
            raise _Outage(str(error)) from error
        recorder.record_sent({**base, "id": data.message_id, "provider_id": provider_id})
        report.sent += 1
        if on_sent is not None:
            on_sent(data.message_id)
        return
