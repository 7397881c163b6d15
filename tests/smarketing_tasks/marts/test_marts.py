"""Every mart on the known data set: grain, documentation, no contact data, and numbers reconciled by hand
(see known_data.py for why each number is what it is) and against the core tables."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa

from smarketing_tasks.marts import load_catalog
from tests.smarketing_tasks.marts import known_data

CATALOG = load_catalog()


def rows(engine: sa.Engine, sql: str, **params) -> list[dict]:
    with engine.connect() as conn:
        return [r._asdict() for r in conn.execute(sa.text(sql), params)]


def by(engine: sa.Engine, table: str, *key: str) -> dict:
    found = rows(engine, f"select * from marketing.{table}")
    return {tuple(r[k] for k in key) if len(key) > 1 else r[key[0]]: r for r in found}


@pytest.mark.parametrize("mart", CATALOG, ids=lambda m: m.name)
def test_each_mart_has_rows_one_per_grain_and_a_primary_key(known_marts, mart):
    keys = ", ".join(mart.key)
    [counts] = rows(known_marts, f"select count(*) as n, count(distinct ({keys})) as distinct_keys "
                                 f"from marketing.{mart.name}")
    assert counts["n"] > 0
    assert counts["distinct_keys"] == counts["n"], f"duplicate keys in {mart.name}"
    primary_key = rows(known_marts, """
        select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
        where i.indrelid = cast(:t as regclass) and i.indisprimary""",
        # a mart with read-time columns is a view over its stored rows, which carry the key
        t=f"smarketing.mart_{mart.name}" if mart.read_time_columns else f"marketing.{mart.name}")
    assert sorted(r["attname"] for r in primary_key) == sorted(mart.key)


@pytest.mark.parametrize("mart", CATALOG, ids=lambda m: m.name)
def test_every_table_and_column_carries_its_catalog_description(known_marts, mart):
    [table] = rows(known_marts, "select obj_description(cast(:t as regclass), 'pg_class') as d",
                   t=f"marketing.{mart.name}")
    assert table["d"].startswith(mart.description)
    assert f"Grain: {mart.grain}." in table["d"] and "Data as of 2026-11-22 00:00 UTC" in table["d"]
    columns = rows(known_marts, """
        select a.attname as name, format_type(a.atttypid, a.atttypmod) as type,
               col_description(a.attrelid, a.attnum) as description
        from pg_attribute a where a.attrelid = cast(:t as regclass) and a.attnum > 0 and not a.attisdropped
        order by a.attnum""", t=f"marketing.{mart.name}")
    assert [c["name"] for c in columns] == mart.column_names
    for column, documented in zip(columns, mart.columns, strict=True):
        assert column["description"] == documented.description
        spelled = documented.type.replace("timestamptz", "timestamp with time zone")
        assert column["type"] == spelled


def test_marts_hold_no_contact_data(known_marts):
    contact_values = [v for _, email, _, phone in known_data.CONTACTS for v in (email, phone)]
    contact_values += ["c3@example.org", "0171 2345 6789", "+49 170 1234567", "c1@example.com"]
    for mart in CATALOG:
        assert not any(word in c for c in mart.column_names for word in ("email", "phone"))
        text = rows(known_marts, f"select t::text as row from marketing.{mart.name} as t")
        for row in text:
            leaked = [v for v in contact_values if v in row["row"]]
            assert not leaked, f"{mart.name} leaks {leaked}"
            assert "@" not in row["row"], f"{mart.name} holds something like an email address: {row['row']}"


def test_advocates_are_each_customers_latest_score_on_or_before_the_build_date(known_marts):
    advocates = by(known_marts, "advocates", "customer_id")
    core = rows(known_marts, """select distinct on (customer_id) customer_id, advocate_score, segment
                                from smarketing.advocate_scores where score_date <= date '2026-11-22'
                                order by customer_id, score_date desc""")
    assert {r["customer_id"]: (r["advocate_score"], r["segment"]) for r in core} == {
        c: (a["advocate_score"], a["segment"]) for c, a in advocates.items()}
    c1 = advocates["c1"]  # 92.5 champion on 11-22 (the 11-23 run is after the build date), advocate before
    assert (c1["advocate_score"], c1["segment"], c1["previous_segment"], c1["score_change"]) == (
        Decimal("92.5"), "champion", "advocate", Decimal("12.5"))
    assert advocates["c5"]["previous_segment"] is None and advocates["c5"]["score_change"] is None
    assert advocates["c3"]["score_change"] == Decimal("-20.0")
    assert advocates["c1"]["country"] == "DE" and advocates["c1"]["score_date"] == date(2026, 11, 22)
    # open (c2) and contacted (c3) follow-ups wait; c4's is resolved and c5's opens after the build time
    assert {c for c, a in advocates.items() if a["has_open_follow_up"]} == {"c2", "c3"}


def test_follow_ups_wait_in_days_and_their_free_text_is_redacted(known_marts):
    follow_ups = by(known_marts, "follow_ups", "customer_id", "reason")
    assert set(follow_ups) == {("c2", "lukewarm"), ("c3", "detractor"), ("c4", "lukewarm")}
    # 2026-11-22 00:00 minus 11-15 06:00 is 6 days 18 hours; minus 11-17 12:00 is 4 days 12 hours
    assert follow_ups["c2", "lukewarm"]["days_waiting"] == 6
    assert follow_ups["c3", "detractor"]["days_waiting"] == 4
    assert follow_ups["c4", "lukewarm"]["days_waiting"] is None
    assert [f["is_waiting"] for f in follow_ups.values()].count(True) == 2
    c3 = follow_ups["c3", "detractor"]
    assert c3["review_excerpt"] == "The zipper broke after a week. Call me on [phone]"
    assert c3["outcome"] == "replacement sent; wrote to [email]"
    assert (c3["segment"], c3["advocate_score"], c3["owner_team"], c3["priority"]) == (
        "detractor", Decimal("20.0"), "support", 1)


def test_testimonials_come_only_from_consented_reviews_with_a_clean_short_quote(known_marts):
    testimonials = by(known_marts, "testimonials", "review_id")
    # r2 ('good') is too short to quote, r3 has no consent, r4 has 3 stars, r6 is after the build time
    assert set(testimonials) == {"r1", "r5"}
    consented = {r["review_id"] for r in rows(known_marts,
                                              "select review_id from smarketing.reviews where consent_to_publish")}
    assert set(testimonials) <= consented
    assert testimonials["r1"]["quote"] == "Love it, the fabric is soft and warm and it packs small!"
    assert testimonials["r5"]["quote"] == "Excellent quality and great fit"  # the clause before 'call [phone]'
    assert testimonials["r5"]["is_incentivized"] and not testimonials["r1"]["is_incentivized"]
    for t in testimonials.values():
        assert t["quote_chars"] == len(t["quote"]) <= 160 and t["quote_sentiment"] > 0
        assert t["product_name"] == "Alpine Jacket v2"  # the name of SKU-A's latest sale
    best_first = sorted(testimonials.values(), key=lambda t: -t["quote_sentiment"])
    assert [t["rank_for_sku"] for t in best_first] == [1, 2]


def test_product_feedback_reconciles_with_sales_and_reviews(known_marts):
    products = by(known_marts, "product_feedback", "sku")
    assert set(products) == {"SKU-A", "SKU-B", "SKU-C"}  # SKU-D is sold and reviewed after the build time
    core = {r["sku"]: r for r in rows(known_marts, """
        select i.sku, count(distinct i.order_id) as orders_count, sum(i.quantity) as units,
               sum(i.quantity * i.unit_price) as revenue
        from smarketing.order_items i join smarketing.orders o using (order_id)
        where o.ordered_at <= timestamptz '2026-11-22 00:00+00' group by i.sku""")}
    for sku, product in products.items():
        assert (product["orders_count"], product["units_sold"], product["revenue"]) == (
            core[sku]["orders_count"], core[sku]["units"], core[sku]["revenue"])
    a, b, c = products["SKU-A"], products["SKU-B"], products["SKU-C"]
    assert (a["orders_count"], a["units_sold"], a["revenue"]) == (3, 3, Decimal("220.00"))
    assert (a["reviews_count"], a["avg_rating"], a["ratings_5"], a["ratings_2"]) == (3, Decimal("4.00"), 2, 1)
    assert a["low_rating_share"] == pytest.approx(1 / 3) and a["lukewarm_share"] == 0
    assert a["testimonials_count"] == 2 and a["review_rate"] == 1.0
    assert (b["units_sold"], b["revenue"], b["reviews_count"], b["lukewarm_reviews"]) == (11, Decimal("110.00"), 1, 1)
    assert b["lukewarm_share"] == 1.0 and b["review_rate"] == pytest.approx(1 / 3)
    assert (c["avg_rating"], c["lukewarm_share"], c["testimonials_count"]) == (Decimal("3.00"), 1.0, 0)


def test_loop_kpis_daily_covers_every_day_and_reconciles_with_the_core_tables(known_marts):
    kpis = by(known_marts, "loop_kpis_daily", "day")
    assert sorted(kpis) == [date(2026, 11, d) for d in range(1, 22)]  # first order to the last full day

    def total(column: str):
        return sum(k[column] for k in kpis.values())

    assert (total("purchases"), total("revenue"), total("deliveries")) == (6, Decimal("360.00"), 5)
    assert (total("requests_sent"), total("reminders_sent"), total("share_asks_sent")) == (4, 1, 1)
    assert (total("reviews_received"), total("social_posts"), total("social_reach")) == (5, 2, 1500)
    assert (total("referrals"), total("referral_revenue")) == (1, Decimal("40.00"))
    assert (total("unsubscribes"), total("complaints"), total("hard_bounces")) == (1, 1, 1)
    assert (total("follow_ups_opened"), total("follow_ups_closed")) == (3, 1)
    [core] = rows(known_marts, """select
        (select count(*) from smarketing.orders where ordered_at <= timestamptz '2026-11-22 00:00+00') as purchases,
        (select count(*) from smarketing.reviews where created_at <= timestamptz '2026-11-22 00:00+00') as reviews""")
    assert (total("purchases"), total("reviews_received")) == (core["purchases"], core["reviews"])

    # both requests of 11-10 and of 11-11 were answered by a review of their order (m3's via its reminder)
    assert kpis[date(2026, 11, 10)]["response_rate"] == 1.0 and kpis[date(2026, 11, 11)]["requests_answered"] == 2
    assert kpis[date(2026, 11, 12)]["avg_rating"] == Decimal("3.00")

    # customer base: no run describes 11-13; the 11-15 run describes 11-14..11-20; the 11-22 run 11-21
    assert kpis[date(2026, 11, 13)]["scores_taken_on"] is None and kpis[date(2026, 11, 13)]["nps"] is None
    mid = kpis[date(2026, 11, 14)]  # 1 promoter, 2 passives (c2 lukewarm), c4 unclassified
    assert (mid["scores_taken_on"], mid["customers_scored"], mid["nps"]) == (date(2026, 11, 15), 4, Decimal("33.3"))
    assert (mid["lukewarm"], mid["unhappy_customers"], mid["word_of_mouth_at_risk"]) == (1, 1, 52)
    assert mid["lukewarm_share"] == pytest.approx(1 / 3)
    last = kpis[date(2026, 11, 21)]  # 1 promoter, 2 lukewarm passives, 1 detractor, 1 silent
    assert (last["promoters"], last["passives"], last["detractors"], last["nps"]) == (1, 2, 1, Decimal("0.0"))
    assert (last["advocates"], last["segment_champion"], last["segment_lukewarm"], last["segment_silent"]) == (
        1, 1, 2, 1)
    # default reach: scoring's 52 (seed 004), so the KPI matches customers' reasons
    assert (last["unhappy_customers"], last["word_of_mouth_reach_per_customer"], last["word_of_mouth_at_risk"]) == (
        3, 52, 156)


def test_outreach_funnel_counts_each_message_once_with_wilson_intervals(known_marts):
    from scipy.stats import binomtest

    funnel = by(known_marts, "outreach_funnel", "day", "kind", "channel", "template_variant")
    assert len(funnel) == 6  # m1..m6; m7 was never sent and m8 after the build time
    assert sum(f["sent"] for f in funnel.values()) == 6
    a = funnel[date(2026, 11, 10), "review_request", "email", "A"]
    assert (a["sent"], a["delivered"], a["opened"], a["clicked"], a["responded"], a["reviews"]) == (1, 1, 1, 1, 1, 1)
    b = funnel[date(2026, 11, 10), "review_request", "email", "B"]
    assert (b["responded"], b["unsubscribed"]) == (1, 1)
    bounced = funnel[date(2026, 11, 11), "review_request", "email", "B"]
    assert (bounced["bounced"], bounced["delivered"], bounced["response_rate"], bounced["ci_low"]) == (1, 0, None, None)
    silent = funnel[date(2026, 11, 11), "review_request", "email", "A"]  # answered later, through its reminder
    assert (silent["responded"], silent["complained"], silent["response_rate"]) == (0, 1, 0.0)
    share = funnel[date(2026, 11, 12), "share_ask", "email", "A"]
    assert (share["responded"], share["social_posts"], share["referrals"]) == (1, 1, 1)
    assert funnel[date(2026, 11, 16), "review_reminder", "email", "A"]["reviews"] == 1
    for row in funnel.values():
        if row["delivered"]:
            interval = binomtest(row["responded"], row["delivered"]).proportion_ci(0.95, method="wilson")
            assert (row["ci_low"], row["ci_high"]) == (pytest.approx(interval.low), pytest.approx(interval.high))
            assert row["confidence_level"] == 0.95


def test_rewards_group_each_customers_rewards_by_reason(known_marts):
    rewards = by(known_marts, "rewards", "customer_id", "reason")
    assert set(rewards) == {("c1", "referral_converted"), ("c1", "social_share")}  # c3's is after the build time
    referral = rewards["c1", "referral_converted"]
    assert (referral["rewards_count"], referral["reward_code"], referral["reward_codes"]) == (2, "RW-3", "RW-1,RW-3")
    assert referral["first_issued_at"] < referral["issued_at"]
    [core] = rows(known_marts, "select count(*) as n from smarketing.rewards "
                               "where issued_at <= timestamptz '2026-11-22 00:00+00'")
    assert sum(r["rewards_count"] for r in rewards.values()) == core["n"]


@pytest.mark.parametrize("mart", CATALOG, ids=lambda m: m.name)
def test_each_example_query_of_the_data_dictionary_runs_as_the_bi_role(known_marts, mart):
    from smarketing_tasks.marts import BI_ROLE

    with known_marts.connect() as conn:
        conn.exec_driver_sql(f"set local role {BI_ROLE}")
        result = conn.execute(sa.text(mart.example_sql))
        assert result.keys()


def test_outreach_variants_sum_the_funnel_and_name_the_leader(known_marts):
    from scipy.stats import binomtest

    variants = by(known_marts, "outreach_variants", "kind", "channel", "template_variant")
    assert set(variants) == {("review_request", "email", "A"), ("review_request", "email", "B"),
                             ("review_reminder", "email", "A"), ("share_ask", "email", "A")}
    [funnel] = rows(known_marts, "select sum(sent) as sent, sum(delivered) as delivered, sum(responded) as responded "
                                 "from marketing.outreach_funnel")
    for column in ("sent", "delivered", "responded"):
        assert sum(v[column] for v in variants.values()) == funnel[column]
    a, b = variants["review_request", "email", "A"], variants["review_request", "email", "B"]
    assert (a["delivered"], a["responded"], b["delivered"], b["responded"]) == (2, 1, 1, 1)  # m4 bounced
    assert (a["first_sent_on"], a["last_sent_on"]) == (date(2026, 11, 10), date(2026, 11, 11))
    assert (a["delivered_30d"], a["responded_30d"]) == (2, 1)  # every send is within 30 days of the build
    interval = binomtest(1, 2).proportion_ci(0.95, method="wilson")
    assert (a["ci_low"], a["ci_high"]) == (pytest.approx(interval.low), pytest.approx(interval.high))
    assert (a["ci_low_30d"], a["ci_high_30d"]) == (pytest.approx(interval.low), pytest.approx(interval.high))
    # B leads with 1 of 1, but A's interval (0.09-0.91) overlaps B's (0.21-1): not clearly behind
    assert (b["is_leader"], a["is_leader"], a["leader_variant"]) == (True, False, "B")
    assert not any(v["is_clearly_behind"] for v in variants.values())
