"""python -m smarketing_tasks.quality: the gate, the run list and the Data Docs without Airflow."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from smarketing_tasks.quality.__main__ import main

pytestmark = pytest.mark.integration
T0 = datetime(2026, 6, 1, tzinfo=UTC)


def test_validate_exits_1_on_a_breach_and_runs_lists_it_then_docs_render(warehouse_url, warehouse, tmp_path, capsys):
    with warehouse.begin() as conn:
        conn.execute(sa.text(
            "insert into smarketing.orders (order_id, customer_id, ordered_at, status, total_amount, currency, "
            "updated_at, source) select 'o' || g, 'c1', :t, 'placed', 10, case when g % 4 = 0 then 'usd' else 'USD' "
            "end, :t, 'test' from generate_series(1, 40) g"), {"t": T0})

    assert main(["validate", "orders", "--url", warehouse_url, "--run-id", "cli-check"]) == 1
    assert "10 of 40 rows (25.0%)" in capsys.readouterr().err

    assert main(["runs", "--url", warehouse_url, "--suite", "orders"]) == 0
    listed = capsys.readouterr().out
    assert "cli-check" in listed and " NO " in listed

    assert main(["docs", "--url", warehouse_url, "--out", str(tmp_path / "docs")]) == 0
    assert (tmp_path / "docs" / "index.html").is_file()
    assert f"Data Docs: {(tmp_path / 'docs' / 'index.html').resolve()}" in capsys.readouterr().out
