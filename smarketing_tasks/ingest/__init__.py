"""Validated, incremental loading of source purchases into the warehouse."""

from smarketing_tasks.ingest.check import ValidatedBatch, check_frame
from smarketing_tasks.ingest.pipeline import IngestResult, ingest_dataset

__all__ = ["IngestResult", "ValidatedBatch", "check_frame", "ingest_dataset"]
