"""The quality gate: validate a batch with its suite, quarantine broken rows, record the run, stop on a breach.

``run_suite`` validates a DataFrame (before it is written) or a warehouse table (after it is written and
before it is published), and returns a ``SuiteResult``. ``gate`` does the same and raises
``QualityGateFailed`` when the suite's threshold is crossed, so that write → audit → publish stops at audit.

What counts as a breach, per suite (see docs/data-quality.md):

* any failure of an expectation marked ``on_failure: fail`` (broken keys, table-level checks);
* more than ``max_bad_share`` of the batch's rows breaking ``threshold`` expectations (row-level);
* a distribution check moving further than ``max_change`` from its recent level;
* an expectation GX could not evaluate (a missing column is a broken contract, not a pass).

Rows breaking row-level expectations go to ``smarketing.quarantine`` with the expectation as ``rule`` and a
readable ``reason``. When the gate passes they are also removed from the batch (``on_bad_rows: move``): out
of the returned frame, or deleted from the table in the same transaction that records them. When it fails
nothing is removed, so a retry fails the same way instead of passing on a thinned-out batch.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from smarketing_tasks.quality.gx_runner import ROW_REF, ExpectationOutcome, _plain, run_gx
from smarketing_tasks.quality.settings import QualitySettings
from smarketing_tasks.quality.suites import DistributionSpec, ExpectationSpec, Mode, SuiteSpec, load_suite

if TYPE_CHECKING:
    import pandas as pd


class QualityGateFailed(RuntimeError):
    """A suite crossed its threshold: the batch must not be published. The message says what and where."""

    def __init__(self, message: str, result: SuiteResult | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class DistributionOutcome:
    spec: DistributionSpec
    value: float | None  # this batch's share
    baseline: float | None  # median of recent successful runs
    history: int  # how many recent runs the baseline is made of
    success: bool
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.spec.name, "column": self.spec.column, "values": list(self.spec.values),
                "value": self.value, "baseline": self.baseline, "history": self.history,
                "max_change": self.spec.max_change, "success": self.success, "note": self.note}


@dataclass
class SuiteResult:
    suite: str
    dataset: str
    run_id: str
    batch: str
    mode: Mode
    rows_checked: int
    rows_bad: int
    rows_quarantined: int
    threshold: float
    success: bool
    problems: list[str]  # one sentence per reason the gate failed
    warnings: list[str]
    outcomes: list[ExpectationOutcome]
    distributions: list[DistributionOutcome]
    seconds: float
    validation_id: int | None = None
    rows_moved: int = 0  # deleted from a warehouse table (later suites of a stage may see them gone)
    clean: pd.DataFrame | None = field(default=None, repr=False)  # frame input minus moved rows

    @property
    def bad_share(self) -> float:
        return self.rows_bad / self.rows_checked if self.rows_checked else 0.0

    @property
    def message(self) -> str:
        if self.success:
            return (f"suite '{self.suite}' passed on {self.batch}: {self.rows_checked:,} rows, "
                    f"{self.rows_quarantined:,} quarantined")
        where = f" (smarketing.validation_runs id {self.validation_id})" if self.validation_id else ""
        rows = (f" Offending rows are in smarketing.quarantine (dataset '{self.dataset}')."
                if self.rows_bad and self.validation_id else "")
        return (f"quality gate failed for suite '{self.suite}' on {self.batch}, run {self.run_id}{where}: "
                + "; ".join(p.rstrip(".") for p in self.problems) + "." + rows + " The batch must not be published.")

    def as_dict(self) -> dict[str, Any]:
        """Small and JSON-safe: what a task returns through XCom."""
        return {"suite": self.suite, "dataset": self.dataset, "batch": self.batch, "mode": self.mode,
                "rows_checked": self.rows_checked, "rows_bad": self.rows_bad,
                "rows_quarantined": self.rows_quarantined, "success": self.success,
                "seconds": round(self.seconds, 3), "validation_id": self.validation_id,
                "warnings": self.warnings[:5]}


# ---------------------------------------------------------------------------------------------------------
# public API


def gate(data: sa.Engine | pd.DataFrame, suite_name: str, **kwargs: Any) -> SuiteResult:
    """``run_suite`` and raise ``QualityGateFailed`` (naming suite, expectation and bad values) on a breach."""
    result = run_suite(data, suite_name, **kwargs)
    if not result.success:
        raise QualityGateFailed(result.message, result)
    return result


def run_suite(data: sa.Engine | pd.DataFrame, suite_name: str, **kwargs: Any) -> SuiteResult:
    """Validate one batch with ``expectations/<suite_name>.json``, then quarantine, move and record (see
    ``check_suite`` for the arguments)."""
    return settle_suite(check_suite(data, suite_name, **kwargs))


@dataclass
class CheckedBatch:
    """A batch validated and judged, with nothing quarantined, moved or recorded yet (``settle_suite`` does)."""

    suite: SuiteSpec
    result: SuiteResult
    bad_rows: dict[str, list[ExpectationOutcome]]
    engine: sa.Engine | None
    frame: pd.DataFrame | None  # frame input (with row refs), or None for a warehouse batch
    table: str | None
    query: str | None
    source: str
    move: bool
    record: bool
    run_time: datetime | None
    gx_result: dict | None
    started: float


def check_suite(
    data: sa.Engine | pd.DataFrame,
    suite_name: str,
    *,
    run_id: str,
    run_time: datetime | None = None,
    warehouse: sa.Engine | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    where: str | None = None,
    table: str | None = None,
    mode: Mode | None = None,
    source: str = "frame",
    settings: QualitySettings | None = None,
    record: bool = True,
    whole_table: bool = True,
) -> CheckedBatch:
    """Validate and judge one batch with ``expectations/<suite_name>.json``; reads only (the GX batch view aside).

    ``data``: a DataFrame (validated in pandas), or the warehouse engine, in which case the batch is the
    suite's table (or ``table``, e.g. a staging table) restricted by the suite's ``batch_filter`` over
    (``since``, ``until``] when either is given, and by ``where`` (SQL over alias ``t``). ``warehouse``
    records runs and quarantine for frames (for an engine it is ``data``; without it a frame's broken rows
    are reported but stay in ``clean``, since nothing may be dropped unrecorded); ``run_time`` is the run's
    logical time, used to order history; ``source`` names a frame's origin in the quarantine.
    ``whole_table=False``: the batch is only some rows of the table (an incremental mart publish's changed
    rows), so expectations about the whole table (``expect_table_*``, e.g. its row count) and distributions
    are skipped.
    """
    import pandas as pd

    settings = settings or QualitySettings()
    suite = load_suite(suite_name)
    started = time.perf_counter()
    threshold = settings.threshold_for(suite.name, suite.max_bad_share)
    is_frame = isinstance(data, pd.DataFrame)
    engine: sa.Engine | None = warehouse if is_frame else data
    chosen: Mode = "pandas" if is_frame else (mode or settings.force_mode or suite.mode)  # type: ignore[assignment]

    # A warehouse batch is rows of one table (no join): what the table's keys enforce needs no scan of it.
    enforced = (table_guarantees(engine, table or suite.table)
                if not is_frame and suite.join is None and (table or suite.table) else None)
    filtered = not is_frame and (since is not None or until is not None) and suite.batch_filter is not None
    evaluated, skipped = _resolve_kwargs(suite, engine, chosen, whole_table, enforced, filtered, since=since,
                                         until=until, run_time=run_time)
    frame: pd.DataFrame | None = None
    query = None
    shares: dict[str, float] | None = None  # distribution shares counted with the batch, in SQL
    if is_frame:
        frame = data.reset_index(drop=True)
        frame[ROW_REF] = frame.index.astype(str)
        rows_checked = len(frame)
        columns = [c for c in frame.columns if c != ROW_REF]
        batch = f"frame from {source}"
    else:
        target = table or suite.table
        if not target:
            raise ValueError(f"suite '{suite.name}' names no table; pass table=")
        condition = _batch_condition(suite, since, until, where)
        extra = f", {suite.extra_columns}" if suite.extra_columns else ""
        query = (f"select t.ctid::text || '@' || t.xmin::text as {ROW_REF}, t.*{extra} from {target} t "
                 f"{suite.join or ''} where {condition}")
        batch = target if condition == "true" else f"{target} where {condition}"
        if chosen == "pandas":
            frame = read_batch_frame(engine, query)
            rows_checked = len(frame)
        else:
            rows_checked, shares = _count_batch(engine, query, suite.distributions if whole_table else ())
        with engine.connect() as conn:
            names = list(conn.execute(sa.text(f"select * from ({query}) q limit 0")).keys())
        columns = [c for c in names if c != ROW_REF]

    if rows_checked == 0:
        run = None
        outcomes = [ExpectationOutcome(spec, kwargs, success=True, skipped="empty batch") for spec, kwargs in evaluated]
    else:
        run = run_gx(suite, evaluated, mode=chosen, frame=frame if chosen == "pandas" else None, engine=engine,
                     query=query, row_limit=settings.quarantine_cap, parallel_workers=settings.gx_parallel_workers)
        outcomes = run.outcomes
    outcomes += skipped
    outcomes.sort(key=lambda o: o.spec.index)

    distributions = _distributions(suite, engine, frame if chosen == "pandas" else None, shares,
                                   rows_checked, run_id=run_id, run_time=run_time) if whole_table else []
    problems, warnings, bad_rows = _judge(suite, outcomes, distributions, rows_checked, threshold, settings)
    if suite.forbidden_columns:
        forbidden = [c for c in columns if re.search(suite.forbidden_columns, c)]
        if forbidden:
            problems.insert(0, f"column(s) {', '.join(forbidden)} must not exist here (pattern "
                               f"{suite.forbidden_columns}: contact data, or what incentives must never depend on)")

    result = SuiteResult(
        suite=suite.name, dataset=suite.dataset, run_id=run_id, batch=batch, mode=chosen,
        rows_checked=rows_checked, rows_bad=len(bad_rows), rows_quarantined=0, threshold=threshold,
        success=not problems, problems=problems, warnings=warnings, outcomes=outcomes,
        distributions=distributions, seconds=0.0,
    )
    # Rows leave the batch only when they can be recorded: a frame checked without a warehouse keeps them.
    move = result.success and suite.on_bad_rows == "move" and engine is not None
    return CheckedBatch(suite, result, bad_rows, engine, frame if is_frame else None, table or suite.table, query,
                        source, move, record, run_time, run.gx_result if run else None, started)


def settle_suite(checked: CheckedBatch) -> SuiteResult:
    """Quarantine a checked batch's broken rows (and move them out when it passed), then record the run."""
    suite, result, bad_rows, engine = checked.suite, checked.result, checked.bad_rows, checked.engine
    frame = checked.frame
    if frame is not None:
        rejects = _frame_rejects(suite, frame, bad_rows) if bad_rows else None
        keep = ~frame[ROW_REF].isin(bad_rows.keys()) if checked.move and bad_rows else None
        result.clean = (frame if keep is None else frame[keep]).drop(columns=[ROW_REF]).reset_index(drop=True)
        if engine is not None and rejects is not None:
            from smarketing_tasks.ingest.pipeline import quarantine_rows

            with engine.begin() as conn:
                result.rows_quarantined = quarantine_rows(conn, suite.dataset, checked.source, rejects, result.run_id)
    elif bad_rows:
        result.rows_quarantined, result.rows_moved = _quarantine_table_rows(
            engine, suite, checked.table, checked.query, bad_rows, result.run_id, move=checked.move)
    result.seconds = time.perf_counter() - checked.started
    if checked.record and engine is not None:
        result.validation_id = _record_run(engine, result, checked.run_time, checked.gx_result)
    return result


# ---------------------------------------------------------------------------------------------------------
# batch and kwargs


def _literal(value: datetime | None, default: str) -> str:
    if value is None:
        return f"timestamptz '{default}'"
    return f"timestamptz '{value.isoformat()}'"


def _batch_condition(suite: SuiteSpec, since: datetime | None, until: datetime | None, where: str | None) -> str:
    parts = []
    if (since is not None or until is not None) and suite.batch_filter:
        parts.append("(" + suite.batch_filter.format(since=_literal(since, "-infinity"),
                                                     until=_literal(until, "infinity")) + ")")
    if where:
        parts.append(f"({where})")
    return " and ".join(parts) or "true"


def read_batch_frame(engine: sa.Engine, query: str) -> pd.DataFrame:
    """``pandas.read_sql(query)`` on the DBAPI connection under the engine: pandas converts the rows the same way,
    without SQLAlchemy's per-row objects (~15% of reading 600k customers). The query is sent as is (no bind
    parameters are parsed); pandas warns that it does not test DBAPI connections other than sqlite3, and
    tests/smarketing_tasks/quality/test_gate.py holds the two frames equal."""
    import warnings

    import pandas as pd

    with engine.connect() as conn, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pandas only supports SQLAlchemy", category=UserWarning)
        return pd.read_sql(query, conn.connection.driver_connection)


def _resolve_kwargs(suite: SuiteSpec, engine: sa.Engine | None, mode: Mode, whole_table: bool = True,
                    enforced: TableGuarantees | None = None, filtered: bool = False, **params: Any):
    """Fill kwargs that come from the warehouse (e.g. a mart's expected row count from its source), and set aside
    what is not evaluated: expectations of another mode or about the whole table, those the batch's table
    enforces (``enforced``) and those the batch filter implies when it applies (``filtered``)."""
    evaluated: list[tuple[ExpectationSpec, dict[str, Any]]] = []
    skipped: list[ExpectationOutcome] = []
    for spec in suite.expectations:
        kwargs = dict(spec.kwargs)
        if filtered and spec.implied_by_batch_filter:
            skipped.append(ExpectationOutcome(spec, kwargs, success=True, skipped="implied by the batch filter"))
            continue
        enforced_by = enforced.enforcing(spec) if enforced is not None else None
        if enforced_by:
            skipped.append(ExpectationOutcome(spec, kwargs, success=True, skipped=f"enforced by {enforced_by}"))
            continue
        if not whole_table and spec.type.startswith("expect_table_"):
            skipped.append(ExpectationOutcome(spec, kwargs, success=True, skipped="the batch holds changed rows only"))
            continue
        if spec.only_in and spec.only_in != mode:
            skipped.append(ExpectationOutcome(spec, kwargs, success=True, skipped=f"runs in {spec.only_in} only"))
            continue
        if spec.kwargs_from_sql:
            if engine is None:
                skipped.append(ExpectationOutcome(spec, kwargs, success=True, skipped="needs the warehouse"))
                continue
            with engine.connect() as conn:
                for name, sql in spec.kwargs_from_sql.items():
                    statement = sa.text(sql)
                    bound = {k: v for k, v in params.items() if k in statement.compile().params}
                    kwargs[name] = _plain(conn.execute(statement, bound).scalar())
        evaluated.append((spec, kwargs))
    return evaluated, skipped


@dataclass(frozen=True)
class TableGuarantees:
    """What PostgreSQL enforces on every row of a table: its NOT NULL columns, and its unique keys whose columns are
    all NOT NULL (a valid, immediate, non-partial unique index on plain columns, e.g. the primary key)."""

    table: str
    not_null: frozenset[str]
    unique_keys: tuple[tuple[str, frozenset[str]], ...]  # (constraint or index name, its columns)

    def enforcing(self, spec: ExpectationSpec) -> str | None:
        """The constraint that makes ``spec`` hold on any subset of the table's rows, or None.

        Uniqueness of columns holds when a key's columns are among them (rows that differ in the key differ in
        the columns). A key's columns are never null, so GX's rule of ignoring rows whose values are all
        missing changes nothing."""
        if spec.type == "expect_column_values_to_not_be_null" and spec.kwargs.get("column") in self.not_null:
            return f"NOT NULL on {self.table}.{spec.kwargs['column']}"
        if spec.type in ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"):
            columns = set(spec.columns)
            for name, key in self.unique_keys:
                if key <= columns:
                    return f"unique key {name} ({', '.join(sorted(key))}) of {self.table}"
        return None


def table_guarantees(engine: sa.Engine, table: str) -> TableGuarantees:
    """Read ``table``'s NOT NULL columns and unique keys from the catalog (see ``TableGuarantees``)."""
    with engine.connect() as conn:
        oid = conn.execute(sa.text("select to_regclass(:t)::oid"), {"t": table}).scalar()
        if oid is None:
            return TableGuarantees(table, frozenset(), ())
        not_null = conn.execute(sa.text(
            "select attname from pg_attribute where attrelid = :oid and attnum > 0 and not attisdropped "
            "and attnotnull"), {"oid": oid}).scalars()
        keys = conn.execute(sa.text(
            "select coalesce(c.conname, i.indexrelid::regclass::text), "
            "array_agg(a.attname::text order by a.attname), bool_and(a.attnotnull) "
            "from pg_index i join pg_attribute a on a.attrelid = i.indrelid "
            "and a.attnum = any(i.indkey[0:i.indnkeyatts - 1]) "
            "left join pg_constraint c on c.conindid = i.indexrelid and c.conrelid = i.indrelid "
            "where i.indrelid = :oid and i.indisunique and i.indisvalid and i.indisready and i.indimmediate "
            "and i.indpred is null and i.indexprs is null "
            "group by 1"), {"oid": oid}).all()
    return TableGuarantees(table, frozenset(not_null),
                           tuple((name, frozenset(columns)) for name, columns, all_not_null in keys if all_not_null))


# ---------------------------------------------------------------------------------------------------------
# judging


def _values(outcome: ExpectationOutcome, size: int) -> str:
    sample = outcome.sample[:size]
    return ", ".join(json.dumps(_plain(v), default=str, ensure_ascii=False) for v in sample) or "no sample"


def _judge(suite: SuiteSpec, outcomes: list[ExpectationOutcome], distributions: list[DistributionOutcome],
           rows_checked: int, threshold: float, settings: QualitySettings):
    problems: list[str] = []
    warnings: list[str] = []
    bad_rows: dict[str, list[ExpectationOutcome]] = {}
    threshold_offenders: list[ExpectationOutcome] = []
    for outcome in outcomes:
        spec = outcome.spec
        if outcome.error:
            problems.append(f"expectation {spec.label} could not be evaluated: {outcome.error}")
            continue
        if outcome.success or outcome.skipped:
            continue
        if spec.row_level and spec.on_failure != "warn":
            for ref in outcome.rows:
                bad_rows.setdefault(ref, []).append(outcome)
            if len(outcome.rows) < min(outcome.unexpected_count, settings.quarantine_cap):
                problems.append(f"expectation {spec.label} found {outcome.unexpected_count:,} rows but GX named only "
                                f"{len(outcome.rows):,}: refusing to quarantine part of them")
        if spec.row_level or spec.type == "unexpected_rows_expectation":
            sentence = (f"expectation {spec.label} [{spec.reason}] failed for {outcome.unexpected_count:,} rows, "
                        f"e.g. {_values(outcome, settings.sample_size)}")
        else:
            observed = json.dumps(_plain(outcome.observed_value), default=str)
            expected = {k: v for k, v in outcome.kwargs.items() if k not in ("column", "result_format")}
            sentence = (f"expectation {spec.label} [{spec.reason}] failed: observed {observed}, "
                        f"expected {json.dumps(_plain(expected), default=str)}")
            if outcome.sample:
                sentence += f", e.g. {_values(outcome, settings.sample_size)}"
        if spec.on_failure == "fail":
            problems.append(sentence)
        elif spec.on_failure == "warn":
            warnings.append(sentence)
        else:
            threshold_offenders.append(outcome)
            warnings.append(sentence)
    if rows_checked and threshold_offenders:
        share = len(bad_rows) / rows_checked
        if share > threshold:
            worst = sorted(threshold_offenders, key=lambda o: -o.unexpected_count)[:3]
            problems.append(
                f"{len(bad_rows):,} of {rows_checked:,} rows ({share:.1%}) broke row-level expectations, above the "
                f"{threshold:.0%} threshold; " + "; ".join(
                    f"expectation {o.spec.label} [{o.spec.reason}]: {o.unexpected_count:,} rows, e.g. "
                    f"{_values(o, settings.sample_size)}" for o in worst))
    if len(bad_rows) > settings.quarantine_cap:
        problems.append(f"{len(bad_rows):,} rows to quarantine, above the cap of {settings.quarantine_cap:,}")
    for outcome in distributions:
        if not outcome.success:
            problems.append(
                f"distribution check {outcome.spec.name} ({outcome.spec.description or outcome.spec.column}): "
                f"{outcome.value:.1%} in this batch against {outcome.baseline:.1%} over the last {outcome.history} "
                f"runs, a move of more than {outcome.spec.max_change:.0%}")
    return problems, warnings, bad_rows


# ---------------------------------------------------------------------------------------------------------
# distribution checks


def _as_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _count_batch(engine: sa.Engine, query: str, distributions: Sequence[DistributionSpec]) -> tuple[int, dict[str, float]]:
    """The rows of a warehouse batch and the share of each distribution's values among them, in one scan."""
    shares = "".join(f", avg(case when q.{spec.column}::text = any(:values_{n}) then 1.0 else 0.0 end)"
                     for n, spec in enumerate(distributions))
    with engine.connect() as conn:
        counted = conn.execute(sa.text(f"select count(*){shares} from ({query}) q"), {
            f"values_{n}": [_as_text(v) for v in spec.values] for n, spec in enumerate(distributions)}).one()
    return int(counted[0]), {spec.name: float(value or 0.0) for spec, value in zip(distributions, counted[1:], strict=True)}


def _distributions(suite: SuiteSpec, engine: sa.Engine | None, frame: pd.DataFrame | None,
                   shares: dict[str, float] | None, rows_checked: int, *, run_id: str,
                   run_time: datetime | None) -> list[DistributionOutcome]:
    """Judge each distribution's share (of ``frame``, or as counted with the batch: ``shares``) against its history."""
    outcomes = []
    for spec in suite.distributions:
        if rows_checked < spec.min_rows:
            outcomes.append(DistributionOutcome(spec, None, None, 0, True, f"fewer than {spec.min_rows} rows"))
            continue
        value = _share_in(frame[spec.column], spec.values) if frame is not None else shares[spec.name]
        history = _history(engine, suite.name, spec, run_id, run_time) if engine is not None else []
        if len(history) < spec.min_history:
            outcomes.append(DistributionOutcome(spec, value, None, len(history), True,
                                                f"only {len(history)} earlier runs; recording a baseline"))
            continue
        baseline = statistics.median(history)
        outcomes.append(DistributionOutcome(spec, value, baseline, len(history),
                                            abs(value - baseline) <= spec.max_change))
    return outcomes


def _share_in(column: pd.Series, values: tuple[Any, ...]) -> float:
    """Share of ``column`` whose text (as in SQL: true/false for booleans) is one of ``values``; nulls are not.

    Judged once per distinct value, not per row (a 600k-row column has a handful of them)."""
    import numpy as np
    import pandas as pd

    if column.empty:
        return float("nan")
    codes, distinct = pd.factorize(column, use_na_sentinel=True)
    wanted = {_as_text(v) for v in values}
    hit = np.array([v is not None and v == v and _as_text(v) in wanted for v in distinct] + [False])
    return float(hit[codes].mean())  # code -1 (null) picks the final False


def _history(engine: sa.Engine, suite: str, spec: DistributionSpec, run_id: str, run_time: datetime | None) -> list[float]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select (metrics ->> :name)::double precision from smarketing.validation_runs "
            "where suite = :suite and success and run_id <> :run_id and metrics ->> :name is not null "
            "and (cast(:run_time as timestamptz) is null or run_time < :run_time) "
            "order by run_time desc nulls last, validation_id desc limit :n"),
            {"name": spec.name, "suite": suite, "run_id": run_id, "run_time": run_time, "n": spec.history}).scalars()
        return [float(v) for v in rows]


# ---------------------------------------------------------------------------------------------------------
# quarantine and records


def _reason(outcome: ExpectationOutcome, row_values: dict[str, Any]) -> str:
    shown = ", ".join(f"{k}={json.dumps(_plain(v), default=str, ensure_ascii=False)}" for k, v in row_values.items())
    return f"{outcome.spec.reason} ({shown})" if shown else outcome.spec.reason


def _raw_and_hash(values: dict[str, Any]) -> tuple[str, str]:
    values = {k: v for k, v in values.items() if k not in ("loaded_at", ROW_REF)}
    raw = json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)
    return raw, hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _record_key(suite: SuiteSpec, values: dict[str, Any]) -> str | None:
    parts = [values.get(k) for k in suite.key]
    if not parts or all(p is None for p in parts):
        return None
    return "/".join("" if p is None else str(p) for p in parts)


def _frame_rejects(suite: SuiteSpec, frame: pd.DataFrame, bad_rows: dict[str, list[ExpectationOutcome]]):
    import pandas as pd

    by_ref = frame.set_index(ROW_REF)
    records = []
    for ref, outcomes in bad_rows.items():
        values = {k: _plain(v) for k, v in by_ref.loc[ref].items()}
        raw, raw_hash = _raw_and_hash(values)
        key = _record_key(suite, values)
        for outcome in outcomes:
            records.append({"_row": ref, "record_key": key, "rule": outcome.spec.label,
                            "reason": _reason(outcome, outcome.rows.get(ref, {}))[:1000], "raw": raw,
                            "raw_hash": raw_hash})
    return pd.DataFrame(records, columns=["_row", "record_key", "rule", "reason", "raw", "raw_hash"])


def _quarantine_table_rows(engine: sa.Engine, suite: SuiteSpec, table: str, query: str,
                           bad_rows: dict[str, list[ExpectationOutcome]], run_id: str, *,
                           move: bool) -> tuple[int, int]:
    """Record (and, when moving, delete) rows by ctid and xmin: a row changed since validation is left alone.

    The raw record is the batch's row (joined columns such as a customer's email included), read in the
    same transaction that deletes it. Returns the rows quarantined and the rows deleted.
    """
    import pandas as pd

    from smarketing_tasks.ingest.pipeline import quarantine_rows

    refs = list(bad_rows)
    ctids = [r.split("@", 1)[0] for r in refs]
    xmins = [r.split("@", 1)[1] for r in refs]
    pairs = "(select unnest(cast(:c as tid[])) as c, unnest(cast(:x as text[])) as x) r"
    rows = (f"select q.{ROW_REF} as ref, to_jsonb(q) - '{ROW_REF}' as raw from ({query}) q "
            f"where q.{ROW_REF} = any(cast(:refs as text[]))")
    if move:
        statement = (f"with batch_rows as ({rows}), moved as (delete from {table} t using {pairs} "
                     f"where t.ctid = r.c and t.xmin::text = r.x returning r.c::text || '@' || r.x as ref) "
                     f"select b.ref, b.raw from batch_rows b join moved using (ref)")
    else:
        statement = rows
    with engine.begin() as conn:
        found = conn.execute(sa.text(statement), {"c": ctids, "x": xmins, "refs": refs}).all()
        records = []
        for ref, raw_values in found:
            raw, raw_hash = _raw_and_hash(raw_values)
            key = _record_key(suite, raw_values)
            for outcome in bad_rows[ref]:
                records.append({"_row": ref, "record_key": key, "rule": outcome.spec.label,
                                "reason": _reason(outcome, outcome.rows.get(ref, {}))[:1000], "raw": raw,
                                "raw_hash": raw_hash})
        rejects = pd.DataFrame(records, columns=["_row", "record_key", "rule", "reason", "raw", "raw_hash"])
        return quarantine_rows(conn, suite.dataset, table, rejects, run_id), len(found) if move else 0


def _record_run(engine: sa.Engine, result: SuiteResult, run_time: datetime | None, gx_result: dict | None) -> int:
    metrics = {d.spec.name: d.value for d in result.distributions if d.value is not None}
    results = [o.as_dict() for o in result.outcomes] + [{"distribution": d.as_dict()} for d in result.distributions]
    evaluated = sum(1 for o in result.outcomes if not o.skipped) + len(result.distributions)
    failed = sum(1 for o in result.outcomes if not o.success and not o.skipped) + sum(
        1 for d in result.distributions if not d.success)
    with engine.begin() as conn:
        return int(conn.execute(sa.text(
            "insert into smarketing.validation_runs (suite, dataset, run_id, batch, mode, run_time, rows_checked, "
            "rows_bad, rows_quarantined, bad_share, threshold, expectations_evaluated, expectations_failed, success, "
            "failure_message, results, metrics, gx_result, seconds) values (:suite, :dataset, :run_id, :batch, :mode, "
            ":run_time, :rows_checked, :rows_bad, :rows_quarantined, :bad_share, :threshold, :evaluated, :failed, "
            ":success, :message, cast(:results as jsonb), cast(:metrics as jsonb), cast(:gx as jsonb), :seconds) "
            "on conflict (suite, run_id, batch) do update set mode = excluded.mode, run_time = excluded.run_time, "
            "rows_checked = excluded.rows_checked, rows_bad = excluded.rows_bad, "
            "rows_quarantined = excluded.rows_quarantined, "
            "bad_share = excluded.bad_share, threshold = excluded.threshold, "
            "expectations_evaluated = excluded.expectations_evaluated, "
            "expectations_failed = excluded.expectations_failed, success = excluded.success, "
            "failure_message = excluded.failure_message, results = excluded.results, metrics = excluded.metrics, "
            "gx_result = excluded.gx_result, seconds = excluded.seconds, finished_at = now() "
            "returning validation_id"),
            {"suite": result.suite, "dataset": result.dataset, "run_id": result.run_id, "batch": result.batch,
             "mode": result.mode, "run_time": run_time, "rows_checked": result.rows_checked,
             "rows_bad": result.rows_bad, "rows_quarantined": result.rows_quarantined,
             "bad_share": result.bad_share, "threshold": result.threshold, "evaluated": evaluated,
             "failed": failed, "success": result.success,
             "message": None if result.success else result.message,
             "results": json.dumps(_plain(results), default=str), "metrics": json.dumps(metrics),
             "gx": None if gx_result is None else json.dumps(gx_result, default=str),
             "seconds": result.seconds}).scalar())
