"""Headline numbers from the published marts, for the demo's summary and the top of the report."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import sqlalchemy as sa

_AS_OF = re.compile(r"Data as of (\d{4}-\d{2}-\d{2} \d{2}:\d{2}) UTC")


@dataclass(frozen=True)
class Headline:
    as_of: str | None  # when the marts were built for ("YYYY-MM-DD HH:MM" UTC)
    customers_scored: int
    advocates: int  # champions and advocates
    lukewarm: int
    detractors: int
    nps: float | None
    lukewarm_share: float | None
    word_of_mouth_at_risk: int | None
    follow_ups_waiting: int
    testimonials: int
    review_requests_delivered_30d: int
    review_request_response_rate_30d: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def marts_published(engine: sa.Engine) -> bool:
    """True when every mart of the catalog exists in schema marketing (an older code version may lack some)."""
    from smarketing_tasks.marts.catalog import load_catalog

    names = [mart.name for mart in load_catalog()]
    with engine.connect() as conn:
        missing = conn.execute(sa.text(
            "select count(*) from unnest(cast(:names as text[])) as name "
            "where to_regclass('marketing.' || name) is null"), {"names": names}).scalar()
    return missing == 0


def headline_numbers(engine: sa.Engine) -> Headline | None:
    """The numbers a marketer wants first; None when no marts have been published yet."""
    if not marts_published(engine):
        return None
    with engine.connect() as conn:
        comment = conn.execute(sa.text("select obj_description('marketing.advocates'::regclass, 'pg_class')")).scalar()
        people = conn.execute(sa.text("""
            select count(*) as scored,
                   count(*) filter (where segment in ('champion', 'advocate')) as advocates,
                   count(*) filter (where is_lukewarm) as lukewarm,
                   count(*) filter (where nps_class = 'promoter') as promoters,
                   count(*) filter (where nps_class = 'passive') as passives,
                   count(*) filter (where nps_class = 'detractor') as detractors
            from marketing.advocates""")).one()
        at_risk = conn.execute(sa.text(
            "select word_of_mouth_at_risk from marketing.loop_kpis_daily where scores_taken_on is not null "
            "order by day desc limit 1")).scalar()
        waiting = conn.execute(sa.text("select count(*) from marketing.follow_ups where is_waiting")).scalar()
        testimonials = conn.execute(sa.text("select count(*) from marketing.testimonials")).scalar()
        delivered, responded = conn.execute(sa.text("""
            select coalesce(sum(delivered), 0), coalesce(sum(responded), 0) from marketing.outreach_funnel
            where kind = 'review_request'
              and day > (select max(day) from marketing.outreach_funnel) - 30""")).one()
    classified = people.promoters + people.passives + people.detractors
    match = _AS_OF.search(comment or "")
    return Headline(
        as_of=match.group(1) if match else None,
        customers_scored=people.scored, advocates=people.advocates, lukewarm=people.lukewarm,
        detractors=people.detractors,
        nps=round(100 * (people.promoters - people.detractors) / classified, 1) if classified else None,
        lukewarm_share=people.lukewarm / classified if classified else None,
        word_of_mouth_at_risk=at_risk, follow_ups_waiting=waiting, testimonials=testimonials,
        review_requests_delivered_30d=int(delivered),
        review_request_response_rate_30d=int(responded) / int(delivered) if delivered else None,
    )
