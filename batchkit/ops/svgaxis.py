"""The pieces every chart of a run report shares: escaping, number and time formats, the colours,
and :class:`TimeAxis`, which maps wall-clock time to x positions over the busy stretches of a run
(the attempts of a resumed run side by side, long idle stretches cut out and marked).
"""

from __future__ import annotations

import html
import math
import time
from bisect import bisect_right
from typing import Iterable, Sequence

COLORS = {
    "ok": "#3a9d5d", "fail": "#d64541", "rerun": "#e3a33b", "slow": "#8a4b00", "grid": "#e3e6ea",
    "axis": "#5b6168", "tput": "#4a7fd4", "size": "#7a5cc4", "crash": "#b00020", "timeout": "#e07b00",
    "retry": "#6b7280", "restart": "#111827", "break": "#9aa0a6", "running": "#4a7fd4",
    "succeeded": "#3a9d5d", "failed": "#d64541", "halted": "#e3a33b", "interrupted": "#9aa0a6",
    "crashed": "#b00020", "error": "#b00020",
}
FONT = 11  # px, axis labels


def esc(text: object) -> str:
    """``text`` safe inside HTML or SVG text and double-quoted attributes (a lone surrogate from a
    file name that is not UTF-8 is shown as its escape rather than breaking the page's encoding)."""
    s = str(text)
    try:
        s.encode()
    except UnicodeEncodeError:
        s = s.encode("utf-8", "backslashreplace").decode()
    return html.escape(s, quote=True)


def fmt_seconds(s: float) -> str:
    """A duration for people: ``420 µs``, ``0.42 s``, ``12.5 s``, ``3 min 05 s``, ``2 h 03 min``."""
    if s < 0.001:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1000:.3g} ms"
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    if s < 86400 * 2:
        return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"
    return f"{s / 86400:.1f} days"


def fmt_clock(ts: float, date: bool = False) -> str:
    """A wall-clock time in the local zone (with the date when asked)."""
    return time.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S", time.localtime(ts))


def fmt_num(v: float) -> str:
    """An axis number: ``950``, ``1.2k``, ``3.4M``, ``0.25``."""
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a >= 1 or a == 0:
        return f"{v:,.0f}" if a >= 100 or v == int(v) else f"{v:.3g}"
    return f"{v:.2g}"


def nice_step(span: float, count: int) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) giving about ``count`` ticks over ``span``."""
    if span <= 0:
        return 1.0
    raw = span / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


_TIME_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600,
               900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def _time_step(span: float, count: int) -> float:
    raw = span / max(1, count)
    for step in _TIME_STEPS:
        if step >= raw:
            return step
    return nice_step(span, count)


def _tick_label(t: float, step: float) -> str:
    if step >= 3600:
        return f"{t / 3600:g} h"
    if step >= 60:
        return f"{int(t // 60)}:{int(t % 60):02d}" if t % 60 else f"{int(t // 60)} min"
    if step >= 1:
        return f"{t:g} s"
    return f"{t:.3g} s"


class TimeAxis:
    """Maps wall-clock times to x positions over ``segments`` (sorted, disjoint ``(t0, t1)``),
    drawn side by side with a ``gap``-pixel break between them: the attempts of a resumed run, or a
    run that sat idle for hours, share one chart without the idle time squeezing the work flat."""

    def __init__(self, segments: Sequence[tuple[float, float]], left: float, width: float, gap: float = 30.0,
                 min_width: float = 60.0, captions: Sequence[str | None] = ()) -> None:
        segs = [(a, max(b, a + 1e-3)) for a, b in segments] or [(0.0, 1.0)]
        # What each segment's caption says before its start time ("attempt 2"); None: nothing.
        self.captions = list(captions) + [None] * (len(segs) - len(captions))
        self.left, self.width, self.gap = left, width, gap
        usable = max(1.0, width - gap * (len(segs) - 1))
        total = sum(b - a for a, b in segs)
        # Proportional widths, but a short attempt keeps a readable minimum.
        floor = min(min_width, usable / len(segs))
        widths = [max(floor, usable * (b - a) / total) for a, b in segs]
        scale = usable / sum(widths)
        self.segments: list[tuple[float, float, float, float]] = []  # t0, t1, x0, x1
        x = left
        for (a, b), w in zip(segs, widths):
            self.segments.append((a, b, x, x + w * scale))
            x += w * scale + gap
        self._starts = [s[0] for s in self.segments]

    @classmethod
    def fit(cls, groups: Iterable[Iterable[tuple[float, float]]], left: float, width: float,
            idle_break: float = 300.0) -> TimeAxis:
        """An axis over the busy intervals of each group (one group per attempt): each group gets
        its own segments, and inside a group an idle stretch longer than ``idle_break`` seconds and
        than half of the group's busy time is cut out too."""
        segments: list[tuple[float, float, str | None]] = []
        groups = [g for g in (sorted((a, b) for a, b in group if b >= a) for group in groups) if g]
        for k, spans in enumerate(groups):
            union: list[list[float]] = []
            for a, b in spans:
                if union and a <= union[-1][1]:
                    union[-1][1] = max(union[-1][1], b)
                else:
                    union.append([a, b])
            busy = sum(b - a for a, b in union)
            cut = max(idle_break, busy / 2)
            merged = [union[0]]
            for a, b in union[1:]:
                if a - merged[-1][1] <= cut:
                    merged[-1][1] = max(merged[-1][1], b)
                else:
                    merged.append([a, b])
            segments.extend((a, b, f"attempt {k + 1}" if j == 0 and len(groups) > 1 else None)
                            for j, (a, b) in enumerate(merged))
        segments.sort()
        return cls([(a, b) for a, b, _ in segments], left, width, captions=[c for _, _, c in segments])

    @property
    def right(self) -> float:
        return self.segments[-1][3]

    def x(self, t: float) -> float:
        """The x position of wall-clock time ``t`` (a time inside a break lands inside the break)."""
        i = self.segment_of(t)
        if i < 0:
            return self.segments[0][2]
        t0, t1, x0, x1 = self.segments[i]
        if t <= t1:
            return x0 + (x1 - x0) * (t - t0) / (t1 - t0)
        if i + 1 < len(self.segments):
            n0, _, nx0, _ = self.segments[i + 1]
            return x1 + (nx0 - x1) * (t - t1) / max(1e-9, n0 - t1)
        return x1

    def segment_of(self, t: float) -> int:
        """The index of the segment ``t`` is in (or the last one before it; -1 before the first)."""
        return bisect_right(self._starts, t) - 1

    def seconds_per_px(self) -> float:
        return min((t1 - t0) / max(1e-9, x1 - x0) for t0, t1, x0, x1 in self.segments)

    def draw(self, top: float, bottom: float, captions: bool = True) -> str:
        """Vertical grid lines with elapsed-time labels per segment, each segment's start time above
        it, and the breaks between segments marked with the time cut out."""
        out = []
        for i, (t0, t1, x0, x1) in enumerate(self.segments):
            step = _time_step(t1 - t0, max(1, int((x1 - x0) / 85)))
            k = 0 if i == 0 else 1  # a later segment's start is in its caption, and its zero by the break
            while k * step <= (t1 - t0) + 1e-9:
                x = x0 + (x1 - x0) * k * step / (t1 - t0)
                out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top:.1f}" y2="{bottom:.1f}" '
                           f'stroke="{COLORS["grid"]}"/>')
                out.append(f'<text class="ax" x="{x:.1f}" y="{bottom + FONT + 3:.1f}" text-anchor="middle" '
                           f'font-size="{FONT}" fill="{COLORS["axis"]}">{esc(_tick_label(k * step, step))}</text>')
                k += 1
            if captions:
                label = f"from {fmt_clock(t0)}" if i == 0 else fmt_clock(t0)
                if self.captions[i]:
                    label = f"{self.captions[i]}, {label}"
                out.append(f'<text class="ax" x="{x0:.1f}" y="{top - 4:.1f}" font-size="{FONT}" '
                           f'fill="{COLORS["axis"]}">{esc(label)}</text>')
            if i + 1 < len(self.segments):
                nx0, n0 = self.segments[i + 1][2], self.segments[i + 1][0]
                mid = (x1 + nx0) / 2
                out.append(f'<g class="brk"><title>{esc(fmt_seconds(n0 - t1))} without work cut out here</title>'
                           f'<rect x="{x1 + 3:.1f}" y="{top:.1f}" width="{nx0 - x1 - 6:.1f}" '
                           f'height="{bottom - top:.1f}" fill="url(#hatch)" opacity="0.6"/>'
                           f'<text class="ax" x="{mid:.1f}" y="{bottom + FONT + 3:.1f}" text-anchor="middle" '
                           f'font-size="{FONT - 1}" fill="{COLORS["break"]}">⋯{esc(_short_gap(n0 - t1))}</text></g>')
        return "".join(out)


def _short_gap(s: float) -> str:
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s / 60:.0f}m"
    if s < 86400:
        return f"{s / 3600:.0f}h"
    return f"{s / 86400:.0f}d"
