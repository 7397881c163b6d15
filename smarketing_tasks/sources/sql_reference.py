"""The reference schema in a PostgreSQL database (schema ``shop``), streamed out with COPY."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from smarketing_tasks.schema import CHANGE_COLUMN, SOURCE_COLUMNS
from smarketing_tasks.sources.base import Window

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa


def _literal(moment) -> str:
    return f"'{moment.isoformat()}'::timestamptz"


class ReferenceSqlSource:
    """Reads schema ``shop`` of the shop database (Airflow connection ``smarketing_shop``)."""

    def __init__(self, url_or_engine: str | sa.Engine, schema: str = "shop", name: str = "shop") -> None:
        self._url_or_engine = url_or_engine
        self._engine: sa.Engine | None = None
        self.schema = schema
        self.name = name

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            from smarketing_tasks.db import make_engine

            self._engine = (
                make_engine(self._url_or_engine) if isinstance(self._url_or_engine, str) else self._url_or_engine
            )
        return self._engine

    def datasets(self) -> tuple[str, ...]:
        return tuple(SOURCE_COLUMNS)

    def query(self, dataset: str, window: Window, typed: frozenset[str] = frozenset()) -> str:
        """The SELECT for one dataset and window: reference columns in order, cast to text except the
        ``typed`` ones (see ``typed_source_columns``)."""
        columns = SOURCE_COLUMNS[dataset]
        change = CHANGE_COLUMN[dataset]

        def out(column: str, table: str = "") -> str:
            return f"{table}{column}" if column in typed else f"{table}{column}::text"

        if dataset == "order_items":
            # Items change with their order: select the items of orders changed in the window.
            select = ", ".join(out(c, "i.") for c in columns if c != "updated_at") + ", " + out("updated_at", "o.")
            source = f"{self.schema}.order_items i join {self.schema}.orders o on o.order_id = i.order_id"
            change_expr = "o.updated_at"
        else:
            select = ", ".join(out(c) for c in columns)
            source = f"{self.schema}.{dataset}"
            change_expr = change
        conditions = [f"({change_expr} <= {_literal(window.until)} or {change_expr} is null)"]
        if window.since is not None:
            conditions.append(f"({change_expr} > {_literal(window.since)} or {change_expr} is null)")
        return f"select {select} from {source} where {' and '.join(conditions)}"

    def copy_text(self, dataset: str, window: Window) -> Iterator[bytes]:
        """The window in COPY text format (UTF-8, reference columns in order), block by block, unparsed."""
        yield from self._copy(dataset, window, frozenset())

    def copy_binary(self, dataset: str, window: Window, typed: frozenset[str]) -> Iterator[bytes]:
        """The window in COPY binary format, the ``typed`` columns in their own type and the rest as text."""
        yield from self._copy(dataset, window, typed)

    def _copy(self, dataset: str, window: Window, typed: frozenset[str]) -> Iterator[bytes]:
        from smarketing_tasks.db import raw_cursor

        form = "format binary, encoding 'UTF8'" if typed else "encoding 'UTF8'"
        with self.engine.connect() as conn:
            conn.exec_driver_sql("set time zone 'UTC'")
            conn.exec_driver_sql("set datestyle to 'ISO'")  # whatever the server's default, ISO 8601 out
            exists = conn.exec_driver_sql(f"select to_regclass('{self.schema}.{dataset}')").scalar()
            if exists is None:
                return
            with raw_cursor(conn) as cur, cur.copy(
                f"copy ({self.query(dataset, window, typed)}) to stdout with ({form})"
            ) as copy:
                yield from copy

    def typed_source_columns(self, dataset: str) -> frozenset[str]:
        """Reference columns whose shop column has the warehouse's type (a shop may keep text instead)."""
        import sqlalchemy as sa

        from smarketing_tasks.ingest.rules import SOURCE_TYPES, column_type

        wanted = {c: SOURCE_TYPES[column_type(dataset, c)] for c in SOURCE_COLUMNS[dataset]
                  if column_type(dataset, c) != "text"}
        # Order lines take updated_at from their order (see ``query``).
        origin = {c: ("orders" if dataset == "order_items" and c == "updated_at" else dataset) for c in wanted}
        with self.engine.connect() as conn:
            found = {(table, column): kind for table, column, kind in conn.execute(sa.text(
                "select table_name, column_name, data_type from information_schema.columns "
                "where table_schema = :schema and table_name in ('customers', 'orders', 'order_items')"),
                {"schema": self.schema})}
        return frozenset(c for c, kind in wanted.items() if found.get((origin[c], c)) == kind)

    def read(self, dataset: str, window: Window, batch_rows: int) -> Iterator[pd.DataFrame]:
        from smarketing_tasks.db import copy_query_to_frames

        with self.engine.connect() as conn:
            conn.exec_driver_sql("set time zone 'UTC'")
            exists = conn.exec_driver_sql(f"select to_regclass('{self.schema}.{dataset}')").scalar()
            if exists is None:
                return
            for frame in copy_query_to_frames(conn, self.query(dataset, window), batch_rows):
                frame.columns = list(SOURCE_COLUMNS[dataset])
                yield frame
