"""The chart series computed from a :class:`~batchkit.ops.runview.RunView`: worker lanes, events,
throughput, chunk sizes and percentiles, what :mod:`batchkit.ops.htmlreport` draws.

Each function reads a view and returns :mod:`batchkit.ops.svgcharts` shapes (lanes with bars and
marks, markers, series); nothing here reads the journal or writes HTML.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .runview import visible
from .svgcharts import Bar, Lane, Marker, Series, fmt_clock, fmt_seconds

if TYPE_CHECKING:
    from .runview import RunView

SLOW = 3.0  # a chunk taking this many times the median chunk time is marked as a straggler


def _short_workers(workers: list[str]) -> dict[str, str]:
    """Worker ids as short row labels, without what they all share: ``host:pid`` -> ``pid 123``;
    the threads of one process -> the thread's name; a process with several threads (Dask) ->
    ``pid 123/…-1``. The full id is in the row's tooltip."""
    hosts = {w.split(":", 1)[0] for w in workers if ":" in w}
    threads: dict[str, set[str]] = {}
    for w in workers:
        pid, _, thread = w.split(":", 1)[-1].partition("/")
        threads.setdefault(pid, set()).add(thread)
    out = {}
    for w in workers:
        if ":" not in w or len(hosts) > 1:
            out[w] = _tail(w or "?", 22)
            continue
        pid, _, thread = w.split(":", 1)[1].partition("/")
        if len(threads) == 1 and thread:
            out[w] = _tail(thread, 20)
        elif len(threads[pid]) > 1 and thread:
            out[w] = f"pid {pid}/{_tail(thread, 6)}"
        else:
            out[w] = f"pid {pid}"
    return out


def _tail(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]


@dataclass
class LaneStats:
    """What the table under the timeline says about one lane."""
    label: str
    workers: list[str]
    chunks: int = 0
    items: int = 0
    busy: float = 0.0


def lanes(view: RunView) -> tuple[list[Lane], list[LaneStats], float]:
    """The Gantt chart's lanes: each worker process or thread gets a row; a worker that starts after
    another ended (a pool restarted after a crash, the next attempt of a resumed run) takes over that
    row, with a mark where a restart happened. Returns the lanes, their statistics and the median
    chunk time."""
    spans = list(view.spans())
    if not spans:
        return [], [], 0.0
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    attempt_of: dict[str, int] = {}
    for c, _, w, s, e, _ in spans:
        first[w] = min(first.get(w, s), s)
        last[w] = max(last.get(w, e), e)
        attempt_of.setdefault(w, c.get("attempt") or 0)
    short = _short_workers(list(first))
    slots: list[list[str]] = []
    for w in sorted(first, key=lambda k: (first[k], k)):
        free = [i for i, occupants in enumerate(slots) if last[occupants[-1]] <= first[w] + 1e-6]
        if free:
            best = max(free, key=lambda i: last[slots[i][-1]])
            slots[best].append(w)
        else:
            slots.append([w])
    slot_of = {w: i for i, occ in enumerate(slots) for w in occ}
    durations = [e - s for _, _, _, s, e, _ in spans]
    median = statistics.median(durations) if durations else 0.0
    # Auto chunking starts with tiny chunks, so a chunk is slow by its time per item, not its length alone.
    per_item = statistics.median([(e - s) / max(1, n) for _, _, _, s, e, n in spans]) if spans else 0.0
    out: list[Lane] = []
    stats: list[LaneStats] = []
    for occupants in slots:
        label = short[occupants[0]] + (f" +{len(occupants) - 1}" if len(occupants) > 1 else "")
        title = "; ".join(f"{w}: {fmt_clock(first[w])} to {fmt_clock(last[w])}" for w in occupants)
        lane = Lane(label, title)
        for prev, w in zip(occupants, occupants[1:]):
            if attempt_of[w] == attempt_of[prev]:
                lane.marks.append((first[w], f"new worker {w} after {prev} stopped at {fmt_clock(last[prev])} "
                                             "(the pool was restarted)"))
        out.append(lane)
        stats.append(LaneStats(label, occupants))
    for c, j, w, s, e, n in spans:
        i = slot_of[w]
        rerun = len(c["spans"]) > 1
        d = e - s
        slow = (len(spans) >= 8 and median > 0 and d >= SLOW * median and d - median >= 0.05
                and d / max(1, n) >= SLOW * per_item)
        first_idx = c.get("first_idx")
        where = f"items {first_idx:,} to {first_idx + c['n'] - 1:,}" if first_idx is not None else "a chunk"
        part = f"{n:,} of its {c['n']:,} items" if n != c["n"] else f"{n:,} items"
        title = (f"{where}: {part} on {w}, {fmt_clock(s)} to {fmt_clock(e)} ({fmt_seconds(d)})"
                 + (f", {c['failed']:,} failed in the chunk" if c["failed"] else "")
                 + (f"; piece {j + 1} of {len(c['spans'])}: the chunk was split after a worker crash" if rerun else "")
                 + (f"; slow: {d / median:.1f}× the median chunk time ({fmt_seconds(median)})" if slow else ""))
        out[i].bars.append(Bar(s, e, "rerun" if rerun else "ok", title, c["failed"] / max(1, c["n"]), slow))
        stats[i].chunks += 1 if j == 0 or c["spans"][j - 1][0] != w else 0
        stats[i].items += n
        stats[i].busy += d
    return out, stats, median


def markers(view: RunView) -> list[Marker]:
    """The events strip: retries, crashes and timeouts at their times."""
    out = []
    for ev in view.events:
        kind = ev.get("kind") or "event"
        words = {"crash": "worker crash", "timeout": "timeout", "retry": "retry"}.get(kind, kind)
        title = f"{fmt_clock(ev['time'])} {words}"
        if ev.get("idx") is not None:
            title += f" of item {ev['idx']:,}"
        if ev.get("key") is not None:
            title += f" ({visible(ev['key'], limit=200)})" if ev.get("idx") is not None else \
                f" of {visible(ev['key'], limit=200)}"
        if ev.get("worker") and kind == "retry":  # a crash's recorded worker is its chunk's, not the dead one
            title += f" ({ev['worker']})"
        if ev.get("detail"):
            title += f": {visible(ev['detail'], limit=300)}"
        out.append(Marker(ev["time"], kind, title))
    return out


def throughput(view: RunView, axis: Any, px_per_bin: float = 8.0) -> list[Series]:
    """Items per second (and failed items per second) over the run: each piece's items spread
    evenly over the time it ran, summed in bins of ``px_per_bin`` pixels."""
    bins: list[tuple[float, float]] = []
    for t0, t1, x0, x1 in axis.segments:
        k = max(3, int((x1 - x0) / px_per_bin))
        width = (t1 - t0) / k
        bins.extend((t0 + i * width, t0 + (i + 1) * width) for i in range(k))
    if not bins:
        return []
    done = [0.0] * len(bins)
    failed = [0.0] * len(bins)
    starts = [b[0] for b in bins]
    from bisect import bisect_right

    for c, _, _, s, e, n in view.spans():
        share = c["failed"] / max(1, c["n"])
        i = max(0, bisect_right(starts, s) - 1)
        if e - s <= 0:
            done[i] += n
            failed[i] += n * share
            continue
        while i < len(bins) and bins[i][0] < e:
            lo, hi = max(s, bins[i][0]), min(e, bins[i][1])
            if hi > lo:
                part = n * (hi - lo) / (e - s)
                done[i] += part
                failed[i] += part * share
            i += 1
    rate = [((a + b) / 2, d / max(1e-9, b - a)) for (a, b), d in zip(bins, done)]
    frate = [((a + b) / 2, f / max(1e-9, b - a)) for (a, b), f in zip(bins, failed)]
    series = [Series("items/s", "tput", rate)]
    if any(v for _, v in frate):
        series.append(Series("failed/s", "fail", frate, kind="line"))
    return series


def chunk_sizes(view: RunView) -> tuple[Series, bool]:
    """Each chunk's size at the time it started (dots); whether a log scale suits them."""
    points, titles = [], []
    for c in view.chunks:
        if not c["spans"]:
            continue
        s = min(sp[1] for sp in c["spans"])
        e = max(sp[2] for sp in c["spans"])
        points.append((s, float(c["n"])))
        titles.append(f"{c['n']:,} items, started {fmt_clock(s)}, took {fmt_seconds(max(0.0, e - s))}")
    sizes = [v for _, v in points]
    log = bool(sizes) and max(sizes) / max(1.0, min(sizes)) >= 20
    return Series("chunk size", "size", points, kind="dots", titles=titles), log


def percentile(sorted_values: Any, q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values (nearest rank)."""
    if not len(sorted_values):
        return 0.0
    k = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[k]
