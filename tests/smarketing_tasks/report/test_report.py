"""The visual report: rendered in headless Chromium (Debian's ``chromium``), every chart must have drawn all
its marks; the file is self-contained, deterministic, free of contact data, and fine with empty marts."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from smarketing_tasks.marts import publish_marts
from smarketing_tasks.report import render_report, write_report
from tests.smarketing_tasks.marts.known_data import AS_OF, CONTACTS, load_known_data

CHROMIUM = Path(os.environ.get("SMARKETING_CHROMIUM", "/usr/bin/chromium"))
CHARTS = ("score-distribution", "segments-over-time", "funnel-by-variant", "product-feedback", "follow-ups-waiting")


def dump_dom_after_scripts(page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran, from a real headless Chromium with a fresh profile."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the report test renders in headless Chromium. Install it with "
                    "`apt-get update && apt-get install -y chromium` (Debian), or set SMARKETING_CHROMIUM.")
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
               "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def figure_attributes(dom: str) -> dict[str, dict[str, str]]:
    figures = {}
    for tag in re.findall(r"<figure [^>]*>", dom):
        attributes = dict(re.findall(r'([\w-]+)="([^"]*)"', tag))
        figures[attributes["id"]] = attributes
    return figures


@pytest.fixture
def report(warehouse: sa.Engine, tmp_path: Path) -> tuple[sa.Engine, Path]:
    load_known_data(warehouse)
    publish_marts(warehouse, AS_OF)
    return warehouse, write_report(warehouse, tmp_path / "reports", AS_OF)


def expected_marks(engine: sa.Engine) -> dict[str, int]:
    """How many marks each chart must draw, counted from the marts independently of the report code."""
    with engine.connect() as conn:
        def scalar(sql: str) -> int:
            return int(conn.execute(sa.text(sql)).scalar())

        segments = " + ".join(f"(max(segment_{s}) > 0)::int" for s in
                              ("champion", "advocate", "promising", "lukewarm", "at_risk", "detractor", "silent"))
        return {
            "score-distribution": scalar("select count(distinct least(floor(advocate_score / 10), 9)) "
                                         "from marketing.advocates"),
            "segments-over-time": scalar(f"select coalesce(sum(cells), 0) from (select {segments} as cells "
                                         "from marketing.loop_kpis_daily where scores_taken_on is not null "
                                         "group by scores_taken_on) as runs"),
            "funnel-by-variant": 2 * scalar("select count(*) from (select 1 from marketing.outreach_funnel "
                                            "where day > date '2026-11-22' - 30 "
                                            "group by kind, channel, template_variant having sum(delivered) > 0) v"),
            "product-feedback": scalar("select count(*) from marketing.product_feedback where reviews_count > 0"),
            "follow-ups-waiting": scalar("select count(distinct (owner_team, priority)) from marketing.follow_ups "
                                         "where is_waiting"),
        }


def test_every_chart_draws_all_its_marks_in_headless_chromium(report, tmp_path):
    engine, page = report
    dom = dump_dom_after_scripts(page, tmp_path / "chromium-profile")
    assert re.search(r'<body[^>]*data-charts-drawn="5"', dom), "the page's self-check did not see 5 charts drawn"
    figures = figure_attributes(dom)
    expected = expected_marks(engine)
    assert set(figures) == set(CHARTS)
    for chart in CHARTS:
        assert int(figures[chart]["data-marks"]) == expected[chart] > 0, chart
        assert figures[chart]["data-drawn"] == figures[chart]["data-marks"], chart
    assert "“Excellent quality and great fit”" in dom or "Excellent quality and great fit" in dom


def test_the_report_is_self_contained_deterministic_and_free_of_contact_data(report):
    engine, page = report
    html = page.read_text()
    assert page.name == "smarketing-report-2026-11-22.html" and page.parent.name == "reports"
    assert stat.S_IMODE(page.stat().st_mode) == 0o644
    for fetch in ("http://", "https://", "src=", "<link", "@import", "url("):
        assert fetch not in html, f"the report would fetch something: {fetch}"
    for _, email, _, phone in CONTACTS:
        assert email not in html and phone not in html
    assert "@" not in html
    assert render_report(engine, AS_OF) == html  # same marts, same file: nothing depends on the wall clock
    assert "156 people" in html  # word-of-mouth reach at risk: 3 unhappy customers x 52


def test_empty_marts_give_a_report_with_explanations_instead_of_charts(warehouse, tmp_path):
    before_publishing = render_report(warehouse, AS_OF)
    assert "have not (all) been published yet" in before_publishing and "<figure" not in before_publishing
    publish_marts(warehouse, AS_OF)
    page = write_report(warehouse, tmp_path, AS_OF)
    figures = figure_attributes(page.read_text())
    assert set(figures) == set(CHARTS) and all(f["data-marks"] == "0" for f in figures.values())
    assert "No scored customers yet." in page.read_text() and "No follow-up is waiting." in page.read_text()



def test_text_from_the_shop_and_customers_is_escaped(warehouse, tmp_path):
    load_known_data(warehouse)
    with warehouse.begin() as conn:
        conn.execute(sa.text("update smarketing.order_items set product_name = '<script>alert(1)</script> Jacket' "
                             "where sku = 'SKU-A'"))
        conn.execute(sa.text("update smarketing.follow_ups set review_excerpt = '<img src=x onerror=alert(2)>' "
                             "where customer_id = 'c2'"))
    publish_marts(warehouse, AS_OF)
    html = write_report(warehouse, tmp_path, AS_OF).read_text()
    assert "<script>alert" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Jacket" in html and "&lt;img src=x onerror=alert(2)&gt;" in html
