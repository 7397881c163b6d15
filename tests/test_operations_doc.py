"""docs/operations.md stays the complete reference: every setting the code reads and every connection
the stack uses is documented there (a new field in a settings class fails this until it is)."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from pathlib import Path

import smarketing_tasks

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "operations.md").read_text()
# Not read from the environment: the demo's customer simulator takes its settings as an argument.
NOT_ENVIRONMENT = {"SimulatorSettings"}


def _settings_classes() -> dict[str, type]:
    found = {}
    for module in pkgutil.walk_packages(smarketing_tasks.__path__, "smarketing_tasks."):
        loaded = importlib.import_module(module.name)
        for name, value in vars(loaded).items():
            if (name.endswith("Settings") and dataclasses.is_dataclass(value)
                    and value.__module__ == loaded.__name__ and name not in NOT_ENVIRONMENT):
                found[name] = value
    return found


def test_every_setting_is_documented():
    classes = _settings_classes()
    assert {"IngestSettings", "AlertSettings", "PrivacySettings", "HealthSettings"} <= set(classes)
    missing = [f"| `SMARKETING_{field.name.upper()}` | `{field.default!r}` | ({name}: say what it does) |"
               for name, cls in classes.items() for field in dataclasses.fields(cls)
               if f"`SMARKETING_{field.name.upper()}`" not in DOC]
    assert not missing, "add these rows to docs/operations.md (Settings):\n" + "\n".join(missing)


def test_documented_settings_exist():
    known = {f"SMARKETING_{f.name.upper()}" for cls in _settings_classes().values() for f in dataclasses.fields(cls)}
    stack_only = {"SMARKETING_SMTP_POOL_SLOTS", "SMARKETING_BI_PASSWORD", "SMARKETING_DEMO_SHOP", "SMARKETING_IMAGE",
                  "SMARKETING_LINKS_PORT", "SMARKETING_DATA_DIR", "SMARKETING_PROJECT_ROOT",
                  "SMARKETING_HEALTH_API_URL", "SMARKETING_LINK_SIGNING_KEYS_RETIRED"}
    table_rows = set(re.findall(r"^\| `(SMARKETING_[A-Z0-9_]+)`", DOC, flags=re.MULTILINE))
    assert table_rows, "the settings tables are missing"
    assert table_rows - known - stack_only == set(), "the doc lists settings the code does not read"


def test_connections_and_dags_are_documented():
    env_example = (ROOT / ".env.example").read_text()
    for conn_id in re.findall(r"^AIRFLOW_CONN_([A-Z_]+)=", env_example, flags=re.MULTILINE):
        assert f"`{conn_id.lower()}`" in DOC, conn_id
    for path in (ROOT / "dags").glob("smarketing_*.py"):
        assert path.stem in DOC, f"{path.stem} is not mentioned in docs/operations.md"
