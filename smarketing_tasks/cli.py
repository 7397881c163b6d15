"""The ``smarketing`` command: every stage of the loop without Airflow, the demo, benchmarks and operations.

Subcommands are small wrappers over the package's functions; the CLI is the one place where the wall
clock may choose a default ("today"), always overridable with ``--end``/``--until``.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from smarketing_tasks.paths import DATA_DIR


def _when(text: str | None) -> datetime:
    if text is None:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return today
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def say(message: str) -> None:
    print(message, flush=True)


def cmd_demo_shop(args: argparse.Namespace) -> int:
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.demo_shop import ShopSpec, generate, write_shop

    spec = ShopSpec(customers=args.customers, days=args.days, end=_when(args.end), seed=args.seed,
                    bad_row_share=args.bad_row_share)
    say(f"generating a shop: {spec.customers:,} customers, {spec.days} days to {spec.end:%Y-%m-%d}, seed {spec.seed}")
    counts = write_shop(make_engine(args.url), generate(spec))
    say("wrote " + ", ".join(f"{n:,} {t}" for t, n in counts.items()))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.migrations import migrate

    applied = migrate(make_engine(args.url))
    say(f"applied: {', '.join(applied)}" if applied else "schema up to date")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """Run ingestion outside Airflow (ad hoc loads, benchmarks); same code as the DAG's tasks."""
    from smarketing_tasks.config import IngestSettings, load
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.ingest import ingest_dataset
    from smarketing_tasks.migrations import migrate
    from smarketing_tasks.schema import PURCHASE_DATASETS
    from smarketing_tasks.sources import source_from_url

    settings = load(IngestSettings, os.environ)
    warehouse = make_engine(args.warehouse)
    migrate(warehouse)
    source = source_from_url(args.source)
    until = _when(args.until)
    for dataset in PURCHASE_DATASETS:
        result = ingest_dataset(source, dataset, warehouse, until=until, run_id=args.run_id,
                                overlap=settings.overlap, batch_rows=settings.batch_rows, progress=say)
        say(f"{dataset}: {result.rows_loaded:,} loaded, {result.rows_quarantined:,} quarantined "
            f"of {result.rows_read:,} read in {result.seconds:.1f}s")
    return 0


def cmd_embedded(args: argparse.Namespace) -> int:
    from smarketing_tasks import embedded

    data_dir = Path(args.data_dir)
    if args.action == "stop":
        say("stopped" if embedded.stop(data_dir / "postgres") else "not running")
        return 0
    server = embedded.ensure_running(data_dir / "postgres")
    say(server.url())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The link service (unsubscribe, review and share links) beside Airflow, on uvicorn."""
    import uvicorn

    from smarketing_tasks.config import load
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.links import create_app
    from smarketing_tasks.outreach import OutreachSettings, verification_keys

    settings = load(OutreachSettings, os.environ)
    engine = make_engine(args.warehouse)
    app = create_app(engine, settings, verification_keys(engine, settings, warn=say), clock=lambda: datetime.now(UTC))
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def cmd_outreach(args: argparse.Namespace) -> int:
    """Plan and/or send outreach without Airflow (same code as the DAG's tasks)."""
    import socket

    from smarketing_tasks.config import load
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.migrations import migrate
    from smarketing_tasks.outreach import OutreachSettings, SmtpParams, plan_outreach, send_outreach

    settings = load(OutreachSettings, os.environ)
    engine = make_engine(args.warehouse)
    migrate(engine)
    as_of = _when(args.as_of)
    if args.command == "plan":
        say(str(plan_outreach(engine, as_of, settings, run_id="cli").as_dict()))
        return 0
    smtp = SmtpParams(host=args.smtp_host, port=args.smtp_port) if args.smtp_port else None
    report = send_outreach(engine, as_of, settings, smtp, clock=lambda: datetime.now(UTC),
                           worker=f"{socket.gethostname()}:{os.getpid()}:cli", warn=say)
    say(str(report.as_dict()))
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """Check what is configured (connections from AIRFLOW_CONN_*); exit 1 when any check fails."""
    from smarketing_tasks.config import load
    from smarketing_tasks.health import HealthSettings, as_json, run_checks, worst

    only = {name.strip() for name in args.only.split(",") if name.strip()} if args.only else None
    results = run_checks(os.environ, datetime.now(UTC), load(HealthSettings, os.environ), only=only,
                         api_url=args.api_url)
    if args.json:
        say(as_json(results))
    else:
        for result in results:
            say(result.line())
        say(f"overall: {worst(results)}")
    return 1 if worst(results) == "fail" else 0


def cmd_erase(args: argparse.Namespace) -> int:
    """Erase one customer everywhere (the same code as the smarketing_privacy DAG); prints counts only."""
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.migrations import migrate
    from smarketing_tasks.privacy import erase_customer

    engine = make_engine(args.warehouse)
    migrate(engine)
    result = erase_customer(engine, requested_at=datetime.now(UTC), customer_id=args.customer_id, email=args.email,
                            request_ref=args.request_ref, run_id="cli", keep_suppression=not args.no_suppression)
    say(str(result.as_dict()))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Let the demo's simulated customers answer the messages in the mailbox (writes into the shop)."""
    from datetime import timedelta

    from smarketing_tasks.db import make_engine
    from smarketing_tasks.simulator import SimulatorSettings, simulate_customers

    settings = SimulatorSettings(seed=args.seed, horizon=timedelta(hours=args.horizon_hours))
    report = simulate_customers(Path(args.mailbox), make_engine(args.shop), make_engine(args.warehouse),
                                start=_when(args.start), settings=settings)
    say(str(report.as_dict()))
    return 0


def cmd_publish_marts(args: argparse.Namespace) -> int:
    """Bring the marts in schema marketing up to date and publish them atomically (what the score DAG does)."""
    from smarketing_tasks.config import load
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.marts import MartSettings, publish_marts

    result = publish_marts(make_engine(args.url), _when(args.as_of), load(MartSettings, os.environ), progress=say,
                           full=args.full)
    say(", ".join(f"{n:,} {mart}" for mart, n in result["rows"].items()))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write the self-contained HTML report from the published marts."""
    from smarketing_tasks.db import make_engine
    from smarketing_tasks.report import write_report

    say(str(write_report(make_engine(args.url), Path(args.out_dir), _when(args.as_of))))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from smarketing_tasks.demo import DemoOptions, run_demo

    return run_demo(DemoOptions(data_dir=Path(args.data_dir), customers=args.customers, days=args.days,
                                seed=args.seed, end=_when(args.end), fresh=args.fresh), say)


def cmd_bench(args: argparse.Namespace) -> int:
    """The whole loop at scale, stage by stage, against the COPY floor (see smarketing_tasks.benchmark)."""
    from smarketing_tasks import benchmark

    admin = benchmark.bench_server(args.pg_url, Path(args.data_dir))
    stages = tuple(args.stages.split(",")) if args.stages else benchmark.STAGES
    if args.incremental:
        days = benchmark.run_incremental_bench(admin, args.purchases, args.days, _when(args.end), args.seed, say,
                                               stages)
        say("")
        say(benchmark.day_table(days, args.days))
        return 0
    figures = benchmark.run_bench(admin, args.purchases, args.days, _when(args.end), args.seed, say, stages)
    say("")
    say(benchmark.table(figures))
    if args.chart:
        Path(args.chart).write_text(benchmark.chart(figures) + "\n")
        say(f"chart: {args.chart}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smarketing", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole loop on the embedded PostgreSQL and print where to look")
    demo.add_argument("--data-dir", default=str(DATA_DIR), help="where the embedded server and Airflow live")
    demo.add_argument("--customers", type=int, default=2_000)
    demo.add_argument("--days", type=int, default=120)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--end", help="the demo's 'now' (ISO date, default: today 00:00 UTC)")
    demo.add_argument("--fresh", action="store_true", help="drop the demo databases first")
    demo.set_defaults(func=cmd_demo)

    shop = sub.add_parser("demo-shop", help="write a generated shop into a database (reference schema)")
    shop.add_argument("--url", required=True, help="PostgreSQL URL of the shop database")
    shop.add_argument("--customers", type=int, default=2_000)
    shop.add_argument("--days", type=int, default=120)
    shop.add_argument("--seed", type=int, default=7)
    shop.add_argument("--end", help="last day of the shop's history (ISO, default today)")
    shop.add_argument("--bad-row-share", type=float, default=0.0, help="share of rows to break on purpose")
    shop.set_defaults(func=cmd_demo_shop)

    mig = sub.add_parser("migrate", help="apply warehouse schema migrations")
    mig.add_argument("--url", required=True)
    mig.set_defaults(func=cmd_migrate)

    ing = sub.add_parser("ingest", help="ingest purchases without Airflow")
    ing.add_argument("--source", required=True, help="postgresql://… | file:///export/dir | cdnow:///path/file")
    ing.add_argument("--warehouse", required=True)
    ing.add_argument("--until", help="upper bound of the window (ISO, default today)")
    ing.add_argument("--run-id", default="cli")
    ing.set_defaults(func=cmd_ingest)

    serve = sub.add_parser("serve", help="run the link service (one-click unsubscribe, tracked links)")
    serve.add_argument("--warehouse", required=True, help="PostgreSQL URL of the warehouse")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.set_defaults(func=cmd_serve)

    for name, text in (("plan", "plan due outreach into the outbox without Airflow"),
                       ("send", "send due outbox messages without Airflow (SMTP, or the Maildir sink)")):
        out = sub.add_parser(name, help=text)
        out.add_argument("--warehouse", required=True)
        out.add_argument("--as-of", help="the run's 'now' (ISO, default today 00:00 UTC)")
        if name == "send":
            out.add_argument("--smtp-host", default="127.0.0.1")
            out.add_argument("--smtp-port", type=int, help="SMTP port; omitted: the Maildir sink")
        out.set_defaults(func=cmd_outreach)

    health = sub.add_parser("health", help="check warehouse, shop, SMTP, Airflow metadata and api-server; exit 1 on failure")
    health.add_argument("--only", help="comma-separated subset of: warehouse,shop,smtp,metadata,api")
    health.add_argument("--api-url", help="api-server base URL, e.g. http://airflow-apiserver:8080")
    health.add_argument("--json", action="store_true", help="machine-readable output")
    health.set_defaults(func=cmd_health)

    erase = sub.add_parser("erase", help="erase one customer everywhere on request (privacy)")
    erase.add_argument("--warehouse", required=True, help="PostgreSQL URL of the warehouse")
    erase.add_argument("--customer-id")
    erase.add_argument("--email")
    erase.add_argument("--request-ref", help="your ticket or request id")
    erase.add_argument("--no-suppression", action="store_true",
                       help="do not keep the address on the suppression list")
    erase.set_defaults(func=cmd_erase)

    sim = sub.add_parser("simulate", help="simulated customers answer the demo mailbox (reviews, posts, referrals)")
    sim.add_argument("--shop", required=True, help="PostgreSQL URL of the shop database (responses go there)")
    sim.add_argument("--warehouse", required=True, help="PostgreSQL URL of the warehouse (the outbox)")
    sim.add_argument("--mailbox", default=str(DATA_DIR / "mailbox"), help="the demo Maildir")
    sim.add_argument("--start", help="customers act after this time and after each message was sent (ISO)")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--horizon-hours", type=float, default=48, help="responses come within this many hours")
    sim.set_defaults(func=cmd_simulate)

    marts = sub.add_parser("publish-marts", help="update the marts (schema marketing) and publish them atomically")
    marts.add_argument("--url", required=True, help="PostgreSQL URL of the warehouse")
    marts.add_argument("--as-of", help="the run's logical time: nothing later is counted (ISO, default today)")
    marts.add_argument("--full", action="store_true",
                       help="rebuild every mart from the whole history instead of only what changed")
    marts.set_defaults(func=cmd_publish_marts)

    rep = sub.add_parser("report", help="write the HTML report from the published marts")
    rep.add_argument("--url", required=True, help="PostgreSQL URL of the warehouse")
    rep.add_argument("--as-of", help="the run's logical time, used in the file name (ISO, default today)")
    rep.add_argument("--out-dir", default=str(DATA_DIR / "reports"))
    rep.set_defaults(func=cmd_report)

    bench = sub.add_parser("bench", help="run every stage of the loop at scale and compare with the COPY floor")
    bench.add_argument("--purchases", type=int, default=100_000)
    bench.add_argument("--days", type=int, default=365)
    bench.add_argument("--seed", type=int, default=1)
    bench.add_argument("--end", default="2026-11-22", help="the shop's last day and the loop's 'now'")
    bench.add_argument("--stages", help="comma-separated subset of the stages, in order")
    bench.add_argument("--incremental", action="store_true",
                       help="time a normal day with the rest of the history loaded against the first day")
    bench.add_argument("--pg-url", help="admin URL of a PostgreSQL server (default: an embedded one)")
    bench.add_argument("--data-dir", default=str(DATA_DIR))
    bench.add_argument("--chart", metavar="SVG", help="also draw the table as an SVG chart into this file")
    bench.set_defaults(func=cmd_bench)

    emb = sub.add_parser("embedded", help="start or stop the embedded PostgreSQL")
    emb.add_argument("action", choices=["start", "stop"])
    emb.add_argument("--data-dir", default=str(DATA_DIR))
    emb.set_defaults(func=cmd_embedded)

    from smarketing_tasks.scoring.cli import add_subcommands as add_scoring_subcommands

    add_scoring_subcommands(sub, _when, say)  # score, evaluate-cdnow
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
