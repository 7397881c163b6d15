"""The README's first command: the whole loop on the embedded PostgreSQL, through the real Airflow CLI.

One data folder holds everything: the PostgreSQL cluster (databases ``airflow``, ``shop`` and
``warehouse``), ``AIRFLOW_HOME``, and the logs of each DAG run. Each DAG runs with ``airflow dags test``
for the demo's "now", in the loop's order, so what the user sees is what a scheduler would do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from smarketing_tasks.paths import PROJECT_ROOT

Say = Callable[[str], None]

# The loop's DAGs in the order `airflow dags test` runs them (DESIGN.md section 4).
DEMO_DAGS: list[str] = ["smarketing_ingest", "smarketing_outreach", "smarketing_responses", "smarketing_score"]
# Before this DAG the simulated customers answer the mailbox (ask → response → ingest); it and the DAGs
# after it run at the hour their answers are in.
SIMULATE_BEFORE = "smarketing_responses"
DATABASES = ("airflow", "shop", "warehouse")


@dataclass(frozen=True)
class DemoOptions:
    data_dir: Path
    customers: int
    days: int
    seed: int
    end: datetime
    fresh: bool = False


def airflow_environment(data_dir: Path, server_url: Callable[[str], str], smtp_uri: str | None = None) -> dict[str, str]:
    """Environment for Airflow on the embedded server: AIRFLOW_HOME, metadata DB and the contract's connections."""
    from smarketing_tasks.db import normalize_url

    return {
        "AIRFLOW_HOME": str(data_dir / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": normalize_url(server_url("airflow")),
        "AIRFLOW_CONN_SMARKETING_WAREHOUSE": server_url("warehouse").replace("postgresql://", "postgres://"),
        "AIRFLOW_CONN_SMARKETING_SHOP": server_url("shop").replace("postgresql://", "postgres://"),
        "SMARKETING_DATA_DIR": str(data_dir),
        "PYTHONWARNINGS": "ignore",
        # The demo mailbox while the demo runs; without it (airflow.env) emails go to the same Maildir sink.
        **({"AIRFLOW_CONN_SMARKETING_SMTP": smtp_uri} if smtp_uri else {}),
    }


def _step(say: Say, number: int, total: int, text: str) -> float:
    say(f"[{number}/{total}] {text}")
    return time.perf_counter()


def run_demo(options: DemoOptions, say: Say) -> int:
    from smarketing_tasks import embedded
    from smarketing_tasks.db import drop_database, ensure_database, make_engine
    from smarketing_tasks.demo_shop import ShopSpec, generate, write_shop
    from smarketing_tasks.migrations import migrate

    data_dir = options.data_dir.resolve()
    total = 5 + len(DEMO_DAGS) + (SIMULATE_BEFORE in DEMO_DAGS)
    started = _step(say, 1, total, f"starting the embedded PostgreSQL in {data_dir / 'postgres'}")
    server = embedded.ensure_running(data_dir / "postgres")
    say(f"      listening on 127.0.0.1:{server.port} ({time.perf_counter() - started:.1f}s)")

    _step(say, 2, total, "creating databases " + ", ".join(DATABASES) + (" (fresh)" if options.fresh else ""))
    fresh_shop = options.fresh
    for name in DATABASES:
        if options.fresh:
            drop_database(server.url(), name)
        created = ensure_database(server.url(), name)
        fresh_shop = fresh_shop or (name == "shop" and created)

    env = {**os.environ, **airflow_environment(data_dir, server.url)}
    (data_dir / "airflow").mkdir(parents=True, exist_ok=True)
    env_file = data_dir / "airflow.env"
    env_file.write_text("".join(f"export {k}='{v}'\n" for k, v in airflow_environment(data_dir, server.url).items()))

    shop = make_engine(server.url("shop"))
    warehouse = make_engine(server.url("warehouse"))
    if fresh_shop:
        step = _step(say, 3, total, f"generating the demo shop: {options.customers:,} customers over {options.days} "
                     f"days to {options.end:%Y-%m-%d} (seed {options.seed})")
        spec = ShopSpec(customers=options.customers, days=options.days, end=options.end, seed=options.seed,
                        bad_row_share=0.002)
        counts = write_shop(shop, generate(spec))
        say("      " + ", ".join(f"{n:,} {t}" for t, n in counts.items()) + f" ({time.perf_counter() - step:.1f}s)")
    else:
        _step(say, 3, total, "demo shop exists; keeping it (use --fresh to regenerate)")

    _step(say, 4, total, "migrating the warehouse schema")
    applied = migrate(warehouse)
    say(f"      {len(applied)} migration(s) applied" if applied else "      up to date")

    step = _step(say, 5, total, "migrating the Airflow metadata database")
    airflow = str(Path(sys.executable).parent / "airflow")
    _run([airflow, "db", "migrate"], env, data_dir / "logs" / "airflow-db-migrate.log")
    say(f"      done ({time.perf_counter() - step:.1f}s)")

    from smarketing_tasks.outreach.mailbox import DemoMailbox

    mailbox = DemoMailbox(data_dir / "mailbox").__enter__()  # a real SMTP server for the demo's emails
    env = {**env, **airflow_environment(data_dir, server.url, mailbox.connection_uri)}
    say(f"      demo mailbox: SMTP on 127.0.0.1:{mailbox.port} -> Maildir {data_dir / 'mailbox'}")
    logical = options.end.isoformat()
    number = 5
    for dag_id in DEMO_DAGS:
        number += 1
        if dag_id == SIMULATE_BEFORE:
            logical = _simulate_customers(say, number, total, options, data_dir, shop, warehouse, logical,
                                          airflow, env)
            number += 1
        step = _step(say, number, total, f"airflow dags test {dag_id} {logical}")
        log = data_dir / "logs" / f"{dag_id}.log"
        ok = _run([airflow, "dags", "test", dag_id, logical], env, log, check=False)
        say(f"      {'success' if ok else 'FAILED'} in {time.perf_counter() - step:.1f}s; log: {log}")
        if not ok:
            mailbox.__exit__(None, None, None)
            say(f"The loop stopped at {dag_id}. The end of its log:\n" + _tail(log, 40))
            return 1
    mailbox.__exit__(None, None, None)

    _summary(say, warehouse, server, data_dir, env_file)
    return 0


def _simulate_customers(say: Say, number: int, total: int, options: DemoOptions, data_dir: Path, shop: sa.Engine,
                        warehouse: sa.Engine, logical: str, airflow: str, env: dict[str, str]) -> str:
    """Simulated customers answer the mailbox; returns the logical time for the DAGs after them."""
    from datetime import timedelta

    from smarketing_tasks.simulator import SimulatorSettings, simulate_customers

    step = _step(say, number, total, "simulated customers read the mailbox and answer (seed "
                 f"{options.seed})")
    report = simulate_customers(data_dir / "mailbox", shop, warehouse, start=options.end,
                                settings=SimulatorSettings(seed=options.seed))
    if report.acted_until is None:
        say("      the mailbox is empty: nobody to answer")
        return logical
    done = report.actions
    say(f"      {report.messages:,} messages read: {done['reviews_glowing']} glowing, {done['reviews_lukewarm']} "
        f"lukewarm and {done['reviews_angry']} angry reviews, {done['social_posts']} posts, "
        f"{done['referred_friends']} referred friends, {done['unsubscribed']} unsubscribed, {done['bounced']} bounced "
        f"({time.perf_counter() - step:.1f}s)")
    # Friends ordered with referral codes: ingest them at the hour the answers are in, as the hourly run would.
    later = (report.acted_until + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0).isoformat()
    _run([airflow, "dags", "test", "smarketing_ingest", later], env, data_dir / "logs" / "smarketing_ingest-after.log")
    say(f"      their orders ingested (airflow dags test smarketing_ingest {later})")
    return later


def _run(command: list[str], env: dict[str, str], log: Path, check: bool = True) -> bool:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        result = subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed; see {log}:\n{_tail(log, 30)}")
    return result.returncode == 0


def _tail(path: Path, lines: int) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _summary(say: Say, warehouse: sa.Engine, server, data_dir: Path, env_file: Path) -> None:
    with warehouse.connect() as conn:
        counts = {t: conn.execute(sa.text(f"select count(*) from smarketing.{t}")).scalar()
                  for t in ("customers", "orders", "order_items", "quarantine")}
        statuses = conn.execute(sa.text("select status, count(*) from smarketing.orders group by 1 order by 2 desc")).all()
        reasons = conn.execute(sa.text(
            "select dataset, rule, count(*) from smarketing.quarantine group by 1, 2 order by 3 desc limit 8")).all()
    say("")
    say("The loop ran. What it did:")
    say(f"  purchases: {counts['customers']:,} customers, {counts['orders']:,} orders, {counts['order_items']:,} lines "
        f"in the warehouse (schema smarketing)")
    say("  orders by status: " + ", ".join(f"{s} {n:,}" for s, n in statuses))
    say(f"  quarantined: {counts['quarantine']:,} rows with reasons" + ("" if not reasons else ":"))
    for dataset, rule, n in reasons:
        say(f"    {dataset:<12} {rule:<28} {n:,}")
    with warehouse.connect() as conn:
        runs = conn.execute(sa.text("select count(*), count(*) filter (where not success), coalesce(sum(rows_checked), 0) "
                                    "from smarketing.validation_runs")).one()
    say(f"  validated: {runs[0]:,} suite runs over {runs[2]:,} rows, {runs[1]:,} failed (smarketing.validation_runs)")
    _outreach_summary(say, warehouse, data_dir)
    _responses_summary(say, warehouse)
    _scores_summary(say, warehouse)
    say("")
    say("Where to look:")
    say(f"  warehouse:  psql {server.url('warehouse')}   (schemas smarketing, marketing)")
    say(f"  shop:       psql {server.url('shop')}   (schema shop)")
    say(f"  DAG logs:   {data_dir / 'logs'}")
    say(f"  Data Docs:  {_data_docs(warehouse, data_dir)}   (suites and validation runs; open in a browser)")
    say(f"  Airflow UI: source {env_file} && airflow standalone   (then http://localhost:8080)")

    from smarketing_tasks.report.summary import insights_summary

    insights_summary(say, warehouse, data_dir)


def _data_docs(warehouse: sa.Engine, data_dir: Path) -> Path:
    """Build the Great Expectations Data Docs from smarketing.validation_runs; returns the site's index.html."""
    from smarketing_tasks.quality import QualitySettings, build_data_docs

    return build_data_docs(warehouse, QualitySettings(data_docs_dir=str(data_dir / "data_docs")))


def _outreach_summary(say: Say, warehouse: sa.Engine, data_dir: Path) -> None:
    """What outreach did: messages by status, and why the skipped ones were skipped."""
    from smarketing_tasks.outreach.mailbox import summarize

    with warehouse.connect() as conn:
        statuses = conn.execute(sa.text(
            "select kind, status, count(*) from smarketing.outreach_messages group by 1, 2 order by 1, 2")).all()
        reasons = conn.execute(sa.text(
            "select coalesce(status_reason, '?'), count(*) from smarketing.outreach_messages"
            " where status in ('skipped', 'expired', 'failed') group by 1 order by 2 desc limit 8")).all()
    by_status: dict[str, int] = {}
    for _, status, n in statuses:
        by_status[status] = by_status.get(status, 0) + n
    say("  outreach: " + (", ".join(f"{s} {n:,}" for s, n in by_status.items()) or "no messages"))
    for kind in sorted({k for k, _, _ in statuses}):
        say(f"    {kind:<16} " + ", ".join(f"{s} {n:,}" for k, s, n in statuses if k == kind))
    if reasons:
        say("    not sent, by reason:")
        for reason, n in reasons:
            say(f"      {reason[:60]:<60} {n:,}")
    received = summarize(data_dir / "mailbox")
    say(f"  mailbox: {sum(received.values()):,} emails in {data_dir / 'mailbox'} (Maildir)")


def _responses_summary(say: Say, warehouse: sa.Engine) -> None:
    """What came back: reviews by how they were attributed, posts, referrals and the suppression list."""
    with warehouse.connect() as conn:
        reviews = dict(conn.execute(sa.text(
            "select attribution, count(*) from smarketing.reviews group by 1")).all())
        lukewarm = conn.execute(sa.text(
            "select count(*) from smarketing.reviews where rating between 3 and 4 or length(body) < 8")).scalar()
        posts, reach = conn.execute(sa.text(
            "select count(*), coalesce(sum(followers), 0) from smarketing.social_posts")).one()
        referrals = conn.execute(sa.text("select count(*) from smarketing.referrals")).scalar()
        rejected = conn.execute(sa.text(
            "select count(*) from smarketing.quarantine where dataset = 'referrals'")).scalar()
        suppressed = dict(conn.execute(sa.text("select reason, count(*) from smarketing.suppressions group by 1")).all())
    say(f"  responses: {sum(reviews.values()):,} reviews (by link token {reviews.get('token', 0):,}, by time window "
        f"{reviews.get('window', 0):,}, unattributed {reviews.get('none', 0):,}; {lukewarm:,} lukewarm), "
        f"{posts:,} social posts reaching {reach:,}, {referrals:,} referrals ({rejected:,} rejected)")
    say("  suppressed: " + (", ".join(f"{r} {n:,}" for r, n in sorted(suppressed.items())) or "nobody"))


def _scores_summary(say: Say, warehouse: sa.Engine) -> None:
    """Advocate segments of the latest score date and the open follow-up queue."""
    with warehouse.connect() as conn:
        latest = conn.execute(sa.text("select max(score_date) from smarketing.advocate_scores")).scalar()
        segments = conn.execute(sa.text(
            "select segment, count(*) from smarketing.advocate_scores where score_date = :d group by 1 order by 2 desc"),
            {"d": latest}).all()
        follow_ups = conn.execute(sa.text(
            "select reason, count(*) from smarketing.follow_ups where status = 'open' group by 1 order by 2 desc")).all()
    if latest is None:
        say("  advocates: not scored yet")
        return
    say(f"  advocates ({latest}): " + ", ".join(f"{s} {n:,}" for s, n in segments))
    say("  follow-ups open: " + (", ".join(f"{r} {n:,}" for r, n in follow_ups) or "none"))
