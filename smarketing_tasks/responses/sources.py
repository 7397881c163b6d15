"""Where responses come from: the shop's reference schema, an export folder, and a review platform's export.

Every adapter delivers all-text DataFrames in the reference columns of ``reviews``, ``social_posts`` and
``email_events`` (``smarketing_tasks.schema``) plus the optional response columns below when the source
has them. Validation and typing happen once, downstream, for every source alike.

Optional response columns (filled when a source carries them, empty otherwise):

- reviews: ``review_token`` (the signed token of the ``/r/{token}`` link the review came through),
  ``language`` (as the platform reports it), ``reviewer_email`` (platform exports name people by email),
  ``moderation`` (``published`` | ``pending`` | ``spam`` as the platform judged it);
- social_posts: ``share_token`` (the token of a ``/s/{token}`` link; also found in the post's url or text);
- email_events: ``bounce_type`` (``hard`` | ``soft``), ``message_id`` (our outbox id, from the
  ``X-Smarketing-Message-Id`` header the ESP echoes), ``channel`` (``email`` | ``sms``), ``phone`` (SMS STOP).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

from smarketing_tasks.schema import CHANGE_COLUMN, SOURCE_COLUMNS
from smarketing_tasks.sources.base import Window
from smarketing_tasks.sources.export_files import ExportFolderSource, _in_window
from smarketing_tasks.sources.sql_reference import ReferenceSqlSource, _literal

if TYPE_CHECKING:
    import pandas as pd

RESPONSE_DATASETS: Final = ("reviews", "social_posts", "email_events")
OPTIONAL_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "reviews": ("review_token", "language", "reviewer_email", "moderation"),
    "social_posts": ("share_token",),
    "email_events": ("bounce_type", "message_id", "channel", "phone"),
}


def response_columns(dataset: str) -> tuple[str, ...]:
    """The reference columns of a response dataset followed by its optional columns."""
    return SOURCE_COLUMNS[dataset] + OPTIONAL_COLUMNS[dataset]


class ResponseSqlSource(ReferenceSqlSource):
    """Schema ``shop`` with the response datasets; optional columns are read when the table has them."""

    def datasets(self) -> tuple[str, ...]:
        return RESPONSE_DATASETS

    def read(self, dataset: str, window: Window, batch_rows: int) -> Iterator[pd.DataFrame]:
        import sqlalchemy as sa

        from smarketing_tasks.db import copy_query_to_frames

        with self.engine.connect() as conn:
            conn.exec_driver_sql("set time zone 'UTC'")
            present = set(conn.execute(sa.text(
                "select column_name from information_schema.columns where table_schema = :s and table_name = :t"),
                {"s": self.schema, "t": dataset}).scalars())
            if not present:
                return
            columns = response_columns(dataset)
            select = ", ".join(f"{c}::text" if c in present else f"null::text as {c}" for c in columns)
            change = CHANGE_COLUMN[dataset]
            conditions = [f"({change} <= {_literal(window.until)} or {change} is null)"]
            if window.since is not None:
                conditions.append(f"({change} > {_literal(window.since)} or {change} is null)")
            query = f"select {select} from {self.schema}.{dataset} where {' and '.join(conditions)}"
            for frame in copy_query_to_frames(conn, query, batch_rows):
                frame.columns = list(columns)
                yield frame


class ResponseExportSource(ExportFolderSource):
    """An export folder (``reviews.csv``, ``social_posts.jsonl``, …) in the reference plus optional columns."""

    def datasets(self) -> tuple[str, ...]:
        return tuple(d for d in RESPONSE_DATASETS if self._file(d) is not None)

    def columns_of(self, dataset: str) -> list[str]:
        return list(response_columns(dataset) if dataset in RESPONSE_DATASETS else SOURCE_COLUMNS[dataset])

    def read(self, dataset: str, window: Window, batch_rows: int) -> Iterator[pd.DataFrame]:
        path = self._file(dataset) if dataset in RESPONSE_DATASETS else None
        if path is None:
            return
        for frame in self._frames(path, dataset, batch_rows):
            yield _in_window(frame, CHANGE_COLUMN[dataset], window)


# Judge.me's review export (Reviews > Export; the same layout its importer reads), in documented order.
JUDGEME_COLUMNS: Final = (
    "title", "body", "rating", "review_date", "source", "curated", "reviewer_name", "reviewer_email",
    "product_id", "product_handle", "reply", "reply_date", "picture_urls", "ip_address", "location",
    "metaobject_handle",
)
_JUDGEME_REQUIRED: Final = ("title", "body", "rating", "review_date", "reviewer_email", "product_handle")
_JUDGEME_MODERATION: Final = {"ok": "published", "spam": "spam", "not-yet": "pending"}


def decode_mixed(data: bytes) -> tuple[str, int]:
    """Decode a file whose lines may be UTF-8 or Windows-1252 (Excel round-trips mix them).

    Returns the text and the number of lines that needed the fallback. Each line is tried as UTF-8 first,
    so a file in one encoding is read exactly; cp1252 maps every byte, so nothing is lost.
    """
    try:
        return data.decode("utf-8-sig"), 0
    except UnicodeDecodeError:
        pass
    lines, fallbacks = [], 0
    for line in data.split(b"\n"):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(line.decode("cp1252", errors="replace"))
            fallbacks += 1
    return "\n".join(lines).removeprefix("\ufeff"), fallbacks


class JudgeMeExportSource:
    """A Judge.me review export CSV mapped onto the ``reviews`` dataset.

    Mapping: ``review_id`` = ``judgeme-`` + a hash of reviewer, product, date and text (the export has no
    id, and the same review exported twice must keep its id); ``reviewer_email`` resolves the customer;
    ``product_handle`` (else ``product_id``) goes into ``sku`` and is resolved to a shop sku by sku or by
    product-name slug; ``review_date`` (``YYYY-MM-DD[ HH:MM:SS][ UTC]``) → ``created_at`` in UTC;
    ``curated`` ok/not-yet/spam → ``moderation`` published/pending/spam; published reviews are public, so
    ``consent_to_publish`` = published. Judge.me exports no incentive flag: ``incentivized`` is false
    unless the review is attributed to an ask that offered one.
    """

    def __init__(self, path: str | Path, name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name or f"judgeme:{self.path.stem}"
        self.fallback_lines = 0

    def datasets(self) -> tuple[str, ...]:
        return ("reviews",)

    def table(self) -> pd.DataFrame:
        """The whole export in reference review columns (all text)."""
        import pandas as pd

        text, self.fallback_lines = decode_mixed(self.path.read_bytes())
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
        raw.columns = [c.strip().lower() for c in raw.columns]
        missing = [c for c in _JUDGEME_REQUIRED if c not in raw.columns]
        if missing:
            raise ValueError(f"{self.path} is not a Judge.me review export: columns {missing} are missing "
                             f"(expected {', '.join(JUDGEME_COLUMNS)})")
        raw = raw.astype(object).where(raw.notna(), None)

        def column(name: str) -> pd.Series:
            return raw[name] if name in raw.columns else pd.Series([None] * len(raw), index=raw.index, dtype=object)

        product = column("product_handle").where(column("product_handle").notna(), column("product_id"))
        date = column("review_date").map(lambda v: None if v is None else str(v).strip().removesuffix("UTC").strip())
        curated = column("curated").map(lambda v: None if v is None else str(v).strip().lower())
        moderation = curated.map(lambda v: _JUDGEME_MODERATION.get(v, v))
        identity = (column("reviewer_email").fillna("").str.lower() + "|" + product.fillna("") + "|"
                    + date.fillna("") + "|" + column("title").fillna("") + "|" + column("body").fillna(""))
        out = pd.DataFrame({
            "review_id": identity.map(lambda s: "judgeme-" + hashlib.sha256(s.encode()).hexdigest()[:20]),
            "order_id": None, "customer_id": None, "sku": product,
            "rating": column("rating"), "title": column("title"), "body": column("body"),
            "consent_to_publish": moderation.map(lambda v: None if v is None else str(v == "published").lower()),
            "incentivized": "false", "created_at": date,
            "review_token": None, "language": None, "reviewer_email": column("reviewer_email"),
            "moderation": moderation,
        }, index=raw.index)
        return out[list(response_columns("reviews"))].astype(object).where(out.notna(), None)

    def read(self, dataset: str, window: Window, batch_rows: int) -> Iterator[pd.DataFrame]:
        if dataset != "reviews" or not self.path.exists():
            return
        selected = _in_window(self.table(), "created_at", window)
        for start in range(0, len(selected), batch_rows):
            yield selected.iloc[start : start + batch_rows].reset_index(drop=True)


def response_source_from_url(url: str):
    """``postgresql://…`` (schema shop), ``file:///dir`` (export folder), ``judgeme:///file.csv``."""
    if url.startswith("judgeme://"):
        return JudgeMeExportSource(url.removeprefix("judgeme://"))
    if url.startswith("file://"):
        return ResponseExportSource(url.removeprefix("file://"))
    return ResponseSqlSource(url)


PLATFORM_FORMATS: Final = {"judgeme": JudgeMeExportSource}


def shop_response_source(extra: dict, url: str):
    """The shop connection's response datasets: the same adapter choice as purchases (``extra["source"]``).

    Returns None for sources without responses (the CDNOW purchase history has none).
    """
    kind = extra.get("source", "sql")
    if kind == "export":
        return ResponseExportSource(extra["path"], name=extra.get("name"))
    if kind == "cdnow":
        return None
    return ResponseSqlSource(url, schema=extra.get("schema", "shop"), name=extra.get("name", "shop"))


def platform_review_source(extra: dict, path: str | None = None):
    """A review platform's export from connection ``smarketing_review_platform``:
    extra ``{"format": "judgeme", "path": "/exports/judgeme-reviews.csv"}`` (or the path in the host field)."""
    fmt = extra.get("format", "judgeme")
    if fmt not in PLATFORM_FORMATS:
        raise ValueError(f"unknown review platform format {fmt!r}; supported: {', '.join(PLATFORM_FORMATS)}")
    location = extra.get("path") or path
    if not location:
        raise ValueError("connection smarketing_review_platform needs the export's path (extra 'path')")
    return PLATFORM_FORMATS[fmt](location, name=extra.get("name"))
