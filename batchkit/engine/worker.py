"""What runs inside a worker: :func:`run_chunk` runs one chunk of items with per-item capture.

This is the only code that runs on the workers, on every backend, so error capture, retries,
timing and timeouts behave the same everywhere. It returns a compact :class:`ChunkResult`
(a list of values plus sparse errors) rather than one object per item, which keeps the
pickling cost per item close to that of a plain ``Pool.map``.
"""

from __future__ import annotations

import operator
import pickle
import threading
import time
from array import array
from typing import Any, Callable

from ..outcome import ItemError
from ..retry import Retry
from .beacon import WorkerBeacon

# Exceptions an item may raise that must not stop the chunk. KeyboardInterrupt is not in the
# list: Ctrl-C has to stop the worker. SystemExit is: `sys.exit()` in one item is its failure.
CAPTURED = (Exception, SystemExit)


class Task:
    """Everything one submit carries to a worker.

    An opaque object rather than a tuple or list on purpose: dask.distributed walks list
    arguments element by element looking for futures, which is slow for a big chunk.
    """

    __slots__ = ("fn", "items", "retry", "timeout", "beacon", "stop", "check_values")

    def __init__(
        self,
        fn: Callable[[Any], Any],
        items: list,
        retry: Retry | None = None,
        timeout: float | None = None,
        beacon: tuple[str, int] | None = None,
        stop: list | None = None,
        check_values: bool = False,
    ) -> None:
        self.fn = fn
        self.items = items
        self.retry = retry
        self.timeout = timeout
        self.beacon = beacon
        # In-memory backends only (serial, thread): the engine sets stop[0] to make the
        # chunk return early when the run is interrupted, since threads cannot be killed.
        self.stop = stop
        # Set when this chunk's results failed to travel back: test-pickle each value so only
        # the item whose value cannot be pickled fails.
        self.check_values = check_values

    def __getstate__(self) -> tuple:
        return (self.fn, self.items, self.retry, self.timeout, self.beacon, self.check_values)

    def __setstate__(self, state: tuple) -> None:
        self.fn, self.items, self.retry, self.timeout, self.beacon, self.check_values = state
        self.stop = None


class ChunkResult:
    """Outcomes of one chunk, compact: ``values[i]`` (``None`` where it failed), ``errors``
    (position -> :class:`ItemError`), ``attempts`` (position -> count, only where not 1),
    ``durations`` (seconds per item) and ``elapsed`` (the chunk's time in the worker)."""

    __slots__ = ("values", "errors", "attempts", "durations", "elapsed")

    def __init__(
        self,
        values: list,
        errors: dict[int, ItemError],
        attempts: dict[int, int],
        durations: array,
        elapsed: float,
    ) -> None:
        self.values = values
        self.errors = errors
        self.attempts = attempts
        self.durations = durations
        self.elapsed = elapsed

    def __getstate__(self) -> tuple:
        return (self.values, self.errors, self.attempts, self.durations, self.elapsed)

    def __setstate__(self, state: tuple) -> None:
        self.values, self.errors, self.attempts, self.durations, self.elapsed = state


def _capture(exc: BaseException) -> ItemError:
    step = getattr(exc, "__batchkit_step__", None)
    cause = exc.__cause__ if step is not None and exc.__cause__ is not None else exc
    return ItemError.from_exception(cause, step=step, skip=1)


def run_chunk(task: Task) -> ChunkResult:
    """Run ``task.fn`` on every item of ``task.items``; never raises for an item's error."""
    if task.retry is None and task.timeout is None and not task.check_values:
        return _run_fast(task)
    return _run_general(task)


def _durations(start: float, stamps: array) -> array:
    # Item i took stamps[i] - stamps[i-1]: one clock read per item instead of two, and the
    # subtraction done here in C rather than in the loop.
    if not stamps:
        return array("d")
    before = array("d", [start])
    before.extend(stamps[:-1])
    return array("d", map(operator.sub, stamps, before))


# Items are timed one by one until the first PROBE of a chunk prove tiny (under FAST seconds on
# average); the rest then run untimed and share the average, because for an item of a few
# hundred nanoseconds the clock read would cost as much as the item.
PROBE = 32
FAST = 5e-6
_NOWHERE = [0]  # where the position goes when there is no beacon: a store as cheap as the real one
_NEVER = (False,)


def _run_fast(task: Task) -> ChunkResult:
    # The hot path (no retry, no timeout). For tiny items every operation per item counts.
    fn, items = task.fn, task.items
    stop = task.stop or _NEVER
    values: list = []
    errors: dict[int, ItemError] = {}
    stamps = array("d")
    append = values.append
    stamp = stamps.append
    clock = time.perf_counter
    beacon = WorkerBeacon(*task.beacon) if task.beacon else None
    position, slot = (beacon.positions, beacon.position_index) if beacon else (_NOWHERE, 0)
    start = clock()
    try:
        walk = enumerate(items)
        untimed = False
        for i, item in walk:
            position[slot] = i  # which item this worker is on, for crash pinning
            if stop[0]:
                break
            try:
                append(fn(item))
            except CAPTURED as exc:
                append(None)
                errors[i] = _capture(exc)
            stamp(clock())
            if i == PROBE - 1 and stamps[-1] - start < PROBE * FAST:
                untimed = True
                break
        if untimed:
            for i, item in walk:
                position[slot] = i
                if stop[0]:
                    break
                try:
                    append(fn(item))
                except CAPTURED as exc:
                    append(None)
                    errors[i] = _capture(exc)
        position[slot] = len(items)
        end = clock()
    finally:
        if beacon is not None:
            beacon.close()
    durations = _durations(start, stamps)
    rest = len(values) - len(stamps)
    if rest:
        durations.extend(array("d", [(end - stamps[-1]) / rest]) * rest)
    return ChunkResult(values, errors, {}, durations, end - start)


def _run_general(task: Task) -> ChunkResult:
    fn, items, retry, timeout, stop = task.fn, task.items, task.retry, task.timeout, task.stop
    values: list = []
    errors: dict[int, ItemError] = {}
    attempts: dict[int, int] = {}
    durations = array("d")
    clock = time.perf_counter
    start = clock()
    beacon = WorkerBeacon(*task.beacon) if task.beacon else None
    # Local processes are watched and killed by the parent (see engine); elsewhere a thread
    # cannot be killed, so the item runs in a helper thread we stop waiting for.
    watchdog = timeout is not None and beacon is None
    try:
        for i, item in enumerate(items):
            if stop is not None and stop[0]:
                break
            attempt = 0
            while True:
                attempt += 1
                if beacon is not None:
                    beacon.at(i)
                t0 = clock()
                try:
                    value = _call_with_deadline(fn, item, timeout) if watchdog else fn(item)
                    error = None
                except _ItemTimedOut as exc:
                    value, error = None, ItemError("TimeoutError", str(exc), "", "timeout")
                except CAPTURED as exc:
                    value, error = None, _capture(exc)
                    if retry is not None and retry.should_retry(exc, attempt):
                        time.sleep(retry.delay(attempt))
                        continue
                break
            durations.append(clock() - t0)
            if task.check_values and error is None:
                try:
                    pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception as exc:
                    value, error = None, ItemError(
                        type(exc).__name__,
                        f"the value returned cannot be sent back from the worker: {exc}", "", "exception")
            values.append(value)
            if error is not None:
                errors[i] = error
            if attempt != 1:
                attempts[i] = attempt
        if beacon is not None:
            beacon.at(len(items))
    finally:
        if beacon is not None:
            beacon.close()
    return ChunkResult(values, errors, attempts, durations, clock() - start)


class _ItemTimedOut(Exception):
    pass


def _call_with_deadline(fn: Callable[[Any], Any], item: Any, timeout: float) -> Any:
    box: list = []

    def target() -> None:
        try:
            box.append((True, fn(item)))
        except BaseException as exc:  # handed back to the calling thread below
            box.append((False, exc))

    thread = threading.Thread(target=target, daemon=True, name="batchkit-item")
    thread.start()
    thread.join(timeout)
    if not box:
        raise _ItemTimedOut(
            f"item still running after {timeout:g}s; recorded as timed out "
            "(a thread cannot be killed, so it may keep running in the background)"
        )
    ok, result = box[0]
    if ok:
        return result
    raise result
