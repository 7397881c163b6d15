"""Versioned, idempotent schema migrations: ordered SQL files in ``sql/migrations`` and a version table.

Each file runs once, in its own transaction, under an advisory lock so that concurrent DAG runs
(or a DAG and the CLI) never apply the same file twice. A changed file that already ran is an
error, not a silent skip: a migration is history, so fix forward with a new file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from smarketing_tasks.paths import SQL_DIR

MIGRATIONS_DIR = SQL_DIR / "migrations"
_LOCK_KEY = 0x5EA4_1007  # any constant shared by every migrator of this warehouse
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name} must be named NNNN_snake_case.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise ValueError(f"duplicate migration versions in {directory}")
    return found


def migrate(engine: sa.Engine, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; returns the names applied (empty when up to date)."""
    applied_now: list[str] = []
    with engine.begin() as conn:
        conn.execute(sa.text("select pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        conn.exec_driver_sql("create schema if not exists smarketing")
        conn.exec_driver_sql(
            """create table if not exists smarketing.schema_migrations (
                   version integer primary key, name text not null, checksum text not null,
                   applied_at timestamptz not null default now())"""
        )
        done = {row.version: row.checksum for row in conn.execute(
            sa.text("select version, checksum from smarketing.schema_migrations"))}
        for migration in discover(directory):
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise RuntimeError(
                        f"migration {migration.path.name} changed after it was applied; add a new migration instead"
                    )
                continue
            with conn.begin_nested():
                conn.exec_driver_sql(migration.path.read_text())
                conn.execute(
                    sa.text("insert into smarketing.schema_migrations (version, name, checksum) values (:v, :n, :c)"),
                    {"v": migration.version, "n": migration.name, "c": migration.checksum},
                )
            applied_now.append(migration.path.name)
    return applied_now
