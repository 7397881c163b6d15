"""Inline SVG charts: small, dependency-free, readable without JavaScript (in a browser, a mail attachment,
or printed). Every data mark carries class ``mark`` and a ``<title>`` tooltip; the figure states how many
marks it holds (``data-marks``) so a headless browser can check they all drew."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 720
FONT = 12
SEGMENT_COLORS = {
    "champion": "#1b7837", "advocate": "#5aae61", "promising": "#a6dba0", "lukewarm": "#fdb863",
    "at_risk": "#e08214", "detractor": "#b2182b", "silent": "#bababa",
}
PRIORITY_COLORS = {1: "#b2182b", 2: "#ef8a62", 3: "#fddbc7", 4: "#d1e5f0", 5: "#67a9cf"}
ACCENT = "#2166ac"
LEADER = "#1b7837"
BEHIND = "#b2182b"


@dataclass(frozen=True)
class Chart:
    chart_id: str
    title: str
    caption: str
    svg: str  # empty when there is nothing to draw
    marks: int
    empty_text: str = "No data yet."

    def html(self) -> str:
        body = self.svg if self.marks else f'<p class="empty">{escape(self.empty_text)}</p>'
        return (f'<figure class="chart" id="{self.chart_id}" data-marks="{self.marks}">'
                f"<h2>{escape(self.title)}</h2>{body}<figcaption>{escape(self.caption)}</figcaption></figure>")


def _svg(height: int, content: list[str], label: str) -> str:
    return (f'<svg viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" '
            f'aria-label="{escape(label)}" font-family="system-ui, sans-serif" font-size="{FONT}">'
            + "".join(content) + "</svg>")


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {extra}>{escape(text)}</text>'


def _rect(x: float, y: float, w: float, h: float, color: str, tip: str) -> str:
    return (f'<rect class="mark" x="{x:.1f}" y="{y:.1f}" width="{max(w, 0.5):.1f}" height="{max(h, 0.5):.1f}" '
            f'fill="{color}"><title>{escape(tip)}</title></rect>')


def histogram(chart_id: str, title: str, caption: str, bins: Sequence[tuple[str, int]], color_of=None) -> Chart:
    """Vertical bars: ``bins`` are (label, count) in order."""
    if not any(n for _, n in bins):
        return Chart(chart_id, title, caption, "", 0, "No scored customers yet.")
    height, top, bottom, left = 260, 20, 40, 50
    peak = max(n for _, n in bins)
    slot = (WIDTH - left - 10) / len(bins)
    content = [_text(left - 8, top + 4, f"{peak:,}", "end"), _text(left - 8, height - bottom, "0", "end"),
               f'<line x1="{left}" y1="{height - bottom}" x2="{WIDTH - 10}" y2="{height - bottom}" stroke="#555"/>']
    marks = 0
    for i, (label, count) in enumerate(bins):
        x = left + i * slot + 3
        bar = (height - top - bottom) * count / peak
        color = color_of(i) if color_of else ACCENT
        if count:
            content.append(_rect(x, height - bottom - bar, slot - 6, bar, color, f"{label}: {count:,} customers"))
            content.append(_text(x + (slot - 6) / 2, height - bottom - bar - 4, f"{count:,}", "middle"))
            marks += 1
        content.append(_text(x + (slot - 6) / 2, height - bottom + 16, label, "middle"))
    return Chart(chart_id, title, caption, _svg(height, content, title), marks)


def stacked_columns(chart_id: str, title: str, caption: str, columns: Sequence[tuple[str, dict[str, int]]],
                    colors: dict[str, str], empty_text: str) -> Chart:
    """One column per label, stacked by category (``colors`` orders the categories), with a legend."""
    if not columns or not any(sum(v.values()) for _, v in columns):
        return Chart(chart_id, title, caption, "", 0, empty_text)
    height, top, bottom, left = 300, 40, 50, 50
    peak = max(sum(v.values()) for _, v in columns)
    slot = (WIDTH - left - 10) / len(columns)
    content = [_text(left - 8, top + 4, f"{peak:,}", "end"), _text(left - 8, height - bottom, "0", "end")]
    for i, (name, color) in enumerate(colors.items()):
        x = left + i * ((WIDTH - left) / len(colors))
        content.append(f'<rect x="{x:.1f}" y="8" width="10" height="10" fill="{color}"/>')
        content.append(_text(x + 14, 17, str(name)))
    marks = 0
    every = max(1, len(columns) // 10)
    for i, (label, values) in enumerate(columns):
        x = left + i * slot + 2
        y = height - bottom
        for category, color in colors.items():
            count = values.get(category, 0)
            if not count:
                continue
            bar = (height - top - bottom) * count / peak
            y -= bar
            content.append(_rect(x, y, max(slot - 4, 1), bar, color, f"{label} · {category}: {count:,}"))
            marks += 1
        if i % every == 0 or i == len(columns) - 1:
            content.append(_text(x + slot / 2, height - bottom + 16, label, "middle"))
    return Chart(chart_id, title, caption, _svg(height, content, title), marks)


def interval_rows(chart_id: str, title: str, caption: str,
                  rows: Sequence[tuple[str, float, float, float, str, str]], empty_text: str) -> Chart:
    """One row per item: a dot at the rate and a line across its confidence interval (0-100 % axis).

    ``rows`` are (label, rate, low, high, note, color)."""
    if not rows:
        return Chart(chart_id, title, caption, "", 0, empty_text)
    left, right, row_height, top = 210, 190, 26, 30
    height = top + row_height * len(rows) + 30
    span = WIDTH - left - right

    def x_of(share: float) -> float:
        return left + span * share

    content = []
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        content.append(f'<line x1="{x_of(tick):.1f}" y1="{top - 8}" x2="{x_of(tick):.1f}" '
                       f'y2="{height - 24}" stroke="#ddd"/>')
        content.append(_text(x_of(tick), height - 8, f"{tick:.0%}", "middle"))
    marks = 0
    for i, (label, rate, low, high, note, color) in enumerate(rows):
        y = top + i * row_height + row_height / 2
        tip = f"{label}: {rate:.1%} (interval {low:.1%}–{high:.1%}), {note}"
        content.append(_text(left - 10, y + 4, label, "end"))
        content.append(f'<line class="mark" x1="{x_of(low):.1f}" y1="{y:.1f}" x2="{x_of(high):.1f}" y2="{y:.1f}" '
                       f'stroke="{color}" stroke-width="3"><title>{escape(tip)}</title></line>')
        content.append(f'<circle class="mark" cx="{x_of(rate):.1f}" cy="{y:.1f}" r="5" fill="#fff" '
                       f'stroke="{color}" stroke-width="2"><title>{escape(tip)}</title></circle>')
        content.append(_text(WIDTH - right + 8, y + 4, note))
        marks += 2
    return Chart(chart_id, title, caption, _svg(height, content, title), marks)


def horizontal_bars(chart_id: str, title: str, caption: str, rows: Sequence[tuple[str, float, float, str, str]],
                    empty_text: str) -> Chart:
    """One bar per item, ``rows`` = (label, value, scale_max, note, color)."""
    if not rows:
        return Chart(chart_id, title, caption, "", 0, empty_text)
    left, right, row_height, top = 220, 230, 24, 10
    height = top + row_height * len(rows) + 10
    span = WIDTH - left - right
    content = []
    for i, (label, value, scale_max, note, color) in enumerate(rows):
        y = top + i * row_height
        content.append(_text(left - 10, y + 15, label, "end"))
        content.append(_rect(left, y + 4, span * value / scale_max if scale_max else 0, row_height - 8, color,
                             f"{label}: {note}"))
        content.append(_text(left + span + 8, y + 15, note))
    return Chart(chart_id, title, caption, _svg(height, content, title), len(rows))
