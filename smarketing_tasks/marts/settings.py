"""Settings of the marts and the report (``SMARKETING_<NAME>`` env vars or the ``smarketing_settings`` Variable)."""

from __future__ import annotations

from dataclasses import dataclass

from smarketing_tasks.scoring.settings import ScoringSettings


@dataclass(frozen=True)
class MartSettings:
    """How the marts in schema ``marketing`` are built and published (issue 7, DESIGN.md section 4)."""

    # People each unhappy customer tells about a bad experience. Seed 004 says 52; the often-cited TARP studies
    # give 9-15. The default is scoring's (52), so that a customer's reasons ("may tell ~52 people") and the
    # KPI agree; one variable, SMARKETING_WORD_OF_MOUTH_REACH, sets both (12, TARP's middle, for a cautious view).
    word_of_mouth_reach: int = ScoringSettings.word_of_mouth_reach
    # Confidence level of the Wilson intervals around response rates in outreach_funnel.
    funnel_confidence: float = 0.95
    # Testimonials: lowest star rating of a consented review that may become a testimonial.
    testimonial_min_rating: int = 4
    # Testimonials: the longest quote, in characters (a sentence that fits on a banner or a product page).
    quote_max_chars: int = 160
    # Rebuild every mart from the whole history on each publish instead of recomputing what changed (the
    # first publish, a change of mart SQL or settings and a backfill rebuild in full anyway).
    full_rebuild: bool = False
    # Publishing waits at most this long for readers' locks before failing (the last good version stays).
    publish_lock_timeout_seconds: int = 30
    # Who gets the HTML report by email after each scoring run: comma-separated addresses of marketing and
    # sales staff (not customers); empty = the report is only written to <SMARKETING_DATA_DIR>/reports.
    report_recipients: str = ""
    # Sender of that email (the smarketing_smtp connection's from_email wins when it sets one).
    report_from: str = "smarketing-loop@localhost"
