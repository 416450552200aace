"""Server-side SVG charts for the dashboard: no JavaScript, no chart library, no network.

Every data mark carries its data (``class="point|bar|interval"`` with ``data-series``, ``data-x``,
``data-value``), so a headless browser's DOM dump shows what was drawn. Missing values (None/NaN)
are skipped; a chart without any value says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape

WIDTH, HEIGHT = 400, 230
INTERVAL_WIDTH, INTERVAL_LABEL = 640, 250  # the forest plot is wider: its rows carry labels
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 30, 46
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")
Formatter = Callable[[float], str]


def color_of(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def number(value: float) -> str:
    return f"{value:.3g}"


def percent(value: float) -> str:
    return f"{value:.1%}" if abs(value) < 10 else f"{value:.0%}"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _scale(low: float, high: float, include_zero: bool) -> tuple[float, float]:
    if include_zero:
        low, high = min(low, 0.0), max(high, 0.0)
    pad = (high - low) * 0.08 if high > low else abs(high) * 0.1 or 1.0
    lower = low if include_zero and low == 0 else low - pad
    return (0.0 if low >= 0 > lower else lower), high + pad  # non-negative data keeps a non-negative axis


def _frame(title: str, body: list[str], low: float, high: float, fmt: Formatter, y_of: Callable[[float], float]) -> str:
    grid = []
    for i in range(5):
        value = low + (high - low) * i / 4
        y = y_of(value)
        grid.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>'
                    f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#555">'
                    f"{escape(fmt(value))}</text>")
    return _svg(title, "".join(grid) + "".join(body))


def _svg(title: str, inner: str, css_class: str = "chart", width: int = WIDTH) -> str:
    return (f'<svg class="{css_class}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT}" '
            f'viewBox="0 0 {width} {HEIGHT}" role="img" aria-label="{escape(title)}">'
            f'<text x="{LEFT}" y="18" font-size="14" font-weight="600" fill="#222">{escape(title)}</text>'
            f"{inner}</svg>")


def _empty(title: str) -> str:
    return _svg(title, f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="#888">no data</text>',
                "chart empty")


def _legend(names: Sequence[str]) -> list[str]:
    out, x = [], LEFT
    for i, name in enumerate(names):
        out.append(f'<rect x="{x}" y="{HEIGHT - 16}" width="10" height="10" fill="{color_of(i)}"/>'
                   f'<text x="{x + 14}" y="{HEIGHT - 7}" font-size="11" fill="#333">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return out


def line_chart(title: str, x: Sequence[str], series: Mapping[str, Sequence[float | None]],
               fmt: Formatter = number) -> str:
    """One line per series over the categorical ``x`` (e.g. dates), a marker per value."""
    values = [v for ys in series.values() for v in ys if _finite(v)]
    if not values or not x:
        return _empty(title)
    low, high = _scale(min(values), max(values), include_zero=False)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(1, len(x) - 1)

    def x_of(i: int) -> float:
        return LEFT + plot_w / 2 if len(x) == 1 else LEFT + i * step

    def y_of(v: float) -> float:
        return TOP + plot_h * (1 - (v - low) / (high - low))

    body = []
    every = max(1, math.ceil(len(x) / 7))
    for i, label in enumerate(x):
        if i % every == 0 or i == len(x) - 1:
            body.append(f'<text x="{x_of(i):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" font-size="10" '
                        f'fill="#555">{escape(label[5:] if len(label) == 10 else label)}</text>')
    for s, (name, ys) in enumerate(series.items()):
        color = color_of(s)
        points = [(x_of(i), y_of(v), v, x[i]) for i, v in enumerate(ys) if _finite(v)]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in points)
            body.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        for px, py, v, label in points:
            body.append(f'<circle class="point" cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{color}" '
                        f'data-series="{escape(name)}" data-x="{escape(label)}" data-value="{v!r}">'
                        f"<title>{escape(name)} {escape(label)}: {escape(fmt(v))}</title></circle>")
    return _frame(title, body + _legend(list(series)), low, high, fmt, y_of)


def bar_chart(title: str, groups: Sequence[str], series: Mapping[str, Sequence[float | None]],
              fmt: Formatter = number) -> str:
    """Grouped bars: one group per ``groups`` entry, one bar per series inside it (axis from zero)."""
    values = [v for ys in series.values() for v in ys if _finite(v)]
    if not values or not groups:
        return _empty(title)
    low, high = _scale(min(values), max(values), include_zero=True)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    group_w = plot_w / len(groups)
    bar_w = group_w * 0.8 / max(1, len(series))

    def y_of(v: float) -> float:
        return TOP + plot_h * (1 - (v - low) / (high - low))

    body = []
    for g, group in enumerate(groups):
        body.append(f'<text x="{LEFT + (g + 0.5) * group_w:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" '
                    f'font-size="10" fill="#555">{escape(group)}</text>')
        for s, (name, ys) in enumerate(series.items()):
            v = ys[g]
            if not _finite(v):
                continue
            assert v is not None
            top, base = y_of(max(v, 0.0)), y_of(min(v, 0.0))
            x0 = LEFT + g * group_w + group_w * 0.1 + s * bar_w
            body.append(f'<rect class="bar" x="{x0:.1f}" y="{top:.1f}" width="{bar_w - 1:.1f}" '
                        f'height="{max(base - top, 0.5):.1f}" fill="{color_of(s)}" data-series="{escape(name)}" '
                        f'data-x="{escape(group)}" data-value="{v!r}"><title>{escape(name)} {escape(group)}: '
                        f"{escape(fmt(v))}</title></rect>")
    return _frame(title, body + _legend(list(series)), low, high, fmt, y_of)


def interval_chart(title: str, rows: Sequence[tuple[str, float, float, float]], fmt: Formatter = percent) -> str:
    """A forest plot: per row ``(label, estimate, low, high)`` a horizontal interval around a dot,
    with the zero line (no effect) drawn."""
    rows = [r for r in rows if all(_finite(v) for v in r[1:])]
    if not rows:
        return _empty(title)
    low, high = _scale(min(r[2] for r in rows), max(r[3] for r in rows), include_zero=True)
    label_w, plot_w = INTERVAL_LABEL, INTERVAL_WIDTH - INTERVAL_LABEL - 3 * RIGHT
    row_h = (HEIGHT - TOP - BOTTOM) / len(rows)

    def x_of(v: float) -> float:
        return label_w + plot_w * (v - low) / (high - low)

    body = [f'<line x1="{x_of(0):.1f}" x2="{x_of(0):.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke="#999" '
            f'stroke-dasharray="4 3"/>']
    for i in range(5):
        v = low + (high - low) * i / 4
        body.append(f'<text x="{x_of(v):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="10" '
                    f'fill="#555">{escape(fmt(v))}</text>')
    for i, (label, estimate, lo, hi) in enumerate(rows):
        y = TOP + (i + 0.5) * row_h
        color = "#2ca02c" if lo > 0 else "#d62728" if hi < 0 else "#555"
        body.append(f'<text x="{label_w - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#333">'
                    f"{escape(label)}</text>"
                    f'<g class="interval" data-series="{escape(label)}" data-value="{estimate!r}" data-low="{lo!r}" '
                    f'data-high="{hi!r}"><line x1="{x_of(lo):.1f}" x2="{x_of(hi):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                    f'stroke="{color}" stroke-width="3"/><circle cx="{x_of(estimate):.1f}" cy="{y:.1f}" r="5" '
                    f'fill="{color}"/><title>{escape(label)}: {escape(fmt(estimate))} [{escape(fmt(lo))}, '
                    f"{escape(fmt(hi))}]</title></g>")
    return _svg(title, "".join(body), width=INTERVAL_WIDTH)
