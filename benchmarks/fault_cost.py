"""What a crashed worker or a timed-out item costs a run (issue 4: at most a pool restart, <= 2 s).

    python3 -m benchmarks.fault_cost

Runs 200 items of 10 ms (chunks of 20, 2 process workers) three times each: clean, with one item
that kills its worker (os._exit), and with one item that hangs past a 0.5 s timeout. Prints the
median walls and the extra time each fault cost.
"""

from __future__ import annotations

import os
import statistics
import time

import batchkit as bk

ITEMS, CHUNK, ROUNDS, TIMEOUT = 200, 20, 3, 0.5


def ok(x: int) -> int:
    time.sleep(0.01)
    return x


def crashes_on_50(x: int) -> int:
    if x == 50:
        os._exit(1)
    return ok(x)


def hangs_on_50(x: int) -> int:
    if x == 50:
        time.sleep(100)
    return ok(x)


def median_wall(fn, **options) -> tuple[float, int]:
    walls, failed = [], 0
    for _ in range(ROUNDS):
        start = time.perf_counter()
        report = bk.run(fn, range(ITEMS), backend="process", workers=2, chunk_size=CHUNK, progress=False,
                        **options)
        walls.append(time.perf_counter() - start)
        failed = report.failed
    return statistics.median(walls), failed


def main() -> None:
    bk.run(ok, range(10), backend="process", workers=2, progress=False)  # warm the pool
    clean, _ = median_wall(ok)
    crash, crash_failed = median_wall(crashes_on_50)
    hung, hung_failed = median_wall(hangs_on_50, timeout=TIMEOUT)
    print("| run | median wall s | failed items | cost vs clean |")
    print("| --- | --- | --- | --- |")
    print(f"| clean | {clean:.2f} | 0 | |")
    print(f"| one worker crash (os._exit) | {crash:.2f} | {crash_failed} | +{crash - clean:.2f} s |")
    print(f"| one hung item, timeout {TIMEOUT} s | {hung:.2f} | {hung_failed} | "
          f"+{hung - clean - TIMEOUT:.2f} s beyond the timeout |")


if __name__ == "__main__":
    main()
