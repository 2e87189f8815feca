"""Standing notes for the table: how to read each scenario, and why a target is missed.

The diagnoses come from profiling batchkit (cProfile in the parent, in-process timings of the
worker loop); they are shown under a scenario whenever one of its targets is not met.
"""

from __future__ import annotations

READING = [
    "Each figure is the median of the rounds (min–max in brackets); rounds of the contenders a "
    "target compares are interleaved (A B A B …) so load from elsewhere hits both alike.",
    "`batchkit speed ÷ this`: the bold batchkit row's items/s divided by this row's; above 1 "
    "batchkit is faster. Contenders that pay a task or a future per item run on fewer items "
    "and are compared by throughput.",
    "Pool start-up: rows marked *reused*/*keep_alive*/*warm* had their pool started and warmed "
    "before the clock (batchkit's process backend reuses loky's executor the same way); rows "
    "marked *built per call* include starting their pool in every timed call, as their users pay it. "
    "The Dask LocalCluster is started once, outside every timing.",
]

SCENARIO_NOTES: dict[str, list[str]] = {
    "tiny": ["Every batchkit row captures errors per item (try/except, timing) — a plain map does not."],
    "dask": ["dask.bag's `from_sequence` default makes partitions of ~√n/10 items, so it pays "
             "a task per few dozen items."],
    "cpu": ["Items are real work (`spin`), not sleeps: the two workers and the parent share the 2 cores."],
    "io": ["The thread pools are built inside every timed call for every contender (threads start lazily)."],
    "rss": ["Each figure is one fresh process; peak RSS is the parent's own (`VmHWM`; "
            "`ru_maxrss` would carry over the launching process's size across exec), workers excluded."],
    "startup": ["Fresh processes, warm file cache. The module check runs each command once more "
                "in-process and lists the heavy modules found in `sys.modules`."],
    "checksum": ["Every contender writes the full manifest to a file; each round's line count is "
                 "checked. Page cache warm. GNU parallel is run with `--will-cite -0`."],
}

# Shown when one of the scenario's targets is not met (evidence in the README's Diagnoses).
DIAGNOSES: dict[str, str] = {
    "checksum": (
        "a fixed ≈ 1.7–2 s per CLI run (10 files take that long) is most of the gap: the parent's "
        "imports take ≈ 0.3 s, 0.2 s of it `joblib.externals.loky`, which imports all of joblib and "
        "numpy; each loky worker and loky's resource tracker import joblib and numpy again, so the "
        "first result comes ≈ 0.65 s after the pool is made (≈ 0.3 s with the standalone `loky` "
        "package). Per file, the parent still spends ≈ 20 µs (py-spy: the `bk.files` walk ≈ 35 % "
        "of its samples, outcomes and manifest lines ≈ 20 %) against ≈ 12 µs of hashing per file "
        "in a worker, so with 2 workers the parent sets the pace."),
    "tiny": (
        "the process backend's worker loop costs more per item than `Pool.map`'s `list(map(...))` "
        "(per-item try/except, a clock read, the beacon's position write), and the parent splits and "
        "merges every chunk."),
    "io": (
        "chunks of up to total/(4 × workers) items hold a thread for ≈ 70 ms at the end of the run; "
        "`ThreadPoolExecutor.map` hands out one item at a time."),
}
