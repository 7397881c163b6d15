"""Settings of the marts and the report (``SMARKETING_<NAME>`` env vars or the ``smarketing_settings`` Variable)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MartSettings:
    """How the marts in schema ``marketing`` are built and published (issue 7, DESIGN.md section 4)."""

    # People each unhappy customer tells about a bad experience. The often-cited TARP studies give 9-15;
    # seed 004 claims 52. The default is 12, the middle of TARP's range: a defensible planning figure that
    # marketers can raise (e.g. to 52) when they want the pessimistic view. Reported in loop_kpis_daily.
    word_of_mouth_reach: int = 12
    # Confidence level of the Wilson intervals around response rates in outreach_funnel.
    funnel_confidence: float = 0.95
    # Testimonials: lowest star rating of a consented review that may become a testimonial.
    testimonial_min_rating: int = 4
    # Testimonials: the longest quote, in characters (a sentence that fits on a banner or a product page).
    quote_max_chars: int = 160
    # Publishing waits at most this long for readers' locks before failing (the last good version stays).
    publish_lock_timeout_seconds: int = 30
