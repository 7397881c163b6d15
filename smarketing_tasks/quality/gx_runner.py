"""Run one suite with Great Expectations Core 1.x, in PostgreSQL or in pandas, and read back its results.

GX is imported here, inside functions, so that importing smarketing_tasks (and parsing DAGs) stays fast;
its logger and progress bars are quietened first. Every run uses a fresh ephemeral context: nothing is
written under the project and no GX Cloud is involved. Rows are identified by a ``_row_ref`` column
(the frame's position, or PostgreSQL's ``ctid`` in the database) so that the gate can quarantine exactly
the rows GX names, including rows whose key is missing or duplicated.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smarketing_tasks.quality.suites import ExpectationSpec, Mode, SuiteSpec

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

ROW_REF = "_row_ref"
BATCH_VIEW_SCHEMA = "smarketing"
BATCH_VIEW_PREFIX = "quality_batch_"  # views named so live only while a suite runs
_INDEX = "smarketing_index"  # position of the expectation in its suite file, carried through GX in meta
_GX_SAMPLE = 20  # values kept per expectation in stored GX results (Data Docs); counts stay exact
# Suites of a stage validate in threads; GX keeps the current context in a process-wide project manager, so
# contexts and their data sources are set up one at a time (validations themselves run in parallel).
_SETUP_LOCK = threading.Lock()


@dataclass
class ExpectationOutcome:
    spec: ExpectationSpec
    kwargs: dict[str, Any]  # as evaluated (kwargs_from_sql filled in)
    success: bool
    skipped: str | None = None  # why it was not evaluated
    unexpected_count: int = 0
    sample: list[Any] = field(default_factory=list)  # some offending values, for messages
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # row ref -> offending column values
    observed_value: Any = None
    error: str | None = None  # GX could not evaluate it (a bug in the suite or a missing column)

    def as_dict(self) -> dict[str, Any]:
        return {
            "expectation": self.spec.label, "type": self.spec.type, "columns": list(self.spec.columns),
            "row_level": self.spec.row_level, "on_failure": self.spec.on_failure, "success": self.success,
            "skipped": self.skipped, "unexpected_count": self.unexpected_count,
            "sample": [_plain(v) for v in self.sample], "observed_value": _plain(self.observed_value),
            "error": self.error,
        }


@dataclass
class GxRun:
    outcomes: list[ExpectationOutcome]
    gx_result: dict[str, Any] | None  # JSON of the GX validation result, samples trimmed


def quiet_gx() -> None:
    """GX logs ~200 INFO lines per run otherwise (STACK_NOTES)."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


_IMPORT_LOCK = threading.Lock()


def import_gx() -> None:
    """Import GX (~4 s) once. Threads that need it meanwhile wait on this lock rather than import the same package
    side by side, which can end in an import deadlock."""
    with _IMPORT_LOCK:
        quiet_gx()
        import great_expectations  # noqa: F401


def _context():
    quiet_gx()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def _plain(value: Any) -> Any:
    """JSON-safe and readable: Decimal → float, timestamps → ISO text, NaN → None."""
    import datetime as dt
    import decimal

    if value is None or type(value).__name__ == "NaTType":
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    if isinstance(value, str | int | bool | float):
        return value
    return str(value)


def run_gx(
    suite: SuiteSpec,
    evaluated: list[tuple[ExpectationSpec, dict[str, Any]]],
    *,
    mode: Mode,
    frame: pd.DataFrame | None = None,
    engine: sa.Engine | None = None,
    query: str | None = None,
    row_limit: int = 100_000,
    parallel_workers: int = -1,
) -> GxRun:
    """Validate ``frame`` (pandas) or the rows of ``query`` in ``engine``'s database (sql).

    Both carry a ``_row_ref`` column. In SQL the batch is exposed to GX as a short-lived view: GX reads a
    query asset's column names by running the whole query into memory (a million rows, twice), a view's
    from the catalog.
    """
    if not evaluated:
        return GxRun([], None)
    import_gx()
    from great_expectations.core import ExpectationSuite

    gx_suite_dict = {
        "name": suite.name,
        "expectations": [{"type": spec.type, "kwargs": kwargs, "meta": {**spec.meta, _INDEX: spec.index}}
                         for spec, kwargs in evaluated],
        "meta": suite.raw.get("meta", {}),
    }
    gx_suite = ExpectationSuite(**gx_suite_dict)
    source_name = f"smarketing_{uuid.uuid4().hex[:8]}"
    view = f"{BATCH_VIEW_PREFIX}{uuid.uuid4().hex[:12]}"
    if mode == "sql":
        with engine.begin() as conn:
            conn.exec_driver_sql(f"create view {BATCH_VIEW_SCHEMA}.{view} as {query}")
    with _SETUP_LOCK:
        context = _context()
        if mode == "sql":
            datasource = _sql_datasource(context, source_name, engine, parallel_workers)
            asset = datasource.add_table_asset(suite.name, table_name=view, schema_name=BATCH_VIEW_SCHEMA)
        else:
            datasource = context.data_sources.add_pandas(source_name)
            asset = datasource.add_dataframe_asset(suite.name)
    try:
        # One batch definition, validated through validation definitions: GX then builds the batch once per pass
        # (Batch.validate builds it again after get_batch, and a pandas batch is hashed each time, ~2 s a million rows).
        with _SETUP_LOCK:
            definition = (asset.add_batch_definition_whole_table("batch") if mode == "sql"
                          else asset.add_batch_definition_whole_dataframe("batch"))
        parameters = None if mode == "sql" else {"dataframe": frame}
        # Pass 1 answers pass/fail only: GX bundles those aggregates into a few scans of the batch.
        first = _validation(context, definition, gx_suite).run(
            batch_parameters=parameters, result_format={"result_format": "BOOLEAN_ONLY"})
        failed = [item.expectation_config.meta.get(_INDEX) for item in first.results if not item.success]
        result = first
        if failed:
            # Pass 2, for what failed only: every offending row. GX cuts that list at partial_unexpected_count
            # (20 by default, also in SQL): ask for every row up to the quarantine cap; the gate refuses to
            # quarantine part of a problem beyond it.
            retry = ExpectationSuite(name=f"{suite.name}.failed", meta=gx_suite.meta, expectations=[
                e for e in gx_suite_dict["expectations"] if e["meta"][_INDEX] in failed])
            second = _validation(context, definition, retry).run(batch_parameters=parameters, result_format={
                "result_format": "COMPLETE", "unexpected_index_column_names": [ROW_REF],
                "return_unexpected_index_query": False, "partial_unexpected_count": row_limit + 1,
            })
            result = _merged(first, second)
    finally:
        if mode == "sql":
            datasource.get_engine().dispose()
            with engine.begin() as conn:
                conn.exec_driver_sql(f"drop view if exists {BATCH_VIEW_SCHEMA}.{view}")

    # GX does not keep the suite's order (SQL results come back grouped by metric): match by our index.
    by_index = {(item.expectation_config.meta or {}).get(_INDEX): item for item in result.results}
    outcomes = [_outcome(spec, kwargs, by_index[spec.index]) for spec, kwargs in evaluated]
    return GxRun(outcomes, _trimmed_json(result))


def _outcome(spec: ExpectationSpec, kwargs: dict[str, Any], item) -> ExpectationOutcome:
    error = _error_message(item.exception_info or {})
    if error:
        return ExpectationOutcome(spec, kwargs, success=False, error=error)
    result = item.result or {}
    rows: dict[str, dict[str, Any]] = {}
    for entry in result.get("unexpected_index_list") or []:
        if isinstance(entry, dict) and ROW_REF in entry:
            ref = str(entry[ROW_REF])
            rows[ref] = {k: v for k, v in entry.items() if k != ROW_REF}
    if spec.type == "unexpected_rows_expectation":
        details = (result.get("details") or {}).get("unexpected_rows") or []
        sample = [{k: v for k, v in row.items() if k != ROW_REF} for row in details[:5]]
        count = int(result.get("observed_value") or 0)
    else:
        sample = list((result.get("partial_unexpected_list") or [])[:_GX_SAMPLE])
        count = int(result.get("unexpected_count") or 0)
    return ExpectationOutcome(
        spec, kwargs, success=bool(item.success), unexpected_count=count, sample=sample, rows=rows,
        observed_value=result.get("observed_value"),
    )


def _validation(context, definition, gx_suite):
    """A validation definition of ``gx_suite`` on ``definition``, registered in the (ephemeral) context as GX asks."""
    import great_expectations as gx

    with _SETUP_LOCK:
        gx_suite = context.suites.add(gx_suite)
        return context.validation_definitions.add(
            gx.ValidationDefinition(name=gx_suite.name, data=definition, suite=gx_suite))


def _sql_datasource(context, name: str, engine: sa.Engine, parallel_workers: int = -1):
    """A GX SQL data source on the warehouse, from the engine's own SQLAlchemy URL (the Airflow connection's):
    no second set of connection settings. GX's PostgreSQL type rejects URLs without a host (a unix socket in
    ``?host=``); its generic SQL type takes them and runs the same PostgreSQL dialect. ``parallel_workers`` >= 0
    sets max_parallel_workers_per_gather for its sessions (GX passes ``kwargs`` to ``create_engine``).
    """
    from great_expectations.compatibility.pydantic import ValidationError

    url = engine.url.render_as_string(hide_password=False)
    kwargs = ({"connect_args": {"options": f"-c max_parallel_workers_per_gather={int(parallel_workers)}"}}
              if parallel_workers >= 0 else {})
    try:
        return context.data_sources.add_postgres(name, connection_string=url, kwargs=kwargs)
    except ValidationError:
        return context.data_sources.add_sql(name, connection_string=url, kwargs=kwargs)


def _merged(first, second):
    """The pass-1 result with the failed expectations' detailed pass-2 results in their place."""
    detailed = {item.expectation_config.meta.get(_INDEX): item for item in second.results}
    first.results = [detailed.get(item.expectation_config.meta.get(_INDEX), item) for item in first.results]
    return first


def _error_message(info: dict[str, Any]) -> str | None:
    """GX reports errors at the top level, or per metric (keyed by metric id) when a query failed."""
    candidates = [info] + [v for v in info.values() if isinstance(v, dict)]
    for candidate in candidates:
        if candidate.get("raised_exception"):
            message = candidate.get("exception_message") or "GX raised an error"
            return " ".join(message.split("[SQL:")[0].split())[:500]
    return None


def _trimmed_json(result) -> dict[str, Any]:
    """The GX result as JSON without the full unexpected lists (a million row refs do not belong in a table)."""
    data = result.to_json_dict()
    for item in data.get("results", []):
        outcome = item.get("result") or {}
        for key in ("unexpected_index_list", "unexpected_list", "partial_unexpected_index_list",
                    "unexpected_index_query"):
            outcome.pop(key, None)
        for key in ("partial_unexpected_list", "partial_unexpected_counts"):
            if isinstance(outcome.get(key), list):
                outcome[key] = outcome[key][:_GX_SAMPLE]
        details = outcome.get("details")
        if isinstance(details, dict) and isinstance(details.get("unexpected_rows"), list):
            details["unexpected_rows"] = details["unexpected_rows"][:_GX_SAMPLE]
    return _plain(data)
