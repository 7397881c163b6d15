"""Suites as data: ``expectations/<name>.json`` in GX Core 1.x format, plus what the gate needs to know.

A suite file is an ordinary GX suite (``name``, ``expectations``, ``meta``) that GX loads unchanged. The
loop's own settings live under ``meta.smarketing`` (where the data is, how to find a row, the threshold,
the distribution checks) and under each expectation's ``meta`` (a readable reason, how a failure counts).
Keeping both in one file means the suite that Data Docs show is the suite that gates the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from smarketing_tasks.paths import EXPECTATIONS_DIR

Mode = Literal["sql", "pandas"]
OnFailure = Literal["fail", "threshold", "warn"]
OnBadRows = Literal["move", "record"]

# GX expectation types evaluated row by row (they report which rows broke them); the rest judge the batch.
ROW_LEVEL_TYPES = frozenset({
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_null",
    "expect_column_values_to_be_unique",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set",
    "expect_column_values_to_be_between",
    "expect_column_values_to_match_regex",
    "expect_column_values_to_not_match_regex",
    "expect_column_values_to_match_regex_list",
    "expect_column_value_lengths_to_be_between",
    "expect_column_values_to_be_of_type",
    "expect_column_pair_values_a_to_be_greater_than_b",
    "expect_column_pair_values_to_be_equal",
    "expect_compound_columns_to_be_unique",
    "expect_multicolumn_sum_to_equal",
    "expect_select_column_values_to_be_unique_within_record",
})


class SuiteError(ValueError):
    """A suite file is missing or malformed: a bug in the project, not in the data."""


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation of a suite, as the gate reads it."""

    index: int
    type: str
    kwargs: dict[str, Any]
    reason: str  # a sentence for people; quarantine rows append the offending values
    row_level: bool  # failures name rows, which can be quarantined
    on_failure: OnFailure  # fail: any failure stops the run; threshold: counts toward max_bad_share; warn: recorded
    kwargs_from_sql: dict[str, str] = field(default_factory=dict)  # kwarg -> scalar SQL run on the warehouse
    only_in: Mode | None = None  # e.g. SQL-only checks (referential integrity) are skipped in pandas
    # The suite's batch filter keeps only rows for which this holds (e.g. lines of orders that exist): it is
    # checked when the batch is not filtered (a whole table, a copy) and skipped when it is.
    implied_by_batch_filter: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        kwargs = self.kwargs
        if "column" in kwargs:
            return (kwargs["column"],)
        if "column_A" in kwargs:
            return (kwargs["column_A"], kwargs["column_B"])
        return tuple(kwargs.get("column_list", ()))

    @property
    def label(self) -> str:
        """How messages, results and the quarantine's ``rule`` name this expectation."""
        return f"{self.type}({', '.join(self.columns)})" if self.columns else self.type


@dataclass(frozen=True)
class DistributionSpec:
    """The share of rows whose ``column`` is in ``values``, compared with its recent level.

    The recent level is the median of the same metric over the last ``history`` successful runs of the
    suite (smarketing.validation_runs); the check fails when the share moves more than ``max_change``
    (absolute) from it. With fewer than ``min_history`` runs or ``min_rows`` rows it only records.
    """

    name: str
    column: str
    values: tuple[Any, ...]
    max_change: float
    description: str = ""
    history: int = 10
    min_history: int = 3
    min_rows: int = 50


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    dataset: str  # the quarantine's dataset name
    table: str | None  # where the data lives in the warehouse, when validated there
    key: tuple[str, ...]  # columns that name a row in messages and the quarantine's record_key
    mode: Mode  # sql: validate in PostgreSQL; pandas: in memory
    batch_filter: str | None  # SQL over alias t with {since} and {until}: the rows of one interval
    join: str | None  # extra relations joined to t (e.g. contact data kept apart), never deleted from
    extra_columns: str | None  # their columns added to the batch, e.g. "c.email"
    forbidden_columns: str | None  # regex of column names that must not exist (contact data in a mart)
    max_bad_share: float | None  # None: the settings' default
    on_bad_rows: OnBadRows  # move: out of the table/frame into quarantine; record: quarantine only
    description: str
    expectations: tuple[ExpectationSpec, ...]
    distributions: tuple[DistributionSpec, ...]
    raw: dict[str, Any]  # the file as loaded, for GX

    def gx_suite_dict(self) -> dict[str, Any]:
        """The suite as GX reads it (meta kept so that Data Docs show the reasons)."""
        return {"name": self.raw["name"], "expectations": self.raw["expectations"], "meta": self.raw.get("meta", {})}


def suite_path(name: str, directory: Path = EXPECTATIONS_DIR) -> Path:
    return directory / f"{name}.json"


def suite_names(directory: Path = EXPECTATIONS_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.json"))


@cache
def load_suite(name: str, directory: Path = EXPECTATIONS_DIR) -> SuiteSpec:
    path = suite_path(name, directory)
    if not path.is_file():
        raise SuiteError(f"no suite {name!r}: expected {path} (suites: {', '.join(suite_names(directory)) or 'none'})")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SuiteError(f"suite {path} is not valid JSON: {exc}") from exc
    return parse_suite(raw, source=str(path))


def parse_suite(raw: dict[str, Any], source: str = "<dict>") -> SuiteSpec:
    if raw.get("name") is None or not isinstance(raw.get("expectations"), list):
        raise SuiteError(f"suite {source} needs a name and a list of expectations")
    loop = raw.get("meta", {}).get("smarketing", {})
    expectations = []
    for index, item in enumerate(raw["expectations"]):
        kind = item.get("type")
        if not kind:
            raise SuiteError(f"suite {source}: expectation {index} has no type")
        meta = item.get("meta", {}) or {}
        row_level = bool(meta.get("row_level", kind in ROW_LEVEL_TYPES))
        on_failure = meta.get("on_failure", "threshold" if row_level else "fail")
        if on_failure not in ("fail", "threshold", "warn"):
            raise SuiteError(f"suite {source}: expectation {index} has on_failure {on_failure!r}")
        expectations.append(ExpectationSpec(
            index=index, type=kind, kwargs=dict(item.get("kwargs", {})),
            reason=meta.get("reason") or kind.replace("_", " "), row_level=row_level, on_failure=on_failure,
            kwargs_from_sql=dict(meta.get("kwargs_from_sql", {})), only_in=meta.get("only_in"),
            implied_by_batch_filter=bool(meta.get("implied_by_batch_filter", False)), meta=meta,
        ))
    distributions = tuple(
        DistributionSpec(
            name=d["name"], column=d["column"], values=tuple(d["values"]), max_change=float(d["max_change"]),
            description=d.get("description", ""), history=int(d.get("history", 10)),
            min_history=int(d.get("min_history", 3)), min_rows=int(d.get("min_rows", 50)),
        )
        for d in loop.get("distributions", [])
    )
    mode = loop.get("mode", "pandas")
    if mode not in ("sql", "pandas"):
        raise SuiteError(f"suite {source}: mode must be sql or pandas, not {mode!r}")
    return SuiteSpec(
        name=raw["name"], dataset=loop.get("dataset", raw["name"]), table=loop.get("table"),
        key=tuple(loop.get("key", ())), mode=mode, batch_filter=loop.get("batch_filter"),
        join=loop.get("join"), extra_columns=loop.get("extra_columns"), forbidden_columns=loop.get("forbidden_columns"),
        max_bad_share=loop.get("max_bad_share"), on_bad_rows=loop.get("on_bad_rows", "move"),
        description=loop.get("description", ""), expectations=tuple(expectations), distributions=distributions,
        raw=raw,
    )
