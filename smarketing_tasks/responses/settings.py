"""Settings of response ingestion (``smarketing_responses``); every field has a working default.

Names are read as ``SMARKETING_<FIELD>``: the batch size, overlap and quarantine share carry a ``responses_``
prefix so that they do not collide with ingest's ``SMARKETING_BATCH_ROWS`` (and friends), whose defaults differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class ResponsesSettings:
    # rows per validated, committed batch: bounds memory
    responses_batch_rows: int = 50_000
    # re-read this much before the watermark: review platforms and ESP webhooks deliver late
    responses_overlap: timedelta = timedelta(hours=24)
    # a response counts for the latest ask sent to the same customer (and order) at most this long before it
    attribution_window: timedelta = timedelta(days=30)
    # longer review/post bodies are quarantined rather than cut (a 1 MB "review" is a paste accident or an attack)
    max_body_chars: int = 20_000
    # a bounce without a hard/soft type (the reference schema has none) stops sending: the safe side
    untyped_bounce_is_hard: bool = True
    # the detectors need some letters to be right; shorter texts get language null ("Good." is not a language)
    min_language_letters: int = 20
    # processes for language detection of many distinct texts (py3langid: ~10,000 texts/s per core)
    language_processes: int = 1
    # processes for the text signals (language, VADER) of a batch with thousands of distinct texts; 0: the cores
    # this process may use. One by default: a worker's cores are usually busy with other tasks, and on a busy
    # 2-core machine two processes gained nothing (docs/benchmarks/responses.md). Smaller batches stay in one.
    text_processes: int = 1
    # fail the run when more of a dataset's rows than this are quarantined ...
    responses_max_quarantine_share: float = 0.2
    # ... and it read at least this many rows (an hour with three reviews, one bad, is not a broken source)
    min_rows_for_share_check: int = 100
    # referral codes look like this (outreach creates them); an unknown code of this shape is quarantined
    referral_code_pattern: str = r"REF-[A-Z2-7]{8}"
    # the link-signing key; when empty, the one generated and kept in smarketing.secrets
    link_signing_key: str = ""
    # keys retired by a rotation, comma-separated: links signed with them still attribute until they expire
    link_signing_keys_retired: str = ""
