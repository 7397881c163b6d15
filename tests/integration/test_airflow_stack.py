"""The helpers of airflow_stack.py that the real-scheduler tests and benchmarks/bench_scaleout.py share
(starting Celery workers is exercised by test_real_scheduler.py's two-worker run)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.integration.airflow_stack import forget_queue, loop_connections, metadata_url, redis_available

REDIS_URL = "redis://127.0.0.1:6379/14"


@pytest.mark.skipif(not redis_available(), reason="needs the Redis at 127.0.0.1:6379")
def test_forget_queue_deletes_that_queues_keys_and_no_other():
    import redis

    queue, other = f"stack_test_{uuid.uuid4().hex[:8]}", f"stack_test_{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.rpush(queue, "task")
        client.sadd(f"_kombu.binding.{queue}", "binding")
        client.rpush(other, "task")
        assert forget_queue(REDIS_URL, queue) == 2
        assert client.exists(queue, f"_kombu.binding.{queue}") == 0
        assert client.lrange(other, 0, -1) == [b"task"]
        assert forget_queue(REDIS_URL, queue) == 0
    finally:
        client.delete(queue, f"_kombu.binding.{queue}", other)
        client.close()


def test_loop_connections_are_what_airflow_reads():
    from airflow.models.connection import Connection

    urls = {"warehouse": "postgresql://bench:pw@127.0.0.1:54339/wh", "shop": "postgresql://bench@127.0.0.1:54339/shop"}
    connections = loop_connections(urls, smtp_port=2525)

    warehouse = Connection(conn_id="smarketing_warehouse", uri=connections["smarketing_warehouse"])
    assert (warehouse.conn_type, warehouse.host, warehouse.port, warehouse.schema, warehouse.login,
            warehouse.password) == ("postgres", "127.0.0.1", 54339, "wh", "bench", "pw")
    assert Connection(conn_id="smarketing_shop", uri=connections["smarketing_shop"]).schema == "shop"
    smtp = Connection.from_json(connections["smarketing_smtp"], conn_id="smarketing_smtp")
    assert (smtp.conn_type, smtp.host, smtp.port) == ("smtp", "127.0.0.1", 2525)
    assert json.loads(smtp.extra)["disable_tls"] is True
    assert metadata_url(urls["warehouse"]) == "postgresql+psycopg://bench:pw@127.0.0.1:54339/wh"
