"""Settings of the loop, every one with a working default.

Read from environment variables ``SMARKETING_<NAME>`` (upper case), or inside Airflow from the JSON
Variable ``smarketing_settings`` (keys in lower case), which wins. docs/operations.md lists them all.
Each stage keeps its own settings class here so that one place documents every knob.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any, TypeVar, get_type_hints

T = TypeVar("T")
ENV_PREFIX = "SMARKETING_"


def _coerce(value: Any, kind: Any) -> Any:
    if isinstance(value, str):
        if kind is bool:
            return value.strip().lower() in {"1", "true", "yes", "on"}
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
        if kind is timedelta:
            return timedelta(minutes=float(value))
    if kind is timedelta and isinstance(value, int | float):
        return timedelta(minutes=float(value))
    return value


def load(cls: type[T], environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None) -> T:
    """Build settings ``cls`` from ``SMARKETING_*`` variables in ``environ`` and then ``overrides``."""
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in fields(cls):  # type: ignore[arg-type]
        env_name = ENV_PREFIX + field.name.upper()
        if env_name in environ:
            values[field.name] = _coerce(environ[env_name], hints[field.name])
        if overrides and field.name in overrides:
            values[field.name] = _coerce(overrides[field.name], hints[field.name])
    return cls(**values)


def parse_variable(text: str | None) -> dict[str, Any]:
    """The ``smarketing_settings`` Airflow Variable: a JSON object, or nothing."""
    if not text:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("Airflow Variable smarketing_settings must be a JSON object")
    return value


@dataclass(frozen=True)
class IngestSettings:
    """Purchase ingestion (``smarketing_ingest``)."""

    batch_rows: int = 100_000  # rows per batch read from a file source: bounds memory
    overlap: timedelta = timedelta(minutes=15)  # re-read this much before the watermark, for late commits
    max_quarantine_share: float = 0.05  # fail the run when more of a dataset's rows than this are quarantined


def as_dict(settings: Any) -> dict[str, Any]:
    return {k: (v.total_seconds() / 60 if isinstance(v, timedelta) else v)
            for k, v in dataclasses.asdict(settings).items()}
