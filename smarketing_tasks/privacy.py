"""Privacy operations: erase a customer everywhere on request, and keep raw contact data only so long.

**Erasure** (right to erasure, GDPR art. 17): given a customer id and/or an email address, delete every
row about that person in schemas ``smarketing`` and ``marketing``: core tables, contacts, the outbox and
link clicks, responses, scores, follow-ups, rewards and the marts. Tables are found from the catalog
(any column ``customer_id`` / ``*_customer_id``, ``order_id``, ``message_id``, ``email``, ``phone``),
so tables that later migrations add are covered without touching this module; quarantined raw rows
are matched inside their JSON, and contact values inside other JSON columns (validation samples)
are redacted; the stored language and sentiment of the person's posts and NPS comments
(``smarketing.text_signals``, keyed by an md5 of the words, not by customer) go as well. What stays:

* ``smarketing.erasures``: one row per request with SHA-256 hashes of the id and address, never the
  values, and the rows removed per table: proof that the request was honoured.
* ``smarketing.suppressions``: the address with reason ``erasure`` (when ``erasure_keeps_suppression``),
  because honouring "never contact me again" needs it.

Erasure is idempotent (a rerun deletes nothing more and records nothing twice), and
``reerase_returned`` erases again anyone who comes back through ingestion with an erased id.

**Retention**: contact details (email, name, phone) of customers inactive for
``contact_retention_days`` are deleted; the pseudonymous customer row and its history stay for the
marts. Contact values in quarantined raw rows and in email events older than the retention go too.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

SCHEMAS = ("smarketing", "marketing")
# Tables the generic sweep must not touch: bookkeeping, the proof of erasure, suppressions (handled apart).
EXCLUDED_TABLES = {"smarketing.schema_migrations", "smarketing.erasures", "smarketing.suppressions",
                   "smarketing.secrets", "smarketing.watermarks"}
CONTACT_KEYS = ("email", "phone", "first_name", "reviewer_email", "reviewer_name")


@dataclass(frozen=True)
class PrivacySettings:
    """Privacy operations (``smarketing_privacy``)."""

    contact_retention_days: int = 730  # delete email/name/phone of customers with no order or change for this long
    quarantine_contact_retention_days: int = 90  # strip contact values from quarantined raw rows older than this
    erasure_keeps_suppression: bool = True  # keep an erased address on the suppression list (reason 'erasure')


@dataclass
class ErasureResult:
    customers_found: int
    rows_deleted: dict[str, int] = field(default_factory=dict)
    json_redacted: dict[str, int] = field(default_factory=dict)
    suppressed: int = 0
    recorded: bool = False

    @property
    def total_deleted(self) -> int:
        return sum(self.rows_deleted.values())

    def as_dict(self) -> dict:
        """Counts only (safe for XCom and logs): no id, no address."""
        return {"customers_found": self.customers_found, "rows_deleted": self.total_deleted,
                "tables": {t: n for t, n in self.rows_deleted.items() if n},
                "json_redacted": {t: n for t, n in self.json_redacted.items() if n},
                "suppressed": self.suppressed, "recorded": self.recorded}


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or " " in email:
        raise ValueError(f"not an email address: {email!r}")
    return email


# -- catalog ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Table:
    name: str  # schema-qualified
    columns: dict[str, str]  # column -> data type


def _tables(conn: sa.Connection) -> list[_Table]:
    rows = conn.execute(sa.text(
        """select c.table_schema || '.' || c.table_name as name, c.column_name, c.data_type
             from information_schema.columns c
             join information_schema.tables t using (table_schema, table_name)
            where c.table_schema = any(:schemas) and t.table_type = 'BASE TABLE'
            order by 1, c.ordinal_position"""), {"schemas": list(SCHEMAS)}).all()
    tables: dict[str, dict[str, str]] = {}
    for name, column, data_type in rows:
        tables.setdefault(name, {})[column] = data_type
    return [_Table(name, columns) for name, columns in tables.items() if name not in EXCLUDED_TABLES]


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _qualified(name: str) -> str:
    schema, table = name.split(".", 1)
    return f"{_quote(schema)}.{_quote(table)}"


def _match_clauses(table: _Table) -> list[str]:
    """SQL conditions that tie a row of ``table`` to the person (bound parameters :ids, :orders, ...)."""
    clauses = []
    for column, data_type in table.columns.items():
        col = _quote(column)
        if column == "customer_id" or column.endswith("_customer_id"):
            clauses.append(f"{col}::text = any(:ids)")
        elif column in ("order_id", "referred_order_id"):
            clauses.append(f"{col}::text = any(:orders)")
        elif column == "review_id":  # rows derived from the person's reviews (smarketing.review_signals)
            clauses.append(f"{col}::text = any(:reviews)")
        elif column == "message_id":
            clauses.append(f"{col}::text = any(:messages)")
        elif column in ("email", "reviewer_email"):
            clauses.append(f"lower({col}) = any(:emails)")
        elif column == "phone":
            clauses.append(f"{col} = any(:phones)")
        elif column == "raw" and data_type == "jsonb":
            clauses.append(f"({col}->>'customer_id' = any(:ids) or lower({col}->>'email') = any(:emails) "
                           f"or {col}->>'order_id' = any(:orders) or {col}->>'phone' = any(:phones))")
    return clauses


# -- erasure ---------------------------------------------------------------------------------------------

def _subject(conn: sa.Connection, customer_id: str | None, email: str | None) -> dict[str, list[str]]:
    """Everything that identifies the person: ids, addresses, phones, orders, messages."""
    ids = {customer_id} if customer_id else set()
    emails = {normalize_email(email)} if email else set()
    if emails:
        for table, column in (("customer_contacts", "customer_id"), ("email_events", "customer_id"),
                              ("suppressions", "customer_id")):
            ids |= set(conn.execute(sa.text(
                f"select distinct {column} from smarketing.{table} where lower(email) = any(:e) and {column} is not null"),
                {"e": list(emails)}).scalars())
    contacts = conn.execute(sa.text(
        "select lower(email), phone from smarketing.customer_contacts where customer_id = any(:ids)"),
        {"ids": list(ids)}).all()
    emails |= {e for e, _ in contacts if e}
    phones = {p for _, p in contacts if p}
    orders = set(conn.execute(sa.text("select order_id from smarketing.orders where customer_id = any(:ids)"),
                              {"ids": list(ids)}).scalars())
    messages = set(conn.execute(sa.text(
        "select message_id from smarketing.outreach_messages where customer_id = any(:ids)"),
        {"ids": list(ids)}).scalars())
    reviews = set(conn.execute(sa.text(
        "select review_id from smarketing.reviews where customer_id = any(:ids) or order_id = any(:orders)"),
        {"ids": list(ids), "orders": list(orders)}).scalars())
    return {"ids": sorted(ids), "emails": sorted(emails), "phones": sorted(phones), "orders": sorted(orders),
            "messages": sorted(messages), "reviews": sorted(reviews)}


def _delete_everywhere(conn: sa.Connection, subject: dict[str, list[str]]) -> dict[str, int]:
    """Delete matching rows table by table; a table blocked by a foreign key is retried after the others."""
    pending = [(t, clauses) for t in _tables(conn) if (clauses := _match_clauses(t))]
    deleted: dict[str, int] = {}
    for _ in range(len(pending) + 1):
        blocked = []
        for table, clauses in pending:
            try:
                with conn.begin_nested():
                    result = conn.execute(sa.text(
                        f"delete from {_qualified(table.name)} where {' or '.join(clauses)}"), subject)
                deleted[table.name] = deleted.get(table.name, 0) + result.rowcount
            except sa.exc.IntegrityError:
                blocked.append((table, clauses))
        if not blocked:
            return deleted
        if len(blocked) == len(pending):
            break
        pending = blocked
    raise RuntimeError(f"erasure blocked by foreign keys in {[t.name for t, _ in pending]}")


def _delete_text_signals(conn: sa.Connection, subject: dict[str, list[str]]) -> int:
    """Delete the stored signals of the person's post texts and NPS comments. ``smarketing.text_signals`` names no
    customer, but its key is the md5 of the words, which anyone holding the words (a public post, a comment
    that names the writer) can recompute: a pseudonym of the text. Another customer who wrote the same words
    loses nothing but a cache row (scoring analyses the text again)."""
    from smarketing_tasks.scoring.text_store import stripped_texts, text_md5

    texts = conn.execute(sa.text(
        "select body from smarketing.social_posts where customer_id = any(:ids) "
        "union select comment from smarketing.nps_answers where customer_id = any(:ids)"),
        {"ids": subject["ids"]}).scalars().all()
    hashes = sorted({text_md5(t) for t in stripped_texts(texts) if t is not None})
    if not hashes:
        return 0
    return conn.execute(sa.text("delete from smarketing.text_signals where text_md5 = any(:h)"),
                        {"h": hashes}).rowcount


def _redact_json(conn: sa.Connection, values: list[str]) -> dict[str, int]:
    """Replace the person's addresses and phones inside JSON columns (e.g. validation samples) by '[erased]'."""
    redacted: dict[str, int] = {}
    if not values:
        return redacted
    for table in _tables(conn):
        for column, data_type in table.columns.items():
            if data_type not in ("json", "jsonb"):
                continue
            col = _quote(column)
            text = f"{col}::text"
            for value in values:
                token = json.dumps(value)  # the value as a whole JSON string, so the result stays valid JSON
                result = conn.execute(sa.text(
                    f"update {_qualified(table.name)} "
                    f"set {col} = regexp_replace({text}, :pattern, :erased, 'gi')::{data_type} "
                    f"where strpos(lower({text}), lower(:token)) > 0"),
                    {"token": token, "pattern": re.escape(token), "erased": json.dumps("[erased]")})
                redacted[f"{table.name}.{column}"] = redacted.get(f"{table.name}.{column}", 0) + result.rowcount
    return redacted


def erase_customer(engine: sa.Engine, *, requested_at: datetime, customer_id: str | None = None,
                   email: str | None = None, request_ref: str | None = None, run_id: str | None = None,
                   keep_suppression: bool = True) -> ErasureResult:
    """Erase one person (by id, by address, or both) in one transaction; see the module docstring."""
    if not (customer_id or email):
        raise ValueError("an erasure needs a customer_id or an email")
    if requested_at.tzinfo is None:
        raise ValueError("requested_at must be timezone-aware")
    with engine.begin() as conn:
        # One erasure at a time: two requests for the same person must not interleave.
        conn.execute(sa.text("select pg_advisory_xact_lock(:k)"), {"k": 0x5EA4_E2A5})
        subject = _subject(conn, customer_id.strip() if customer_id else None, email)
        found = conn.execute(sa.text("select count(*) from smarketing.customers where customer_id = any(:ids)"),
                             {"ids": subject["ids"]}).scalar_one()
        result = ErasureResult(customers_found=found)
        forgotten_signals = _delete_text_signals(conn, subject)
        result.rows_deleted = _delete_everywhere(conn, subject)
        result.rows_deleted["smarketing.text_signals"] = forgotten_signals
        result.json_redacted = _redact_json(conn, subject["emails"] + subject["phones"])
        if keep_suppression:
            for address in subject["emails"]:
                conn.execute(sa.text(
                    """insert into smarketing.suppressions (email, customer_id, reason, source, suppressed_at)
                       values (:e, null, 'erasure', 'operator', :t)
                       on conflict (email) do update set reason = 'erasure', customer_id = null"""),
                    {"e": address, "t": requested_at})
            result.suppressed = len(subject["emails"])
        else:
            conn.execute(sa.text(
                "delete from smarketing.suppressions where lower(email) = any(:e) or customer_id = any(:ids)"),
                {"e": subject["emails"], "ids": subject["ids"]})
        keys = [sha256_hex(i) for i in subject["ids"]] or [None]
        email_hash = sha256_hex(subject["emails"][0]) if subject["emails"] else None
        for key in keys:
            recorded = conn.execute(sa.text(
                """insert into smarketing.erasures
                       (customer_key, email_hash, request_ref, requested_at, rows_deleted, run_id)
                   select :k, :h, coalesce(:r, ''), :t, cast(:rows as jsonb), :run
                    where not exists (select 1 from smarketing.erasures e
                                       where e.request_ref = coalesce(:r, '')
                                         and (e.customer_key = :k or e.email_hash = :h))
                   on conflict do nothing"""),
                {"k": key, "h": email_hash, "r": request_ref, "t": requested_at,
                 "rows": json.dumps({t: n for t, n in result.rows_deleted.items() if n}), "run": run_id})
            result.recorded = result.recorded or recorded.rowcount > 0
    return result


def reerase_returned(engine: sa.Engine, *, now: datetime, run_id: str | None = None) -> int:
    """Erase again every customer whose id was erased but came back (the shop re-sent the record)."""
    with engine.connect() as conn:
        returned = conn.execute(sa.text(
            """select c.customer_id from smarketing.customers c
                where encode(sha256(convert_to(c.customer_id, 'UTF8')), 'hex') in
                      (select customer_key from smarketing.erasures where customer_key is not null)""")).scalars().all()
    for customer_id in returned:
        erase_customer(engine, requested_at=now, customer_id=customer_id, request_ref="re-erased after re-ingestion",
                       run_id=run_id)
    return len(returned)


# -- retention -------------------------------------------------------------------------------------------

def apply_retention(engine: sa.Engine, *, now: datetime, settings: PrivacySettings) -> dict[str, int]:
    """Delete or strip raw contact data older than the configured retention; returns rows touched per rule."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    contact_cutoff = now - timedelta(days=settings.contact_retention_days)
    quarantine_cutoff = now - timedelta(days=settings.quarantine_contact_retention_days)
    keys = list(CONTACT_KEYS)
    with engine.begin() as conn:
        contacts = conn.execute(sa.text(
            """delete from smarketing.customer_contacts cc
                using smarketing.customers c
                where c.customer_id = cc.customer_id
                  and cc.updated_at < :cutoff and c.updated_at < :cutoff
                  and not exists (select 1 from smarketing.orders o
                                   where o.customer_id = cc.customer_id
                                     and greatest(o.ordered_at, o.updated_at) >= :cutoff)"""),
            {"cutoff": contact_cutoff}).rowcount
        events = conn.execute(sa.text(
            "update smarketing.email_events set email = null where email is not null and occurred_at < :cutoff"),
            {"cutoff": contact_cutoff}).rowcount
        quarantine = conn.execute(sa.text(
            """update smarketing.quarantine set raw = raw - cast(:keys as text[])
                where quarantined_at < :cutoff and raw ?| cast(:keys as text[])"""),
            {"cutoff": quarantine_cutoff, "keys": keys}).rowcount
    return {"contacts_deleted": contacts, "email_events_stripped": events, "quarantine_rows_stripped": quarantine}
