"""Validation must not slow DAG parsing: GX is imported when a suite runs, never by importing the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={"PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}:{ROOT / 'dags'}", "PATH": "/usr/bin:/bin",
                              "PYTHONWARNINGS": "ignore"})
    return set(out.stdout.split())


def test_importing_the_quality_package_and_the_task_helper_does_not_import_gx():
    loaded = _modules_after("import smarketing_tasks.quality, smarketing_airflow.quality")
    assert "smarketing_tasks.quality.gate" in loaded
    assert not any(m == "great_expectations" or m.startswith("great_expectations.") for m in loaded)
    assert "pandas" not in loaded
