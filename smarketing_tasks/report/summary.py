"""The insights part of the demo's closing summary: headline numbers from the marts and where the report is."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from smarketing_tasks.marts.headline import headline_numbers
from smarketing_tasks.paths import PROJECT_ROOT
from smarketing_tasks.report.render import report_path, write_report


def insights_summary(say: Callable[[str], None], warehouse: sa.Engine, data_dir: Path) -> Path | None:
    """Print the marts' headline numbers and the report's path (writing the report if the run made none).

    Never fails the demo: with no marts yet it says so, and a database or disk error is reported in one line.
    Returns the report's path, or None.
    """
    try:
        headline = headline_numbers(warehouse)
        if headline is None:
            say("  insights: the marts are not (all) in schema marketing yet (the smarketing_score DAG publishes them)")
            return None
        as_of = datetime.strptime(headline.as_of, "%Y-%m-%d %H:%M").replace(tzinfo=UTC) if headline.as_of else None
        report = report_path(data_dir / "reports", as_of) if as_of else None
        if as_of and not report.exists():
            report = write_report(warehouse, data_dir / "reports", as_of)
    except (sa.exc.SQLAlchemyError, OSError, ValueError) as error:
        say(f"  insights: could not read the marts ({type(error).__name__}: {str(error).splitlines()[0]})")
        return None

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0%}"

    say("")
    say(f"Insights for marketing and sales (schema marketing, as of {headline.as_of} UTC):")
    say(f"  customers scored {headline.customers_scored:,}; champions and advocates {headline.advocates:,}; "
        f"NPS {'n/a' if headline.nps is None else f'{headline.nps:+.0f}'}")
    say(f"  lukewarm share {pct(headline.lukewarm_share)}; word-of-mouth reach at risk "
        f"{'n/a' if headline.word_of_mouth_at_risk is None else f'{headline.word_of_mouth_at_risk:,}'} people")
    say(f"  follow-ups waiting {headline.follow_ups_waiting:,}; testimonials ready {headline.testimonials:,}; "
        f"review requests answered (30 days) {pct(headline.review_request_response_rate_30d)}")
    say(f"  report:          {report}" if report else "  report:          none")
    say(f"  data dictionary: {PROJECT_ROOT / 'docs' / 'data-dictionary.md'}")
    return report
