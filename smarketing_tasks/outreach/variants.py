"""Where the outreach templates live and which variants each kind has: all planning needs of them, without
the renderer's imports (Jinja2, the email package), which a planning run would otherwise pay for."""

from __future__ import annotations

from pathlib import Path

from smarketing_tasks.outreach.settings import OutreachSettings
from smarketing_tasks.paths import TEMPLATES_DIR


def templates_root(settings: OutreachSettings) -> Path:
    return Path(settings.templates_dir) if settings.templates_dir else TEMPLATES_DIR / "outreach"


def discover_variants(root: Path) -> dict[str, list[str]]:
    """Variant folders per kind (``<root>/<kind>/<variant>/subject.txt``), sorted."""
    found: dict[str, list[str]] = {}
    for subject in sorted(root.glob("*/*/subject.txt")):
        found.setdefault(subject.parent.parent.name, []).append(subject.parent.name)
    return found
