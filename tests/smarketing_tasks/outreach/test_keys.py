"""The outbox's idempotency key against a real PostgreSQL: free-text ids (colons, percent signs, a lone ``-``)
never make two asks share a key, and the planner's SQL computes the key Python states."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.outreach import OutreachSettings, plan_outreach
from smarketing_tasks.outreach.eligibility import idempotency_key, message_id_for, variant_for
from tests.smarketing_tasks.outreach.helpers import AS_OF

pytestmark = pytest.mark.integration
S = OutreachSettings()

TRICKY_IDS = ["c1", "", "-", "--", "%", "%%", "%25", "%3A", "%2D", ":", "::", "a:b", "a%3Ab", "a%b:c%", " - ",
              "ünïcødé:ß", "日本:注文%", "emoji 🙂:%F0", "x'); drop table t; --", "tab\there", "new\nline"]


def test_the_planners_sql_computes_the_python_key_and_message_id_on_tricky_ids(warehouse):
    asks = [(c, o, kind, step) for c in TRICKY_IDS for o in [*TRICKY_IDS, None]
            for kind, step in (("review_request", 1), ("review_reminder", 2))]
    with warehouse.connect() as conn:
        rows = conn.execute(sa.text(
            "select k.key, left(encode(sha256(convert_to(k.key, 'UTF8')), 'hex'), 32) as message_id "
            "from unnest(cast(:c as text[]), cast(:o as text[]), cast(:k as text[]), cast(:s as int[])) "
            "     with ordinality a(c, o, k, s, n) "
            "cross join lateral (select smarketing.outreach_key(a.c, a.o, a.k, a.s) as key) k order by a.n"),
            {"c": [a[0] for a in asks], "o": [a[1] for a in asks], "k": [a[2] for a in asks],
             "s": [a[3] for a in asks]}).all()
    expected = [idempotency_key(*ask) for ask in asks]
    assert [row.key for row in rows] == expected
    assert [row.message_id for row in rows] == [message_id_for(key) for key in expected]
    assert len(set(expected)) == len(asks)  # no two asks share a key


def test_the_key_function_is_inlined_not_called_per_row(warehouse):
    """A SQL function PostgreSQL does not inline is called once per candidate (~5 µs each, 20 times the
    expression); it inlines only a body no more volatile than declared (``|| step`` would be stable)."""
    with warehouse.connect() as conn:
        plan = "\n".join(conn.execute(sa.text(
            "explain verbose select smarketing.outreach_key(customer_id, order_id, 'review_request', 1) "
            "from smarketing.orders")).scalars())
    assert "replace(replace(customer_id" in plan and "outreach_key" not in plan


def _plan(shop, settings=S):
    return plan_outreach(shop.engine, AS_OF, settings, run_id="t")


def test_asks_whose_keys_were_the_same_are_all_planned_and_a_rerun_plans_none_twice(shop):
    """Customer ``a:b``'s order ``c`` and customer ``a``'s order ``b:c`` were both ``a:b:c:review_request:1``:
    the second was dropped without a word. And ids that need escaping are planned under the key Python gives."""
    asks = [("a:b", "c"), ("a", "b:c"), ("d:e:f", "g"), ("d", "e:f:g"), ("d:e", "f:g"),
            ("p%3Aq", "-"), ("p:q", "%2D"), ("ünï:ß", "日本:%"), ("plain", "o1")]
    for n, (customer, order) in enumerate(asks):
        shop.customer(customer, email=f"c{n}@example.com")
        shop.order(order, customer)
    first = _plan(shop)
    messages = shop.messages()
    assert first.planned == len(asks) == len(messages)
    assert {(m.customer_id, m.order_id) for m in messages} == set(asks)
    for m in messages:
        assert m.idempotency_key == idempotency_key(m.customer_id, m.order_id, "review_request", 1)
        assert m.message_id == message_id_for(m.idempotency_key)
        assert m.template_variant == variant_for(m.idempotency_key, ["A", "B"])
        assert m.status == "planned"
    (plain,) = (m for m in messages if m.customer_id == "plain")
    assert plain.idempotency_key == "plain:o1:review_request:1"  # as before the escaping

    again, full_again = _plan(shop), _plan(shop, replace(S, plan_incremental=False))
    assert (again.planned, again.skipped, full_again.planned, full_again.skipped) == (0, 0, 0, 0)
    assert shop.messages() == messages


def test_an_ask_whose_message_id_a_row_planned_before_0026_kept_gets_another(shop):
    """Migration 0026 gave a row of customer ``c%3A1`` the escaped key but kept its message id, the hash of its
    old key ``c%3A1:o%3A1:review_request:1``: exactly the new key of customer ``c:1``'s order ``o:1``."""
    old_key = "c%3A1:o%3A1:review_request:1"
    with shop.engine.begin() as conn:
        conn.execute(sa.text(
            "insert into smarketing.outreach_messages (message_id, idempotency_key, customer_id, order_id, kind,"
            " step, channel, template_variant, consent_basis, status, due_at, expires_at, planned_at, sent_at)"
            " values (:m, :k, 'c%3A1', 'o%3A1', 'review_request', 1, 'email', 'A', 'marketing_consent', 'sent',"
            " :d, :d + interval '7 days', :d, :d)"),
            {"m": message_id_for(old_key), "k": idempotency_key("c%3A1", "o%3A1", "review_request", 1),
             "d": AS_OF - timedelta(days=300)})
    shop.customer("c:1", email="c1@example.com")
    shop.order("o:1", "c:1")
    result = _plan(shop)
    assert result.planned == 1
    (message,) = (m for m in shop.messages() if m.customer_id == "c:1")
    assert message.idempotency_key == old_key
    assert message.message_id == hashlib.sha256((old_key + "#").encode()).hexdigest()[:32]
    assert message.template_variant == variant_for(old_key, ["A", "B"])  # the variant is still the key's
    assert _plan(shop).planned == 0
