"""Templates and headers: customer data is data (HTML, Jinja syntax, header breaks), wording is in files."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from email import message_from_bytes, policy

import pytest

from smarketing_tasks.outreach import OutreachSettings, plan_outreach, send_outreach
from smarketing_tasks.outreach.rendering import MessageData, Renderer, RenderError, discover_variants
from tests.smarketing_tasks.outreach.helpers import AS_OF, SmtpServer

S = replace(OutreachSettings(), link_signing_key="k")
EVIL_NAME = "<script>alert(1)</script>{{ 7*7 }}{% raw %}\r\nBcc: victim@evil.example\r\n"
EVIL_PRODUCT = "<img src=x onerror=alert(2)>{{ config }}'); drop table smarketing.orders;--\nX-Injected: yes"


def _data(**overrides) -> MessageData:
    base = {"message_id": "m" * 32, "customer_id": "c1", "order_id": "o1", "kind": "review_request", "step": 1,
            "channel": "email", "variant": "A", "due_at": AS_OF, "email": "ann@example.com", "first_name": "Ann",
            "products": ("Blue Mug",)}
    return MessageData(**{**base, **overrides})


def test_templates_are_discovered_with_variants():
    variants = discover_variants(Renderer(S, b"k").root)
    assert variants["review_request"] == ["A", "B"]
    assert {"review_reminder", "share_ask"} <= set(variants)


def test_injection_in_names_and_products_is_harmless():
    rendered = Renderer(S, b"k").render(_data(first_name=EVIL_NAME, products=(EVIL_PRODUCT,)), AS_OF)
    raw = rendered.raw
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Bcc"] is None and parsed["X-Injected"] is None
    assert "\n" not in parsed["Subject"] and "\r" not in str(parsed["To"])
    html = parsed.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html and "<img src=x" not in html
    assert "{{ 7*7 }}" in html.replace("&#34;", '"') or "{{ 7*7 }}" in parsed.get_body(("plain",)).get_content()
    assert "49" not in parsed["Subject"]
    text = parsed.get_body(("plain",)).get_content()
    assert "{{ config }}" in text and "drop table" in text  # printed as typed, nothing evaluated


def test_a_marketer_can_change_wording_without_python(tmp_path):
    root = tmp_path / "outreach"
    for part, content in {"subject.txt": "Hey {{ first_name }}!", "body.txt": "Review: {{ review_link }}",
                          "body.html": "<p>{{ first_name }}</p>"}.items():
        (root / "review_request" / "Z").mkdir(parents=True, exist_ok=True)
        (root / "review_request" / "Z" / part).write_text(content)
    renderer = Renderer(replace(S, templates_dir=str(root)), b"k")
    rendered = renderer.render(_data(variant="Z", first_name="<b>Bo</b>"), AS_OF)
    assert rendered.subject == "Hey <b>Bo</b>!" and rendered.html == "<p>&lt;b&gt;Bo&lt;/b&gt;</p>"
    assert rendered.text.startswith(f"Review: {S.links_base_url}/r/")


def test_sandbox_stops_a_template_reaching_python(tmp_path):
    root = tmp_path / "outreach" / "review_request" / "A"
    root.mkdir(parents=True)
    (root / "subject.txt").write_text("{{ first_name.__class__.__mro__[1].__subclasses__() }}")
    (root / "body.txt").write_text("x")
    with pytest.raises(RenderError):
        Renderer(replace(S, templates_dir=str(tmp_path / "outreach")), b"k").render(_data(), AS_OF)


def test_invalid_addresses_fail_permanently():
    renderer = Renderer(S, b"k")
    for address in ("ann@example.com\r\nBcc: x@evil.example", "not-an-address", None):
        with pytest.raises(RenderError):
            renderer.render(_data(email=address), AS_OF)


def test_rendering_is_deterministic_for_a_resend():
    renderer = Renderer(S, b"k")
    first, second = renderer.render(_data(), AS_OF), renderer.render(_data(), AS_OF)
    assert first.raw == second.raw


@pytest.mark.integration
def test_injection_end_to_end_through_planning_sql_and_smtp(shop):
    shop.customer("c1", first_name=EVIL_NAME)
    shop.order("o1", "c1", items=[("SKU-1", EVIL_PRODUCT)])
    plan_outreach(shop.engine, AS_OF, S)
    with SmtpServer() as server:
        report = send_outreach(shop.engine, AS_OF, S, server.params, lambda: AS_OF + timedelta(hours=1),
                               worker="t", warn=lambda _: None)
    assert report.sent == 1
    (message,) = server.handler.messages
    assert message["Bcc"] is None and message["X-Injected"] is None
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html and "<img src=x" not in html
    with shop.engine.connect() as conn:
        import sqlalchemy as sa

        assert conn.execute(sa.text("select count(*) from smarketing.orders")).scalar() == 1
