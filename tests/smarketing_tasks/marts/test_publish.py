"""Publishing: atomic under failures injected mid-build and mid-swap, grain and documentation enforced,
the read-only BI role, settings, and the data dictionary kept in step with the catalog."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from smarketing_tasks.marts import BI_ROLE, MartBuildError, MartSettings, load_catalog, publish_marts
from smarketing_tasks.marts import publish as publish_module
from smarketing_tasks.marts.catalog import MARTS_DIR
from smarketing_tasks.marts.publish import executable_sql
from smarketing_tasks.marts.review_signals import EMAIL_PATTERN, PHONE_PATTERN, PHONE_PRESENCE
from tests.smarketing_tasks.marts.known_data import AS_OF, load_known_data

CATALOG = load_catalog()


def fingerprints(engine: sa.Engine) -> dict[str, tuple[int, str]]:
    """Row count and a digest of every published mart's rows (order-independent)."""
    with engine.connect() as conn:
        return {m.name: tuple(conn.execute(sa.text(
            f"select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) "
            f"from marketing.{m.name} as t")).one()) for m in CATALOG}


def table_comment(engine: sa.Engine, table: str) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.text("select obj_description(cast(:t as regclass), 'pg_class')"),
                            {"t": f"marketing.{table}"}).scalar()


@pytest.fixture
def published(warehouse: sa.Engine) -> sa.Engine:
    load_known_data(warehouse)
    publish_marts(warehouse, AS_OF)
    return warehouse


def broken_marts_dir(tmp_path: Path, file: str, old: str, new: str) -> Path:
    directory = tmp_path / "marts"
    shutil.copytree(MARTS_DIR, directory)
    text = (directory / file).read_text()
    assert old in text
    (directory / file).write_text(text.replace(old, new))
    return directory


def test_a_failure_mid_swap_leaves_the_last_good_version_whole(published):
    before = fingerprints(published)
    seen: list[str] = []

    def fail_after_two_swaps(message: str) -> None:
        seen.append(message)
        if message == "published follow_ups":
            raise RuntimeError("injected: crash in the middle of the swap")

    later = AS_OF + timedelta(days=2)  # a newer build differs: days, waits and comments move on
    with pytest.raises(RuntimeError, match="injected"):
        publish_marts(published, later, progress=fail_after_two_swaps)
    assert "published advocates" in seen  # the first tables had already been swapped inside the transaction
    assert fingerprints(published) == before
    assert "Data as of 2026-11-22 00:00 UTC" in table_comment(published, "advocates")

    publish_marts(published, later)  # the next run publishes, over the leftover staging schema
    after = fingerprints(published)
    assert after["loop_kpis_daily"] != before["loop_kpis_daily"] and after["follow_ups"] != before["follow_ups"]
    assert "Data as of 2026-11-24 00:00 UTC" in table_comment(published, "follow_ups")


def test_a_failure_mid_build_leaves_the_last_good_version_and_no_staging_schema(published, tmp_path):
    before = fingerprints(published)
    broken = broken_marts_dir(tmp_path, "build_outreach_funnel.sql", "count(*)::integer as sent",
                              "(count(*) / 0)::integer as sent")
    built: list[str] = []
    with pytest.raises(sa.exc.DataError, match="division by zero"):
        publish_marts(published, AS_OF + timedelta(days=1), marts_dir=broken, progress=built.append)
    assert "built loop_kpis_daily: 22 rows" in " ".join(built)  # marts before the broken one were built
    assert fingerprints(published) == before
    with published.connect() as conn:
        assert not conn.execute(sa.text("select 1 from pg_namespace where nspname = 'marketing_build'")).scalar()


def test_readers_see_the_previous_version_until_the_swap_commits(published):
    before = fingerprints(published)
    observed = {}

    def look_from_another_session(conn: sa.Connection, build_schema: str, _changed_only: frozenset) -> None:
        observed["during"] = fingerprints(published)
        observed["staged"] = conn.execute(sa.text(f"select count(*) from {build_schema}.loop_kpis_daily")).scalar()

    publish_marts(published, AS_OF + timedelta(days=3), before_publish=look_from_another_session)
    assert observed["during"] == before
    assert observed["staged"] == 24  # 11-01 .. 11-24, built but not yet visible
    assert fingerprints(published)["loop_kpis_daily"][0] == 24


def test_a_mart_that_breaks_its_grain_is_not_published(published, tmp_path):
    before = fingerprints(published)
    broken = broken_marts_dir(tmp_path, "build_rewards.sql", "group by customer_id, reason",
                              "group by customer_id, reason, source_id")
    with pytest.raises(MartBuildError, match="rewards breaks its grain"):
        publish_marts(published, AS_OF, marts_dir=broken)
    assert fingerprints(published) == before


def test_a_column_missing_from_the_catalog_is_refused(published, tmp_path):
    broken = broken_marts_dir(tmp_path, "build_rewards.sql", "max(issued_at) as issued_at",
                              "max(issued_at) as issued_at, max(source_id) as source_id")
    with pytest.raises(MartBuildError, match=r"undocumented \['source_id'\]"):
        publish_marts(published, AS_OF, marts_dir=broken)


def test_the_audit_refuses_contact_data_in_a_mart(published, tmp_path):
    broken = broken_marts_dir(tmp_path, "build_rewards.sql", "reason,\n        count(*)",
                              "reason || ' ' || 'x@example.com' as reason,\n        count(*)")
    with pytest.raises(MartBuildError, match="rewards.reason: 2 values look like contact data"):
        publish_marts(published, AS_OF, marts_dir=broken)


def test_the_audit_refuses_a_phone_number_the_redaction_missed(published, monkeypatch):
    # free text as written: the customer's number in c3's follow-up reaches the build, and the audit (with its
    # cheaper phone presence test) must still find it
    before = fingerprints(published)
    monkeypatch.setattr(publish_module, "_redacted", lambda column: column)
    with pytest.raises(MartBuildError, match=r"follow_ups\.review_excerpt: 1 values look like contact data"):
        publish_marts(published, AS_OF, full=True)
    assert fingerprints(published) == before


# phones with and without prefix, eight digits (not a phone), a phone inside an email's local part, a phone
# after or before an email, the chain broken by a comma, nine lone digits, a date, none
CONTACT_TEXTS = ["call +44 20 7946 0958", "(030) 123-45678 or +(49) 170.123.456", "1234 5678", "12345678.9",
                 "1234-5678.9@ex.com then 0171 2345 6789", "a@b.example 1 2 3 4 5 6 7 8 9", "5 orders, 1,234,567,890 spent",
                 "x 123456789@mail.example.org y", "RFM 5-5-5 (2026-11-02)", "", None, "+((0) 12 34 56 78 9"]


def test_the_phone_presence_test_and_the_redaction_prefilter_match_the_plain_pattern(known_marts):
    with known_marts.connect() as conn:
        rows = conn.execute(sa.text(
            f"select t, t ~ :phone_pattern, t ~ :phone_presence, {publish_module._redacted('t')}, "
            "regexp_replace(case when strpos(t, '@') > 0 then regexp_replace(t, :email_pattern, '[email]', 'g') "
            "else t end, :phone_pattern, '[phone]', 'g') "
            "from unnest(cast(:texts as text[])) as t"),
            {"texts": CONTACT_TEXTS, "email_pattern": EMAIL_PATTERN, "phone_pattern": PHONE_PATTERN,
             "phone_presence": PHONE_PRESENCE}).all()
    assert [r[1] for r in rows] == [r[2] for r in rows]  # either pattern finds a phone in the same texts
    assert [r[3] for r in rows] == [r[4] for r in rows]  # the prefiltered redaction writes the same text
    assert sum(bool(r[1]) for r in rows) >= 6 and rows[4][3] == "[email] then [phone]"


def test_the_bi_role_reads_marketing_and_nothing_else(published):
    with published.connect() as conn:
        conn.exec_driver_sql(f"set local role {BI_ROLE}")
        for mart in CATALOG:
            assert conn.execute(sa.text(f"select count(*) from marketing.{mart.name}")).scalar() > 0
        conn.rollback()
        for statement in ("select count(*) from smarketing.customer_contacts",
                          "select count(*) from smarketing.customers",
                          "select count(*) from smarketing.reviews",
                          "select count(*) from smarketing.mart_follow_ups",  # the rows behind the view
                          "insert into marketing.rewards (customer_id, reason) values ('x', 'y')",
                          "delete from marketing.advocates",
                          "create table marketing.mine (x int)"):
            with conn.begin():
                conn.exec_driver_sql(f"set local role {BI_ROLE}")
                with pytest.raises(sa.exc.ProgrammingError) as refused:
                    conn.exec_driver_sql(statement)
                assert isinstance(refused.value.orig, psycopg.errors.InsufficientPrivilege), statement


def test_the_bi_role_cannot_read_the_staging_schema(published):
    def try_as_bi(conn: sa.Connection, build_schema: str, _changed_only: frozenset) -> None:
        with published.connect() as other, other.begin():
            other.exec_driver_sql(f"set local role {BI_ROLE}")
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                other.exec_driver_sql(f"select count(*) from {build_schema}.advocates")

    publish_marts(published, AS_OF, before_publish=try_as_bi)


def test_migrations_cope_with_the_role_existing_on_a_shared_server(make_database, warehouse):
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.migrations import MIGRATIONS_DIR, migrate

    second = make_engine(make_database("wh2"))  # the role already exists in this cluster: must not fail
    try:
        migrate(second)
        with second.begin() as conn:  # and the file itself is safe to run again
            conn.exec_driver_sql((MIGRATIONS_DIR / "0009_marts_bi_role.sql").read_text())
            assert conn.execute(sa.text("select has_schema_privilege(:r, 'marketing', 'usage')"),
                                {"r": BI_ROLE}).scalar()
            assert not conn.execute(sa.text("select has_schema_privilege(:r, 'smarketing', 'usage')"),
                                    {"r": BI_ROLE}).scalar()
            assert not conn.execute(sa.text("select rolcanlogin from pg_roles where rolname = :r"),
                                    {"r": BI_ROLE}).scalar()
    finally:
        second.dispose()


def test_an_empty_warehouse_publishes_empty_marts(warehouse):
    result = publish_marts(warehouse, AS_OF)
    assert result["rows"] == {m.name: 0 for m in CATALOG}
    assert set(fingerprints(warehouse)) == {m.name for m in CATALOG}


def test_settings_change_the_reach_at_risk_and_the_interval(published):
    publish_marts(published, AS_OF, MartSettings(word_of_mouth_reach=12, funnel_confidence=0.9))
    with published.connect() as conn:
        at_risk = conn.execute(sa.text(
            "select word_of_mouth_at_risk from marketing.loop_kpis_daily where day = date '2026-11-21'")).scalar()
        low, level = conn.execute(sa.text(
            "select ci_low, confidence_level from marketing.outreach_funnel where day = date '2026-11-10' "
            "and template_variant = 'A'")).one()
    assert at_risk == 3 * 12  # TARP's middle figure for the three unhappy customers
    assert level == 0.9 and low == pytest.approx(1 / (1 + 1.6448536269514722 ** 2))  # Wilson for 1 of 1


def test_publish_requires_an_aware_as_of(warehouse):
    with pytest.raises(ValueError, match="timezone-aware"):
        publish_marts(warehouse, AS_OF.replace(tzinfo=None))


def test_the_data_dictionary_is_generated_from_the_catalog():
    import dataclasses

    from smarketing_tasks.marts.dictionary import DICTIONARY_FILE, SETTING_NOTES, render

    assert set(SETTING_NOTES) == {f.name for f in dataclasses.fields(MartSettings)}, "document every setting"
    text = render()
    assert DICTIONARY_FILE.read_text() == text, "run: python -m smarketing_tasks.marts.dictionary --write"
    for mart in CATALOG:
        assert f"## `marketing.{mart.name}`" in text and mart.grain in text and mart.example_sql in text
        for column in mart.columns:
            assert f"| `{column.name}` | {column.type} |" in text


def test_rows_the_run_itself_stamps_with_its_time_are_included(published):
    """Scoring stamps follow-ups (and rewards) with the run's time, the very as-of of the marts built after it."""
    with published.begin() as conn:
        conn.execute(sa.text("""insert into smarketing.follow_ups (customer_id, reason, priority, owner_team,
                                    suggested_questions, created_at, updated_at)
                                values ('c1', 'at_risk', 2, 'sales', 'How are you?', :t, :t)"""), {"t": AS_OF})
    publish_marts(published, AS_OF)
    with published.connect() as conn:
        waiting = conn.execute(sa.text("select days_waiting from marketing.follow_ups "
                                       "where customer_id = 'c1' and reason = 'at_risk'")).scalar()
        flagged = conn.execute(sa.text("select has_open_follow_up from marketing.advocates "
                                       "where customer_id = 'c1'")).scalar()
    assert waiting == 0 and flagged


def test_concurrent_publishers_take_turns(published):
    """A backfill and a scheduled run publishing at once: the advisory lock serialises them; both succeed."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = [pool.submit(publish_marts, published, AS_OF + timedelta(days=d)) for d in (1, 2)]
        results = [run.result(timeout=120) for run in runs]
    assert all(r["rows"]["loop_kpis_daily"] in (22, 23) for r in results)
    assert fingerprints(published)["loop_kpis_daily"][0] in (22, 23)  # one whole version, whichever came last


def test_a_long_bi_query_makes_the_swap_give_up_and_keeps_the_old_version(published):
    before = fingerprints(published)
    with published.connect() as reader:
        reader.exec_driver_sql(f"set role {BI_ROLE}")
        # holds its lock until commit; loop_kpis_daily is swapped in on every publish (the customer marts are
        # merged row by row, which readers do not block)
        reader.exec_driver_sql("select count(*) from marketing.loop_kpis_daily")
        with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
            publish_marts(published, AS_OF + timedelta(days=1), MartSettings(publish_lock_timeout_seconds=1))
        reader.rollback()
        reader.exec_driver_sql("reset role")
    assert fingerprints(published) == before
    publish_marts(published, AS_OF + timedelta(days=1))
    assert fingerprints(published)["loop_kpis_daily"][0] == 22


def test_a_variant_is_clearly_behind_only_when_its_interval_lies_below_the_leaders(published):
    with published.begin() as conn:  # 40 delivered review requests of variant C on 11-18, none answered
        conn.execute(sa.text("""
            insert into smarketing.outreach_messages (message_id, idempotency_key, customer_id, order_id, kind,
                channel, template_variant, status, due_at, expires_at, planned_at, sent_at)
            select 'c-' || i, 'c-' || i, 'c4', null, 'review_request', 'email', 'C', 'sent', t, t, t, t
            from generate_series(1, 40) as i, (select timestamptz '2026-11-18 09:00+00' as t) as at"""))
    publish_marts(published, AS_OF)
    with published.connect() as conn:
        verdict = {r.template_variant: (r.delivered, r.ci_high, r.is_clearly_behind) for r in conn.execute(sa.text(
            "select * from marketing.outreach_variants where kind = 'review_request'"))}
    assert verdict["C"][0] == 40 and verdict["C"][1] < 0.2065  # Wilson upper bound of 0/40 under B's lower bound
    assert verdict["C"][2] and not verdict["A"][2] and not verdict["B"][2]


def test_a_mart_built_from_another_comes_after_it_in_the_catalog():
    # follow_ups takes its current scores from the staged advocates, outreach_variants sums the staged funnel
    order = [m.name for m in CATALOG]
    reads = {m.name: set(re.findall(r"marketing_build\.(\w+)", executable_sql(m.sql()))) for m in CATALOG}
    assert reads["follow_ups"] == {"advocates"} and reads["outreach_variants"] == {"outreach_funnel"}
    for mart, sources in reads.items():
        assert all(order.index(source) < order.index(mart) for source in sources), mart
