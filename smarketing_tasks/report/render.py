"""The visual report: one self-contained HTML file built from the marts (schema ``marketing``).

No network fetches: styles, charts (inline SVG) and the small self-check script are all inside the file,
so it opens from disk, from a mail attachment, or printed. Times come in as arguments (the run's logical
time), so the same marts give the same file.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from html import escape
from pathlib import Path

import sqlalchemy as sa

from smarketing_tasks.marts.headline import Headline, headline_numbers
from smarketing_tasks.report import charts

FUNNEL_DAYS = 30  # the funnel chart shows outreach_variants' 30-day columns
TOP_PRODUCTS = 12
TOP_FOLLOW_UPS = 10


def report_path(out_dir: Path, as_of: datetime) -> Path:
    return Path(out_dir) / f"smarketing-report-{as_of:%Y-%m-%d}.html"


def write_report(engine: sa.Engine, out_dir: Path, as_of: datetime) -> Path:
    """Render the report from the published marts into ``out_dir``; returns the file's path.

    Written to a temporary file and renamed, so a reader (or a mailer) never picks up half a report.
    """
    path = report_path(out_dir, as_of)
    path.parent.mkdir(parents=True, exist_ok=True)
    html = render_report(engine, as_of)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".report-", suffix=".html")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(html)
    os.chmod(temporary, 0o644)  # mkstemp makes it private; the report is meant to be shared
    os.replace(temporary, path)
    return path


def render_report(engine: sa.Engine, as_of: datetime) -> str:
    headline = headline_numbers(engine)
    if headline is None:
        return _page(as_of, None, [], "", "", "The marts have not (all) been published yet: run the "
                     "smarketing_score DAG or `smarketing publish-marts`.")
    with engine.connect() as conn:
        figures = [
            _score_distribution(conn),
            _segments_over_time(conn),
            _funnel_by_variant(conn),
            _product_feedback(conn),
            _follow_ups_waiting(conn),
        ]
        waiting_table = _waiting_table(conn)
        quotes = _quotes(conn)
    return _page(as_of, headline, figures, waiting_table, quotes, None)


def _score_distribution(conn: sa.Connection) -> charts.Chart:
    counts = dict(conn.execute(sa.text(
        "select least(floor(advocate_score / 10), 9)::int as bucket, count(*) from marketing.advocates "
        "group by 1")).all())
    bins = [(f"{b * 10}–{b * 10 + 10}", counts.get(b, 0)) for b in range(10)]
    palette = ["#b2182b", "#d6604d", "#f4a582", "#fddbc7", "#d9d9d9", "#d9f0d3", "#a6dba0", "#5aae61",
               "#1b7837", "#00441b"]
    return charts.histogram("score-distribution", "Advocate score distribution",
                            "Customers by advocate score (0 = unhappy and inactive, 100 = happy, vocal, valuable), "
                            "from marketing.advocates.", bins, color_of=lambda i: palette[i])


def _segments_over_time(conn: sa.Connection) -> charts.Chart:
    segments = list(charts.SEGMENT_COLORS)
    columns = ", ".join(f"max(segment_{s}) as {s}" for s in segments)
    runs = conn.execute(sa.text(
        f"select scores_taken_on, {columns} from marketing.loop_kpis_daily where scores_taken_on is not null "
        f"group by scores_taken_on order by scores_taken_on desc limit 26")).all()
    data = [(f"{r.scores_taken_on:%m-%d}", {s: getattr(r, s) or 0 for s in segments}) for r in reversed(runs)]
    return charts.stacked_columns("segments-over-time", "Segments over time",
                                  "Customers per segment at each scoring run (up to the last 26 runs), "
                                  "from marketing.loop_kpis_daily.", data, charts.SEGMENT_COLORS,
                                  "No scoring run yet.")


def _funnel_by_variant(conn: sa.Connection) -> charts.Chart:
    variants = conn.execute(sa.text("""
        select kind, channel, template_variant, delivered_30d, responded_30d, response_rate_30d, ci_low_30d,
               ci_high_30d, is_leader, is_clearly_behind, confidence_level
        from marketing.outreach_variants
        where delivered_30d > 0
        order by kind, channel, template_variant limit 24""")).all()
    rows = []
    for v in variants:
        verdict, color = ((" · leads", charts.LEADER) if v.is_leader
                          else (" · clearly behind", charts.BEHIND) if v.is_clearly_behind else ("", charts.ACCENT))
        rows.append((f"{v.kind.replace('_', ' ')} · {v.channel} · {v.template_variant}", v.response_rate_30d,
                     v.ci_low_30d, v.ci_high_30d, f"{v.responded_30d:,} of {v.delivered_30d:,}{verdict}", color))
    confidence = variants[0].confidence_level if variants else 0.95
    return charts.interval_rows("funnel-by-variant", "Response rate by message variant",
                                f"Share of delivered messages answered (review, post or referral) in the last "
                                f"{FUNNEL_DAYS} days, with {confidence:.0%} Wilson intervals: variants whose "
                                "intervals overlap are not proven different yet. Green: the leader of its kind and channel (all time); "
                                "red: clearly behind it. From marketing.outreach_variants.",
                                rows, "No messages delivered in the last 30 days.")


def _product_feedback(conn: sa.Connection) -> charts.Chart:
    products = conn.execute(sa.text("""
        select sku, coalesce(product_name, sku) as name, reviews_count, avg_rating, lukewarm_share
        from marketing.product_feedback where reviews_count > 0
        order by reviews_count desc, sku limit :n"""), {"n": TOP_PRODUCTS}).all()
    rows = []
    for p in products:
        lukewarm = p.lukewarm_share or 0.0
        rows.append((p.name[:32], float(p.avg_rating), 5.0,
                     f"{float(p.avg_rating):.1f}★ · {lukewarm:.0%} lukewarm · {p.reviews_count:,} reviews",
                     "#e08214" if lukewarm >= 0.3 else charts.ACCENT))
    return charts.horizontal_bars("product-feedback", "Product feedback",
                                  f"Average stars of the {TOP_PRODUCTS} most reviewed products; orange bars have "
                                  "30% or more lukewarm answers ('good', 'ok'). From marketing.product_feedback.",
                                  rows, "No product reviews yet.")


def _follow_ups_waiting(conn: sa.Connection) -> charts.Chart:
    waiting = conn.execute(sa.text("""
        select owner_team, priority, count(*) as n from marketing.follow_ups where is_waiting
        group by 1, 2 order by 1, 2""")).all()
    teams: dict[str, dict[str, int]] = {}
    for w in waiting:
        teams.setdefault(w.owner_team, {})[f"priority {w.priority}"] = w.n
    colors = {f"priority {p}": c for p, c in charts.PRIORITY_COLORS.items()}
    return charts.stacked_columns("follow-ups-waiting", "Follow-ups waiting",
                                  "Open and contacted follow-ups per owning team and priority (1 = call first), "
                                  "from marketing.follow_ups.", sorted(teams.items()), colors,
                                  "No follow-up is waiting.")


def _waiting_table(conn: sa.Connection) -> str:
    rows = conn.execute(sa.text("""
        select customer_id, reason, priority, owner_team, days_waiting, review_excerpt
        from marketing.follow_ups where is_waiting
        order by priority, days_waiting desc, customer_id limit :n"""), {"n": TOP_FOLLOW_UPS}).all()
    if not rows:
        return ""
    body = "".join(
        f"<tr><td>{escape(r.customer_id)}</td><td>{escape(r.reason)}</td><td>{r.priority}</td>"
        f"<td>{escape(r.owner_team)}</td><td>{r.days_waiting}</td>"
        f"<td>{escape((r.review_excerpt or '')[:120])}</td></tr>" for r in rows)
    return ("<section><h2>Call first</h2><table><thead><tr><th>customer</th><th>reason</th><th>priority</th>"
            "<th>team</th><th>days waiting</th><th>what they wrote</th></tr></thead>"
            f"<tbody>{body}</tbody></table></section>")


def _quotes(conn: sa.Connection) -> str:
    rows = conn.execute(sa.text("""
        select coalesce(product_name, sku, 'our shop') as product, quote, rating, is_incentivized
        from marketing.testimonials where rank_for_sku = 1
        order by quote_sentiment desc, review_id limit 5""")).all()
    if not rows:
        return ""
    items = "".join(
        f"<li><q>{escape(r.quote)}</q> <span class=\"muted\">— on {escape(r.product)}, {r.rating}★"
        f"{', incentivised: disclose it' if r.is_incentivized else ''}</span></li>" for r in rows)
    return f"<section><h2>Quotes ready to use</h2><ul class=\"quotes\">{items}</ul></section>"


def _tiles(headline: Headline) -> str:
    def pct(value: float | None) -> str:
        return "–" if value is None else f"{value:.0%}"

    tiles = [
        ("Customers scored", f"{headline.customers_scored:,}"),
        ("NPS", "–" if headline.nps is None else f"{headline.nps:+.0f}"),
        ("Champions & advocates", f"{headline.advocates:,}"),
        ("Lukewarm share", pct(headline.lukewarm_share)),
        ("Word-of-mouth reach at risk", "–" if headline.word_of_mouth_at_risk is None
         else f"{headline.word_of_mouth_at_risk:,} people"),
        ("Follow-ups waiting", f"{headline.follow_ups_waiting:,}"),
        ("Review requests answered (30 days)", pct(headline.review_request_response_rate_30d)),
        ("Testimonials ready", f"{headline.testimonials:,}"),
    ]
    return '<section class="tiles">' + "".join(
        f'<div class="tile"><div class="value">{escape(v)}</div><div class="label">{escape(k)}</div></div>'
        for k, v in tiles) + "</section>"


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 24px auto;
       max-width: 780px; padding: 0 16px; }
h1 { margin-bottom: 0; } h2 { font-size: 1.1em; margin: 0 0 8px; }
.muted, figcaption { color: #666; font-size: 0.85em; }
.tiles { display: grid; grid-template-columns: repeat(4, 1fr); gap: 8px; margin: 16px 0; }
.tile { border: 1px solid #ddd; border-radius: 6px; padding: 8px; }
.tile .value { font-size: 1.4em; font-weight: 600; } .tile .label { font-size: 0.8em; color: #555; }
figure.chart { margin: 24px 0; } figure svg { max-width: 100%; height: auto; }
p.empty { color: #888; font-style: italic; }
table { border-collapse: collapse; width: 100%; font-size: 0.85em; }
th, td { border-bottom: 1px solid #eee; padding: 4px 6px; text-align: left; vertical-align: top; }
ul.quotes li { margin-bottom: 6px; }
section { margin: 24px 0; }
"""

# Runs in a browser only: counts the chart marks that have a size, so a headless browser (and the tests)
# can tell that every chart drew. The report reads the same without it.
SELF_CHECK = """
window.addEventListener('load', function () {
  var complete = 0;
  document.querySelectorAll('figure.chart').forEach(function (figure) {
    var drawn = 0;
    figure.querySelectorAll('.mark').forEach(function (mark) {
      var box = mark.getBoundingClientRect();
      if (box.width > 0 || box.height > 0) { drawn += 1; }
    });
    figure.setAttribute('data-drawn', String(drawn));
    if (drawn > 0 && drawn === Number(figure.getAttribute('data-marks'))) { complete += 1; }
  });
  document.body.setAttribute('data-charts-drawn', String(complete));
});
"""


def _page(as_of: datetime, headline: Headline | None, figures: list[charts.Chart], waiting_table: str,
          quotes: str, notice: str | None) -> str:
    built_for = headline.as_of if headline and headline.as_of else f"{as_of:%Y-%m-%d %H:%M}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>smarketing-loop report {as_of:%Y-%m-%d}</title><style>{STYLE}</style></head>",
        f'<body data-charts="{len(figures)}">',
        "<h1>What customers say, and what to do next</h1>",
        f'<p class="muted">smarketing-loop report for {escape(built_for)} UTC, from the marts in schema '
        "marketing (column meanings: docs/data-dictionary.md).</p>",
    ]
    if notice:
        parts.append(f'<p class="empty">{escape(notice)}</p>')
    if headline:
        parts.append(_tiles(headline))
    parts += [f.html() for f in figures]
    parts += [waiting_table, quotes, f"<script>{SELF_CHECK}</script>", "</body></html>"]
    return "\n".join(p for p in parts if p) + "\n"
