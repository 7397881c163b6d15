"""Reading EXPLAIN (ANALYZE, FORMAT JSON) plans in tests that prove a query touches only the rows it should."""

from __future__ import annotations


def rows_read(plan: dict, relation: str) -> int:
    """Rows a plan read from ``relation``: returned plus discarded by filters, over all loops."""
    total = 0
    if plan.get("Relation Name") == relation:
        per_loop = plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)
        total += per_loop * plan.get("Actual Loops", 1) + plan.get("Rows Removed by Index Recheck", 0)
    return int(total) + sum(rows_read(child, relation) for child in plan.get("Plans", []))


def index_names(conn, table: str) -> list[str]:
    """The indexes of ``smarketing.<table>``."""
    import sqlalchemy as sa

    return conn.execute(sa.text("select indexname from pg_indexes where schemaname = 'smarketing' "
                                "and tablename = :t"), {"t": table}).scalars().all()


def plan_text(conn, sql: str, params: dict | None = None) -> str:
    """The text of ``explain <sql>``, one line per plan node, for tests that name the index a query reads."""
    import sqlalchemy as sa

    return "\n".join(conn.execute(sa.text("explain " + sql), params or {}).scalars())
