"""Where the project's non-Python assets live, found from the package (works from a checkout and in the image)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("SMARKETING_PROJECT_ROOT", Path(__file__).resolve().parent.parent))
SQL_DIR = PROJECT_ROOT / "sql"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
TEMPLATES_DIR = PROJECT_ROOT / "templates"
DATA_DIR = Path(os.environ.get("SMARKETING_DATA_DIR", PROJECT_ROOT / ".data"))
