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
                 "checked. Page cache warm. GNU parallel is run with `--will-cite -0`. The order of the "
                 "contenders is reversed every other round: the run right after GNU parallel is slower."],
    "big": ["Both batchkit rows keep everything the `Report` promises: outcomes (item, value, duration) can "
            "still be built afterwards; `range` input stays a range in every chunk."],
    "cold": ["Bytecode cached, as after `pip install` (the script clears `PYTHONDONTWRITEBYTECODE` and caches "
             "under `$TMPDIR/batchkit-bench/pycache`); one untimed round first."],
    "scale": ["Both trees are read once before the rounds (page cache warm). The CLI's parent keeps no "
              "outcome in memory: those its finishing step writes the manifest from wait in a spool on disk "
              "(`batchkit/jobs/spool.py`); the streaming rows keep none at all."],
}

# Shown when one of the scenario's targets is not met (evidence in the README's Diagnoses).
DIAGNOSES: dict[str, str] = {
    "big": (
        "`bk.imap` hands the caller one `Outcome` object per item, and making one costs ≈ 190 ns in CPython "
        "3.11 here (a slotted class) against ≈ 50 ns of parent CPU per item for `bk.run(...).values()`. "
        "Outcomes are chained in C (no Python frame per item besides the Outcome's own), so what remains is "
        "that object: ≈ 230 ns of parent CPU per item for imap, ≈ 0.4 × run. A tuple subclass made by "
        "`tuple.__new__` in C costs ≈ 120 ns: ≈ 0.5 × run at best, and an Outcome would then iterate, hash "
        "and compare equal to a tuple. 0.8 × needs an Outcome built in C (a compiled extension)."),
    "cold": (
        "`Pool(2).map` from a fresh interpreter costs python (≈ 25 ms) plus `multiprocessing` and two forks. "
        "batchkit forks its workers too, but imports ≈ 15 ms of its own modules and ≈ 35 ms of loky and "
        "cloudpickle with the standard modules they need (typing, inspect, logging, ctypes; psutil is left "
        "until loky kills a process tree), and the interpreter's teardown of ≈ 230 modules takes ≈ 11 ms "
        "against ≈ 5 ms after `Pool`. The CLI row adds click, the job's discovery, the journal (SQLite file "
        "created in a fresh $BATCHKIT_HOME) and the run lock (filelock 4.x, ≈ 13 ms of imports); the command "
        "freezes its objects at exit, so its teardown skips the last garbage-collection walk."),
    "checksum": (
        "the journal writes ≈ 130 bytes of JSON per file (13 MB per 100k files) built in Python: its writer "
        "thread uses ≈ 80 ms of CPU per 100k files (the rows ≈ 45 ms: checking 130 bytes of text per file "
        "for characters JSON must escape ≈ 0.13 µs, formatting the durations ≈ 0.15 µs, joining the pieces; "
        "SQLite ≈ 35 ms), and the parent's CPU is ≈ 0.34 s with the journal against ≈ 0.26 s without, on a "
        "machine whose two cores are taken by the two hashing workers. With the rows' text replaced by an "
        "empty array (the same SQLite transactions) the journal cost 1-2 %: building the text is the cost. "
        "Packing the rows in the workers instead was measured: it moves the CPU, the wall stays. GNU "
        "parallel's own time varies with load "
        "(1.8-4.4 s over these sessions); at 1.9 s, 0.4 × is 0.76 s, ≈ the run without a journal."),
    "tiny": (
        "the process backend's worker loop costs ≈ 190 ns per item against ≈ 80 ns for "
        "`Pool.map`'s `list(map(...))` (per-item try/except and the beacon's position store, "
        "measured in-process on 125k items), and the parent splits and merges every chunk."),
    "io": (
        "batchkit runs at 46–50 of the 64 threads on average against 55–57 for "
        "`ThreadPoolExecutor.map` (a per-item start/end timeline on 10 ms ticks), and the tail "
        "with fewer than 32 threads busy lasts 10–14 ticks against 3–6. The auto chunker sends "
        "128 single items, then chunks of 7 (its cap, total / (4 × workers)); fixed chunk sizes "
        "from 1 to 7 do not close the gap (0.43–0.46 s against 0.42 s in the same session), so the "
        "cost is each chunk's round trip through the engine's one dispatch loop rather than the "
        "chunk size. The result sits at the limit: 1.05–1.15 × over this session's runs."),
    "cpu": (
        "(Dask) the items themselves run 5-10 % longer on the Dask workers than on loky's (the scheduler, two "
        "nannies and the workers' event loops share the 2 cores with them), and each task waits 1-3 ms for the "
        "scheduler where loky's queue takes 0.5 ms, with an occasional 5-25 ms stall. (Process) the auto "
        "chunker sends 1, 1, 1, 1, 16, then chunks of 25 (its cap, total / (8 × workers): ≈ 125 ms each), "
        "so the two workers can finish up to one chunk apart; "
        "`Pool.map` cuts 8 equal chunks of 50. Paired rounds in one session: auto 1.10 ×, fixed 50 "
        "or 25 items 1.07–1.08 ×. The rest is load from other work on this shared machine: the "
        "same 200 items kept one worker busy 0.8 s in one round and 1.9 s in another."),
}
