"""The source interface: text batches of the reference schema for rows changed inside a window."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Window:
    """Rows whose change column is in ``(since, until]``; ``since=None`` means from the beginning."""

    since: datetime | None
    until: datetime

    def __post_init__(self) -> None:
        if self.until.tzinfo is None or (self.since is not None and self.since.tzinfo is None):
            raise ValueError("window bounds must be timezone-aware")
        if self.since is not None and self.since > self.until:
            raise ValueError(f"window starts after it ends: {self.since} > {self.until}")


@runtime_checkable
class Source(Protocol):
    """A shop system we read from. ``name`` keys watermarks and provenance, so keep it stable."""

    name: str

    def datasets(self) -> tuple[str, ...]:
        """The datasets this source can deliver (names from ``SOURCE_COLUMNS``)."""
        ...

    def read(self, dataset: str, window: Window, batch_rows: int) -> Iterator[pd.DataFrame]:
        """Yield all-text DataFrames with exactly the reference columns of ``dataset``.

        Rows whose change column cannot be read as a time are still yielded (validation quarantines
        them with a reason) so that nothing is lost silently.
        """
        ...
