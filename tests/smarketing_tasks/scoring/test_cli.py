"""`smarketing score` runs the same scoring as the DAG, outside Airflow."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from smarketing_tasks.cli import main

pytestmark = pytest.mark.integration


def test_score_command_scores_the_warehouse(warehouse, warehouse_url, capsys):
    with warehouse.begin() as conn:
        conn.execute(sa.text(
            "insert into smarketing.orders (order_id, customer_id, ordered_at, status, total_amount, currency, "
            "updated_at, source) values ('o1', 'c1', '2026-11-01', 'delivered', 30, 'EUR', '2026-11-01', 't')"))
        conn.execute(sa.text(
            "insert into smarketing.reviews (review_id, customer_id, rating, body, created_at, source) "
            "values ('r1', 'c1', 4, 'ok', '2026-11-10', 't')"))
    assert main(["score", "--warehouse", warehouse_url, "--until", "2026-11-22", "--partitions", "2"]) == 0
    out = capsys.readouterr().out
    assert "scored 1 customers for 2026-11-22 (full run; 1 customers in all): lukewarm 1" in out
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("select segment from smarketing.advocate_scores")).scalar() == "lukewarm"
    # The next day nothing changed: nobody is rescored, unless asked for a full rescore.
    assert main(["score", "--warehouse", warehouse_url, "--until", "2026-11-23", "--partitions", "2"]) == 0
    assert "scored 0 customers for 2026-11-23 (incremental run; 1 customers in all)" in capsys.readouterr().out
    assert main(["score", "--warehouse", warehouse_url, "--until", "2026-11-24", "--full"]) == 0
    assert "scored 1 customers for 2026-11-24 (full run; 1 customers in all)" in capsys.readouterr().out
