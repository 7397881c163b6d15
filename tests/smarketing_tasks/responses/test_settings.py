"""Responses read their own batch size, overlap and quarantine share, not ingest's names."""

from __future__ import annotations

from datetime import timedelta

from smarketing_tasks.config import IngestSettings, load
from smarketing_tasks.responses import ResponsesSettings


def test_ingest_names_no_longer_change_responses_and_responses_names_do():
    environ = {"SMARKETING_BATCH_ROWS": "7", "SMARKETING_OVERLAP": "5", "SMARKETING_MAX_QUARANTINE_SHARE": "0.5",
               "SMARKETING_RESPONSES_BATCH_ROWS": "900", "SMARKETING_RESPONSES_OVERLAP": "120",
               "SMARKETING_RESPONSES_MAX_QUARANTINE_SHARE": "0.3"}
    responses, ingest = load(ResponsesSettings, environ), load(IngestSettings, environ)
    assert (responses.responses_batch_rows, responses.responses_overlap, responses.responses_max_quarantine_share) == (
        900, timedelta(hours=2), 0.3)
    assert (ingest.batch_rows, ingest.overlap, ingest.max_quarantine_share) == (7, timedelta(minutes=5), 0.5)
