"""A small FastAPI app beside Airflow (not inside its API server) for the links in every message.

* ``GET /r/{token}`` and ``GET /s/{token}``: record the first click of a review or share link against
  the message that carried it, then redirect (303) to the review form or the tracked share URL.
  Clicking again still redirects but records nothing new.
* ``GET /u/{token}``: a confirmation page; a GET never unsubscribes (mail scanners prefetch links).
* ``POST /u/{token}``: RFC 8058 one-click unsubscribe (``List-Unsubscribe=One-Click``) and the
  confirmation page's button: writes ``smarketing.suppressions`` and consumes the token in one
  transaction, so a replay changes nothing.

A forged, damaged, expired or wrong-purpose token changes nothing and gets a page that says which.
"Now" comes from ``clock`` (the CLI passes the real clock).
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Callable
from datetime import datetime
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from smarketing_tasks import tokens
from smarketing_tasks.outreach.settings import OutreachSettings

_STATUS = {"expired": 410, "forged": 400, "malformed": 400, "wrong_purpose": 400, "unknown": 404}
_EXPLAIN = {
    "expired": "This link has expired. Nothing was changed.",
    "forged": "This link was not issued by us. Nothing was changed.",
    "malformed": "This link is incomplete or damaged (was it cut off in your email program?). Nothing was changed.",
    "wrong_purpose": "This link is not meant for this page. Nothing was changed.",
    "unknown": "We do not know the message this link belongs to. Nothing was changed.",
}


def _page(title: str, body_html: str, status: int = 200, brand: str = "") -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><meta name='robots' content='noindex'>"
        f"<title>{html.escape(title)}</title></head><body style='font-family:sans-serif;max-width:36em;margin:3em auto'>"
        f"<h1>{html.escape(title)}</h1>{body_html}<p style='color:#666'>{html.escape(brand)}</p></body></html>",
        status_code=status)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_app(engine: sa.Engine, settings: OutreachSettings, keys: list[bytes],
               clock: Callable[[], datetime]) -> FastAPI:
    app = FastAPI(title="smarketing links", docs_url=None, redoc_url=None, openapi_url=None)
    brand = settings.brand_name

    def problem(kind: str) -> HTMLResponse:
        return _page("This link does not work", f"<p>{html.escape(_EXPLAIN[kind])}</p>", _STATUS[kind], brand)

    def check(token: str, purpose: tokens.Purpose):
        """(claims, message row) or an error page; nothing is written on the way."""
        try:
            claims = tokens.verify(keys, token, clock(), purpose)
        except tokens.InvalidToken as error:
            return None, problem(error.kind)
        with engine.connect() as conn:
            message = conn.execute(sa.text(
                "select m.message_id, m.customer_id, m.order_id, m.kind, m.template_variant, rc.referral_code "
                "from smarketing.outreach_messages m "
                "left join smarketing.referral_codes rc on rc.customer_id = m.customer_id "
                "where m.message_id = :m"), {"m": claims.message_id}).first()
        if message is None:
            return None, problem("unknown")
        return message, None

    def record_click(token: str, message, purpose: tokens.Purpose, request: Request) -> None:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "insert into smarketing.link_clicks (token_hash, message_id, purpose, customer_id, clicked_at, user_agent)"
                " values (:h, :m, :p, :c, :t, :ua) on conflict (token_hash) do nothing"),
                {"h": token_hash(token), "m": message.message_id, "p": str(purpose), "c": message.customer_id,
                 "t": clock(), "ua": (request.headers.get("user-agent") or "")[:300]})

    @app.get("/healthz")
    def healthz() -> dict:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        return {"ok": True}

    @app.get("/r/{token}")
    def review(token: str, request: Request):
        message, error = check(token, tokens.Purpose.REVIEW)
        if error:
            return error
        record_click(token, message, tokens.Purpose.REVIEW, request)
        target = settings.review_url.format(order_id=quote(message.order_id or "", safe=""), token=quote(token),
                                            message_id=message.message_id)
        return RedirectResponse(target, status_code=303)

    @app.get("/s/{token}")
    def share(token: str, request: Request):
        message, error = check(token, tokens.Purpose.SHARE)
        if error:
            return error
        record_click(token, message, tokens.Purpose.SHARE, request)
        target = settings.share_url.format(referral_code=quote(message.referral_code or "", safe=""),
                                           kind=quote(message.kind), variant=quote(message.template_variant),
                                           message_id=message.message_id)
        return RedirectResponse(target, status_code=303)

    @app.get("/u/{token}")
    def unsubscribe_page(token: str):
        message, error = check(token, tokens.Purpose.UNSUBSCRIBE)
        if error:
            return error
        if _consumed(engine, token):
            return _page("You are unsubscribed", "<p>This link was already used; you will get no more emails "
                         "from us.</p>", 200, brand)
        action = html.escape(f"/u/{token}", quote=True)
        return _page("Unsubscribe?", f"<p>Stop all marketing emails from {html.escape(brand)}?</p>"
                     f"<form method='post' action='{action}'><input type='hidden' name='List-Unsubscribe' "
                     f"value='One-Click'><button type='submit'>Unsubscribe</button></form>", 200, brand)

    @app.post("/u/{token}")
    def unsubscribe(token: str):
        message, error = check(token, tokens.Purpose.UNSUBSCRIBE)
        if error:
            return error
        now = clock()
        with engine.begin() as conn:
            first = conn.execute(sa.text(
                "insert into smarketing.link_consumptions (token_hash, message_id, purpose, consumed_at, outcome)"
                " values (:h, :m, 'unsubscribe', :t, 'unsubscribed') on conflict (token_hash) do nothing"
                " returning 1"), {"h": token_hash(token), "m": message.message_id, "t": now}).first()
            if first is not None:
                conn.execute(sa.text(
                    "insert into smarketing.suppressions (email, customer_id, reason, source, suppressed_at)"
                    " select coalesce(lower(nullif(btrim(cc.email), '')), 'customer:' || :c), :c, 'unsubscribe',"
                    " 'link_service', :t from (select 1) one"
                    " left join smarketing.customer_contacts cc on cc.customer_id = :c"
                    " on conflict (email) do nothing"), {"c": message.customer_id, "t": now})
        return _page("You are unsubscribed", "<p>You will get no more marketing emails from us. "
                     "Changed your mind? Just write to us.</p>", 200, brand)

    return app


def _consumed(engine: sa.Engine, token: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(sa.text("select 1 from smarketing.link_consumptions where token_hash = :h"),
                            {"h": token_hash(token)}).first() is not None
