"""What runs inside a worker: :func:`run_chunk` runs one chunk of items with per-item capture.

This is the only code that runs on the workers, on every backend, so error capture, retries,
timing and timeouts behave the same everywhere (a unit of a file walk first finds its files:
:mod:`~batchkit.engine.walkwork`). It returns a compact :class:`ChunkResult`
(a list of values plus sparse errors) rather than one object per item, which keeps the
pickling cost per item close to that of a plain ``Pool.map``.
"""

from __future__ import annotations

import operator
import os
import pickle
import socket
import threading
import time
from array import array
from typing import Any, Callable

from ..outcome import ItemError
from ..retry import Retry
from .beacon import WorkerBeacon
from .timings import Durations

# What an item may raise without stopping the chunk: everything but KeyboardInterrupt, which in
# the serial backend (the caller's own thread) is how a stop reaches the run. `sys.exit()`,
# GeneratorExit or a custom BaseException in one item is that item's failure.
CAPTURED = BaseException
UNCAPTURED = KeyboardInterrupt

_HOST = socket.gethostname()


def worker_id() -> str:
    """Who runs this chunk, for the run's timeline: ``host:pid``, plus the thread when not the main one."""
    thread = threading.current_thread()
    who = f"{_HOST}:{os.getpid()}"
    return who if thread is threading.main_thread() else f"{who}/{thread.name}"


class Task:
    """Everything one submit carries to a worker.

    An opaque object rather than a tuple or list on purpose: dask.distributed walks list
    arguments element by element looking for futures, which is slow for a big chunk.
    """

    __slots__ = ("fn", "items", "retry", "timeout", "beacon", "stop", "check_values", "init", "walk", "cwd")

    def __init__(
        self,
        fn: Callable[[Any], Any],
        items: list,
        retry: Retry | None = None,
        timeout: float | None = None,
        beacon: tuple[str, int] | None = None,
        stop: list | None = None,
        check_values: bool = False,
        init: tuple[str, Callable[..., Any], tuple] | None = None,
        walk: tuple | None = None,
        cwd: str | None = None,
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
        # (run token, initializer, initargs): the per-worker set-up, run once per worker thread.
        self.init = init
        # (walk, segments, budget): the worker finds its items by walking (engine.walkfeed, engine.walkwork).
        self.walk = walk
        # Local worker processes work in the parent's current directory, also when the parent
        # changed it after a warm pool started (relative paths then mean the same to both).
        self.cwd = cwd

    def __getstate__(self) -> tuple:
        return (self.fn, self.items, self.retry, self.timeout, self.beacon, self.check_values, self.init,
                self.walk, self.cwd)

    def __setstate__(self, state: tuple) -> None:
        (self.fn, self.items, self.retry, self.timeout, self.beacon, self.check_values, self.init,
         self.walk, self.cwd) = state
        self.stop = None


class ChunkResult:
    """Outcomes of one chunk, compact: ``values[i]`` (``None`` where it failed), ``errors``
    (position -> :class:`ItemError`), ``attempts`` (position -> count, only where not 1),
    ``durations`` (seconds per item: an ``array`` or a compact :class:`~batchkit.engine.timings.Durations`),
    ``elapsed`` (the chunk's time in the worker), and for the
    run's timeline ``worker`` (:func:`worker_id`), ``started`` (wall clock) and ``events``
    (``(position, "retry", time, message)`` for each retry)."""

    __slots__ = ("values", "errors", "attempts", "durations", "elapsed", "worker", "started", "events")

    def __init__(
        self,
        values: list,
        errors: dict[int, ItemError],
        attempts: dict[int, int],
        durations: array | Durations,
        elapsed: float,
        worker: str = "",
        started: float = 0.0,
        events: list | None = None,
    ) -> None:
        self.values = values
        self.errors = errors
        self.attempts = attempts
        self.durations = durations
        self.elapsed = elapsed
        self.worker = worker
        self.started = started
        self.events = events if events is not None else []

    def __getstate__(self) -> tuple:
        return (self.values, self.errors, self.attempts, self.durations, self.elapsed, self.worker,
                self.started, self.events)

    def __setstate__(self, state: tuple) -> None:
        (self.values, self.errors, self.attempts, self.durations, self.elapsed, self.worker,
         self.started, self.events) = state


def _follow(cwd: str) -> None:
    try:
        if os.getcwd() != cwd:
            os.chdir(cwd)
    except OSError:
        pass  # gone or unreadable: relative paths fail as they would in the parent


def _capture(exc: BaseException) -> ItemError:
    step = getattr(exc, "__batchkit_step__", None)
    cause = exc.__cause__ if step is not None and exc.__cause__ is not None else exc
    return ItemError.from_exception(cause, step=step, skip=1)


def run_chunk(task: Task) -> ChunkResult:
    """Run ``task.fn`` on every item of ``task.items``; never raises for an item's error."""
    if task.cwd is not None:
        _follow(task.cwd)
    if task.walk is not None:
        from .walkwork import run_walk  # it runs the unit's files through run_chunk again

        return run_walk(task)
    if task.init is not None:
        failed = _initialize(task)
        if failed is not None:
            return _all_failed(task, failed)
    if task.retry is None and task.timeout is None and not task.check_values:
        return _run_fast(task)
    return _run_general(task)


# Per worker thread: the runs whose initializer ran here, each with the function its first chunk
# brought. A worker process runs its tasks in one thread, a thread pool in many, so per thread is
# "once per worker" on every backend. Later chunks of a run call that first function: code sent by
# value (a script's or a notebook's functions, a job file) arrives with a fresh copy of its module
# globals in every chunk, so the model the initializer stored in a global would be missing from
# the next chunk's copy. A worker serving many runs keeps the latest few.
_local = threading.local()
KEEP_RUNS = 8


def _initialize(task: Task) -> ItemError | None:
    token, initializer, initargs = task.init  # type: ignore[misc]
    runs = getattr(_local, "runs", None)
    if runs is None:
        runs = _local.runs = {}
    fn = runs.get(token)
    if fn is not None:
        task.fn = fn
        return None
    try:
        initializer(*initargs)
    except UNCAPTURED:
        raise
    except CAPTURED as exc:  # the chunk's items fail with it; the next chunk tries again
        error = ItemError.from_exception(exc, step="initializer", skip=1)
        return ItemError(error.type, f"the worker's initializer failed: {error.message}", error.traceback,
                         "exception", "initializer")
    runs[token] = task.fn
    if len(runs) > KEEP_RUNS:
        del runs[next(iter(runs))]
    return None


def _all_failed(task: Task, error: ItemError) -> ChunkResult:
    n = len(task.items)
    return ChunkResult([None] * n, dict.fromkeys(range(n), error), {}, Durations(array("d"), n, 0.0), 0.0,
                       worker_id(), time.time())


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
    wall = time.time()
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
            except UNCAPTURED:
                raise
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
                except UNCAPTURED:
                    raise
                except CAPTURED as exc:
                    append(None)
                    errors[i] = _capture(exc)
        position[slot] = len(items)
        end = clock()
    finally:
        if beacon is not None:
            beacon.close()
    durations: array | Durations = _durations(start, stamps)
    rest = len(values) - len(stamps)
    if rest:  # the untimed items share their average, stored once
        durations = Durations(durations, rest, (end - stamps[-1]) / rest)
    return ChunkResult(values, errors, {}, durations, end - start, worker_id(), wall)


def _run_general(task: Task) -> ChunkResult:
    fn, items, retry, timeout, stop = task.fn, task.items, task.retry, task.timeout, task.stop
    values: list = []
    errors: dict[int, ItemError] = {}
    attempts: dict[int, int] = {}
    durations = array("d")
    events: list = []
    clock = time.perf_counter
    wall = time.time()
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
                    if retry is not None and retry.retries_kind("timeout", attempt):
                        events.append((i, "retry", time.time(), error.summary()))
                        time.sleep(retry.delay(attempt))
                        continue
                except UNCAPTURED:
                    raise
                except CAPTURED as exc:
                    value, error = None, _capture(exc)
                    if retry is not None and retry.should_retry(exc, attempt):
                        events.append((i, "retry", time.time(), error.summary()))
                        time.sleep(retry.delay(attempt))
                        continue
                break
            durations.append(clock() - t0)
            if task.check_values and error is None:
                try:  # a round trip: some values pickle but cannot be loaded again
                    pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
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
    return ChunkResult(values, errors, attempts, durations, clock() - start, worker_id(), wall, events)


class _ItemTimedOut(Exception):
    pass


def _call_with_deadline(fn: Callable[[Any], Any], item: Any, timeout: float) -> Any:
    box: list = []

    def target() -> None:
        try:
            box.append((True, fn(item)))
        except BaseException as exc:  # noqa: BLE001 - handed back to the calling thread below
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
