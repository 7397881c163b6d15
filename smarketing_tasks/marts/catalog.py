"""The marts' catalog: one source of truth (``sql/marts/schema.yml``) for DDL, COMMENT ON and the data dictionary."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from smarketing_tasks.paths import SQL_DIR

MARTS_DIR = SQL_DIR / "marts"
CATALOG_FILE = MARTS_DIR / "schema.yml"
# The contract's marts (DESIGN.md section 4); the catalog may add more, never drop one.
CONTRACT_MARTS = ("advocates", "follow_ups", "testimonials", "product_feedback", "loop_kpis_daily",
                  "outreach_funnel", "rewards")
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
_TYPE = re.compile(r"^[a-z ]+(\(\d+(, ?\d+)?\))?$")
_SQL_FILE = re.compile(r"^[a-z]+_[a-z0-9_]+\.sql$")  # <verb>_<object>.sql
# How an incremental publish refreshes a mart: the rows of the changed customers (merged into the published
# table), the rows of the changed activity or send days (the other days copied from the published table), or
# whole; and the key column that names them.
REFRESH_KEYS: dict[str, str | None] = {"customers": "customer_id", "days": "day", "send_days": "day", "whole": None}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    free_text: bool = False
    as_of: str = ""  # SQL computing the column from the row and :as_of when read (module doc of publish.py)


@dataclass(frozen=True)
class Mart:
    name: str
    sql_file: str
    grain: str
    key: tuple[str, ...]
    description: str
    questions: tuple[str, ...]
    example_sql: str
    columns: tuple[Column, ...]
    refresh: str = "whole"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def read_time_columns(self) -> tuple[Column, ...]:
        """Columns computed from the as-of when read: the mart is published as a view over its rows."""
        return tuple(c for c in self.columns if c.as_of)

    def sql(self, directory: Path = MARTS_DIR) -> str:
        return (directory / self.sql_file).read_text()


class CatalogError(ValueError):
    """The catalog file is inconsistent (a missing description, an unknown key column, ...)."""


def load_catalog(path: Path = CATALOG_FILE) -> list[Mart]:
    """Read and check the catalog: every mart and column named safely, typed and described."""
    document = yaml.safe_load(path.read_text())
    marts = []
    for entry in document["marts"]:
        columns = tuple(Column(name=c["name"], type=c["type"], description=c["description"].strip(),
                               free_text=bool(c.get("free_text", False)), as_of=c.get("as_of", ""))
                        for c in entry["columns"])
        mart = Mart(name=entry["name"], sql_file=entry["sql"], grain=entry["grain"].strip(),
                    key=tuple(entry["key"]), description=" ".join(entry["description"].split()),
                    questions=tuple(entry.get("questions", ())), example_sql=entry.get("example_sql", "").strip(),
                    columns=columns, refresh=entry.get("refresh", "whole"))
        _check(mart, path.parent)
        marts.append(mart)
    names = [m.name for m in marts]
    missing = [n for n in CONTRACT_MARTS if n not in names]
    if missing or len(names) != len(set(names)):
        raise CatalogError(f"catalog must name each contract mart once; missing {missing}, got {names}")
    return marts


def _check(mart: Mart, directory: Path) -> None:
    problems = []
    if not _IDENTIFIER.match(mart.name):
        problems.append(f"bad mart name {mart.name!r}")
    if not _SQL_FILE.match(mart.sql_file) or not (directory / mart.sql_file).is_file():
        problems.append(f"sql file {mart.sql_file!r} missing or not named <verb>_<object>.sql")
    if not mart.grain or not mart.description or not mart.questions or not mart.example_sql:
        problems.append("grain, description, questions and example_sql are all required")
    names = mart.column_names
    if len(names) != len(set(names)):
        problems.append("duplicate column names")
    for column in mart.columns:
        if not _IDENTIFIER.match(column.name) or not _TYPE.match(column.type) or not column.description:
            problems.append(f"column {column.name!r} needs a safe name, a plain type and a description")
    problems += [f"key column {k!r} is not a column" for k in mart.key if k not in names]
    if mart.refresh not in REFRESH_KEYS:
        problems.append(f"refresh must be one of {sorted(REFRESH_KEYS)}, not {mart.refresh!r}")
    elif REFRESH_KEYS[mart.refresh] not in (None, *mart.key):
        problems.append(f"refresh {mart.refresh} needs key column {REFRESH_KEYS[mart.refresh]!r}")
    if problems:
        raise CatalogError(f"mart {mart.name}: " + "; ".join(problems))
