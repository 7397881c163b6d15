"""Signed, expiring link tokens (HMAC-SHA256) for review, share and unsubscribe links.

A token is ``<payload>.<signature>``, both base64url without padding; the payload is compact JSON with
the message it belongs to (``m``), what it is for (``p``) and when it expires (``exp``, Unix seconds).
Verification takes "now" as an argument (no wall clock here) and tells forged, expired and malformed
tokens apart so that the link service can show a clear page for each.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa


class Purpose(StrEnum):
    REVIEW = "review"
    SHARE = "share"
    UNSUBSCRIBE = "unsubscribe"


class InvalidToken(ValueError):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # malformed | forged | expired | wrong_purpose


@dataclass(frozen=True)
class LinkClaims:
    message_id: str
    purpose: Purpose
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, message_id: str, purpose: Purpose, expires_at: datetime) -> str:
    payload = json.dumps({"m": message_id, "p": str(purpose), "exp": int(expires_at.timestamp())},
                         separators=(",", ":"), sort_keys=True).encode()
    body = _b64(payload)
    signature = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()
    return f"{body}.{_b64(signature)}"


def verify(keys: bytes | list[bytes], token: str, now: datetime, purpose: Purpose | None = None) -> LinkClaims:
    """Check a token against the current key (and retired keys during rotation); raise InvalidToken if bad."""
    try:
        body, signature = token.split(".")
        given = _unb64(signature)
    except (ValueError, TypeError) as error:
        raise InvalidToken("malformed", "this link is incomplete or damaged") from error
    candidates = keys if isinstance(keys, list) else [keys]
    if not any(hmac.compare_digest(hmac.new(k, body.encode("ascii"), hashlib.sha256).digest(), given)
               for k in candidates):
        raise InvalidToken("forged", "this link was not issued by us")
    try:
        payload = json.loads(_unb64(body))
        claims = LinkClaims(str(payload["m"]), Purpose(payload["p"]), int(payload["exp"]))
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidToken("malformed", "this link is incomplete or damaged") from error
    if claims.expires_at < now.timestamp():
        raise InvalidToken("expired", "this link has expired")
    if purpose is not None and claims.purpose != purpose:
        raise InvalidToken("wrong_purpose", f"this link is for {claims.purpose}, not {purpose}")
    return claims


def get_or_create_secret(engine: sa.Engine, name: str, configured: str | None = None,
                         warn=print) -> bytes:
    """The configured secret, or one generated once and kept in ``smarketing.secrets`` (with a warning)."""
    if configured:
        return configured.encode()
    with engine.begin() as conn:
        conn.execute(
            sa.text("insert into smarketing.secrets (name, value) values (:n, :v) on conflict (name) do nothing"),
            {"n": name, "v": secrets.token_urlsafe(32)},
        )
        value = conn.execute(sa.text("select value from smarketing.secrets where name = :n"), {"n": name}).scalar_one()
    warn(f"WARNING: no {name} configured; using the one generated and kept in smarketing.secrets. "
         f"Set SMARKETING_{name.upper()} in production (docs/operations.md).")
    return value.encode()
