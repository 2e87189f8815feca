"""The durable queue's throughput: items/s put (one at a time and in bulk) and consumed.

Every round uses a fresh queue file in a temporary directory, so rounds do not grow one file.
``put`` puts tiny items (ints) one ``Queue.put`` each (a transaction each); ``put_many`` puts the
same items 1,000 per call (a transaction each, as ``batchkit queue put --input`` does). Consuming
runs the engine over a :class:`~batchkit.sources.queue.QueueSource` with a
:class:`~batchkit.sources.queue.QueueSink` (claims, lease renewals and one result transaction
per chunk), ``x * 2`` on the thread backend with 2 workers, the items put before the clock; the
same engine over a plain list is the reference for what the queue adds. Every result is checked
off the clock.

    python3 -m benchmarks.queue [--size quick|full|smoke]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .measure import Timing
from .table import count, markdown_table, seconds
from .workloads import double

# (single puts, bulk puts, consumed items) per size.
COUNTS = {"full": (20_000, 200_000, 200_000), "quick": (5_000, 100_000, 100_000), "smoke": (100, 2_000, 2_000)}
BULK = 1000
WORKERS = 2


def _fresh(name: str) -> tuple[object, Path]:
    from batchkit.state.queue import Queue

    home = Path(tempfile.mkdtemp(prefix="batchkit-bench-queue-"))
    return Queue(name, path=home / "queue.db"), home


def _timed_puts(name: str, n: int, put: Callable[[Any, list], None]) -> float:
    """Seconds ``put(queue, items)`` takes to put ``range(n)`` on a fresh queue (checked after)."""
    q, home = _fresh(name)
    try:
        items = list(range(n))
        t0 = time.perf_counter()
        put(q, items)
        elapsed = time.perf_counter() - t0
        assert q.stats()["pending"] == n
        return elapsed
    finally:
        q.close()
        shutil.rmtree(home, ignore_errors=True)


def _put_single(n: int) -> float:
    def one_by_one(q: Any, items: list) -> None:
        for i in items:
            q.put(i)
    return _timed_puts("single", n, one_by_one)


def _put_bulk(n: int) -> float:
    def in_batches(q: Any, items: list) -> None:
        for start in range(0, len(items), BULK):
            q.put_many(items[start:start + BULK])
    return _timed_puts("bulk", n, in_batches)


def _consume(n: int) -> float:
    from batchkit.engine.loop import Engine
    from batchkit.sources.queue import QueueSink, QueueSource

    q, home = _fresh("consume")
    try:
        ids = q.put_many(range(n))
        source = QueueSource(q)
        sink = QueueSink(source)
        t0 = time.perf_counter()
        engine = Engine(double, source, backend="thread", workers=WORKERS, on_chunk=sink.chunk, progress=False)
        for _ in engine.chunks():
            pass
        sink.close("succeeded")
        elapsed = time.perf_counter() - t0
        assert q.stats()["done"] == n and q.result(ids[-1]).value == 2 * (n - 1)
        return elapsed
    finally:
        q.close()
        shutil.rmtree(home, ignore_errors=True)


def _plain(n: int) -> float:
    from batchkit.engine.loop import Engine

    items = list(range(n))
    t0 = time.perf_counter()
    done = sum(len(chunk) for chunk in Engine(double, iter(items), backend="thread", workers=WORKERS,
                                              progress=False).chunks())
    elapsed = time.perf_counter() - t0
    assert done == n
    return elapsed


def run(size: str, rounds: int, log: Callable[[str], None]) -> tuple[list[str], list[list[str]], list[Timing]]:
    """Time each contender ``rounds`` times; the table's header, rows and the raw timings."""
    single, bulk, consumed = COUNTS[size]
    plan = [
        ("Queue.put, one item a call", single, _put_single, "a transaction per item"),
        (f"Queue.put_many, {BULK:,} items a call", bulk, _put_bulk, "a transaction per call"),
        ("consume: QueueSource + QueueSink, thread backend", consumed, _consume,
         f"`x * 2`, {WORKERS} workers, auto chunks; claims, leases and one result transaction per chunk"),
        ("reference: the same engine over a list", consumed, _plain, "no queue: what consuming adds is the rest"),
    ]
    timings = []
    for name, n, fn, note in plan:
        log(f"  {name}: {n:,} items x {rounds} rounds")
        fn(min(n, 100))  # imports and first-call costs off the clock
        timings.append(Timing(name, n, [fn(n) for _ in range(rounds)], note=note, ours=not name.startswith("ref")))
    header = ["contender", "items", "median s (min–max)", "items/s", "µs per item", "notes"]
    rows = []
    for t in timings:
        spread = f"{seconds(t.median)} ({seconds(min(t.times))}–{seconds(max(t.times))})"
        name = f"**{t.name}**" if t.ours else t.name
        rows.append([name, count(t.items), spread, count(t.throughput), f"{1e6 * t.median / t.items:.1f}", t.note])
    return header, rows, timings


def main(argv: list[str] | None = None) -> None:
    """Print the queue table on its own."""
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.queue", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(COUNTS), default="quick")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    header, rows, timings = run(args.size, args.rounds, lambda line: print(line, flush=True))
    print(markdown_table(header, rows))
    for t in timings:
        print(f"{t.name}: {t.throughput:,.0f} items/s (rounds: {', '.join(f'{x:.3f}' for x in t.times)} s; "
              f"stdev {statistics.pstdev(t.times):.3f})")


if __name__ == "__main__":
    main()
