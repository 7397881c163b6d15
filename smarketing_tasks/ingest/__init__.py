"""Purchase ingestion: read a source incrementally, validate every row, upsert the good, quarantine the bad."""

from smarketing_tasks.ingest.pipeline import IngestResult, ingest_dataset
from smarketing_tasks.ingest.validate import ValidatedBatch, validate_batch

__all__ = ["IngestResult", "ValidatedBatch", "ingest_dataset", "validate_batch"]
