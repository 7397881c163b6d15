"""Benchmark: outreach planning of 1,000,000 delivered orders, and sending 10,000 emails over SMTP.

    .venv/bin/python benchmarks/bench_outreach.py --plan-orders 1000000
    .venv/bin/python benchmarks/bench_outreach.py --send 10000

* **plan**: a fresh warehouse is filled in SQL (``generate_series``) with N orders delivered within the
  ask window (so every one is due), N/2 customers (80% with marketing consent, 1% suppressed), 2% of
  orders returned and 5% already reviewed; then the DAG's planning code runs in a child process. Prints
  seconds, messages written by status, and the child's peak RSS (the PostgreSQL server's memory is its own).
  A second planning run of the same data (nothing new) shows the cost of an hourly rerun.
* **send**: N review requests are planned, then sent to a local aiosmtpd server (in its own process, so
  that it does not share the sender's GIL) by the sender (one SMTP connection reused, claims with SKIP
  LOCKED, each result recorded before the next message). The baseline renders the same messages and opens
  one SMTP connection per message, as Airflow's ``send_email`` does (it records nothing anywhere).

Uses the embedded PostgreSQL under .data/bench-postgres unless --pg-url names another server.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AS_OF = datetime(2026, 11, 22, 12, tzinfo=UTC)


def _fresh_warehouse(admin: str, name: str) -> str:
    from smarketing_tasks.db import drop_database, ensure_database, make_engine, with_database
    from smarketing_tasks.migrations import migrate

    drop_database(admin, name)
    ensure_database(admin, name)
    url = with_database(admin, name)
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    return url


def fill(url: str, orders: int, customers: int, delivered_days: float = 6.0, clean: bool = False) -> float:
    """Generated customers and delivered orders, all due for a review ask at AS_OF; returns seconds."""
    import sqlalchemy as sa

    from smarketing_tasks.db import make_engine

    started = time.perf_counter()
    engine = make_engine(url)
    # clean: every order gets its email (the send benchmark); otherwise a realistic mix of skips.
    p = {"n": orders, "c": customers, "as_of": AS_OF, "span": delivered_days * 86400,
         "no_consent_every": orders + 1 if clean else 5, "returned_every": orders + 1 if clean else 50,
         "reviewed_every": orders + 1 if clean else 20, "suppressed_every": orders + 1 if clean else 100,
         "suppressed_start": customers + 1 if clean else 7}
    with engine.begin() as conn:
        conn.execute(sa.text("""
            insert into smarketing.customers (customer_id, country, time_zone, accepts_marketing, accepts_sms,
                                              created_at, updated_at, source)
            select 'c' || i, 'DE', 'Europe/Berlin', i % :no_consent_every <> 0, i % 3 = 0, :as_of - interval '1 year',
                   :as_of - interval '1 year', 'bench'
            from generate_series(1, :c) i"""), p)
        conn.execute(sa.text("""
            insert into smarketing.customer_contacts (customer_id, email, first_name, phone, updated_at)
            select 'c' || i, 'c' || i || '@example.com', 'Name' || i, '+49 151 ' || i, :as_of - interval '1 year'
            from generate_series(1, :c) i"""), p)
        conn.execute(sa.text("""
            insert into smarketing.orders (order_id, customer_id, ordered_at, status, shipped_at, delivered_at,
                                           total_amount, currency, updated_at, source)
            select 'o' || i, 'c' || (1 + i % :c), d - interval '3 days',
                   case when i % :returned_every = 0 then 'returned' else 'delivered' end, d - interval '2 days', d,
                   20, 'EUR', d, 'bench'
            from generate_series(1, :n) i
            cross join lateral (select :as_of - interval '7 days' - make_interval(secs => (i % 1000) * :span / 1000) d) t
            """), p)
        conn.execute(sa.text("""
            insert into smarketing.order_items (order_id, line_no, sku, product_name, quantity, unit_price)
            select 'o' || i, 1, 'SKU-' || (i % 500), 'Product ' || (i % 500), 1, 20
            from generate_series(1, :n) i"""), p)
        conn.execute(sa.text("""
            insert into smarketing.reviews (review_id, order_id, customer_id, sku, rating, body, created_at, source)
            select 'r' || i, 'o' || i, 'c' || (1 + i % :c), 'SKU-1', 1 + i % 5, 'text', :as_of - interval '1 day', 'bench'
            from generate_series(cast(:reviewed_every as int), cast(:n as int), cast(:reviewed_every as int)) i"""), p)
        conn.execute(sa.text("""
            insert into smarketing.suppressions (email, customer_id, reason, source, suppressed_at)
            select 'c' || i || '@example.com', 'c' || i, 'unsubscribe', 'bench', :as_of
            from generate_series(cast(:suppressed_start as int), cast(:c as int), cast(:suppressed_every as int)) i"""), p)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("vacuum analyze")
    engine.dispose()
    return time.perf_counter() - started


_PLAN_CHILD = """
import json, resource, sys, time
from datetime import datetime
from smarketing_tasks.db import make_engine
from smarketing_tasks.outreach import OutreachSettings, plan_outreach
engine = make_engine(sys.argv[1])
as_of = datetime.fromisoformat(sys.argv[2])
started = time.perf_counter()
result = plan_outreach(engine, as_of, OutreachSettings(), run_id="bench")
seconds = time.perf_counter() - started
started = time.perf_counter()
again = plan_outreach(engine, as_of, OutreachSettings(), run_id="bench-rerun")
print(json.dumps({"seconds": seconds, "rerun_seconds": time.perf_counter() - started, **result.as_dict(),
                  "rerun_planned": again.planned + again.skipped,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def bench_plan(admin: str, orders: int) -> dict:
    url = _fresh_warehouse(admin, "bench_outreach_plan")
    fill_seconds = fill(url, orders, max(orders // 2, 1))
    print(f"filled {orders:,} orders in {fill_seconds:.1f}s", flush=True)
    out = subprocess.run([sys.executable, "-c", _PLAN_CHILD, url, AS_OF.isoformat()], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["orders"] = orders
    return result


_SMTP_SERVER = """
import sys, time
from aiosmtpd.controller import Controller
class Count:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Count.n += 1
        return "250 OK"
port = int(sys.argv[1])
tls = {}
if len(sys.argv) > 2:  # STARTTLS with this certificate and key
    import ssl
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
    tls = {"tls_context": context, "require_starttls": True}
controller = Controller(Count(), hostname="127.0.0.1", port=port, **tls)
controller.start()
print("ready", flush=True)
sys.stdin.readline()
print(Count.n, time.process_time(), flush=True)
controller.stop()
"""


def self_signed_certificate(directory: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 (and its key), trusted by the client through SSL_CERT_FILE."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(AS_OF - timedelta(days=1))
            .not_valid_after(AS_OF + timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


class SmtpProcess:
    tls: tuple[str, str] | None = None  # (certificate, key): the server requires STARTTLS

    def __enter__(self):
        from smarketing_tasks.outreach.mailbox import pick_port

        self.port = pick_port(8125)
        self.process = subprocess.Popen([sys.executable, "-c", _SMTP_SERVER, str(self.port), *(self.tls or ())],
                                        stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"
        return self

    def received(self) -> int:
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        count, cpu = self.process.stdout.readline().split()
        self.process.wait(timeout=30)
        self.cpu_seconds = float(cpu)
        return int(count)

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.kill()


def bench_send(admin: str, messages: int, baseline_messages: int, lanes: list[int], rounds: int,
               tls: bool = False) -> list[dict]:
    """Alternate our sender (each lane count) and the baseline, ``rounds`` times: the machine's load drifts."""
    from dataclasses import replace

    import sqlalchemy as sa

    from smarketing_tasks.db import make_engine
    from smarketing_tasks.outreach import OutreachSettings, plan_outreach, send_outreach
    from smarketing_tasks.outreach.channels import SmtpParams, send_one_connection_per_message
    from smarketing_tasks.outreach.rendering import MessageData, Renderer

    if tls:  # STARTTLS as production SMTP servers require it (Airflow's SMTP hook defaults to TLS too)
        import tempfile

        SmtpProcess.tls = self_signed_certificate(Path(tempfile.mkdtemp(prefix="bench-smtp-tls-")))
        os.environ["SSL_CERT_FILE"] = SmtpProcess.tls[0]
    url = _fresh_warehouse(admin, "bench_outreach_send")
    fill(url, messages, messages, clean=True)
    engine = make_engine(url)
    plan = plan_outreach(engine, AS_OF, OutreachSettings())
    print(f"planned {plan.planned:,} emails", flush=True)
    clock = lambda: AS_OF + timedelta(hours=1)  # noqa: E731
    renderer = Renderer(OutreachSettings(), b"bench")
    samples = [MessageData(message_id=f"{i:032x}", customer_id=f"c{i}", order_id=f"o{i}", kind="review_request",
                           step=1, channel="email", variant="A", due_at=AS_OF, email=f"c{i}@example.com",
                           first_name=f"Name{i}", products=("Product 1",)) for i in range(baseline_messages)]
    results = []
    for round_number in range(1, rounds + 1):
        for connections in lanes:
            with engine.begin() as conn:  # the same 10,000 messages, due again
                conn.execute(sa.text("update smarketing.outreach_messages set status = 'planned', attempts = 0,"
                                     " claimed_by = null, sent_at = null, lease_expires_at = null"))
            settings = replace(OutreachSettings(), link_signing_key="bench", connections=connections)
            with SmtpProcess() as server:
                started, cpu = time.perf_counter(), time.process_time()
                report = send_outreach(engine, AS_OF, settings, SmtpParams(port=server.port, starttls=tls), clock,
                                       worker="bench", warn=lambda _: None)
                seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
                received = server.received()
            results.append({"round": round_number, "sender": f"outbox, {connections} lane(s)", "sent": report.sent,
                            "received": received, "seconds": seconds, "messages_per_s": report.sent / seconds,
                            "client_cpu_ms_per_message": 1000 * cpu / report.sent,
                            "server_cpu_ms_per_message": 1000 * server.cpu_seconds / received,
                            "load_average_1m": os.getloadavg()[0]})
            print(json.dumps(results[-1]), flush=True)
        with SmtpProcess() as server:
            params = SmtpParams(port=server.port, starttls=tls)
            started, cpu = time.perf_counter(), time.process_time()
            for data in samples:
                send_one_connection_per_message(params, renderer.render(data, clock()))
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            received = server.received()
        results.append({"round": round_number, "sender": "baseline: one connection per message",
                        "sent": received, "received": received, "seconds": seconds,
                        "messages_per_s": received / seconds, "client_cpu_ms_per_message": 1000 * cpu / received,
                        "server_cpu_ms_per_message": 1000 * server.cpu_seconds / received,
                        "load_average_1m": os.getloadavg()[0]})
        print(json.dumps(results[-1]), flush=True)
    engine.dispose()
    baseline = statistics.median(r["messages_per_s"] for r in results if r["sender"].startswith("baseline"))
    for connections in lanes:
        ours = statistics.median(r["messages_per_s"] for r in results if r["sender"] == f"outbox, {connections} lane(s)")
        print(json.dumps({"summary": f"outbox, {connections} lane(s)", "median_messages_per_s": ours,
                          "baseline_median_messages_per_s": baseline, "speedup": ours / baseline,
                          "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", help="admin URL of a PostgreSQL server (default: embedded)")
    parser.add_argument("--plan-orders", type=int, nargs="*", default=[])
    parser.add_argument("--send", type=int, help="emails to send (e.g. 10000)")
    parser.add_argument("--connections", type=int, nargs="*", default=[4], help="sender lanes to measure")
    parser.add_argument("--tls", action="store_true", help="the server requires STARTTLS (self-signed, trusted)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (medians are reported)")
    parser.add_argument("--baseline", type=int, help="emails for the one-connection-per-message baseline "
                                                     "(default: the same number)")
    args = parser.parse_args()
    from smarketing_tasks.benchmark import bench_server

    admin = bench_server(args.pg_url)
    for orders in args.plan_orders:
        print(json.dumps(bench_plan(admin, orders)), flush=True)
    if args.send:
        bench_send(admin, args.send, args.baseline or args.send, args.connections, args.rounds, args.tls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
