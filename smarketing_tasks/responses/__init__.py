"""Responses flow back in: reviews, social posts, email/SMS events and referral redemptions, attributed to
the asks that produced them (see ``pipeline`` and ``referrals``; settings in ``settings``)."""

from smarketing_tasks.responses.pipeline import ingest_responses, signing_keys
from smarketing_tasks.responses.referrals import redeem_referrals
from smarketing_tasks.responses.settings import ResponsesSettings
from smarketing_tasks.responses.sources import (
    RESPONSE_DATASETS,
    JudgeMeExportSource,
    ResponseExportSource,
    ResponseSqlSource,
    response_source_from_url,
)

__all__ = [
    "RESPONSE_DATASETS", "JudgeMeExportSource", "ResponseExportSource", "ResponseSqlSource", "ResponsesSettings",
    "ingest_responses", "redeem_referrals", "response_source_from_url", "signing_keys",
]
