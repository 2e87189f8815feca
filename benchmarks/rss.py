"""Peak memory of the parent while streaming a long generator: one fresh process per figure.

``python3 -m benchmarks.rss MODE N`` consumes ``N`` tiny items and prints one JSON line with
the parent's peak RSS (this process only, not its workers), the elapsed time and how many
outcomes came back. The peak is ``VmHWM`` from ``/proc/self/status`` where there is one:
``getrusage(RUSAGE_SELF).ru_maxrss`` survives ``exec`` on Linux, so a child started by a big
parent would report the parent's size; ``ru_maxrss`` is the fallback elsewhere. Modes: ``floor`` (imports and a
10-item run: the interpreter's own footprint), ``batchkit`` (``bk.imap`` on the process
backend, 2 workers), ``pool`` (``multiprocessing.Pool(2).imap(chunksize=1000)``, for context), and
for the 10M-item rows ``run`` (``bk.run(fn, range(n)).values()``, a warm pool) against ``poolmap``
(``Pool(2).map(fn, range(n))``, a warm pool); ``files`` streams ``bk.imap(sha256, bk.files(tree))`` over the
benchmark tree of ``n`` files (nothing kept: the walk's and the dispatch's own memory).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from typing import Callable, Iterator

from .measure import Target, Timing
from .table import count, seconds

MODES = ("floor", "batchkit", "pool", "run", "poolmap", "files")


def _items(n: int) -> Iterator[int]:
    # A generator of unknown length: nothing may call len() or materialise it.
    return (i for i in range(n))


def _consume(mode: str, n: int) -> tuple[int, int]:
    from .workloads import double

    seen = failed = 0
    if mode == "poolmap":
        import multiprocessing

        with multiprocessing.Pool(2) as pool:
            pool.map(double, range(100))  # started and warm, as in the timed rows
            values = pool.map(double, range(n))
            assert values[-1] == double(n - 1)
            return len(values), 0
    if mode == "files":
        import batchkit as bk

        from .checksum import make_tree
        from .workloads import sha256_file

        root = make_tree(n)
        for outcome in bk.imap(sha256_file, bk.files(root, as_str=True), workers=2, progress=False):
            seen += 1
            failed += not outcome.ok
        return seen, failed
    if mode == "run":
        import batchkit as bk

        bk.run(double, range(100), workers=2, progress=False)
        values = bk.run(double, range(n), workers=2, progress=False).values()
        assert values[-1] == double(n - 1)
        return len(values), 0
    if mode == "pool":
        import multiprocessing

        with multiprocessing.Pool(2) as pool:
            for _ in pool.imap(double, _items(n), chunksize=1000):
                seen += 1
        return seen, failed
    import batchkit as bk

    for outcome in bk.imap(double, _items(10 if mode == "floor" else n), backend="process", workers=2,
                           progress=False):
        seen += 1
        failed += not outcome.ok
    return seen, failed


def peak_rss_mb() -> float:
    """This process's peak resident set size, in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20  # KiB on Linux, bytes on macOS


def main(argv: list[str]) -> None:
    """Entry point of the measuring subprocess."""
    mode, n = argv[0], int(argv[1])
    t0 = time.perf_counter()
    seen, failed = _consume(mode, n)
    elapsed = time.perf_counter() - t0
    peak_mb = peak_rss_mb()
    print(json.dumps({"mode": mode, "n": n, "seen": seen, "failed": failed, "elapsed": elapsed,
                      "peak_mb": peak_mb}))


def measure(mode: str, n: int) -> dict:
    """Run one measuring subprocess; return what it printed."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.rss", mode, str(n)], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"rss {mode} {n} exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(sizes: tuple[int, int], log: Callable[[str], None], context: bool = True
        ) -> tuple[list[str], list[list[str]], list[Target], list[Timing]]:
    """Measure the floor, batchkit at both sizes and (``context``) Pool.imap at the large one."""
    small, large = sizes
    plan = [("floor", 10, "imports + a 10-item run: the interpreter's own footprint"),
            ("batchkit", small, "`bk.imap`, process backend, 2 workers"),
            ("batchkit", large, "`bk.imap`, process backend, 2 workers")]
    if context:
        plan.append(("pool", large, "`Pool(2).imap(chunksize=1000)`, for context"))
    rows, found, timings = [], {}, []
    for mode, n, note in plan:
        log(f"  {mode}: {n:,} items")
        r = measure(mode, n)
        expected = 10 if mode == "floor" else n
        if r["seen"] != expected or r["failed"]:
            raise AssertionError(f"rss {mode}: {r['seen']} outcomes, {r['failed']} failed, expected {expected}")
        found[(mode, n)] = r["peak_mb"]
        name = {"floor": "floor", "batchkit": "**batchkit imap**", "pool": "multiprocessing.Pool.imap"}[mode]
        rows.append([name, count(n), f"{r['peak_mb']:.0f}", seconds(r["elapsed"]),
                     count(n / r["elapsed"]) if mode != "floor" else "—", note])
        timings.append(Timing(f"rss {mode}", n, [r["elapsed"]], extra={"peak_mb": r["peak_mb"]}))
    big, little = found[("batchkit", large)], found[("batchkit", small)]
    targets = [
        Target(f"imap over a {large:,}-item generator: parent peak RSS ≤ 250 MB", big, 250, "<=", "MB"),
        Target(f"peak RSS at {large:,} items within 1.2 × the {small:,}-item run's", big / little, 1.2, "<="),
    ]
    header = ["contender", "items", "parent peak RSS (MB)", "wall s", "items/s", "notes"]
    return header, rows, targets, timings


if __name__ == "__main__":
    main(sys.argv[1:])
