"""Batches are prepared one ahead in a thread while the one before loads: commits stay in order, a failing batch
stops the run with the batches before it committed and the watermark unmoved, and a rerun duplicates nothing."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from smarketing_tasks.responses import ResponseSqlSource, ResponsesSettings, ingest_responses
from tests.smarketing_tasks.responses.helpers import KEY, T0, Watched, add_customer, add_order, shop_insert

pytestmark = pytest.mark.integration
UNTIL = T0 + timedelta(days=20)
LOCK = "select pg_advisory_lock(hashtext('smarketing_responses:reviews'))"
SETTINGS = ResponsesSettings(responses_batch_rows=2)
IDS = [f"R{i}" for i in range(1, 7)]  # three batches of two, in the shop's order


@pytest.fixture
def six_reviews(shop, warehouse):
    with warehouse.begin() as conn:
        add_customer(conn, "C1", "anna@example.com")
        add_order(conn, "O1", "C1", T0 - timedelta(days=10))
    with shop.begin() as conn:
        for i, review_id in enumerate(IDS, start=1):
            shop_insert(conn, "reviews", review_id=review_id, customer_id="C1", order_id="O1", rating=str(1 + i % 5),
                        body=f"Review number {i}: the tee is fine.", consent_to_publish=True, incentivized=False,
                        created_at=T0 + timedelta(days=1, hours=i))


def _loaded(warehouse) -> list[str]:
    with warehouse.connect() as conn:
        return conn.execute(sa.text("select review_id from smarketing.reviews order by review_id")).scalars().all()


def _watermark(warehouse):
    with warehouse.connect() as conn:
        return conn.execute(sa.text("select high_watermark from smarketing.watermarks where dataset = 'reviews'")).scalar()


def test_the_next_batch_is_read_and_checked_while_the_one_before_loads(shop, warehouse, six_reviews):
    with warehouse.begin() as conn:  # which transaction inserted each review, in the order they were inserted
        conn.exec_driver_sql("create table public.inserted (seq bigserial, review_id text, xid xid8)")
        conn.exec_driver_sql(
            "create function public.log_insert() returns trigger language plpgsql as $$ begin "
            "insert into public.inserted (review_id, xid) values (new.review_id, pg_current_xact_id()); return new; end $$")
        conn.exec_driver_sql("create trigger log_insert after insert on smarketing.reviews for each row "
                             "execute function public.log_insert()")
    # A session of the test holds the loader's lock, so batch 1 cannot commit until the source is asked for
    # batch 2: only a load that prepares the next batch meanwhile gets past it (otherwise released after 30 s).
    held, asked_second, committed_when_asked = threading.Event(), threading.Event(), []

    def hold_lock() -> None:
        with warehouse.connect() as conn:
            conn.exec_driver_sql(LOCK)
            held.set()
            asked_second.wait(30)
            conn.exec_driver_sql("select pg_advisory_unlock_all()")

    def asked(n: int) -> None:
        if n == 2:
            committed_when_asked.extend(_loaded(warehouse))
            asked_second.set()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert held.wait(30), "the test could not take the lock"
    try:
        result = ingest_responses(Watched(ResponseSqlSource(shop), asked), "reviews", warehouse, until=UNTIL,
                                  run_id="run-1", settings=SETTINGS, keys=[KEY])
    finally:
        asked_second.set()
        holder.join()
    assert committed_when_asked == []  # batch 2 was read while batch 1 waited for its commit
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (6, 6, 0)
    with warehouse.connect() as conn:
        batches = conn.exec_driver_sql(
            "select array_agg(review_id order by seq) from public.inserted group by xid order by min(seq)").scalars().all()
    assert batches == [["R1", "R2"], ["R3", "R4"], ["R5", "R6"]]  # one transaction per batch, committed in order


def test_a_batch_failing_in_the_database_stops_the_run_before_the_batch_prepared_after_it(shop, warehouse, six_reviews):
    with warehouse.begin() as conn:
        conn.exec_driver_sql(
            "create function public.refuse() returns trigger language plpgsql as $$ begin "
            "raise exception 'refused %%', new.review_id; end $$")
        conn.exec_driver_sql("create trigger refuse before insert on smarketing.reviews for each row "
                             "when (new.review_id = 'R4') execute function public.refuse()")
    asked: list[int] = []
    source = Watched(ResponseSqlSource(shop), asked.append)
    with pytest.raises(sa.exc.DBAPIError, match="refused R4"):
        ingest_responses(source, "reviews", warehouse, until=UNTIL, run_id="run-1", settings=SETTINGS, keys=[KEY])
    assert asked == [1, 2, 3]  # batch 3 was prepared while batch 2 loaded ...
    assert _loaded(warehouse) == ["R1", "R2"]  # ... but only the batch before the failure committed
    assert _watermark(warehouse) is None
    with warehouse.connect() as conn:
        assert conn.exec_driver_sql("select count(*) from smarketing.ingest_runs").scalar() == 0

    with warehouse.begin() as conn:
        conn.exec_driver_sql("drop trigger refuse on smarketing.reviews")
    result = ingest_responses(ResponseSqlSource(shop), "reviews", warehouse, until=UNTIL, run_id="run-2",
                              settings=SETTINGS, keys=[KEY])
    assert (result.rows_read, result.rows_loaded) == (6, 4)  # the committed batch is not loaded twice
    assert _loaded(warehouse) == IDS
    assert _watermark(warehouse) == T0 + timedelta(days=1, hours=6)


def test_a_source_failing_on_a_later_batch_leaves_the_batches_before_it_committed(shop, warehouse, six_reviews):
    def asked(n: int) -> None:
        if n == 3:
            raise OSError("the shop went away")

    with pytest.raises(OSError, match="the shop went away"):
        ingest_responses(Watched(ResponseSqlSource(shop), asked), "reviews", warehouse, until=UNTIL, run_id="run-1",
                         settings=SETTINGS, keys=[KEY])
    assert _loaded(warehouse) == ["R1", "R2", "R3", "R4"]
    assert _watermark(warehouse) is None
