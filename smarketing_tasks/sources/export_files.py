"""An export folder: one ``<dataset>.csv`` or ``<dataset>.jsonl`` file per dataset, in the reference columns.

Shops that cannot give database access can drop exports here (a nightly SFTP job, a bucket sync).
Bytes that are not UTF-8 are kept (as U+FFFD) and quarantined by validation; a JSONL line that is not
JSON becomes a row whose ``_source_error`` says so; nothing is skipped on read.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from smarketing_tasks.schema import CHANGE_COLUMN, SOURCE_COLUMNS
from smarketing_tasks.sources.base import Window

if TYPE_CHECKING:
    import pandas as pd

SOURCE_ERROR = "_source_error"


class ExportFolderSource:
    def __init__(self, folder: str | Path, name: str | None = None) -> None:
        self.folder = Path(folder)
        self.name = name or f"export:{self.folder.name}"

    def _file(self, dataset: str) -> Path | None:
        for suffix in (".csv", ".jsonl"):
            path = self.folder / f"{dataset}{suffix}"
            if path.exists():
                return path
        return None

    def datasets(self) -> tuple[str, ...]:
        return tuple(d for d in SOURCE_COLUMNS if self._file(d) is not None)

    def read(self, dataset: str, window: Window, batch_rows: int) -> Iterator[pd.DataFrame]:
        path = self._file(dataset)
        if path is None:
            return
        order_changes = self._order_changes() if dataset == "order_items" else None
        for frame in self._frames(path, dataset, batch_rows):
            if order_changes is not None and frame["updated_at"].isna().all():
                frame["updated_at"] = frame["order_id"].map(order_changes)
            yield _in_window(frame, CHANGE_COLUMN[dataset], window)

    def _order_changes(self) -> dict[str, str]:
        """order_id → updated_at from the orders export, for item files that lack the column."""
        path = self._file("orders")
        if path is None:
            return {}
        changes: dict[str, str] = {}
        for frame in self._frames(path, "orders", 200_000):
            changes.update(zip(frame["order_id"], frame["updated_at"], strict=True))
        return changes

    def columns_of(self, dataset: str) -> list[str]:
        """The columns a batch of ``dataset`` carries (subclasses add optional ones)."""
        return list(SOURCE_COLUMNS[dataset])

    def _frames(self, path: Path, dataset: str, batch_rows: int) -> Iterator[pd.DataFrame]:
        import pandas as pd

        columns = self.columns_of(dataset)
        if path.suffix == ".csv":
            reader = pd.read_csv(
                path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8",
                encoding_errors="replace", chunksize=batch_rows,
            )
            for chunk in reader:
                yield _conform(chunk, columns)
        else:
            rows: list[dict] = []
            with path.open("rb") as handle:
                for line_no, raw in enumerate(handle, start=1):
                    text = raw.decode("utf-8", errors="replace").strip()
                    if not text:
                        continue
                    rows.append(_json_row(text, line_no))
                    if len(rows) >= batch_rows:
                        yield _conform(pd.DataFrame(rows), columns)
                        rows = []
            if rows:
                yield _conform(pd.DataFrame(rows), columns)


def _json_row(text: str, line_no: int) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return {SOURCE_ERROR: f"line {line_no} is not JSON ({error.msg})", "_raw_line": text[:2000]}
    if not isinstance(value, dict):
        return {SOURCE_ERROR: f"line {line_no} is not a JSON object", "_raw_line": text[:2000]}
    return {k: None if v is None else (json.dumps(v) if isinstance(v, dict | list) else str(v)) for k, v in value.items()}


def _conform(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Exactly the reference columns (missing ones empty) plus the read-error column if any row has one."""
    import pandas as pd

    out = pd.DataFrame({c: frame[c] if c in frame.columns else None for c in columns}, index=frame.index)
    out = out.astype(object).where(out.notna(), None)
    if SOURCE_ERROR in frame.columns:
        out[SOURCE_ERROR] = frame[SOURCE_ERROR]
        if "_raw_line" in frame.columns:
            out["_raw_line"] = frame["_raw_line"]
    return out.reset_index(drop=True)


def _in_window(frame: pd.DataFrame, change_column: str, window: Window) -> pd.DataFrame:
    """Rows changed inside the window, plus rows whose change time is unreadable (validation quarantines them)."""
    import pandas as pd

    moment = pd.to_datetime(frame[change_column], utc=True, errors="coerce", format="mixed")
    keep = moment.isna() | (moment <= pd.Timestamp(window.until))
    if window.since is not None:
        keep &= moment.isna() | (moment > pd.Timestamp(window.since))
    return frame[keep].reset_index(drop=True)


def write_export(folder: Path, dataset: str, frame: pd.DataFrame, fmt: str = "csv") -> Path:
    """Write a dataset in the export layout (used by tests and the demo)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dataset}.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        buffer = io.StringIO()
        frame.to_json(buffer, orient="records", lines=True, date_format="iso")
        path.write_text(buffer.getvalue())
    return path
