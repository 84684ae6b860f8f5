"""Small server-side SVG charts fed by the stats functions.

Each chart is a ``<figure>``: an ``<svg role="img">`` with a title, axis labels (the y-axis
maximum and zero, the first and last day), a legend, and a data table beside it for screen
readers and for anyone who wants the exact numbers. Values are escaped; nothing runs in
the browser. Hand-written because a chart library would mean a front-end build or a CDN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

__all__ = ["PALETTE", "STATUS_COLORS", "Chart", "bar_chart", "line_chart"]

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")
STATUS_COLORS = {
    "succeeded": "#16a34a",
    "failed": "#dc2626",
    "queued": "#93c5fd",
    "running": "#2563eb",
    "canceled": "#9ca3af",
}
WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 16, 36


@dataclass(frozen=True)
class Chart:
    """A chart's inputs: x labels (days) and named series of the same length."""

    key: str
    title: str
    labels: Sequence[str]
    series: Mapping[str, Sequence[float]]
    unit: str = ""
    #: Fixed colours for known series names (e.g. failed = red); others take the palette.
    colors: Mapping[str, str] | None = None

    def color(self, index: int, name: str) -> str:
        if self.colors and name in self.colors:
            return self.colors[name]
        return PALETTE[index % len(PALETTE)]


def _fmt(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.1f}%"
    if abs(value - round(value)) < 1e-9:
        text = f"{round(value):,}"
    else:
        text = f"{value:,.1f}"
    return f"{text} {unit}".rstrip()


def _tick(value: float, unit: str) -> str:
    """A short axis label (1.5k, 2M); the exact figures are in the table."""
    suffix = "%" if unit == "%" else ""
    for size, letter in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{letter}{suffix}"
    return f"{value:.3g}{suffix}"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(value)


def _frame(chart: Chart, top: float, body: str) -> str:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    title_id = f"chart-{chart.key}-title"
    labels = chart.labels
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{title_id}" preserveAspectRatio="xMidYMid meet" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{title_id}">{escape(chart.title)}</title>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" '
        f'y2="{TOP + plot_h}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}"/>',
        f'<line class="grid" x1="{LEFT}" y1="{TOP}" x2="{LEFT + plot_w}" y2="{TOP}"/>',
        f'<text class="tick" x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">'
        f"{escape(_tick(top, chart.unit))}</text>",
        f'<text class="tick" x="{LEFT - 6}" y="{TOP + plot_h + 4}" text-anchor="end">0</text>',
    ]
    if chart.unit and chart.unit != "%":
        parts.append(
            f'<text class="tick unit" x="{LEFT + 6}" y="{TOP + 12}" text-anchor="start">'
            f"{escape(chart.unit)}</text>"
        )
    if labels:
        parts.append(
            f'<text class="tick" x="{LEFT}" y="{HEIGHT - 12}" text-anchor="start">'
            f"{escape(labels[0])}</text>"
        )
        if len(labels) > 1:
            parts.append(
                f'<text class="tick" x="{LEFT + plot_w}" y="{HEIGHT - 12}" text-anchor="end">'
                f"{escape(labels[-1])}</text>"
            )
    parts.append(body)
    parts.append("</svg>")
    return "".join(parts)


def _legend(chart: Chart) -> str:
    items = "".join(
        # An SVG swatch: the console's CSP allows no inline style attributes.
        f'<li><svg class="swatch" viewBox="0 0 10 10" aria-hidden="true">'
        f'<rect width="10" height="10" rx="2" fill="{chart.color(i, name)}"/></svg>'
        f"{escape(name)}</li>"
        for i, name in enumerate(chart.series)
    )
    return f'<ul class="legend">{items}</ul>'


def _table(chart: Chart) -> str:
    head = "".join(f'<th scope="col">{escape(name)}</th>' for name in chart.series)
    rows = []
    for i, label in enumerate(chart.labels):
        cells = "".join(
            f'<td class="num">{escape(_fmt(values[i], chart.unit))}</td>'
            for values in chart.series.values()
        )
        rows.append(f'<tr><th scope="row">{escape(label)}</th>{cells}</tr>')
    return (
        f'<details class="chart-data"><summary>Data</summary><div class="table-wrap">'
        f'<table><caption>{escape(chart.title)}</caption><thead><tr><th scope="col">Day</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></details>"
    )


def _figure(chart: Chart, svg: str) -> Markup:
    return Markup(  # noqa: S704 - every value inside was escaped above
        f'<figure class="chart-figure" id="chart-{escape(chart.key)}">'
        f"<figcaption>{escape(chart.title)}</figcaption>{svg}{_legend(chart)}{_table(chart)}"
        "</figure>"
    )


def _empty(chart: Chart) -> bool:
    return not chart.labels or not chart.series


def line_chart(chart: Chart) -> Markup:
    """One polyline per series; a single day shows as dots."""
    if _empty(chart):
        return _figure(chart, '<p class="muted">No data yet.</p>')
    top = _nice_max(max((max(v, default=0) for v in chart.series.values()), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = len(chart.labels)
    step = plot_w / (n - 1) if n > 1 else 0
    body = []
    for i, (name, values) in enumerate(chart.series.items()):
        color = chart.color(i, name)
        points = [
            (LEFT + (j * step if n > 1 else plot_w / 2), TOP + plot_h - (v / top) * plot_h)
            for j, v in enumerate(values)
        ]
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        body.append(
            f'<polyline class="series" data-series="{escape(name)}" fill="none" '
            f'stroke="{color}" stroke-width="2" points="{coords}"/>'
        )
        body.extend(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>' for x, y in points
        )
    return _figure(chart, _frame(chart, top, "".join(body)))


def bar_chart(chart: Chart) -> Markup:
    """Stacked bars per day, one colour per series."""
    if _empty(chart):
        return _figure(chart, '<p class="muted">No data yet.</p>')
    n = len(chart.labels)
    totals = [sum(values[j] for values in chart.series.values()) for j in range(n)]
    top = _nice_max(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / n
    bar_w = max(2.0, slot * 0.7)
    body = []
    for j in range(n):
        base = float(TOP + plot_h)
        for i, (name, values) in enumerate(chart.series.items()):
            value = values[j]
            if value <= 0:
                continue
            h = (value / top) * plot_h
            base -= h
            body.append(
                f'<rect class="bar" x="{LEFT + j * slot + (slot - bar_w) / 2:.1f}" '
                f'y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{chart.color(i, name)}"><title>{escape(chart.labels[j])} '
                f"{escape(name)}: {escape(_fmt(value, chart.unit))}</title></rect>"
            )
    return _figure(chart, _frame(chart, top, "".join(body)))
