"""The map-style scenarios (tiny, Dask, CPU-bound, I/O-bound items), their sizes and targets.

A scenario is a list of ``(peer, number of items)`` entries and the targets from the issues.
batchkit and the peers its targets name run their rounds interleaved; the others run one
peer after another, each peer's rounds back to back so a reused pool stays warm. Peers that
pay a task or a future per item run on fewer items; comparisons use throughput.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from . import peers as P
from .measure import Target, Timing, cost_ratio, time_peers
from .workloads import calibrate_spin, double, nap, spin


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is. ``quick`` keeps the targets' sizes where it can afford to."""

    name: str
    rounds: int
    short_rounds: int  # for the scenarios whose rounds take about a second (CPU, I/O)
    tiny: int  # batchkit and the peers that batch items
    tiny_mid: int  # joblib loky (mpire: half): batched, but slower per item
    tiny_slow: int  # peers that pay a task or a future per item
    dask_map: int  # client.map and dask.bag
    cpu: int
    cpu_seconds: float
    io: int
    io_seconds: float
    io_workers: int
    rss: tuple[int, int]
    files: int
    file_rounds: int
    startup_rounds: int
    full_peers: bool
    big: int  # the 10M-item rows: throughput of run / imap against Pool.map, and peak memory
    big_rounds: int
    cold_rounds: int  # short runs from a fresh interpreter
    files_large: int  # the file run at scale, against the `files` tree
    scale_rounds: int  # also the peers that no target needs in the CPU, I/O and memory scenarios


SIZES = {
    "full": Sizes("full", 5, 9, 1_000_000, 1_000_000, 20_000, 5_000, 400, 0.005, 2000, 0.01, 64,
                  (1_000_000, 5_000_000), 100_000, 5, 10, True, 10_000_000, 5, 9, 1_000_000, 3),
    "quick": Sizes("quick", 3, 5, 1_000_000, 200_000, 2_000, 300, 400, 0.005, 2000, 0.01, 64,
                   (1_000_000, 5_000_000), 100_000, 5, 3, False, 10_000_000, 3, 5, 1_000_000, 3),
    # CI only: checks that the code works, not how fast it is.
    "smoke": Sizes("smoke", 1, 1, 2_000, 500, 100, 40, 8, 0.001, 40, 0.001, 8,
                   (2_000, 10_000), 200, 1, 1, True, 20_000, 1, 1, 1_000, 1),
}


def sizes_from_env(default: str = "quick") -> Sizes:
    """The sizes named by ``$BATCHKIT_BENCH_SIZE`` (full, quick or smoke)."""
    name = os.environ.get("BATCHKIT_BENCH_SIZE", default)
    if name not in SIZES:
        raise SystemExit(f"BATCHKIT_BENCH_SIZE={name!r}: use one of {', '.join(SIZES)}")
    return SIZES[name]


@dataclass
class Section:
    """One scenario's results: a table (header + rows of cells), targets and notes."""

    key: str
    title: str
    about: str
    header: list[str] = field(default_factory=list)
    cells: list[list[str]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list)


@dataclass(frozen=True)
class MapScenario:
    """Peers running ``fn`` over ``items``; ``workers`` per peer; ``ref`` is the batchkit row."""

    key: str
    title: str
    about: str
    fn: Callable[[Any], Any]
    items: Callable[[int], list]
    entries: list[tuple[P.Peer, int]]
    workers: int
    ref: str
    paired: tuple[str, ...] = ()  # peers timed in rounds interleaved with ``ref`` (the targets' peers)
    warmup: int = 100
    short: bool = False  # rounds take about a second: run ``Sizes.short_rounds`` of them


def tiny(s: Sizes) -> MapScenario:
    """1M x ``x * 2`` on 2 workers: what each contender costs per item."""
    return MapScenario(
        "tiny", "Tiny items: overhead per item",
        f"`x * 2` over a list of {s.tiny:,} ints, 2 workers.", double, lambda n: list(range(n)),
        [(P.SERIAL, s.tiny), (P.BK_SERIAL, s.tiny), (P.POOL, s.tiny), (P.CF_PROCESSES, s.tiny_slow),
         (P.CF_THREADS, s.tiny_slow), (P.JOBLIB_LOKY, s.tiny_mid), (P.JOBLIB_THREADS, s.tiny_slow),
         (P.MPIRE, s.tiny_mid // 2), (P.PQDM_PROCESSES, s.tiny_slow), (P.BK_PROCESS, s.tiny)],
        2, P.BK_PROCESS.name, (P.POOL.name,))


def dask(s: Sizes) -> MapScenario:
    """Tiny items on a LocalCluster of 2 worker processes: chunking against a task per item."""
    return MapScenario(
        "dask", "Tiny items on Dask (LocalCluster, 2 worker processes)",
        f"`x * 2`; batchkit on {s.tiny:,} items, client.map and dask.bag on {s.dask_map:,} "
        "(a task per item or per small partition; compared by throughput). Cluster started once, "
        "outside the timings.", double, lambda n: list(range(n)),
        [(P.DASK_MAP, s.dask_map), (P.DASK_BAG, s.dask_map), (P.BK_DASK, s.tiny)],
        2, P.BK_DASK.name, (P.DASK_MAP.name,))


def cpu(s: Sizes) -> MapScenario:
    """400 items of ~5 ms pure-Python work on 2 workers."""
    n = calibrate_spin(s.cpu_seconds)
    entries = [(P.POOL, s.cpu), (P.JOBLIB_LOKY, s.cpu), (P.BK_PROCESS, s.cpu), (P.BK_DASK, s.cpu)]
    if s.full_peers:
        entries = [(P.SERIAL, max(1, s.cpu // 4))] + entries + [
            (P.CF_PROCESSES, s.cpu), (P.DASK_MAP, s.cpu), (P.MPIRE, s.cpu), (P.PQDM_PROCESSES, s.cpu)]
    return MapScenario(
        "cpu", "CPU-bound items",
        f"{s.cpu} items of ~{s.cpu_seconds * 1000:g} ms of pure-Python arithmetic "
        f"(`spin({n})`, calibrated on this machine), 2 workers.", spin, lambda count: [n] * count,
        entries, 2, P.BK_PROCESS.name, (P.POOL.name, P.BK_DASK.name), warmup=4, short=True)


def io(s: Sizes) -> MapScenario:
    """2000 x sleep(10 ms) on 64 threads."""
    return MapScenario(
        "io", "I/O-bound items on threads",
        f"{s.io} x `sleep({s.io_seconds:g})`, {s.io_workers} threads (ideal wall "
        f"{s.io * s.io_seconds / s.io_workers:.2f} s).", nap, lambda n: [s.io_seconds] * n,
        [(P.SERIAL, max(1, s.io // 40))] * s.full_peers + [
            (P.CF_THREADS, s.io), (P.JOBLIB_THREADS, s.io), (P.MPIRE_THREADS, s.io), (P.PQDM_THREADS, s.io),
            (P.BK_THREAD, s.io)],
        s.io_workers, P.BK_THREAD.name, (P.CF_THREADS.name,), warmup=s.io_workers, short=True)


MAP_SCENARIOS: dict[str, Callable[[Sizes], MapScenario]] = {"tiny": tiny, "dask": dask, "cpu": cpu, "io": io}


def run_map(scenario: MapScenario, s: Sizes, shared: P.Shared, log: Callable[[str], None]) -> list[Timing]:
    """Time every entry of ``scenario``; a peer that fails becomes a skipped row, not a crash.

    ``ref`` and the ``paired`` peers are timed together, rounds interleaved; the others one
    peer at a time (joblib and batchkit share loky's process-wide executor, and switching
    between them restarts it, so they must not be interleaved).
    """
    together = {scenario.ref, *scenario.paired}
    groups: list[list[tuple[P.Peer, int]]] = []
    paired: list[tuple[P.Peer, int]] = []
    for peer, n in scenario.entries:
        if peer.name in together:
            if not paired:
                groups.append(paired)
            paired.append((peer, n))
        else:
            groups.append([(peer, n)])
    found: dict[str, Timing] = {}
    for group in groups:
        try:
            timings = time_peers([(peer, scenario.items(n)) for peer, n in group], shared, scenario.workers,
                                 scenario.fn, s.short_rounds if scenario.short else s.rounds,
                                 warmup=scenario.warmup, log=log)
        except Exception as exc:  # one broken peer must not cost the rest of the table
            why = f"failed: {type(exc).__name__}: {exc}"
            timings = [Timing(peer.name, n, note=peer.note, ours=peer.ours, skipped=why) for peer, n in group]
        found.update((t.name, t) for t in timings)
    return [found[peer.name] for peer, _ in scenario.entries]


def _find(timings: list[Timing], name: str) -> Timing | None:
    for t in timings:
        if t.name == name and t.times:
            return t
    return None


def speed_ratio(timings: list[Timing], ours: str, peer: str, paired: bool = False) -> float | None:
    """batchkit's throughput divided by ``peer``'s (``None`` when either did not run)."""
    a, b = _find(timings, ours), _find(timings, peer)
    return cost_ratio(b, a, paired) if a and b else None


def wall_ratio(timings: list[Timing], ours: str, peer: str, paired: bool = False) -> float | None:
    """batchkit's wall time divided by ``peer``'s (same number of items)."""
    a, b = _find(timings, ours), _find(timings, peer)
    return cost_ratio(a, b, paired) if a and b else None


PAIRED = "median of the per-round ratios (rounds interleaved)"


def targets(key: str, timings: list[Timing]) -> list[Target]:
    """The issue's targets for the map scenario ``key``, measured."""
    if key == "tiny":
        return [
            Target("tiny items, process backend: throughput ≥ 0.5 × Pool.map", speed_ratio(
                timings, P.BK_PROCESS.name, P.POOL.name, paired=True), 0.5, ">=", note=PAIRED),
            Target("tiny items, process backend: throughput ≥ 5 × joblib.Parallel(n_jobs=2)", speed_ratio(
                timings, P.BK_PROCESS.name, P.JOBLIB_LOKY.name), 5, ">=",
                note="ratio of the medians (not interleaved: each keeps its own loky pool)"),
        ]
    if key == "dask":
        return [Target("tiny items on Dask: throughput ≥ 100 × client.map", speed_ratio(
            timings, P.BK_DASK.name, P.DASK_MAP.name, paired=True), 100, ">=", note=PAIRED)]
    if key == "cpu":
        return [Target("CPU-bound 400 × ~5 ms: wall ≤ 1.10 × Pool.map", wall_ratio(
            timings, P.BK_PROCESS.name, P.POOL.name, paired=True), 1.10, "<=", note=PAIRED),
                Target("CPU-bound 400 × ~5 ms on a Dask LocalCluster: wall ≤ 1.15 × the process backend's", wall_ratio(
                    timings, P.BK_DASK.name, P.BK_PROCESS.name, paired=True), 1.15, "<=", note=PAIRED)]
    if key == "io":
        return [Target("I/O-bound 2000 × 10 ms, 64 threads: wall ≤ 1.15 × ThreadPoolExecutor.map", wall_ratio(
            timings, P.BK_THREAD.name, P.CF_THREADS.name, paired=True), 1.15, "<=", note=PAIRED)]
    return []
