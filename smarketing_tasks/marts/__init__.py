"""The marts in schema ``marketing`` (DESIGN.md section 4): built from the core tables, documented, published atomically.

``publish_marts(engine, as_of, settings)`` is what the score DAG calls after scoring.
"""

from smarketing_tasks.marts.catalog import CONTRACT_MARTS, Column, Mart, load_catalog
from smarketing_tasks.marts.publish import (
           BI_ROLE,
           BUILD_SCHEMA,
           PUBLISH_SCHEMA,
           MartBuildError,
           publish_marts,
)
from smarketing_tasks.marts.settings import MartSettings

__all__ = ["BI_ROLE", "BUILD_SCHEMA", "CONTRACT_MARTS", "PUBLISH_SCHEMA", "Column", "Mart", "MartBuildError",
           "MartSettings", "load_catalog", "publish_marts"]
