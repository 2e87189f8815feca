"""Ten million tiny items: what the parent costs per item (issue 14, item 2).

Throughput, warm pools, rounds interleaved: ``bk.run(x * 2, range(n)).values()`` and
``[o.value for o in bk.imap(x * 2, range(n))]`` against ``multiprocessing.Pool(2).map`` over the same
range. Memory, one fresh process each: the parent's peak RSS of ``bk.run(...).values()`` against
``Pool.map``'s (see :mod:`benchmarks.rss`). Every ``Report`` promise stays available in the batchkit
rows: the report could still give every :class:`~batchkit.Outcome` (item, value, duration) afterwards.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

from . import peers as P
from . import rss
from .measure import Target, Timing, cost_ratio, time_peers
from .peers import MapFn, Peer, Shared
from .table import count, seconds
from .workloads import double


@contextmanager
def _imap(shared: Shared, workers: int) -> Iterator[MapFn]:
    import batchkit as bk

    def go(fn: Callable[[Any], Any], items: Any) -> list:
        return [o.value for o in bk.imap(fn, items, backend="process", workers=workers, progress=False)]

    yield go


BK_IMAP = Peer("batchkit imap", _imap, True, "`[o.value for o in bk.imap(...)]`, ordered; loky executor reused",
               ours=True)
PAIRED = "median of the per-round ratios (rounds interleaved)"


def run(n: int, rounds: int, log: Callable[[str], None]
        ) -> tuple[list[str], list[list[str]], list[Target], list[Timing], list[str]]:
    """Time run, imap and Pool.map over ``range(n)`` (interleaved), then their peak memory."""
    items = range(n)
    timings = time_peers([(P.POOL, items), (P.BK_PROCESS, items), (BK_IMAP, items)], Shared(), 2, double, rounds,
                         log=log)
    pool, bk_run, bk_imap = timings
    header = ["contender", "items", "median s (min–max)", "items/s", "parent peak RSS (MB)", "notes"]
    rows = []
    for t in timings:
        name = f"**{t.name}**" if t.ours else t.name
        spread = f"{seconds(t.median)} ({seconds(min(t.times))}–{seconds(max(t.times))})" if t.times else "—"
        rows.append([name, count(t.items), spread, count(t.throughput), "", t.note])
    peaks: dict[str, float] = {}
    for mode, row in (("poolmap", rows[0]), ("run", rows[1])):
        log(f"  peak RSS, {mode}: {n:,} items in a fresh process")
        r = rss.measure(mode, n)
        if r["seen"] != n:
            raise AssertionError(f"rss {mode}: {r['seen']} values, expected {n}")
        peaks[mode] = r["peak_mb"]
        row[4] = f"{r['peak_mb']:.0f}"
        timings.append(Timing(f"rss {mode}", n, [r["elapsed"]], extra={"peak_mb": r["peak_mb"]}))
    targets = [
        Target(f"{n:,} tiny items, warm, `bk.run(...).values()`: throughput ≥ 1.0 × Pool.map",
               cost_ratio(pool, bk_run, paired=True), 1.0, ">=", note=PAIRED),
        Target("the same, parent peak RSS ≤ 1.2 × Pool.map's", peaks["run"] / peaks["poolmap"], 1.2, "<=",
               note=f"{peaks['run']:.0f} MB against {peaks['poolmap']:.0f} MB, fresh processes"),
        Target(f"`bk.imap` over {n:,} tiny items: throughput ≥ 0.8 × `bk.run`'s",
               cost_ratio(bk_run, bk_imap, paired=True), 0.8, ">=", note=PAIRED),
    ]
    notes = ["Peak RSS: one fresh process per figure, the pool warmed on 100 items first, `VmHWM` of the "
             "parent only (workers excluded), the values list included."]
    return header, rows, targets, timings, notes
