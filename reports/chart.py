"""Test-time compute charts: accuracy against mean completion tokens per request, one chart per task.

Each run is a point (circle SeRe, square PaCoRe) with its 95% CI as a vertical bar; the points of
one model are joined in token order, so SeRe -> PaCoRe -> wider PaCoRe reads as a curve. Only
geometry is computed here; the template draws the SVG (and escapes every label).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

WIDTH, HEIGHT = 420, 260
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 14, 40
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


@dataclass
class PointIn:
    series: str  # points of one series are joined (one model)
    label: str
    mode: str
    tokens: float
    value: float  # percent
    lo: float
    hi: float


@dataclass
class Point:
    px: float
    py: float
    lo_py: float
    hi_py: float
    color: str
    square: bool
    label: str
    title: str


@dataclass
class Chart:
    title: str
    width: int = WIDTH
    height: int = HEIGHT
    points: list[Point] = field(default_factory=list)
    lines: list[tuple[str, str]] = field(default_factory=list)  # (svg points, color)
    xticks: list[tuple[float, str]] = field(default_factory=list)
    yticks: list[tuple[float, str]] = field(default_factory=list)
    xlabel: str = "mean completion tokens per request"
    legend: list[tuple[str, str]] = field(default_factory=list)  # (series, color)


def nice_step(span: float, count: int = 5) -> float:
    raw = span / count if span > 0 else 1.0
    power = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * power:
            return mult * power
    return 10 * power


def linear_ticks(lo: float, hi: float) -> list[float]:
    step = nice_step(hi - lo)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def tick_text(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def y_range(points: list[PointIn]) -> tuple[float, float]:
    lo = min(p.lo for p in points)
    hi = max(p.hi for p in points)
    pad = max(2.0, (hi - lo) * 0.1)
    return max(0.0, lo - pad), min(100.0, hi + pad)


def x_scale(points: list[PointIn]) -> tuple[bool, float, float]:
    """(log scale?, lo, hi) of the token axis; log only when the range spans more than 20x."""
    xs = [p.tokens for p in points]
    if min(xs) > 0 and max(xs) / min(xs) > 20:
        return True, math.log10(min(xs)) - 0.1, math.log10(max(xs)) + 0.1
    lo, hi = 0.0, max(xs) * 1.1 if max(xs) > 0 else 1.0
    return False, lo, hi


def build_chart(title: str, points: list[PointIn]) -> Chart:
    chart = Chart(title)
    if not points:
        return chart
    log, xlo, xhi = x_scale(points)
    ylo, yhi = y_range(points)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(tokens: float) -> float:
        x = math.log10(tokens) if log else tokens
        return round(LEFT + (x - xlo) / (xhi - xlo) * plot_w, 1)

    def py(value: float) -> float:
        return round(TOP + (yhi - value) / (yhi - ylo) * plot_h, 1)

    colors: dict[str, str] = {}
    for p in points:
        colors.setdefault(p.series, PALETTE[len(colors) % len(PALETTE)])
    for p in points:
        chart.points.append(Point(px(p.tokens), py(p.value), py(p.lo), py(p.hi), colors[p.series], p.mode == "pacore",
                                  p.label, f"{p.label}: {p.value:.2f}% at {p.tokens:,.0f} tokens/request"))
    for series, color in colors.items():
        mine = sorted((p for p in points if p.series == series), key=lambda p: p.tokens)
        if len(mine) > 1:
            chart.lines.append((" ".join(f"{px(p.tokens)},{py(p.value)}" for p in mine), color))
    chart.legend = list(colors.items())
    if log:
        ticks = [10 ** e for e in range(math.ceil(xlo), math.floor(xhi) + 1)]
        chart.xticks = [(px(t), tick_text(t)) for t in ticks]
        chart.xlabel += " (log scale)"
    else:
        chart.xticks = [(px(t), tick_text(t)) for t in linear_ticks(xlo, xhi)]
    chart.yticks = [(py(t), f"{t:g}") for t in linear_ticks(ylo, yhi)]
    return chart
