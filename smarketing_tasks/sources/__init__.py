"""Where purchases (and later responses) come from, behind one small interface.

Every source delivers batches of the reference schema (``smarketing_tasks.schema.SOURCE_COLUMNS``)
as all-text DataFrames, for rows changed inside a window. Validation and typing happen downstream,
once, for every source alike. Add a source by implementing :class:`Source` (see docs/adding-a-task.md).
"""

from smarketing_tasks.sources.base import Source, Window
from smarketing_tasks.sources.cdnow import CdnowSource
from smarketing_tasks.sources.export_files import ExportFolderSource
from smarketing_tasks.sources.sql_reference import ReferenceSqlSource

__all__ = ["CdnowSource", "ExportFolderSource", "ReferenceSqlSource", "Source", "Window", "source_from_url"]


def source_from_url(url: str) -> Source:
    """Pick the adapter from a URL: ``postgresql://…`` (reference schema), ``file:///dir`` (exports), ``cdnow:///file``."""
    if url.startswith("cdnow://"):
        return CdnowSource(url.removeprefix("cdnow://"))
    if url.startswith("file://"):
        return ExportFolderSource(url.removeprefix("file://"))
    return ReferenceSqlSource(url)
