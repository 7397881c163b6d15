"""Airflow connections → SQLAlchemy engines and sources (connection ids are contract: DESIGN.md section 4).

``smarketing_warehouse`` and ``smarketing_shop`` are ordinary Postgres connections (``AIRFLOW_CONN_*``
URIs work). The shop connection may instead point at an export folder or the CDNOW file through its
extra: ``{"source": "export", "path": "/data/exports"}`` or ``{"source": "cdnow", "path": "..."}``.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlalchemy as sa

    from smarketing_tasks.sources import Source

WAREHOUSE_CONN_ID = "smarketing_warehouse"
SHOP_CONN_ID = "smarketing_shop"
SMTP_CONN_ID = "smarketing_smtp"


def _connection(conn_id: str):
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


def connection_url(conn_id: str) -> str:
    """A ``postgresql+psycopg://`` URL from a Postgres connection (the provider hook builds it)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from smarketing_tasks.db import normalize_url

    hook = PostgresHook(postgres_conn_id=conn_id)
    return normalize_url(hook.sqlalchemy_url.render_as_string(hide_password=False))


def engine_for(conn_id: str, **kwargs: Any) -> sa.Engine:
    from smarketing_tasks.db import make_engine

    return make_engine(connection_url(conn_id), **kwargs)


def warehouse_engine(**kwargs: Any) -> sa.Engine:
    return engine_for(WAREHOUSE_CONN_ID, **kwargs)


def shop_source() -> Source:
    from smarketing_tasks.sources import CdnowSource, ExportFolderSource, ReferenceSqlSource

    conn = _connection(SHOP_CONN_ID)
    extra = conn.extra_dejson if conn.extra else {}
    kind = extra.get("source", "sql")
    if kind == "export":
        return ExportFolderSource(extra["path"], name=extra.get("name"))
    if kind == "cdnow":
        return CdnowSource(extra.get("path", ""))
    return ReferenceSqlSource(connection_url(SHOP_CONN_ID), schema=extra.get("schema", "shop"))


def smtp_params():
    """The ``smarketing_smtp`` connection as outreach's SmtpParams, or None when it is not defined.

    Extras follow Airflow's SMTP provider: ``disable_ssl`` / ``disable_tls`` (both default false, i.e.
    implicit TLS), ``from_email``, ``timeout``. A local server: ``smtp://127.0.0.1:8025?disable_ssl=true&disable_tls=true``.
    """
    from airflow.sdk.exceptions import AirflowNotFoundException

    from smarketing_tasks.outreach.channels import SmtpParams

    try:
        conn = _connection(SMTP_CONN_ID)
    except AirflowNotFoundException:
        return None
    extra = conn.extra_dejson if conn.extra else {}

    def flag(name: str) -> bool:
        return str(extra.get(name, False)).strip().lower() in {"1", "true", "yes", "on"}

    use_ssl = not flag("disable_ssl")
    return SmtpParams(host=conn.host or "127.0.0.1", port=int(conn.port or (465 if use_ssl else 25)),
                      login=conn.login or None, password=conn.password or None,
                      use_ssl=use_ssl, starttls=not use_ssl and not flag("disable_tls"),
                      timeout=float(extra.get("timeout", 30)), from_email=extra.get("from_email") or None)


def settings(cls):
    """Settings ``cls`` from ``SMARKETING_*`` env vars and the ``smarketing_settings`` Variable."""
    from airflow.sdk import Variable

    from smarketing_tasks.config import load, parse_variable

    overrides = parse_variable(Variable.get("smarketing_settings", default=None))
    return load(cls, os.environ, overrides)


def as_json(value: Any) -> str:
    return json.dumps(value, default=str)
