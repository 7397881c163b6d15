"""Incremental publishing (issue 9): after a normal day's new data an incremental publish gives exactly the
marts a full rebuild gives, while touching only the changed customers' rows; full rebuilds when due."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from smarketing_tasks.marts import MartSettings, load_catalog, publish_marts
from tests.smarketing_tasks.marts.known_data import AS_OF, load_known_data

CATALOG = load_catalog()
NEXT = AS_OF + timedelta(days=1)  # the next normal run: 2026-11-23 00:00 UTC


def snapshot(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every published mart's rows, sorted, as text (so numeric and float columns compare exactly)."""
    with engine.connect() as conn:
        return {m.name: [tuple(r) for r in conn.execute(sa.text(
            f"select t::text from marketing.{m.name} as t order by 1"))] for m in CATALOG}


def row_versions(engine: sa.Engine, mart: str) -> dict[str, str]:
    """Each stored row's key and the transaction that wrote it: a row no publish rewrote keeps its xmin."""
    # follow_ups is published as a view (days_waiting is computed when read) over smarketing.mart_follow_ups
    reason, stored = ("reason", "smarketing.mart_follow_ups") if mart == "follow_ups" else ("''", f"marketing.{mart}")
    with engine.connect() as conn:
        return dict(conn.execute(sa.text(f"select customer_id || '/' || {reason}, xmin::text from {stored}")).all())


def a_normal_day(engine: sa.Engine) -> None:
    """New and changed rows of 2026-11-22 in every table a mart reads, some of them about old days."""
    statements = [
        # a new order naming SKU-A anew, and an old order delivered today
        """insert into smarketing.orders (order_id, customer_id, ordered_at, status, total_amount, currency,
               updated_at, source)
           values ('o8', 'c2', '2026-11-22 10:00+00', 'placed', 75, 'EUR', '2026-11-22 10:00+00', 'test')""",
        "insert into smarketing.order_items values ('o8', 1, 'SKU-A', 'Alpine Jacket v3', 1, 75)",
        """update smarketing.orders set status = 'delivered', delivered_at = '2026-11-22 12:00+00',
               updated_at = '2026-11-22 12:00+00' where order_id = 'o6'""",
        # a request sent today, and today's answers to requests sent on 11-10 and 11-11
        """insert into smarketing.outreach_messages (message_id, idempotency_key, customer_id, order_id, kind,
               channel, template_variant, status, due_at, expires_at, planned_at, sent_at)
           values ('m9', 'm9', 'c5', 'o6', 'review_request', 'email', 'B', 'sent', '2026-11-22 09:30+00',
                   '2026-12-22 09:30+00', '2026-11-22 09:30+00', '2026-11-22 09:30+00')""",
        """insert into smarketing.reviews (review_id, customer_id, order_id, sku, rating, title, body,
               consent_to_publish, incentivized, language, message_id, created_at, source)
           values ('r7', 'c5', 'o6', 'SKU-B', 5, 'Cosy', 'Lovely warm socks, my feet thank you.', true, false,
                   'en', 'm9', '2026-11-22 15:00+00', 'test'),
                  ('r8', 'c4', 'o4', 'SKU-C', 2, null, 'The mug chipped in the dishwasher.', false, false,
                   'en', null, '2026-11-22 16:00+00', 'test')""",
        # a customer edits an old review: its signals (quote, tone) are stale until the publish refreshes them
        """update smarketing.reviews set title = null, body = 'Still my favourite jacket after a month of hiking. Brilliant!'
           where review_id = 'r1'""",
        """insert into smarketing.social_posts (post_id, platform, customer_id, referral_code, followers,
               posted_at, message_id, source)
           values ('p3', 'instagram', 'c2', null, 800, '2026-11-22 17:00+00', 'm2', 'test')""",
        """insert into smarketing.email_events (event_id, customer_id, event_type, bounce_type, message_id,
               occurred_at, source)
           values ('e7', 'c3', 'open', null, 'm3', '2026-11-22 11:00+00', 'test'),
                  ('e8', 'c1', 'complaint', null, null, '2026-11-22 11:30+00', 'test')""",
        """insert into smarketing.suppressions
           values ('c5@example.com', 'c5', 'unsubscribe', 'email_events', '2026-11-22 18:00+00')""",
        # the loop's own work: a follow-up closed, a reward, a customer's country, and tomorrow's scoring run
        """update smarketing.follow_ups set status = 'resolved', outcome = 'called, happy now',
               updated_at = '2026-11-22 14:00+00' where customer_id = 'c2' and reason = 'lukewarm'""",
        "insert into smarketing.rewards values ('c2', 'social_share', 'RW-5', 'p3', '2026-11-22 20:00+00')",
        "update smarketing.customers set country = 'CA', updated_at = '2026-11-22 09:00+00' where customer_id = 'c3'",
        """insert into smarketing.advocate_scores (customer_id, score_date, advocate_score, segment, is_lukewarm,
               nps_class, last_rating, reasons, scored_at)
           values ('c2', '2026-11-23', 70, 'promising', false, 'promoter', 4, 'shared a post', '2026-11-23 00:00+00'),
                  ('c5', '2026-11-23', 60, 'promising', false, 'promoter', 5, 'loved the socks', '2026-11-23 00:00+00')""",
        # the 11-23 run (one customer was loaded early) now counts the whole base
        """update smarketing.score_runs set customers_scored = 5, promoters = 3, passives = 1, detractors = 1,
               segment_promising = 2, segment_detractor = 1, segment_champion = 0, unhappy_customers = 2
           where score_date = '2026-11-23'""",
    ]
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


@pytest.fixture
def published(warehouse: sa.Engine) -> sa.Engine:
    load_known_data(warehouse)
    assert publish_marts(warehouse, AS_OF)["mode"] == "full"  # the first publish
    return warehouse


def test_an_incremental_publish_after_a_normal_day_equals_a_full_rebuild(published):
    advocates_before, follow_ups_before = row_versions(published, "advocates"), row_versions(published, "follow_ups")
    testimonials_before = snapshot(published)["testimonials"]
    a_normal_day(published)

    result = publish_marts(published, NEXT)
    incremental = snapshot(published)
    r1 = [row for row in incremental["testimonials"] if row[0].startswith("(r1,")]
    assert r1 != [row for row in testimonials_before if row[0].startswith("(r1,")]  # its signals were refreshed

    assert result["mode"] == "incremental"
    # c1: a score dated 11-23 loaded before the first publish; c2, c5: rescored; c3: moved country; c5 also
    # got a follow-up stamped after the first publish's as-of
    assert result["changed"]["customers"] == 4
    advocates_after = row_versions(published, "advocates")
    assert advocates_after["c4/"] == advocates_before["c4/"]  # an unchanged customer's row is not rewritten
    assert {k for k in advocates_after if advocates_after[k] != advocates_before.get(k)} == {"c1/", "c2/", "c3/", "c5/"}
    follow_ups_after = row_versions(published, "follow_ups")
    assert follow_ups_after["c4/lukewarm"] == follow_ups_before["c4/lukewarm"]

    full = publish_marts(published, NEXT, full=True)
    assert full["mode"] == "full" and full["reason"] == "forced"
    rebuilt = snapshot(published)
    for mart in CATALOG:
        assert incremental[mart.name] == rebuilt[mart.name], mart.name
    assert result["rows"] == full["rows"]
    # the day's changes reached the marts (not an empty comparison)
    with published.connect() as conn:
        answered = conn.execute(sa.text(  # m8 (loaded early) and m9, answered by r6 and r7
            "select requests_answered from marketing.loop_kpis_daily where day = '2026-11-22'")).scalar()
        opened = conn.execute(sa.text("select sum(opened) from marketing.outreach_funnel where day = '2026-11-11'")).scalar()
        waiting = conn.execute(sa.text(
            "select days_waiting from marketing.follow_ups where customer_id = 'c3'")).scalar()
        name = conn.execute(sa.text("select product_name from marketing.product_feedback where sku = 'SKU-A'")).scalar()
    assert answered == 2 and opened == 1 and waiting == 5 and name == "Alpine Jacket v3"



def test_days_waiting_ages_every_waiting_follow_up_without_rewriting_them(published):
    stored = row_versions(published, "follow_ups")
    result = publish_marts(published, NEXT + timedelta(days=2))
    assert result["mode"] == "incremental"
    # c2's waiting follow-up is not rewritten (c3's reward and c5's follow-up, dated after AS_OF, fell due)
    assert row_versions(published, "follow_ups")["c2/lukewarm"] == stored["c2/lukewarm"]
    with published.connect() as conn:
        waiting = dict(conn.execute(sa.text(
            "select customer_id || '/' || reason, days_waiting from marketing.follow_ups where is_waiting")).all())
    full = publish_marts(published, NEXT + timedelta(days=2), full=True)
    assert full["mode"] == "full"
    with published.connect() as conn:
        rebuilt = dict(conn.execute(sa.text(
            "select customer_id || '/' || reason, days_waiting from marketing.follow_ups where is_waiting")).all())
    assert waiting == rebuilt and waiting["c3/detractor"] == 7 and waiting["c2/lukewarm"] == 9


def test_a_backfill_rebuilds_in_full_and_so_does_the_publish_after_it(published):
    a_normal_day(published)
    assert publish_marts(published, NEXT)["mode"] == "incremental"
    backfill = publish_marts(published, AS_OF - timedelta(days=3))
    assert backfill["mode"] == "full" and "backfill" in backfill["reason"]
    after = publish_marts(published, NEXT)  # the log was claimed up to NEXT before: only a full rebuild knows
    assert after["mode"] == "full" and after["reason"] == "the last publish was a backfill"
    assert publish_marts(published, NEXT)["mode"] == "incremental"


def test_changed_settings_or_a_forced_full_rebuild_publish_in_full(published):
    assert publish_marts(published, AS_OF, MartSettings(word_of_mouth_reach=12))["mode"] == "full"
    assert publish_marts(published, AS_OF, MartSettings(word_of_mouth_reach=12))["mode"] == "incremental"
    assert publish_marts(published, AS_OF, MartSettings(word_of_mouth_reach=12, full_rebuild=True))["mode"] == "full"


def test_the_gate_audits_only_the_changed_customers_rows(published):
    a_normal_day(published)
    seen = {}

    def gate(conn: sa.Connection, schema: str, changed_only: frozenset) -> None:
        seen["changed_only"] = changed_only
        seen["advocates"] = conn.execute(sa.text(f"select count(*) from {schema}.advocates")).scalar()
        seen["loop_kpis_daily"] = conn.execute(sa.text(f"select count(*) from {schema}.loop_kpis_daily")).scalar()

    publish_marts(published, NEXT, before_publish=gate)
    assert seen == {"changed_only": frozenset({"advocates", "follow_ups", "rewards"}), "advocates": 4,
                    "loop_kpis_daily": 22}  # the day marts are staged whole: 11-01 .. 11-22


def test_a_failed_incremental_publish_leaves_its_changes_for_the_next(published):
    a_normal_day(published)
    before = snapshot(published)

    def refuse(conn: sa.Connection, schema: str, changed_only: frozenset) -> None:
        raise RuntimeError("injected: the gate refuses")

    with pytest.raises(RuntimeError, match="injected"):
        publish_marts(published, NEXT, before_publish=refuse)
    assert snapshot(published) == before
    assert publish_marts(published, NEXT)["mode"] == "incremental"
    incremental = snapshot(published)
    publish_marts(published, NEXT, full=True)
    assert snapshot(published) == incremental


def test_an_order_with_two_lines_of_one_product_counts_once_in_full_and_incremental_publishes(published):
    """Product sales count each order once per product, and name it after its latest order's first name."""
    with published.begin() as conn:
        conn.exec_driver_sql(
            """insert into smarketing.orders (order_id, customer_id, ordered_at, status, total_amount, currency,
                   updated_at, source)
               values ('o9', 'c3', '2026-11-22 11:00+00', 'placed', 200, 'EUR', '2026-11-22 11:00+00', 'test')""")
        conn.exec_driver_sql(
            """insert into smarketing.order_items values
                   ('o9', 1, 'SKU-A', 'Alpine Jacket v3', 1, 60), ('o9', 2, 'SKU-B', null, 1, 10),
                   ('o9', 3, 'SKU-A', 'Alpine Jacket Pro', 2, 65)""")

    def sku_a() -> tuple:
        with published.connect() as conn:
            return tuple(conn.execute(sa.text(
                "select orders_count, units_sold, revenue, product_name from marketing.product_feedback "
                "where sku = 'SKU-A'")).one())

    assert publish_marts(published, NEXT)["mode"] == "incremental"
    incremental = sku_a()
    with published.connect() as conn:
        day = conn.execute(sa.text(
            "select orders_count, units, last_name, last_named_name from smarketing.mart_sku_days "
            "where sku = 'SKU-A' and day = '2026-11-22'")).one()
        socks = conn.execute(sa.text(
            "select last_name, last_named_name from smarketing.mart_sku_days where sku = 'SKU-B' and day = '2026-11-22'"
        )).one()
    assert tuple(day) == (1, 3, "Alpine Jacket Pro", "Alpine Jacket Pro")
    assert tuple(socks) == (None, None)  # the day's only line of SKU-B names no product
    # 3 orders of SKU-A up to AS_OF, and o9 once although two of its lines are SKU-A
    assert incremental == (4, 6, Decimal("410.00"), "Alpine Jacket Pro")
    assert publish_marts(published, NEXT, full=True)["mode"] == "full"
    assert sku_a() == incremental


def test_a_full_publish_sums_product_sales_on_a_second_connection_and_a_failed_one_leaves_them(
        published, monkeypatch, tmp_path):
    """A full publish computes mart_sku_days on its own connection while the customer marts build (they run at
    once on two cores); the publishing transaction takes the rows, so a failed publish leaves the old ones."""
    from smarketing_tasks.marts import publish as publish_module
    from tests.smarketing_tasks.marts.test_publish import broken_marts_dir

    backends: dict[str, set[int]] = {"claim": set(), "sku_days": set()}
    def recorded(name: str, kind: str):
        original = getattr(publish_module, name)

        def recording(conn, *args, **kwargs):
            backends[kind].add(conn.execute(sa.text("select pg_backend_pid()")).scalar())
            return original(conn, *args, **kwargs)
        return recording

    for name, kind in (("_claim", "claim"), ("_insert_sku_days", "sku_days")):
        monkeypatch.setattr(publish_module, name, recorded(name, kind))

    def sales() -> list[tuple]:
        with published.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(
                "select t::text from smarketing.mart_sku_days as t order by 1"))]

    with published.begin() as conn:  # a line of an old day: a full refresh of that day differs
        conn.exec_driver_sql("insert into smarketing.order_items values ('o1', 9, 'SKU-A', null, 5, 70)")
    before = sales()
    broken = broken_marts_dir(tmp_path, "build_outreach_funnel.sql", "count(*)::integer as sent",
                              "(count(*) / 0)::integer as sent")  # after the product marts read the new sales
    with pytest.raises(sa.exc.DataError, match="division by zero"):
        publish_marts(published, NEXT, marts_dir=broken)  # the SQL changed: a full publish
    assert sales() == before
    with published.connect() as conn:
        assert conn.execute(sa.text("select to_regclass('smarketing.mart_sku_days_full')")).scalar() is None

    backends["claim"].clear()
    backends["sku_days"].clear()
    assert publish_marts(published, NEXT, full=True)["mode"] == "full"
    assert sales() != before
    assert len(backends["claim"]) == len(backends["sku_days"]) == 1 and backends["claim"] != backends["sku_days"]
