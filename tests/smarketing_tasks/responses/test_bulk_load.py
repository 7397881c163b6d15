"""A first load into empty response tables builds their secondary indexes and review_signals' key once, after its
last batch; a run that dies on the way leaves them recorded, and the next run puts them back before it loads."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.responses import ResponseSqlSource, ResponsesSettings, ingest_responses
from tests.smarketing_tasks.responses.helpers import KEY, T0, Watched, add_customer, add_order, shop_insert

pytestmark = pytest.mark.integration
UNTIL = T0 + timedelta(days=20)
SETTINGS = ResponsesSettings(responses_batch_rows=2)
FOREIGN_KEY = "review_signals_review_id_fkey"


def _schema(warehouse) -> dict[str, set[str]]:
    """Index names of the response tables, and the foreign keys of review_signals."""
    with warehouse.connect() as conn:
        indexes = conn.execute(sa.text(
            "select tablename, indexname from pg_indexes where schemaname = 'smarketing' "
            "and tablename in ('reviews', 'review_signals', 'social_posts', 'email_events')")).all()
        keys = set(conn.execute(sa.text(
            "select conname from pg_constraint where conrelid = 'smarketing.review_signals'::regclass "
            "and contype = 'f'")).scalars())
    found: dict[str, set[str]] = {"review_signals_fkeys": keys}
    for table, name in indexes:
        found.setdefault(table, set()).add(name)
    return found


def _pending(warehouse) -> tuple[int, int]:
    with warehouse.connect() as conn:
        return (conn.execute(sa.text("select count(*) from smarketing.deferred_indexes")).scalar(),
                conn.execute(sa.text("select count(*) from smarketing.deferred_foreign_keys")).scalar())


def _reviews(shop, warehouse, ids: list[str]) -> None:
    with warehouse.begin() as conn:
        if not conn.execute(sa.text("select 1 from smarketing.customers where customer_id = 'C1'")).scalar():
            add_customer(conn, "C1", "anna@example.com")
            add_order(conn, "O1", "C1", T0 - timedelta(days=10))
    with shop.begin() as conn:
        for review_id in ids:
            i = int(review_id[1:])
            shop_insert(conn, "reviews", review_id=review_id, customer_id="C1", order_id="O1", rating=str(1 + i % 5),
                        body=f"Review number {i}: the tee is fine.", consent_to_publish=True, incentivized=False,
                        created_at=T0 + timedelta(days=1, hours=i))


def _load(shop, warehouse, asked=lambda n: None, dataset="reviews", run_id="run-1"):
    return ingest_responses(Watched(ResponseSqlSource(shop), asked), dataset, warehouse, until=UNTIL, run_id=run_id,
                            settings=SETTINGS, keys=[KEY])


def test_a_first_load_builds_the_indexes_and_the_signals_key_once_after_its_last_batch(shop, warehouse):
    _reviews(shop, warehouse, [f"R{i}" for i in range(1, 7)])
    before = _schema(warehouse)
    assert FOREIGN_KEY in before["review_signals_fkeys"]
    during: list[dict[str, set[str]]] = []

    result = _load(shop, warehouse, lambda n: during.append(_schema(warehouse)) if n == 3 else None)

    assert (result.rows_read, result.rows_loaded) == (6, 6)
    # While batch 2 loaded (batch 3 being read), reviews had only its key and the signals no foreign key ...
    assert during[0]["reviews"] == {"reviews_pkey"}
    assert during[0]["review_signals_fkeys"] == set()
    # ... and after the last batch everything is back, nothing is left to rebuild, the statistics are taken.
    assert _schema(warehouse) == before
    assert _pending(warehouse) == (0, 0)
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("select count(*) from smarketing.review_signals")).scalar() == 6
        assert conn.execute(sa.text(
            "select reltuples from pg_class where oid = 'smarketing.reviews'::regclass")).scalar() == 6
        assert conn.execute(sa.text("select convalidated from pg_constraint where conname = :n"),
                            {"n": FOREIGN_KEY}).scalar() is True


@pytest.mark.parametrize("dataset", ["social_posts", "email_events"])
def test_posts_and_events_defer_their_indexes_on_a_first_load_too(shop, warehouse, dataset):
    from smarketing_tasks.responses.pipeline import defer_for_bulk_load, restore_after_bulk_load

    before = _schema(warehouse)
    assert defer_for_bulk_load(warehouse, dataset)  # the empty table loses its secondary indexes
    assert _schema(warehouse)[dataset] == {f"{dataset}_pkey"}
    restore_after_bulk_load(warehouse, dataset)
    assert _schema(warehouse) == before


def test_a_table_with_rows_keeps_its_indexes_and_key_through_the_load(shop, warehouse):
    _reviews(shop, warehouse, ["R1", "R2"])
    _load(shop, warehouse)
    _reviews(shop, warehouse, [f"R{i}" for i in range(3, 9)])
    before = _schema(warehouse)
    during: list[dict[str, set[str]]] = []

    result = _load(shop, warehouse, lambda n: during.append(_schema(warehouse)) if n == 2 else None, run_id="run-2")

    assert result.rows_loaded == 6
    assert during == [before]


def test_indexes_and_the_key_lost_by_a_crashed_first_load_come_back_on_the_next_run(shop, warehouse):
    """The process dies after batch 1 committed (a KeyboardInterrupt stands in for the kill: nothing tidies up)."""
    ids = [f"R{i}" for i in range(1, 7)]
    _reviews(shop, warehouse, ids)
    before = _schema(warehouse)

    def killed(n: int) -> None:
        if n == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _load(shop, warehouse, killed)
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("select count(*) from smarketing.reviews")).scalar() == 2  # batch 1 committed
    crashed = _schema(warehouse)
    assert crashed["reviews"] == {"reviews_pkey"} and crashed["review_signals_fkeys"] == set()
    assert _pending(warehouse) == (5, 1)  # recorded, so not lost

    seen: list[dict[str, set[str]]] = []
    result = _load(shop, warehouse, lambda n: seen.append(_schema(warehouse)) if n == 1 else None, run_id="run-2")

    assert seen == [before], "restored before the next run loads anything (the table is no longer empty)"
    assert result.rows_loaded == 4
    assert _schema(warehouse) == before
    assert _pending(warehouse) == (0, 0)
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("select count(*) from smarketing.review_signals")).scalar() == 6


def test_a_failing_first_load_gives_the_indexes_and_key_back_at_once(shop, warehouse):
    _reviews(shop, warehouse, [f"R{i}" for i in range(1, 7)])
    before = _schema(warehouse)

    def fails(n: int) -> None:
        if n == 3:
            raise OSError("the shop went away")

    with pytest.raises(OSError, match="the shop went away"):
        _load(shop, warehouse, fails)
    assert _schema(warehouse) == before  # erasure and planning need them before the retry comes
    assert _pending(warehouse) == (0, 0)


def _reviews_scans(plan: dict) -> list[int]:
    """Actual loops of every plan node that reads smarketing.reviews."""
    found = [plan["Actual Loops"]] if plan.get("Relation Name") == "reviews" else []
    for child in plan.get("Plans", []):
        found += _reviews_scans(child)
    return found


def test_the_duplicate_rule_reads_reviews_once_per_batch_while_its_index_is_deferred(shop, warehouse):
    """Without reviews_customer_order_sku_idx (built after the last batch), a probe per staged review reads every
    review loaded by the batches before (batch 2 of the 1M bench: 50,000 x 50,000 rows, hours): the rule joins."""
    with warehouse.begin() as conn:
        for n in range(1, 201):
            add_customer(conn, f"C{n}", f"c{n}@example.com")
            add_order(conn, f"O{n}", f"C{n}", T0 - timedelta(days=10))
    with shop.begin() as conn:
        for i in range(1, 601):
            n = 1 + i % 200
            shop_insert(conn, "reviews", review_id=f"R{i:04}", customer_id=f"C{n}", order_id=f"O{n}", rating="4",
                        body=f"Review {i}: fine.", consent_to_publish=True, incentivized=False,
                        created_at=T0 + timedelta(days=1, minutes=i))
        # batch 3 repeats a review of batch 1 under another id
        shop_insert(conn, "reviews", review_id="R9999", customer_id="C2", order_id="O2", rating="4",
                    body="Review 1: fine.", consent_to_publish=True, incentivized=False,
                    created_at=T0 + timedelta(days=1, minutes=700))
    plans: list[dict] = []

    def explain(conn, cursor, statement, parameters, context, executemany) -> None:
        if "was already received as" in statement:
            raw = conn.connection.driver_connection
            plans.append(raw.execute("explain (analyze, format json) " + statement).fetchone()[0][0]["Plan"])

    sa.event.listen(warehouse, "before_cursor_execute", explain)
    try:
        result = ingest_responses(ResponseSqlSource(shop), "reviews", warehouse, until=UNTIL, run_id="run-1",
                                  settings=ResponsesSettings(responses_batch_rows=250), keys=[KEY])
    finally:
        sa.event.remove(warehouse, "before_cursor_execute", explain)

    assert len(plans) == 3
    assert [max(_reviews_scans(plan)) for plan in plans] == [1, 1, 1], plans
    assert (result.rows_loaded, result.rows_quarantined) == (600, 1)
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("select record_key, rule, reason from smarketing.quarantine")).one() == (
            "R9999", "duplicate_review",
            "the same review (customer, order, product, rating and text) was already received as R0001")
