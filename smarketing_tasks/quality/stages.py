"""The audit step of each stage (write → audit → publish): which suites run on which batch.

Each function runs every suite of its stage, even after one fails, so that one run reports everything that
is wrong; then it raises one ``QualityGateFailed`` that names each failing suite. Results are small dicts
fit for XCom. DAG tasks call these with the run's id and logical time.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from smarketing_tasks.quality.gate import QualityGateFailed, SuiteResult, check_suite, run_suite, settle_suite
from smarketing_tasks.quality.gx_runner import import_gx
from smarketing_tasks.quality.settings import QualitySettings

PURCHASE_SUITES = ("customers", "orders", "order_items")
RESPONSE_SUITES = ("reviews", "social_posts", "email_events")
MART_SUITES = ("advocates", "follow_ups", "testimonials", "product_feedback", "loop_kpis_daily", "outreach_funnel",
               "rewards")
Say = Callable[[str], None]


def _parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _raise_if_failed(results: Iterable[SuiteResult]) -> None:
    failed = [r for r in results if not r.success]
    if failed:
        raise QualityGateFailed(" | ".join(r.message for r in failed), failed[0])


def _say(result: SuiteResult, say: Say) -> None:
    say(result.message + (f" ({len(result.warnings)} warnings)" if result.warnings else ""))
    for warning in result.warnings[:10]:
        say(f"  warning: {warning}")


def run_suites_in_order(engine: sa.Engine, batches: Sequence[tuple[str, dict[str, Any]]]) -> list[SuiteResult]:
    """``run_suite(engine, name, **arguments)`` for each batch, with the result of running them one after another.

    The suites are validated at the same time, one thread each (GX's SQL suites wait on PostgreSQL while a
    pandas suite works in Python), and settled (quarantined, moved, recorded) in order. An earlier suite that
    moved rows out of its table may change what a later one sees (orders check that their customer exists;
    order items are the lines of loaded orders), so every suite after it is validated again before settling.
    """
    if len(batches) < 2:
        return [run_suite(engine, name, **arguments) for name, arguments in batches]
    import pandas  # noqa: F401  (imported before the threads start, as everything they import)

    with ThreadPoolExecutor(max_workers=len(batches), thread_name_prefix="suite") as pool:
        checks = [pool.submit(check_suite, engine, name, **arguments) for name, arguments in batches]
        import_gx()  # while the threads count their batches and read frames; they wait for it to validate
        results: list[SuiteResult] = []
        rows_moved = 0
        for (name, arguments), check in zip(batches, checks, strict=True):
            checked = check.result()
            if rows_moved:
                checked = check_suite(engine, name, **arguments)
            results.append(settle_suite(checked))
            rows_moved += results[-1].rows_moved
    return results


def audit_suites(engine: sa.Engine, suites: Sequence[str], *, run_id: str, run_time: datetime | None,
                 settings: QualitySettings | None = None, say: Say = print, **batch: Any) -> list[dict]:
    """Run ``suites`` on the warehouse with the same batch arguments; raise once if any failed."""
    results = run_suites_in_order(engine, [(name, dict(run_id=run_id, run_time=run_time, settings=settings, **batch))
                                           for name in suites])
    for result in results:
        _say(result, say)
    _raise_if_failed(results)
    return [r.as_dict() for r in results]


def audit_loaded(engine: sa.Engine, load_results: Sequence[dict], *, run_id: str, run_time: datetime,
                 settings: QualitySettings | None = None, say: Say = print,
                 order: Sequence[str] = (*PURCHASE_SUITES, *RESPONSE_SUITES)) -> list[dict]:
    """Validate what load tasks wrote: per dataset, the rows changed in the window its loads covered.

    ``load_results`` are ``as_dict()``s of ingest results (``dataset``, ``window_start``, ``window_end``);
    several sources of one dataset are validated together over the union of their windows.
    """
    windows: dict[str, tuple[datetime | None, datetime]] = {}
    for loaded in load_results:
        since, until = _parse_time(loaded.get("window_start")), _parse_time(loaded["window_end"])
        if loaded["dataset"] in windows:
            earlier, later = windows[loaded["dataset"]]
            since = None if since is None or earlier is None else min(since, earlier)
            until = max(until, later)
        windows[loaded["dataset"]] = (since, until)
    batches = []
    for name in [n for n in order if n in windows]:  # customers first: orders then report moved customers
        since, until = windows[name]
        since = _unpassed_since(engine, name, since, run_id=run_id, run_time=run_time)
        batches.append((name, dict(run_id=run_id, run_time=run_time, since=since, until=until, settings=settings)))
    results = run_suites_in_order(engine, batches)
    for result in results:
        _say(result, say)
    _raise_if_failed(results)
    return [r.as_dict() for r in results]


def _unpassed_since(engine: sa.Engine, suite: str, since: datetime | None, *, run_id: str,
                    run_time: datetime) -> datetime | None:
    """Widen a window back to the last run of ``suite`` that passed, when runs since then failed.

    A failed batch stays loaded (nothing is moved past the threshold) while the watermark moves on; without
    this the next hour would audit only its own rows and publish the broken ones. It stays in every audit
    until fixed at the source, or released with ``threshold_overrides`` (docs/data-quality.md).
    """
    with engine.connect() as conn:
        last_failed, last_passed = conn.execute(sa.text(
            "select max(run_time) filter (where not success), max(run_time) filter (where success) "
            "from smarketing.validation_runs where suite = :suite and run_id <> :run_id and run_time <= :t"),
            {"suite": suite, "run_id": run_id, "t": run_time}).one()
    if last_failed is None or (last_passed is not None and last_passed > last_failed):
        return since
    if last_passed is None:
        return None
    return last_passed if since is None or since > last_passed else since


def audit_purchases(engine: sa.Engine, ingest_results: Sequence[dict], *, run_id: str, run_time: datetime,
                    settings: QualitySettings | None = None, say: Say = print) -> list[dict]:
    """The ingest DAG's audit: customers, orders and order items loaded in this run's windows."""
    return audit_loaded(engine, ingest_results, run_id=run_id, run_time=run_time, settings=settings, say=say,
                        order=PURCHASE_SUITES)


def audit_responses(engine: sa.Engine, *, run_id: str, run_time: datetime, since: datetime | None,
                    until: datetime, settings: QualitySettings | None = None, say: Say = print) -> list[dict]:
    """Reviews, social posts and email events dated in (since, until]."""
    return audit_suites(engine, RESPONSE_SUITES, run_id=run_id, run_time=run_time, since=since, until=until,
                        settings=settings, say=say)


def audit_outbox(engine: sa.Engine, *, run_id: str, run_time: datetime, since: datetime | None = None,
                 settings: QualitySettings | None = None, say: Say = print) -> list[dict]:
    """Outbox rows planned up to ``run_time`` or sent since ``since``; broken rows are recorded, never deleted.

    ``since`` defaults to the last passing outbox audit (everything on the first run), so every message is
    audited once at least and a failed audit's rows stay in the next one. Sending uses the real clock (the
    staleness guard), so sent_at has no upper bound.
    """
    if since is None:
        since = _last_passed(engine, "outreach_messages", run_id, run_time)
    return audit_suites(engine, ("outreach_messages",), run_id=run_id, run_time=run_time, since=since,
                        until=run_time, settings=settings, say=say)


def _last_passed(engine: sa.Engine, suite: str, run_id: str, run_time: datetime) -> datetime | None:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "select max(run_time) from smarketing.validation_runs where suite = :suite and success "
            "and run_id <> :run_id and run_time <= :t"), {"suite": suite, "run_id": run_id, "t": run_time}).scalar()


def audit_scores(engine: sa.Engine, *, run_id: str, run_time: datetime, score_date: date,
                 settings: QualitySettings | None = None, say: Say = print) -> list[dict]:
    """The advocate scores of one scoring date, before any mart is built from them."""
    return audit_suites(engine, ("advocate_scores",), run_id=run_id, run_time=run_time,
                        where=f"t.score_date = date '{score_date.isoformat()}'", settings=settings, say=say)


def audit_marts(engine: sa.Engine, schema: str = "marketing", *, run_id: str, run_time: datetime,
                settings: QualitySettings | None = None, say: Say = print,
                changed_only: Collection[str] = ()) -> list[dict]:
    """Every mart of the contract as built in ``schema`` (the build schema before the swap).

    ``changed_only``: marts whose build table holds only the changed rows (an incremental publish merges
    them), audited row by row without the whole-table checks.
    """
    results = []
    for name in MART_SUITES:
        results.append(run_suite(engine, name, table=f"{schema}.{name}", run_id=run_id, run_time=run_time,
                                 settings=settings, whole_table=name not in changed_only))
        _say(results[-1], say)
    _raise_if_failed(results)
    return [r.as_dict() for r in results]


def mart_gate(*, run_id: str, run_time: datetime, settings: QualitySettings | None = None,
              say: Say = print) -> Callable[..., None]:
    """A ``before_publish`` hook for ``smarketing_tasks.marts.publish.publish_marts``: audit the build schema.

    Raising stops the swap, so the published marts keep their last good version.
    """

    def before_publish(conn: sa.Connection, schema: str, changed_only: Collection[str] = ()) -> None:
        audit_marts(conn.engine, schema, run_id=run_id, run_time=run_time, settings=settings, say=say,
                    changed_only=changed_only)

    return before_publish
