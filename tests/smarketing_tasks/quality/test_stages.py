"""Stage audits on real data: purchases from the demo shop, marts built and swapped, history and Data Docs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.quality import (
    QualityGateFailed,
    audit_purchases,
    audit_scores,
    build_data_docs,
    mart_gate,
    run_suite,
)
from tests.smarketing_tasks.quality.corpus import advocate_score, order

pytestmark = pytest.mark.integration
END = datetime(2026, 11, 22, tzinfo=UTC)


@pytest.fixture
def loaded_warehouse(warehouse, shop_url):
    """A warehouse holding a small demo shop, ingested the normal way (with its own row validation)."""
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.demo_shop import ShopSpec, generate, write_shop
    from smarketing_tasks.ingest import ingest_dataset
    from smarketing_tasks.sources import ReferenceSqlSource

    shop = make_engine(shop_url)
    write_shop(shop, generate(ShopSpec(customers=150, days=40, end=END, seed=5, bad_row_share=0.02)))
    shop.dispose()
    source = ReferenceSqlSource(shop_url)
    results = [ingest_dataset(source, d, warehouse, until=END, run_id="ingest").as_dict()
               for d in ("customers", "orders", "order_items")]
    return warehouse, results


def _count(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


def test_audit_of_an_ingested_demo_shop_passes_and_records_one_run_per_suite(loaded_warehouse):
    warehouse, ingest_results = loaded_warehouse
    orders_before = _count(warehouse, "select count(*) from smarketing.orders")

    audited = audit_purchases(warehouse, ingest_results, run_id="ingest", run_time=END, say=lambda _: None)

    assert [a["suite"] for a in audited] == ["customers", "orders", "order_items"]
    assert all(a["success"] for a in audited)
    assert audited[1]["rows_checked"] == orders_before > 0 and audited[1]["mode"] == "sql"
    assert audited[0]["mode"] == "sql"
    with warehouse.connect() as conn:
        runs = conn.execute(sa.text("select suite, success from smarketing.validation_runs order by suite")).all()
    assert runs == [("customers", True), ("order_items", True), ("orders", True)]


def test_distribution_far_from_its_recent_level_fails_the_gate(warehouse):
    import pandas as pd

    def frame(returned_every: int) -> pd.DataFrame:
        rows = [order(n) for n in range(200)]
        for row in rows[::returned_every]:
            row["status"] = "returned"
        return pd.DataFrame(rows)

    for day in range(4):  # the recent level: one order in ten returned
        result = run_suite(frame(10), "orders", warehouse=warehouse, run_id=f"day-{day}",
                           run_time=END + timedelta(days=day), source="feed")
        assert result.success, result.message
    baseline_note = result.distributions[0]
    assert baseline_note.baseline == pytest.approx(0.1) and baseline_note.history == 3

    spike = run_suite(frame(2), "orders", warehouse=warehouse, run_id="day-4", run_time=END + timedelta(days=4),
                      source="feed")

    assert not spike.success
    assert "distribution check returned_or_cancelled_share" in spike.message
    assert "50.0% in this batch against 10.0% over the last 4 runs" in spike.message
    assert spike.rows_quarantined == 0  # a distribution is not a row's fault: nothing is quarantined
    # A failed run never becomes the baseline: the next ordinary day passes against the same level.
    calm = run_suite(frame(10), "orders", warehouse=warehouse, run_id="day-5", run_time=END + timedelta(days=5),
                     source="feed")
    assert calm.success and calm.distributions[0].baseline == pytest.approx(0.1)


def test_score_audit_moves_broken_scores_out_before_marts_read_them(warehouse):
    rows = [advocate_score(n) for n in range(120)]
    rows[7]["advocate_score"] = 100.0
    with warehouse.begin() as conn:
        conn.execute(sa.text(
            "insert into smarketing.advocate_scores (customer_id, score_date, advocate_score, segment, is_lukewarm, "
            "nps_class, last_rating, sentiment, reasons, scored_at) values (:customer_id, :score_date, "
            ":advocate_score, :segment, :is_lukewarm, :nps_class, :last_rating, :sentiment, :reasons, :scored_at)"),
            rows)
        # The table's own checks allow this one; the suite does not (a lukewarm segment must be flagged).
        conn.execute(sa.text("update smarketing.advocate_scores set segment = 'lukewarm' where customer_id = 'c3'"))

    audited = audit_scores(warehouse, run_id="score", run_time=END, score_date=date(2026, 6, 1), say=lambda _: None)

    assert audited[0]["rows_checked"] == 120 and audited[0]["rows_quarantined"] == 1
    assert _count(warehouse, "select count(*) from smarketing.advocate_scores where customer_id = 'c3'") == 0
    assert _count(warehouse, "select count(*) from smarketing.quarantine where dataset = 'advocate_scores' "
                             "and record_key = 'c3/2026-06-01'") == 1


@pytest.mark.slow
def test_marts_keep_their_last_good_version_when_the_build_breaks_a_suite(loaded_warehouse):
    from smarketing_tasks.marts.publish import publish_marts

    warehouse, _ = loaded_warehouse
    with warehouse.begin() as conn:
        conn.execute(sa.text(
            "insert into smarketing.advocate_scores (customer_id, score_date, advocate_score, segment, is_lukewarm, "
            "scored_at) select customer_id, date '2026-11-21', 50, 'promising', false, :t from smarketing.customers"),
            {"t": END - timedelta(days=1)})
    published = publish_marts(warehouse, END, before_publish=mart_gate(run_id="marts-1", run_time=END,
                                                                       say=lambda _: None))
    assert published["rows"]["advocates"] > 0
    with warehouse.connect() as conn:
        good = conn.execute(sa.text("select customer_id, advocate_score from marketing.advocates order by 1")).all()

    with warehouse.begin() as conn:  # the next run rescored three customers: an incremental publish builds them
        conn.execute(sa.text(
            "insert into smarketing.advocate_scores (customer_id, score_date, advocate_score, segment, is_lukewarm, "
            "scored_at) select customer_id, date '2026-11-22', 60, 'promising', false, :t "
            "from smarketing.customers order by customer_id limit 3"), {"t": END})
    seen = {}

    def corrupt_then_gate(conn: sa.Connection, schema: str, changed_only: frozenset) -> None:
        seen["changed_only"] = changed_only
        conn.execute(sa.text(f"update {schema}.advocates set advocate_score = 150 "
                             f"where customer_id = (select min(customer_id) from {schema}.advocates)"))
        conn.commit()
        mart_gate(run_id="marts-2", run_time=END + timedelta(hours=1), say=lambda _: None)(conn, schema, changed_only)

    with pytest.raises(QualityGateFailed) as failure:
        publish_marts(warehouse, END + timedelta(hours=1), before_publish=corrupt_then_gate)

    message = str(failure.value)
    assert "advocates" in seen["changed_only"]  # the changed customers' rows alone, audited row by row
    assert "suite 'advocates'" in message and "marketing_build.advocates" in message
    assert "expect_column_values_to_be_between(advocate_score)" in message and "150" in message
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("select customer_id, advocate_score from marketing.advocates order by 1")).all() == good
        recorded = conn.execute(sa.text(
            "select dataset, source, rule from smarketing.quarantine where dataset like 'mart%'")).all()
    assert recorded == [("mart_advocates", "marketing_build.advocates",
                         "expect_column_values_to_be_between(advocate_score)")]


def test_data_docs_show_every_suite_and_the_recent_runs(loaded_warehouse, tmp_path):
    warehouse, ingest_results = loaded_warehouse
    audit_purchases(warehouse, ingest_results, run_id="ingest-docs", run_time=END, say=lambda _: None)

    index = build_data_docs(warehouse, target=tmp_path / "data_docs")

    html = index.read_text()
    assert index == (tmp_path / "data_docs" / "index.html").resolve()
    for suite in ("orders", "customers", "advocates", "rewards"):
        assert (tmp_path / "data_docs" / "expectations" / f"{suite}.html").is_file()
        assert suite in html
    assert len(list((tmp_path / "data_docs" / "validations").rglob("*.html"))) == 3
    assert "ingest-docs" in html


def _customers_with_one_bad_phone(conn) -> None:
    """Customers c0..c29 with contacts; c4's phone is not a phone number."""
    for n in range(30):
        conn.execute(sa.text(
            "insert into smarketing.customers (customer_id, country, time_zone, accepts_marketing, "
            "updated_at, source) values (:id, 'DE', 'Europe/Berlin', true, :t, 'test')"), {"id": f"c{n}", "t": END})
        conn.execute(sa.text(
            "insert into smarketing.customer_contacts (customer_id, email, phone, updated_at) "
            "values (:id, :email, :phone, :t)"),
            {"id": f"c{n}", "email": f"p{n}@example.com", "phone": "ring ring" if n == 4 else "+49 30 1234", "t": END})


def test_a_moved_customer_keeps_its_contact_data_in_the_quarantine_record(warehouse):
    from smarketing_tasks.quality import audit_suites

    with warehouse.begin() as conn:
        _customers_with_one_bad_phone(conn)

    audit_suites(warehouse, ["customers"], run_id="ingest", run_time=END, say=lambda _: None)

    assert _count(warehouse, "select count(*) from smarketing.customers") == 29
    with warehouse.connect() as conn:
        record = conn.execute(sa.text(
            "select record_key, rule, reason, raw ->> 'email', raw ->> 'phone' from smarketing.quarantine")).one()
    assert record == ("c4", "expect_column_values_to_match_regex(phone)",
                      'phone is not a phone number (digits, spaces, + - . ( ) only) (phone="ring ring")',
                      "p4@example.com", "ring ring")


def test_suites_validated_at_once_still_see_the_rows_earlier_suites_moved(warehouse):
    """Customers, orders and order items validate concurrently but settle in order, so the result is that of one
    after another: orders report the customer the customers suite moved out, and the lines of the order the orders
    suite moved out are no longer in the order items' batch."""
    from smarketing_tasks.quality import audit_suites
    from smarketing_tasks.quality.stages import PURCHASE_SUITES
    from tests.smarketing_tasks.quality.test_gate import _order

    with warehouse.begin() as conn:
        _customers_with_one_bad_phone(conn)
        conn.execute(sa.text(
            "insert into smarketing.orders (order_id, customer_id, ordered_at, status, shipped_at, delivered_at, "
            "total_amount, currency, discount_code, updated_at, source) values (:order_id, :customer_id, :ordered_at, "
            ":status, :shipped_at, :delivered_at, :total_amount, :currency, :discount_code, :updated_at, :source)"),
            [_order(n, customer_id=f"c{n}", currency="usd" if n == 7 else "USD") for n in range(30)])
        conn.execute(sa.text(
            "insert into smarketing.order_items (order_id, line_no, sku, product_name, quantity, unit_price) "
            "select 'o' || n, 1, 'SKU-1', 'Mug', 1, 5 from generate_series(0, 29) n"))

    customers, orders, items = audit_suites(warehouse, PURCHASE_SUITES, run_id="together", run_time=END,
                                            until=END, say=lambda _: None)

    assert (customers["rows_checked"], customers["rows_quarantined"]) == (30, 1)
    assert (orders["rows_checked"], orders["rows_quarantined"]) == (30, 1)
    assert any("not in smarketing.customers" in w and '"c4"' in w for w in orders["warnings"]), orders["warnings"]
    assert items["rows_checked"] == 29 and items["success"], "the moved order's line left the order items' batch"
    assert _count(warehouse, "select count(*) from smarketing.order_items where order_id = 'o7'") == 1


def _insert_messages(warehouse, numbers, planned_at: datetime) -> None:
    import hashlib

    with warehouse.begin() as conn:
        for n in numbers:
            key = f"c{n}:o{n}:review_request:1"
            conn.execute(sa.text(
                "insert into smarketing.outreach_messages (message_id, idempotency_key, customer_id, order_id, kind, "
                "channel, template_variant, consent_basis, status, due_at, expires_at, planned_at, sent_at, attempts) "
                "values (:id, :key, :c, :o, 'review_request', 'email', 'a', 'marketing_consent', 'sent', :t, :exp, "
                ":t, :sent, 1)"),
                {"id": hashlib.sha256(key.encode()).hexdigest()[:32], "key": key, "c": f"c{n}", "o": f"o{n}",
                 "t": planned_at, "exp": planned_at + timedelta(days=14), "sent": planned_at + timedelta(hours=1)})


def test_each_outbox_audit_covers_what_was_planned_or_sent_since_the_last_passing_one(warehouse):
    from smarketing_tasks.quality import audit_outbox

    _insert_messages(warehouse, range(20), END)
    first = audit_outbox(warehouse, run_id="outreach-1", run_time=END + timedelta(hours=2), say=lambda _: None)
    _insert_messages(warehouse, range(20, 25), END + timedelta(hours=3))
    second = audit_outbox(warehouse, run_id="outreach-2", run_time=END + timedelta(hours=4), say=lambda _: None)

    assert first[0]["rows_checked"] == 20 and second[0]["rows_checked"] == 5


def test_a_message_sent_after_suppression_fails_the_outbox_audit_and_stays_in_the_outbox(warehouse):
    from smarketing_tasks.quality import audit_outbox

    _insert_messages(warehouse, range(20), END)
    with warehouse.begin() as conn:
        conn.execute(sa.text("insert into smarketing.suppressions (email, customer_id, reason, source, suppressed_at) "
                             "values ('x@example.com', 'c9', 'unsubscribe', 'email_events', :t)"), {"t": END})

    with pytest.raises(QualityGateFailed) as failure:
        audit_outbox(warehouse, run_id="outreach", run_time=END + timedelta(hours=2), say=lambda _: None)

    assert "suite 'outreach_messages'" in str(failure.value)
    assert "a message was sent after the customer was suppressed" in str(failure.value) and '"c9"' in str(failure.value)
    assert _count(warehouse, "select count(*) from smarketing.outreach_messages") == 20


def test_reviews_loaded_from_two_sources_are_validated_once_over_both_windows(warehouse):
    from smarketing_tasks.quality import audit_loaded
    from tests.smarketing_tasks.quality.corpus import review

    rows = [review(n) | {"created_at": END - timedelta(hours=n % 48)} for n in range(60)]
    with warehouse.begin() as conn:
        conn.execute(sa.text(
            "insert into smarketing.reviews (review_id, order_id, customer_id, sku, rating, title, body, "
            "consent_to_publish, incentivized, language, created_at, source, attribution) values (:review_id, "
            ":order_id, :customer_id, :sku, :rating, :title, :body, :consent_to_publish, :incentivized, :language, "
            ":created_at, :source, :attribution)"), rows)
        # r40 is 40 hours old: only the platform's window (no start) covers it, the shop's covers 24 hours.
        conn.execute(sa.text("update smarketing.reviews set language = 'English' where review_id = 'r40'"))
    shop_load = {"dataset": "reviews", "source": "shop", "window_start": (END - timedelta(hours=24)).isoformat(),
                 "window_end": END.isoformat()}
    platform_load = {"dataset": "reviews", "source": "platform", "window_start": None,
                     "window_end": (END - timedelta(hours=1)).isoformat()}

    audited = audit_loaded(warehouse, [shop_load, platform_load], run_id="responses", run_time=END,
                           say=lambda _: None)

    assert [(a["suite"], a["rows_checked"]) for a in audited] == [("reviews", 60)]
    with warehouse.connect() as conn:
        warned = conn.execute(sa.text("select results from smarketing.validation_runs")).scalar()
    language = next(r for r in warned if r.get("expectation") == "expect_column_values_to_match_regex(language)")
    assert language["success"] is False and language["sample"] == ["English"]  # a warning: recorded, not moved
    assert _count(warehouse, "select count(*) from smarketing.reviews") == 60


def test_a_failed_batch_stays_in_the_audit_until_fixed_or_released_by_an_operator(warehouse):
    from smarketing_tasks.quality import QualitySettings

    def load(first: int, count: int, updated_at: datetime, bad_every: int = 0) -> None:
        rows = []
        for n in range(first, first + count):
            row = order(n) | {"updated_at": updated_at, "ordered_at": updated_at - timedelta(days=3),
                              "shipped_at": updated_at - timedelta(days=2), "delivered_at": updated_at}
            if bad_every and n % bad_every == 0:
                row["currency"] = "XAU"
            rows.append(row)
        with warehouse.begin() as conn:
            conn.execute(sa.text(
                "insert into smarketing.orders (order_id, customer_id, ordered_at, status, shipped_at, delivered_at, "
                "total_amount, currency, updated_at, source) values (:order_id, :customer_id, :ordered_at, :status, "
                ":shipped_at, :delivered_at, :total_amount, :currency, :updated_at, :source)"), rows)

    def audit(hour: int, settings: QualitySettings | None = None):
        until = END + timedelta(hours=hour)
        window = {"dataset": "orders", "window_start": (until - timedelta(hours=1)).isoformat(),
                  "window_end": until.isoformat()}
        return audit_purchases(warehouse, [window], run_id=f"hour-{hour}", run_time=until, settings=settings,
                               say=lambda _: None)

    load(0, 100, END, bad_every=10)
    with pytest.raises(QualityGateFailed, match="XAU"):
        audit(0)
    load(100, 50, END + timedelta(minutes=30))
    with pytest.raises(QualityGateFailed, match=r"10 of 150 rows \(6.7%\)"):
        audit(1)  # the next hour's window alone is clean, but the broken batch is still unpublished

    released = audit(2, QualitySettings(threshold_overrides="orders=0.2"))
    assert released[0]["rows_checked"] == 150 and released[0]["rows_quarantined"] == 10
    assert _count(warehouse, "select count(*) from smarketing.orders where currency = 'XAU'") == 0

    load(200, 50, END + timedelta(hours=2, minutes=30))
    assert audit(3)[0]["rows_checked"] == 50  # back to its own window
