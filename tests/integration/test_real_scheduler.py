"""The loop under a real Airflow deployment: separate api-server, scheduler, dag-processor and triggerer
processes on PostgreSQL, first with the LocalExecutor, then with the CeleryExecutor and two Celery workers
on the real Redis.

The test acts like an operator: it waits for the DAGs to be parsed, unpauses them, triggers
``smarketing_ingest`` through the REST API and waits until the DAGs scheduled on Assets have been started
by the scheduler (run type ``asset_triggered``) and succeeded, then reads the warehouse. It discovers the
loop's DAGs from the ``dags/`` folder and their schedules from the API, so it covers every contract DAG
that exists: a time-scheduled one (other than ingest) is triggered too, an Asset-scheduled one is awaited.
The LocalExecutor run ends with an erasure request: ``smarketing_privacy`` triggered by REST with params.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.integration.airflow_stack import (
    ROOT,
    AirflowStack,
    celery_env,
    forget_queue,
    loop_connections,
    metadata_url,
    redis_available,
)

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.slow, pytest.mark.timeout(420)]

LOOP_DAG_IDS = ["smarketing_ingest", "smarketing_outreach", "smarketing_responses", "smarketing_score"]
REDIS_URL = "redis://127.0.0.1:6379/13"  # a database of its own, apart from anything else on this Redis
RUN_TIMEOUT_S = 150


def _loop_dags() -> list[str]:
    return [dag_id for dag_id in LOOP_DAG_IDS if (ROOT / "dags" / f"{dag_id}.py").exists()]


def _shop_end() -> datetime:
    """The shop's history ends an hour before now: a real scheduler's runs happen now (asset-triggered runs
    take the wall clock as their time), so the data must be recent whatever day the test runs."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


@pytest.fixture
def loop_databases(make_database) -> dict[str, str]:
    """Fresh metadata, shop (with a small demo shop) and warehouse databases."""
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.demo_shop import ShopSpec, generate, write_shop

    urls = {name: make_database(f"e2e_{name}") for name in ("airflow", "shop", "warehouse")}
    shop = make_engine(urls["shop"])
    write_shop(shop, generate(ShopSpec(customers=150, days=45, end=_shop_end(), seed=5)))
    shop.dispose()
    return urls


def _prepare(stack: AirflowStack) -> None:
    """What docker-compose's airflow-init does first: migrate the metadata database."""
    started = time.monotonic()
    stack.airflow("db", "migrate")
    print(f"airflow db migrate: {time.monotonic() - started:.0f}s")


def _run_loop(stack: AirflowStack) -> dict[str, list[dict]]:
    """Unpause, trigger ingest by REST, wait for every Asset-driven DAG; returns task instances per DAG."""
    from smarketing_airflow.defaults import SMTP_POOL, SMTP_POOL_SLOTS

    loop = _loop_dags()
    started = time.monotonic()
    stack.wait_until_serving()
    stack.set_pool(SMTP_POOL, SMTP_POOL_SLOTS, "Concurrent connections to the SMTP server")
    stack.wait_for_dags(set(loop))
    print(f"stack serving and {len(loop)} DAGs parsed after {time.monotonic() - started:.0f}s")
    details = {dag_id: stack.dag_details(dag_id) for dag_id in loop}
    asset_driven = [d for d in loop if details[d].get("asset_expression")]
    time_driven = [d for d in loop if d not in asset_driven]
    assert "smarketing_ingest" in time_driven

    # Each time-scheduled DAG is triggered for the interval the scheduler would run when unpaused, which
    # keeps the scheduler from running that interval a second time.
    triggered = {dag_id: stack.trigger_next_interval(dag_id)["dag_run_id"] for dag_id in time_driven}
    for dag_id in loop:
        stack.unpause(dag_id)

    task_instances = {}
    for dag_id, run_id in triggered.items():
        run = stack.wait_for_run(dag_id, RUN_TIMEOUT_S, run_id=run_id)
        assert run["run_type"] == "manual"
        task_instances[dag_id] = stack.task_instances(dag_id, run_id)
    for dag_id in asset_driven:
        # A run started by the Asset event of the triggered ingest run when the DAG listens to purchases
        # (so the shop's data is in the warehouse by then), else by any of the triggered runs.
        expression = json.dumps(details[dag_id]["asset_expression"])
        print(f"{dag_id} scheduled on {expression}")
        listens_to_purchases = "smarketing://purchases" in expression or '"smarketing_purchases"' in expression
        started_by = ({("smarketing_ingest", triggered["smarketing_ingest"])} if listens_to_purchases
                      else set(triggered.items()))
        run = stack.wait_for_run(dag_id, RUN_TIMEOUT_S, run_type="asset_triggered", started_by=started_by)
        print(f"{dag_id}: {run['dag_run_id']} started by {sorted(stack.upstream_runs(dag_id, run['dag_run_id']))}")
        task_instances[dag_id] = stack.task_instances(dag_id, run["dag_run_id"])
    print(stack.timeline())
    return task_instances


def _erase_one_customer(stack: AirflowStack, warehouse_url: str) -> str:
    """An erasure request as an operator makes it: smarketing_privacy triggered by REST with params."""
    from smarketing_tasks.db import make_engine

    engine = make_engine(warehouse_url)
    with engine.connect() as conn:
        customer_id = conn.execute(sa.text(
            "select customer_id from smarketing.orders group by 1 order by count(*) desc, 1 limit 1")).scalar_one()
    engine.dispose()
    stack.wait_for_dags({"smarketing_privacy"})
    run = stack.trigger_next_interval("smarketing_privacy", conf={"customer_id": customer_id, "request_ref": "e2e"})
    stack.unpause("smarketing_privacy")
    stack.wait_for_run("smarketing_privacy", RUN_TIMEOUT_S, run_id=run["dag_run_id"])
    return customer_id


def _check_erased(warehouse_url: str, customer_id: str) -> None:
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.privacy import sha256_hex

    engine = make_engine(warehouse_url)
    with engine.connect() as conn:
        for table in ("customers", "customer_contacts", "orders", "outreach_messages", "advocate_scores"):
            left = conn.execute(sa.text(f"select count(*) from smarketing.{table} where customer_id = :c"),
                                {"c": customer_id}).scalar_one()
            assert left == 0, f"{table} still has rows of the erased customer"
        keys = conn.execute(sa.text("select customer_key from smarketing.erasures where request_ref = 'e2e'")).scalars()
        assert list(keys) == [sha256_hex(customer_id)]
    engine.dispose()


def _check_warehouse(warehouse_url: str, task_instances: dict[str, list[dict]]) -> None:
    from smarketing_tasks.db import make_engine

    engine = make_engine(warehouse_url)
    with engine.connect() as conn:
        def count(table: str) -> int:
            return conn.execute(sa.text(f"select count(*) from {table}")).scalar_one()

        assert count("smarketing.orders") > 0
        assert count("smarketing.customers") > 0
        assert count("smarketing.watermarks") == 3
        marts = conn.execute(sa.text(
            "select table_name from information_schema.tables where table_schema = 'marketing'")).scalars().all()
        if "smarketing_score" in task_instances:
            assert count("smarketing.advocate_scores") > 0
        if marts:  # once scoring publishes the marts
            assert count("marketing.advocates") > 0
        if "smarketing_outreach" in task_instances:
            assert count("smarketing.outreach_messages") > 0
    engine.dispose()
    for dag_id, tis in task_instances.items():
        assert tis, f"{dag_id} ran no tasks"
        assert {ti["state"] for ti in tis} <= {"success", "skipped"}, f"{dag_id}: {tis}"


def test_loop_runs_under_real_scheduler_with_local_executor(tmp_path: Path, loop_databases, smtp_server):
    stack = AirflowStack(home=tmp_path / "airflow", metadata_url=metadata_url(loop_databases["airflow"]),
                         executor="LocalExecutor", connections=loop_connections(loop_databases, smtp_server[0]),
                         extra_env={"SMARKETING_DATA_DIR": str(tmp_path / "data")})
    try:
        _prepare(stack)
        stack.start_core()
        task_instances = _run_loop(stack)
        erased = _erase_one_customer(stack, loop_databases["warehouse"])
    finally:
        survivors = stack.stop()
    assert survivors == [], f"processes outlived the stack: {survivors}"
    _check_warehouse(loop_databases["warehouse"], task_instances)
    _check_erased(loop_databases["warehouse"], erased)
    ingest = [ti["task_id"] for ti in task_instances["smarketing_ingest"]]
    assert ingest.count("ingest") == 3, "one mapped ingest task per dataset"
    assert {"migrate_warehouse", "publish_purchases"} <= set(ingest)


@pytest.mark.skipif(not redis_available(), reason="needs the Redis at 127.0.0.1:6379")
def test_loop_runs_on_two_celery_workers(tmp_path: Path, loop_databases, smtp_server):
    # A queue of its own, so a concurrent run of this test (or anything else on the Redis) cannot steal tasks.
    queue = f"smarketing_e2e_{uuid.uuid4().hex[:8]}"
    metadata = metadata_url(loop_databases["airflow"])
    stack = AirflowStack(
        home=tmp_path / "airflow", metadata_url=metadata, executor="CeleryExecutor",
        connections=loop_connections(loop_databases, smtp_server[0]),
        extra_env={"SMARKETING_DATA_DIR": str(tmp_path / "data"),
                   **celery_env(REDIS_URL, loop_databases["airflow"], queue)},
    )
    workers = ["worker-a", "worker-b"]
    try:
        _prepare(stack)
        stack.start_core()
        stack.start_celery_workers(dict.fromkeys(workers, 1), queue)
        task_instances = _run_loop(stack)
    finally:
        survivors = stack.stop()
        forget_queue(REDIS_URL, queue)
    assert survivors == [], f"processes outlived the stack: {survivors}"
    _check_warehouse(loop_databases["warehouse"], task_instances)

    hosts_per_run = {dag_id: {ti["hostname"] for ti in tis if ti["state"] == "success"}
                     for dag_id, tis in task_instances.items()}
    print(f"workers per run: {hosts_per_run}")
    # Which run gets split depends on what else is running at that moment (each worker takes one task at a
    # time); over the loop's runs, with mapped tasks in ingest and scoring, at least one is shared.
    shared = [dag_id for dag_id, hosts in hosts_per_run.items() if hosts == set(workers)]
    assert shared, f"no run had its tasks executed by both workers: {hosts_per_run}"
    assert set().union(*hosts_per_run.values()) == set(workers)
