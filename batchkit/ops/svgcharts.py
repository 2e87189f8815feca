"""Hand-written SVG charts for run reports: worker lanes (a Gantt chart), time series, a histogram
and a bar chart, over the time axis of :mod:`batchkit.ops.svgaxis`. Each returns one SVG string.

Why hand-written SVG and not a charting library: a report must be one file that opens offline and
can be mailed. Inline SVG needs no script at all, so the page can forbid every script and every
request in its Content-Security-Policy, and it renders alike in a browser, in Jupyter and in a
mail client that shows HTML; hovering a shape shows its ``<title>`` as a tooltip without code.
What we draw is rectangles, paths and text on linear or log axes — a few hundred lines — where the
smallest library worth inlining (uPlot, ~50 kB; Chart.js, ~200 kB) needs JavaScript and the data as
JSON, and matplotlib would be a heavy dependency for a picture without tooltips.

Every text that reaches the SVG goes through :func:`esc`. Shapes carry a class (the report's
stylesheet restyles them, e.g. in dark mode) and presentation attributes (what Jupyter shows,
where the report's stylesheet is absent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .svgaxis import COLORS, FONT, TimeAxis, esc, fmt_clock, fmt_num, fmt_seconds, nice_step

__all__ = ["COLORS", "Bar", "Column", "Lane", "Marker", "Series", "TimeAxis", "bar_chart", "esc", "fmt_clock",
           "fmt_num", "fmt_seconds", "gantt", "histogram", "linear_edges", "log_edges", "time_series"]


_DEFS = ('<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
         'patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="#c4c8cc" stroke-width="2"/>'
         '</pattern></defs>')


def _svg(width: float, height: float, body: str, label: str, cls: str = "chart") -> str:
    return (f'<svg class="{cls}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="{width:.0f}" height="{height:.0f}" role="img" aria-label="{esc(label)}" '
            f'style="max-width:100%;height:auto" font-family="system-ui, sans-serif">{_DEFS}{body}</svg>')


@dataclass
class Bar:
    """One bar in a lane: from ``t0`` to ``t1``, a class (``ok``, ``rerun``, ...), a tooltip, and
    ``stripe``: the share of it drawn in the failure colour (failed items)."""
    t0: float
    t1: float
    cls: str
    title: str
    stripe: float = 0.0
    outline: bool = False  # drawn with a dark outline (a straggler)


@dataclass
class Lane:
    """One row of the Gantt chart: a label, its tooltip, its bars and marks (``(t, title)``: a
    new worker process took over the row)."""
    label: str
    title: str
    bars: list[Bar] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class Marker:
    """An event drawn on the events strip above the lanes: ``kind`` picks its colour and shape."""
    t: float
    kind: str
    title: str


def _coalesce(bars: list[Bar], axis: TimeAxis, noun: str) -> list[Bar]:
    """Bars thinner than a pixel, next to each other, become one bar (a run of a million tiny
    chunks draws a few thousand shapes, not a million); its tooltip says how many it holds."""
    out: list[Bar] = []
    count = 1
    for bar in sorted(bars, key=lambda b: b.t0):
        if out:
            prev = out[-1]
            if (prev.cls == bar.cls and not prev.outline and not bar.outline
                    and axis.x(bar.t0) - axis.x(prev.t1) < 0.5 and axis.x(bar.t1) - axis.x(prev.t0) < 3):
                count += 1
                span = bar.t1 - prev.t0
                merged = Bar(prev.t0, max(prev.t1, bar.t1), prev.cls,
                             f"{count} {noun}, {fmt_clock(prev.t0)} to {fmt_clock(bar.t1)} ({fmt_seconds(span)})",
                             max(prev.stripe, bar.stripe))
                out[-1] = merged
                continue
        count = 1
        out.append(bar)
    return out


def gantt(lanes: list[Lane], axis: TimeAxis, markers: list[Marker], *, width: float, lane_height: float = 14.0,
          label_width: float = 120.0, noun: str = "chunks", compact: bool = False) -> str:
    """Worker lanes over ``axis`` with their bars, restart marks and an events strip on top."""
    strip = 14.0 if markers else 0.0
    top = (16.0 if not compact else 4.0) + strip
    height = top + lane_height * len(lanes) + (22.0 if not compact else 16.0)
    body = [axis.draw(top - strip, top + lane_height * len(lanes), captions=not compact)]
    pad = 1.0 if lane_height >= 6 else 0.0
    for i, lane in enumerate(lanes):
        y = top + i * lane_height
        if i % 2:
            body.append(f'<rect class="band" x="{axis.left:.1f}" y="{y:.1f}" width="{axis.right - axis.left:.1f}" '
                        f'height="{lane_height:.1f}" fill="#f6f7f9"/>')
        if not compact or lane_height >= 9:
            body.append(f'<text class="lab" x="{axis.left - 6:.1f}" y="{y + lane_height / 2 + 4:.1f}" '
                        f'text-anchor="end" font-size="{min(FONT, lane_height):.0f}" fill="{COLORS["axis"]}">'
                        f'<title>{esc(lane.title)}</title>{esc(lane.label)}</text>')
        h = lane_height - 2 * pad
        for bar in _coalesce(lane.bars, axis, noun):
            x0, x1 = axis.x(bar.t0), axis.x(bar.t1)
            w = max(0.8, x1 - x0)
            color = COLORS.get(bar.cls, COLORS["ok"])
            outline = f' stroke="{COLORS["slow"]}" stroke-width="1.5"' if bar.outline else ""
            cls = bar.cls + (" slow" if bar.outline else "")
            shape = (f'<rect class="{cls}" x="{x0:.1f}" y="{y + pad:.1f}" width="{w:.1f}" height="{h:.1f}" '
                     f'fill="{color}"{outline}/>')
            if bar.stripe > 0:  # a base as tall as the failed share, never thinner than 3 px
                sh = min(h, max(3.0, h * bar.stripe))
                shape += (f'<rect class="fail" x="{x0:.1f}" y="{y + pad + h - sh:.1f}" width="{w:.1f}" '
                          f'height="{sh:.1f}" fill="{COLORS["fail"]}"/>')
            body.append(f'<g><title>{esc(bar.title)}</title>{shape}</g>')
        for t, title in lane.marks:
            x = axis.x(t)
            body.append(f'<g class="restart"><title>{esc(title)}</title><line x1="{x:.1f}" x2="{x:.1f}" '
                        f'y1="{y - 1:.1f}" y2="{y + lane_height + 1:.1f}" stroke="{COLORS["restart"]}" '
                        f'stroke-width="1.5"/><path d="M{x:.1f} {y - 1:.1f} l4 -3 v6 z" '
                        f'fill="{COLORS["restart"]}"/></g>')
    if markers:
        body.append(f'<text class="lab" x="{axis.left - 6:.1f}" y="{top - strip / 2 + 4:.1f}" text-anchor="end" '
                    f'font-size="{FONT - 1}" fill="{COLORS["axis"]}">events</text>')
        body.append(_markers(markers, axis, top - strip + 1, strip - 2))
    return _svg(width, height, "".join(body), "timeline of chunks per worker")


def _markers(markers: list[Marker], axis: TimeAxis, y: float, h: float) -> str:
    """One shape per kind and pixel column: thousands of retries stay a few hundred shapes."""
    buckets: dict[tuple[str, int], list[Marker]] = {}
    for m in markers:
        buckets.setdefault((m.kind, int(axis.x(m.t) // 2)), []).append(m)
    out = []
    for (kind, _), group in sorted(buckets.items(), key=lambda kv: kv[0][1]):
        x = axis.x(group[0].t)
        color = COLORS.get(kind, COLORS["retry"])
        title = group[0].title if len(group) == 1 else f"{len(group)} {kind} events; first: {group[0].title}"
        cy = y + h / 2
        if kind == "crash":
            shape = (f'<path d="M{x - 4:.1f} {cy - 4:.1f} l8 8 M{x + 4:.1f} {cy - 4:.1f} l-8 8" stroke="{color}" '
                     'stroke-width="2.2"/>')
        elif kind == "timeout":
            shape = f'<path d="M{x:.1f} {cy - 5:.1f} l5 9 h-10 z" fill="{color}"/>'
        else:
            shape = f'<circle cx="{x:.1f}" cy="{cy:.1f}" r="3" fill="{color}"/>'
        out.append(f'<g class="ev {esc(kind)}"><title>{esc(title)}</title>{shape}</g>')
    return "".join(out)


@dataclass
class Series:
    """One series over a time axis: points ``(t, y)`` per segment; ``kind`` is ``area``, ``line``
    or ``dots``; ``cls`` picks its colour."""
    name: str
    cls: str
    points: list[tuple[float, float]]
    kind: str = "area"
    titles: list[str] | None = None  # per point, for dots


def _y_ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        a, b = math.floor(math.log10(max(lo, 1e-12))), math.ceil(math.log10(max(hi, 1e-12)))
        return [10.0 ** k for k in range(a, b + 1)]
    step = nice_step(hi - lo, 4)
    return [lo + k * step for k in range(int((hi - lo) / step + 1e-9) + 1)]


def time_series(series: list[Series], axis: TimeAxis, *, width: float, height: float = 150.0,
                y_label: str = "", log: bool = False, captions: bool = True) -> str:
    """Series over ``axis``; areas and lines do not cross the breaks between segments."""
    top, bottom = 18.0, height - 20.0
    values = [y for s in series for _, y in s.points if (y > 0 or not log)]
    hi = max(values, default=1.0) or 1.0
    lo = min(values, default=1.0) if log else 0.0
    if log:
        lo, hi = 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))
        if hi <= lo:
            hi = lo * 10
    else:
        step = nice_step(hi, 4)
        hi = step * math.ceil(hi / step)

    def ypos(v: float) -> float:
        if log:
            v = max(v, lo)
            f = (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        else:
            f = v / hi
        return bottom - f * (bottom - top)

    body = [axis.draw(top, bottom, captions=captions)]
    for v in _y_ticks(lo, hi, log):
        y = ypos(v)
        body.append(f'<line class="grid" x1="{axis.left:.1f}" x2="{axis.right:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                    f'stroke="{COLORS["grid"]}"/><text class="ax" x="{axis.left - 6:.1f}" y="{y + 4:.1f}" '
                    f'text-anchor="end" font-size="{FONT}" fill="{COLORS["axis"]}">{esc(fmt_num(v))}</text>')
    if y_label:
        body.append(f'<text class="ax" x="{axis.left - 6:.1f}" y="{top - 6:.1f}" text-anchor="end" '
                    f'font-size="{FONT}" fill="{COLORS["axis"]}">{esc(y_label)}</text>')
    for s in series:
        color = COLORS.get(s.cls, COLORS["tput"])
        if s.kind == "dots":
            # One dot per 3-pixel cell: fifty thousand chunks draw at most a few thousand dots.
            cells: dict[tuple[int, int], list[int]] = {}
            for i, (t, v) in enumerate(s.points):
                x, y = axis.x(t), ypos(v)
                cells.setdefault((int(x // 3), int(y // 3)), [i, 0])[1] += 1
            for i, count in cells.values():
                t, v = s.points[i]
                text = s.titles[i] if s.titles else ""
                if count > 1:
                    text = f"{count} {s.name} points here; the first: {text}"
                title = f"<title>{esc(text)}</title>" if text else ""
                body.append(f'<circle class="{s.cls}" cx="{axis.x(t):.1f}" cy="{ypos(v):.1f}" r="2.6" '
                            f'fill="{color}" fill-opacity="0.75">{title}</circle>')
            continue
        for run in _split_at_breaks(s.points, axis):
            pts = " ".join(f"{axis.x(t):.1f},{ypos(v):.1f}" for t, v in run)
            if s.kind == "area" and run:
                x0, x1 = axis.x(run[0][0]), axis.x(run[-1][0])
                body.append(f'<path class="{s.cls}" d="M{x0:.1f},{bottom:.1f} L{pts} L{x1:.1f},{bottom:.1f} Z" '
                            f'fill="{color}" fill-opacity="0.28" stroke="none"/>')
            body.append(f'<polyline class="{s.cls}" points="{pts}" fill="none" stroke="{color}" '
                        f'stroke-width="1.6"/>')
    return _svg(width, height, "".join(body), y_label or "time series")


def _split_at_breaks(points: list[tuple[float, float]], axis: TimeAxis) -> list[list[tuple[float, float]]]:
    runs: list[list[tuple[float, float]]] = []
    last = None
    for t, v in points:
        seg = axis.segment_of(t)
        if seg != last:
            runs.append([])
            last = seg
        runs[-1].append((t, v))
    return runs


def histogram(edges: list[float], stacks: list[tuple[str, list[int]]], *, width: float, height: float = 170.0,
              log_x: bool = True, marks: Sequence[tuple[float, str]] = (), x_fmt: Callable[[float], str] = fmt_seconds,
              left: float = 56.0, noun: str = "items") -> str:
    """Stacked bars between ``edges`` (``len(edges) - 1`` bins); ``stacks`` is ``(class, counts)``
    per layer; ``marks`` are vertical lines with a label (percentiles)."""
    top, bottom, right = 18.0, height - 22.0, width - 12.0
    lo, hi = edges[0], edges[-1]

    def xpos(v: float) -> float:
        if log_x:
            f = (math.log10(v) - math.log10(lo)) / max(1e-12, math.log10(hi) - math.log10(lo))
        else:
            f = (v - lo) / max(1e-12, hi - lo)
        return left + f * (right - left)

    totals = [sum(layer[1][i] for layer in stacks) for i in range(len(edges) - 1)]
    peak = max(totals, default=1) or 1
    step = nice_step(peak, 4)
    ymax = step * math.ceil(peak / step)
    body = []
    for k in range(int(ymax / step) + 1):
        y = bottom - (k * step / ymax) * (bottom - top)
        body.append(f'<line class="grid" x1="{left:.1f}" x2="{right:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                    f'stroke="{COLORS["grid"]}"/><text class="ax" x="{left - 6:.1f}" y="{y + 4:.1f}" '
                    f'text-anchor="end" font-size="{FONT}" fill="{COLORS["axis"]}">{esc(fmt_num(k * step))}</text>')
    if log_x:
        decades = range(math.floor(math.log10(lo)), math.floor(math.log10(hi)) + 1)
        ticks = [10.0 ** k for k in decades]
        if sum(lo <= t <= hi for t in ticks) < 3:  # a narrow range: 1, 2 and 5 of each decade
            ticks = [m * 10.0 ** k for k in decades for m in (1, 2, 5)]
    else:
        step = nice_step(hi - lo, 6)
        ticks = [math.ceil(lo / step) * step + k * step for k in range(8)]
    for v in ticks:
        if lo <= v <= hi:
            body.append(f'<text class="ax" x="{xpos(v):.1f}" y="{bottom + FONT + 5:.1f}" text-anchor="middle" '
                        f'font-size="{FONT}" fill="{COLORS["axis"]}">{esc(x_fmt(v))}</text>')
    for i in range(len(edges) - 1):
        x0, x1 = xpos(edges[i]), xpos(edges[i + 1])
        y = bottom
        parts = []
        for cls, counts in stacks:
            c = counts[i]
            if not c:
                continue
            h = (c / ymax) * (bottom - top)
            y -= h
            parts.append(f'<rect class="{cls}" x="{x0 + 0.5:.1f}" y="{y:.1f}" width="{max(0.8, x1 - x0 - 1):.1f}" '
                         f'height="{h:.1f}" fill="{COLORS.get(cls, COLORS["tput"])}"/>')
        if parts:
            detail = ", ".join(f"{counts[i]:,} {cls}" for cls, counts in stacks if counts[i])
            body.append(f'<g><title>{esc(x_fmt(edges[i]))} to {esc(x_fmt(edges[i + 1]))}: {totals[i]:,} {noun} '
                        f'({esc(detail)})</title>{"".join(parts)}</g>')
    last_x, row = -1e9, 0
    for v, label in sorted(marks):
        if lo <= v <= hi:
            x = xpos(v)
            row = (row + 1) % 2 if x - last_x < 8 * len(label) else 0  # close labels go one row down
            last_x = x
            end = x > right - 40  # by the right edge: the label goes left of its line
            body.append(f'<line class="mark" x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4:.1f}" y2="{bottom:.1f}" '
                        f'stroke="{COLORS["axis"]}" stroke-dasharray="3 3"/><text class="ax" '
                        f'x="{x - 3 if end else x + 3:.1f}" text-anchor="{"end" if end else "start"}" '
                        f'y="{top - 6 + row * (FONT + 2):.1f}" font-size="{FONT}" fill="{COLORS["axis"]}">'
                        f'{esc(label)}</text>')
    return _svg(width, height, "".join(body), f"distribution of {noun}")


def linear_edges(lo: float, hi: float, bins: int = 30) -> list[float]:
    """``bins + 1`` evenly spaced edges covering ``lo`` .. ``hi``."""
    hi = max(hi, lo + 1e-9)
    return [lo + (hi - lo) * k / bins for k in range(bins + 1)]


def log_edges(lo: float, hi: float, bins: int = 40) -> list[float]:
    """``bins + 1`` log-spaced edges covering ``lo`` .. ``hi`` (both > 0)."""
    lo = max(lo, 1e-7)
    hi = max(hi, lo * 1.001)
    a, b = math.log10(lo), math.log10(hi) + 1e-9
    return [10 ** (a + (b - a) * k / bins) for k in range(bins + 1)]


@dataclass
class Column:
    """One bar of a bar chart: its x label, value, class and tooltip."""
    label: str
    value: float
    cls: str
    title: str
    overlay: float = 0.0  # drawn over the bar in the failure colour (failed items of a run)


def bar_chart(columns: list[Column], *, width: float, height: float = 170.0, y_label: str = "",
              y_fmt: Callable[[float], str] = fmt_num, left: float = 64.0) -> str:
    """One bar per column in order (runs of a job, oldest first), x labels thinned to fit."""
    top, bottom, right = 20.0, height - 24.0, width - 10.0
    peak = max((max(c.value, c.overlay) for c in columns), default=1.0) or 1.0
    ticks = _nice_ticks(peak)
    ymax = ticks[-1]
    body = []
    for v in ticks:
        y = bottom - (v / ymax) * (bottom - top)
        body.append(f'<line class="grid" x1="{left:.1f}" x2="{right:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                    f'stroke="{COLORS["grid"]}"/><text class="ax" x="{left - 6:.1f}" y="{y + 4:.1f}" '
                    f'text-anchor="end" font-size="{FONT}" fill="{COLORS["axis"]}">{esc(y_fmt(v))}</text>')
    if y_label:
        body.append(f'<text class="ax" x="{left - 6:.1f}" y="{top - 8:.1f}" text-anchor="end" font-size="{FONT}" '
                    f'fill="{COLORS["axis"]}">{esc(y_label)}</text>')
    n = max(1, len(columns))
    slot = (right - left) / n
    every = max(1, math.ceil(n / max(1, (right - left) / 70)))
    for i, c in enumerate(columns):
        x = left + i * slot
        w = max(1.0, min(48.0, slot * 0.72))
        h = (c.value / ymax) * (bottom - top)
        shape = (f'<rect class="{c.cls}" x="{x + (slot - w) / 2:.1f}" y="{bottom - h:.1f}" width="{w:.1f}" '
                 f'height="{max(h, 0.5 if c.value else 0):.1f}" fill="{COLORS.get(c.cls, COLORS["tput"])}"/>')
        if c.overlay:
            oh = (c.overlay / ymax) * (bottom - top)
            shape += (f'<rect class="fail" x="{x + (slot - w) / 2:.1f}" y="{bottom - oh:.1f}" width="{w:.1f}" '
                      f'height="{max(oh, 1.0):.1f}" fill="{COLORS["fail"]}"/>')
        body.append(f'<g><title>{esc(c.title)}</title>{shape}</g>')
        if i % every == 0:
            body.append(f'<text class="ax" x="{x + slot / 2:.1f}" y="{bottom + FONT + 5:.1f}" text-anchor="middle" '
                        f'font-size="{FONT}" fill="{COLORS["axis"]}">{esc(c.label)}</text>')
    return _svg(width, height, "".join(body), y_label or "bar chart")


def _nice_ticks(peak: float) -> list[float]:
    step = nice_step(peak, 4)
    return [k * step for k in range(int(math.ceil(peak / step)) + 1)]
