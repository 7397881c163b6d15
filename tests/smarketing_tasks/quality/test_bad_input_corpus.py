"""Every kind of broken row in the corpus ends up where the suite says, with the reason people will read.

Each suite runs once over good rows plus all its damaged rows (in pandas, and for the suites that validate
in PostgreSQL also in the database on a copy of the batch); fatal cases run alone and must stop the gate.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from smarketing_tasks.quality import QualityGateFailed, SuiteResult, gate, load_suite
from tests.smarketing_tasks.quality.corpus import CASES, GOOD_ROWS, Case, batch_for, record_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SUITES = sorted({c.suite for c in CASES})
SQL_SUITES = [s for s in SUITES if load_suite(s).mode == "sql"]
ROW_CASES = [c for c in CASES if not c.fatal]
FATAL_CASES = [c for c in CASES if c.fatal]


def test_the_corpus_covers_at_least_40_kinds_of_broken_rows_across_every_dataset_suite():
    assert len({(c.suite, c.name) for c in CASES}) == len(CASES) >= 40
    assert set(SUITES) == set(GOOD_ROWS)


@dataclass
class CorpusRuns:
    engine: sa.Engine
    frame: dict[str, SuiteResult] = field(default_factory=dict)
    in_database: dict[str, SuiteResult] = field(default_factory=dict)
    fatal: dict[str, QualityGateFailed] = field(default_factory=dict)


def _scratch_table(conn: sa.Connection, suite: str) -> str:
    """A copy of the suite's table without constraints, so that the database holds what a feed could send."""
    table = f"qa.{suite}"
    conn.exec_driver_sql(f"create table {table} (like smarketing.{suite})")
    # A column of its own, so that its raw rows differ from the frame run's (quarantine dedupes by raw row).
    conn.exec_driver_sql(f"alter table {table} add column copied_for_test boolean default true")
    for (column,) in conn.execute(sa.text(
            "select column_name from information_schema.columns where table_schema = 'qa' and table_name = :t "
            "and is_nullable = 'NO'"), {"t": suite}):
        conn.exec_driver_sql(f"alter table {table} alter column {column} drop not null")
    return table


def _joined_columns(conn: sa.Connection, suite_name: str, frame) -> list[str]:
    """Columns a suite joins in from another table (the customers' contact data): written there, by key, with that
    table's foreign keys and NOT NULLs (besides its key) dropped, as this database is the test's own."""
    from smarketing_tasks.db import copy_frame

    suite = load_suite(suite_name)
    joined = [c.strip().split(".")[-1] for c in (suite.extra_columns or "").split(",") if c.strip()]
    if not joined:
        return []
    other = re.search(r"join\s+(\S+)", suite.join).group(1)
    for (name,) in conn.execute(sa.text(
            "select conname from pg_constraint where conrelid = cast(:t as regclass) and contype = 'f'"), {"t": other}):
        conn.exec_driver_sql(f"alter table {other} drop constraint {name}")
    schema, table = other.split(".")
    for (column,) in conn.execute(sa.text(
            "select column_name from information_schema.columns where table_schema = :s and table_name = :t "
            "and is_nullable = 'NO'"), {"s": schema, "t": table}):
        if column not in suite.key:
            conn.exec_driver_sql(f"alter table {other} alter column {column} drop not null")
    copy_frame(conn, other, frame, [*suite.key, *joined])
    return joined


@pytest.fixture(scope="module")
def corpus(admin_url: str):
    import pandas as pd

    from smarketing_tasks.db import copy_frame, drop_database, ensure_database, make_engine, with_database
    from smarketing_tasks.migrations import migrate

    name = f"smkt_corpus_{uuid.uuid4().hex[:10]}"
    ensure_database(admin_url, name)
    engine = make_engine(with_database(admin_url, name))
    migrate(engine)
    runs = CorpusRuns(engine)
    try:
        for suite in SUITES:
            cases = [c for c in ROW_CASES if c.suite == suite]
            frame = pd.DataFrame(batch_for(suite, cases))
            runs.frame[suite] = gate(frame, suite, warehouse=engine, run_id="corpus", source=f"corpus-{suite}")
            if suite in SQL_SUITES:
                with engine.begin() as conn:
                    conn.exec_driver_sql("create schema if not exists qa")
                    table = _scratch_table(conn, suite)
                    joined = _joined_columns(conn, suite, frame)
                    copy_frame(conn, table, frame, [c for c in frame.columns if c not in joined])
                runs.in_database[suite] = gate(engine, suite, table=table, mode="sql", run_id="corpus")
        for case in FATAL_CASES:
            frame = pd.DataFrame(batch_for(case.suite, [case]))
            with pytest.raises(QualityGateFailed) as failure:
                gate(frame, case.suite, warehouse=engine, run_id=f"fatal-{case.name}", source=f"fatal-{case.name}")
            runs.fatal[case.name] = failure.value
        yield runs
    finally:
        engine.dispose()
        drop_database(admin_url, name)


def _quarantined(engine: sa.Engine, source: str, key: str | None) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "select rule, reason from smarketing.quarantine where source = :source "
            "and record_key is not distinct from :key"), {"source": source, "key": key})]


def _keys(frame, key_columns: tuple[str, ...]) -> set[str]:
    return set(frame[list(key_columns)].astype(str).agg("/".join, axis=1))


@pytest.mark.parametrize("case", ROW_CASES, ids=lambda c: f"{c.suite}-{c.name}")
def test_broken_row_is_quarantined_with_its_reason_and_the_batch_flows_on(corpus, case: Case):
    suite = load_suite(case.suite)
    result = corpus.frame[case.suite]
    key = record_key(case, suite.key)

    assert result.success, result.message
    reasons = _quarantined(corpus.engine, f"corpus-{case.suite}", key)
    assert any(rule == case.rule and reason.startswith(case.reason) for rule, reason in reasons), reasons
    still_in_batch = key in _keys(result.clean, suite.key)
    # Moved out of the batch, except in the outbox, whose rows are the record that a message was (not) sent.
    assert still_in_batch is (suite.on_bad_rows == "record")


@pytest.mark.parametrize("suite_name", SUITES)
def test_good_rows_all_flow_on_and_only_the_broken_ones_are_quarantined(corpus, suite_name: str):
    suite = load_suite(suite_name)
    result = corpus.frame[suite_name]
    broken = {record_key(c, suite.key) for c in ROW_CASES if c.suite == suite_name}
    with corpus.engine.connect() as conn:
        quarantined = set(conn.execute(sa.text("select distinct record_key from smarketing.quarantine where source = :s"),
                                       {"s": f"corpus-{suite_name}"}).scalars())
    assert quarantined == broken
    assert result.rows_bad == len(broken) and result.rows_quarantined == len(broken)
    kept = _keys(result.clean, suite.key)
    if suite.on_bad_rows == "move":
        assert len(result.clean) == result.rows_checked - len(broken) and not kept & broken
    else:
        assert len(result.clean) == result.rows_checked and broken <= kept


@pytest.mark.parametrize("case", [c for c in ROW_CASES if c.suite in SQL_SUITES], ids=lambda c: f"{c.suite}-{c.name}")
def test_in_database_validation_quarantines_the_same_row_for_the_same_reason(corpus, case: Case):
    suite = load_suite(case.suite)
    key = record_key(case, suite.key)
    result = corpus.in_database[case.suite]

    assert result.success and result.mode == "sql", result.message
    reasons = _quarantined(corpus.engine, f"qa.{case.suite}", key)
    assert any(rule == case.rule and reason.startswith(case.reason) for rule, reason in reasons), reasons
    key_sql = " || '/' || ".join(f"{c}::text" for c in suite.key)
    with corpus.engine.connect() as conn:
        left = conn.execute(sa.text(f"select count(*) from qa.{case.suite} where {key_sql} = :k"), {"k": key}).scalar()
    assert left == (1 if suite.on_bad_rows == "record" else 0)


@pytest.mark.parametrize("case", FATAL_CASES, ids=lambda c: f"{c.suite}-{c.name}")
def test_fatal_row_stops_the_gate_naming_suite_expectation_and_reason(corpus, case: Case):
    suite = load_suite(case.suite)
    message = str(corpus.fatal[case.name])

    assert f"suite '{case.suite}'" in message and case.rule in message and case.reason in message
    reasons = _quarantined(corpus.engine, f"fatal-{case.name}", record_key(case, suite.key))
    assert any(rule == case.rule for rule, _ in reasons), reasons
    with corpus.engine.connect() as conn:
        run = conn.execute(sa.text("select success, failure_message from smarketing.validation_runs "
                                   "where run_id = :r"), {"r": f"fatal-{case.name}"}).one()
    assert run.success is False and case.rule in run.failure_message
