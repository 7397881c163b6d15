"""Render outbox rows into messages: Jinja2 templates (sandboxed, HTML autoescaped), signed links, headers.

Customer data only ever enters as template *variables*, never as template source, so a name such as
``{{ 7*7 }}`` prints literally; HTML parts escape every value; header values lose line breaks and
control characters, so nothing a customer typed can add a header. Rendering is deterministic for a
message (links expire relative to its due time), so a resend is byte-for-byte the same message.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from functools import cached_property
from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment

from smarketing_tasks import tokens
from smarketing_tasks.outreach.settings import OutreachSettings
from smarketing_tasks.outreach.variants import discover_variants, templates_root

MESSAGE_DOMAIN = "smarketing.local"
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_ADDRESS = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")


class RenderError(ValueError):
    """A message that cannot be built (bad address, broken template): a permanent failure."""


def header_safe(value: str, limit: int = 200) -> str:
    """One line, no control characters: what a header (or a subject) may carry."""
    return " ".join(_CONTROL.sub(" ", value).split())[:limit]


def message_id_header(message_id: str) -> str:
    return f"<{message_id}@{MESSAGE_DOMAIN}>"


@dataclass(frozen=True)
class MessageData:
    """One outbox row joined with what its text needs (contacts, products, referral code)."""

    message_id: str
    customer_id: str
    order_id: str | None
    kind: str
    step: int
    channel: str
    variant: str
    due_at: datetime
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    products: tuple[str, ...] = ()
    referral_code: str | None = None
    incentive_offered: bool = False
    time_zone: str | None = None
    expires_at: datetime | None = None


def _qp(text: str) -> bytes:
    """Quoted-printable UTF-8 with CRLF line ends: readable in a Maildir, 7-bit and short-lined on the wire."""
    normalized = text.replace("\r\n", "\n").replace("\r", "\n")
    return binascii.b2a_qp(normalized.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")


def _encoded(value: str) -> str:
    return value if value.isascii() else Header(value, "utf-8").encode()


@dataclass(frozen=True)
class RenderedMessage:
    message_id: str
    kind: str
    channel: str
    customer_id: str
    to: str
    subject: str
    text: str
    html: str | None
    headers: dict[str, str] = field(default_factory=dict)
    from_address: str = ""

    @cached_property
    def raw(self) -> bytes:
        """The MIME bytes (CRLF lines), built once and directly: the email package's generator and header
        folding cost more CPU than everything else in a send. Every header value was made single-line by
        ``header_safe`` or validated before this point; non-ASCII values become RFC 2047 encoded words.
        """
        head = [("MIME-Version", "1.0"), ("From", self.from_address), ("To", self.to),
                ("Subject", _encoded(self.subject)), *self.headers.items()]
        if self.html is None:
            head += [("Content-Type", 'text/plain; charset="utf-8"'), ("Content-Transfer-Encoding", "quoted-printable")]
            body = _qp(self.text)
        else:
            boundary = f"=_smarketing_{self.message_id}"  # stable: a resend is the same bytes
            head.append(("Content-Type", f'multipart/alternative; boundary="{boundary}"'))
            parts = [f"--{boundary}\r\nContent-Type: text/{subtype}; charset=\"utf-8\"\r\n"
                     f"Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode() + _qp(content) + b"\r\n"
                     for subtype, content in (("plain", self.text), ("html", self.html))]
            body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        header_bytes = "".join(f"{name}: {value}\r\n" for name, value in head).encode("ascii")
        return header_bytes + b"\r\n" + body

    @property
    def envelope_from(self) -> str:
        return parseaddr(self.from_address)[1]

    @property
    def envelope_to(self) -> str:
        return parseaddr(self.to)[1]

    def to_email(self) -> EmailMessage:
        """The message as a recipient parses it (for tests and tools)."""
        return message_from_bytes(self.raw, policy=policy.default)  # type: ignore[return-value]

    def to_json(self) -> dict:
        return {"message_id": self.message_id, "kind": self.kind, "channel": self.channel,
                "customer_id": self.customer_id, "to": self.to, "text": self.text}


class Renderer:
    def __init__(self, settings: OutreachSettings, signing_key: bytes, root: Path | None = None) -> None:
        self.settings = settings
        self.key = signing_key
        self.root = root or templates_root(settings)
        self.variants = discover_variants(self.root)

    @cached_property
    def env(self) -> ImmutableSandboxedEnvironment:
        return ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(str(self.root)),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
        )

    def link(self, path: str, message_id: str, purpose: tokens.Purpose, due_at: datetime) -> str:
        expires = due_at + timedelta(days=self.settings.link_ttl_days)
        return f"{self.settings.links_base_url.rstrip('/')}/{path}/{tokens.sign(self.key, message_id, purpose, expires)}"

    def context(self, data: MessageData) -> dict:
        products = [header_safe(p, 120) for p in data.products if p] or ["order"]
        summary = products[0] if len(products) == 1 else f"{products[0]} and {len(products) - 1} more"
        return {
            "first_name": header_safe(data.first_name or "", 60) or "there",
            "products": products, "product_summary": summary,
            "brand_name": self.settings.brand_name, "postal_address": self.settings.postal_address,
            "review_link": self.link("r", data.message_id, tokens.Purpose.REVIEW, data.due_at),
            "share_link": self.link("s", data.message_id, tokens.Purpose.SHARE, data.due_at),
            "unsubscribe_link": self.link("u", data.message_id, tokens.Purpose.UNSUBSCRIBE, data.due_at),
            "referral_code": data.referral_code or "",
            "incentive": self.settings.review_incentive if data.incentive_offered else "",
            "kind": data.kind, "variant": data.variant,
        }

    def _template(self, data: MessageData, name: str, required: bool = True):
        variant = data.variant if data.variant in self.variants.get(data.kind, []) else None
        if variant is None:
            known = self.variants.get(data.kind)
            if not known:
                raise RenderError(f"no templates for {data.kind} in {self.root}")
            variant = known[0]
        path = self.root / data.kind / variant / name
        if not path.exists():
            fallback = self.root / data.kind / self.variants[data.kind][0] / name
            if fallback.exists():
                return self.env.get_template(f"{data.kind}/{self.variants[data.kind][0]}/{name}")
            if required:
                raise RenderError(f"template {path} is missing")
            return None
        return self.env.get_template(f"{data.kind}/{variant}/{name}")

    def render(self, data: MessageData, date: datetime) -> RenderedMessage:
        context = self.context(data)
        try:
            if data.channel == "sms":
                template = self._template(data, "sms.txt", required=False)
                text = template.render(context) if template else (
                    f"{context['brand_name']}: {context['review_link']} Reply STOP to opt out.")
                if not data.phone or not re.fullmatch(r"\+?[0-9 ()./-]{5,24}", data.phone):
                    raise RenderError("no valid phone number")
                return RenderedMessage(data.message_id, data.kind, data.channel, data.customer_id,
                                       data.phone.strip(), "", header_safe(text, 480), None)
            subject = header_safe(self._template(data, "subject.txt").render(context), 150)
            text = self._template(data, "body.txt").render(context)
            html_template = self._template(data, "body.html", required=False)
            html = html_template.render(context) if html_template else None
        except RenderError:
            raise
        except Exception as error:  # a template a marketer broke: fail this message loudly, with the reason
            raise RenderError(f"template error for {data.kind}/{data.variant}: {error}") from error
        address = (data.email or "").strip()
        if not _ADDRESS.match(address) or _CONTROL.search(address):
            raise RenderError("no valid email address")
        name = header_safe(data.first_name or "", 60)
        unsubscribe = context["unsubscribe_link"]
        headers = {
            "Date": format_datetime(date),
            "Message-ID": message_id_header(data.message_id),
            "X-Smarketing-Message-Id": data.message_id,
            "X-Smarketing-Kind": data.kind,
            "X-Smarketing-Customer-Id": header_safe(data.customer_id, 100),
            "X-Smarketing-Variant": header_safe(data.variant, 40),
            # RFC 8058: an HTTPS (here: the link service) URI plus the one-click POST marker.
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Auto-Submitted": "auto-generated",
        }
        from_name, from_addr = parseaddr(self.settings.from_address)
        return RenderedMessage(data.message_id, data.kind, data.channel, data.customer_id,
                               formataddr((name, address), charset="utf-8") if name else address, subject, text,
                               html, headers, formataddr((from_name, from_addr), charset="utf-8"))
