"""Markdown: the results table of each scenario, the targets summary, the machine."""

from __future__ import annotations

import math
import statistics
from typing import Sequence

from .measure import Target, Timing


def seconds(x: float) -> str:
    """``x`` seconds, to about three significant figures."""
    if x != x:
        return "—"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def count(x: float) -> str:
    """A large count with thousands separators, or a small one with 2 significant figures."""
    if x != x or math.isinf(x):
        return "—"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def ratio(x: float | None) -> str:
    """``1.23×`` (``4,720×`` when large), or ``—`` when not measured."""
    if x is None or x != x:
        return "—"
    return f"{x:,.0f}×" if x >= 1000 else f"{x:.3g}×"


def timing_cells(timings: Sequence[Timing], ref: str | None,
                 ratio_label: str = "batchkit speed ÷ this") -> tuple[list[str], list[list[str]]]:
    """Header and rows for a list of timings; the ratio column compares with the ``ref`` row."""
    base = next((t for t in timings if t.name == ref and t.times), None)
    with_cpu = any(t.cpu for t in timings)
    header = ["contender", "items", "median s (min–max)", "items/s", ratio_label, "notes"]
    if with_cpu:
        header.insert(3, "CPU s, all processes")
    rows = []
    for t in timings:
        name = f"**{t.name}**" if t.ours else t.name
        if t.skipped:
            row = [name, count(t.items), "—", "—", "—", f"skipped: {t.skipped}"]
        else:
            spread = f"{seconds(t.median)} ({seconds(min(t.times))}–{seconds(max(t.times))})"
            r = base.throughput / t.throughput if base is not None else None
            row = [name, count(t.items), spread, count(t.throughput), "" if t is base else ratio(r), t.note]
        if with_cpu:
            row.insert(3, seconds(statistics.median(t.cpu)) if t.cpu else "—")
        rows.append(row)
    return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table (pipes in cells escaped)."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    out = [line(header), line(["---"] * len(header))]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def precise(x: float) -> str:
    """A target's figure: enough digits that a value just over its limit does not print as the limit."""
    if x >= 100:
        return f"{x:,.0f}×"
    return f"{x:.3f}×" if x < 10 else f"{x:.1f}×"


def verdict(target: Target) -> str:
    """``met`` / ``**not met**`` / ``not measured``."""
    met = target.met
    return "not measured" if met is None else ("met" if met else "**not met**")


def targets_table(targets: Sequence[Target]) -> str:
    """The summary of every target: promise, limit, figure, verdict."""
    rows = []
    for t in targets:
        if t.value is None or t.value != t.value:
            measured = "—"
        elif t.unit == "×":
            measured = precise(t.value)
        else:
            measured = f"{t.value:.3g} {t.unit}"
        limit = f"{t.op} {t.limit:g}{t.unit if t.unit == '×' else ' ' + t.unit}"
        rows.append([t.text, limit, measured, verdict(t), t.note])
    return markdown_table(["target", "limit", "measured", "verdict", "notes"], rows)
