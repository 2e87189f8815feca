"""The engine: one loop, shared by every backend, that runs chunks and turns faults into outcomes.

It pulls chunks lazily from the input, keeps about two per worker in flight, and for each one
that comes back merges the outcomes, reports progress, applies ``max_failures`` and hands the
chunk on (in input order or as completed). Infrastructure faults never reach the user: when a
worker dies, the items of its chunk that had not finished are re-run, and the item it was
running is pinned down (re-run alone if need be) and recorded as a crash; when an item overruns
``timeout`` on the process backend, its worker is killed and the item recorded as timed out.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import math
import time
import weakref
from collections import deque
from queue import Empty, SimpleQueue
from typing import Any, Callable, Iterable, Iterator, Union

from ..backends import resolve
from ..errors import BackendError, Interrupted, UsageError, WorkerCrashed
from ..report import ChunkOutcomes
from ..retry import Retry, coerce_retry
from ..state.keys import text_key
from .beacon import Beacon
from .chunking import Chunker, check_chunk_size, split
from .progress import make_progress
from .recovery import Slice, is_pickling_error, kill_overdue, recover
from .tracebacks import DYNAMIC, JOB_MODULE_PREFIX, SourceMap
from .worker import Task, run_chunk

MaxFailures = Union[int, float, None]

# How many times in a row the pool may die before running any item, before we give up.
MAX_BARREN_RESTARTS = 5

# Engines running now, so a signal handler (see interrupt.py) can ask them to stop cleanly.
ACTIVE: weakref.WeakSet = weakref.WeakSet()


def _drain(finished: SimpleQueue, timeout: float, in_flight: dict) -> list[cf.Future]:
    """The futures done so far, waiting up to ``timeout`` for the first (none: an empty list)."""
    try:
        done = [finished.get(timeout=timeout)]
    except Empty:
        return []
    while True:
        try:
            done.append(finished.get_nowait())
        except Empty:
            # Only futures still ours: one collected early by the crash drain may report late.
            return [f for f in done if f in in_flight]


def parse_max_failures(value: MaxFailures) -> MaxFailures:
    """Validate ``max_failures``: a count >= 1, or a fraction strictly between 0 and 1."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise UsageError(f"max_failures={value!r}: use a count (e.g. 10) or a fraction (e.g. 0.05)")
    if isinstance(value, int) and value >= 1:
        return value
    if isinstance(value, float) and 0 < value < 1:
        return value
    raise UsageError(f"max_failures={value!r}: use a count >= 1 or a fraction between 0 and 1")


def _length(items: Iterable[Any]) -> int | None:
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None


class Engine:
    """One run of ``fn`` over ``items``. :meth:`chunks` drives it; the rest is bookkeeping."""

    def __init__(self, fn: Callable[[Any], Any], items: Iterable[Any], *, backend: Any = "process",
                 workers: int | None = None, chunk_size: int | str = "auto", ordered: bool = True,
                 retry: Retry | int | None = None, timeout: float | None = None,
                 progress: bool | str | None = None, max_failures: MaxFailures = None,
                 desc: str | None = None, key: Callable[[Any], Any] | None = None,
                 skip: Callable[[Any], bool] | None = None,
                 on_chunk: Callable[[ChunkOutcomes], None] | None = None) -> None:
        if not callable(fn):
            raise UsageError(f"fn must be callable, got {type(fn).__name__}")
        if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
            raise UsageError(f"timeout={timeout!r}: use a number of seconds > 0")
        self.fn = fn
        self.items = items
        self.backend_option = backend
        self.workers_option = workers
        self.chunk_size = check_chunk_size(chunk_size)
        self.ordered = ordered
        self.retry = coerce_retry(retry)
        self.timeout = timeout
        self.progress_option = progress
        self.max_failures = parse_max_failures(max_failures)
        self.desc = desc
        self.key = key
        self.skip = skip
        self.on_chunk = on_chunk
        self._sources = SourceMap(fn)  # puts file names back into tracebacks from workers
        # What the run found out, read by run()/imap() callers when it ends.
        self.total = _length(items)
        self.seen = 0
        self.skipped = 0
        self.succeeded = 0
        self.failed = 0
        self.halted: str | None = None
        self.elapsed = 0.0
        self.restarts = 0
        self.stopping: Interrupted | None = None
        self._stop_deadline = 0.0

    def request_stop(self, reason: Interrupted, grace: float) -> None:
        """Stop dispatching; let in-flight chunks finish for ``grace`` seconds, then raise ``reason``.

        Called from a signal handler (see :mod:`batchkit.interrupt`); safe to call twice.
        """
        if self.stopping is None:
            self.stopping = reason
            self._stop_deadline = time.monotonic() + grace

    # -- input -------------------------------------------------------------------------------

    def _source(self, chunker: Chunker) -> Iterator[ChunkOutcomes]:
        seq = 0
        if self.skip is None:
            # Nothing to skip: keys (if any) are computed later, where they are needed.
            start = 0
            for batch in split(self.items, chunker):
                self.seen = start + len(batch)
                yield ChunkOutcomes(seq, start, batch, keyfn=self.key)
                start = self.seen
                seq += 1
            return
        keyfn, skip = self.key, self.skip

        def keyed() -> Iterator[tuple[int, Any, Any]]:
            for i, item in enumerate(self.items):
                k = text_key(keyfn(item)) if keyfn is not None else None
                if skip is not None and skip(k):
                    self.skipped += 1
                    continue
                yield i, item, k

        for batch in split(keyed(), chunker):
            indices = [b[0] for b in batch]
            self.seen = indices[-1] + 1
            yield ChunkOutcomes(seq, indices[0], [b[1] for b in batch], indices, [b[2] for b in batch])
            seq += 1

    # -- the loop ----------------------------------------------------------------------------

    def chunks(self) -> Iterator[ChunkOutcomes]:
        """Run, yielding each chunk once all its items have an outcome."""
        backend, owned = resolve(self.backend_option, self.workers_option)
        started = time.monotonic()
        kill = True
        beacon = None
        progress = None
        in_flight: dict[cf.Future, Slice] = {}
        stop = [False]
        ACTIVE.add(self)
        try:
            start = getattr(backend, "start", None)
            if start is not None:
                start()
            workers = max(1, backend.workers)
            chunker = Chunker(self.chunk_size, workers, self.total)
            max_in_flight = 2 * workers
            if backend.beacon:
                beacon = Beacon(max_in_flight + 1)
            progress = make_progress(self.progress_option, self.total, self.desc)
            limit = self._failure_limit()
            source = self._source(chunker)
            exhausted = False
            # Futures report here when done: waiting on this queue costs O(1) per completion,
            # where cf.wait() over every in-flight future costs O(in flight) per call.
            finished_futures: SimpleQueue = SimpleQueue()
            queue: deque[Slice] = deque()  # slices to re-run after a crash
            self._queue = queue
            isolate: deque[Slice] = deque()  # suspects of a crash, each to be run alone
            waiting: dict[int, ChunkOutcomes] = {}  # finished, held back to keep input order
            next_seq = 0
            open_chunks = 0
            barren = 0

            def submit(sub: Slice) -> bool:
                if beacon is not None:
                    sub.slot = beacon.acquire()
                whole = sub.lo == 0 and sub.hi == len(sub.chunk)
                items = sub.chunk.items if whole else sub.chunk.items[sub.lo:sub.hi]
                where = (beacon.path, sub.slot) if beacon is not None and sub.slot is not None else None
                # `stop` only reaches in-memory workers; pickling drops it (see Task).
                sub.task = Task(self.fn, items, self.retry, self.timeout, where,
                                None if backend.beacon else stop, sub.check_values)
                fut = backend.submit(run_chunk, sub.task)
                in_flight[fut] = sub
                fut.add_done_callback(finished_futures.put)
                # Done already (the serial backend runs it inside submit): collect it before
                # running another, so an interrupt never strands a finished chunk unrecorded.
                return fut.done()

            while True:
                # Fill the pipeline: re-runs first, then isolated suspects alone, then new chunks.
                while len(in_flight) < max_in_flight and self.stopping is None:
                    if any(sub.isolated for sub in in_flight.values()):
                        break  # a suspect runs alone, so a crash can only be its own
                    if queue:
                        if submit(queue.popleft()):
                            break
                    elif isolate:
                        if not in_flight:
                            submit(isolate.popleft())
                        break
                    elif exhausted or self.halted or open_chunks >= 2 * max_in_flight:
                        break
                    else:
                        chunk = next(source, None)
                        if chunk is None:
                            exhausted = True
                            if self.total is None:
                                progress.set_total(self.seen - self.skipped)
                            break
                        open_chunks += 1
                        if submit(Slice(chunk, 0, len(chunk))):
                            break
                if self.stopping is not None and (not in_flight or time.monotonic() > self._stop_deadline):
                    kill = bool(in_flight)
                    raise self.stopping
                if not in_flight:
                    if queue or isolate:
                        continue
                    break

                poll = 0.5 if self.timeout is None or beacon is None else min(0.5, self.timeout / 10)
                done = _drain(finished_futures, poll, in_flight)
                crashed: list[tuple[Slice, WorkerCrashed]] = []
                finished: list[ChunkOutcomes] = []
                for fut in done:
                    sub = in_flight.pop(fut)
                    self._collect(sub, fut, crashed, finished, chunker, beacon)
                if crashed:
                    if beacon is not None and in_flight:
                        # A broken loky pool fails every call in flight; judge them together.
                        rest, _ = cf.wait(list(in_flight), timeout=30)
                        for fut in rest:
                            self._collect(in_flight.pop(fut), fut, crashed, finished, chunker, beacon)
                    fix = recover(crashed, beacon, self.timeout)
                    queue.extend(fix.rerun)
                    isolate.extend(fix.isolate)
                    for chunk, pos, error, duration in fix.failed:
                        chunk.fail(pos, error, duration)
                        if chunk.remaining == 0:
                            finished.append(chunk)
                    self.restarts += 1
                    barren = 0 if fix.progressed else barren + 1
                    if barren >= MAX_BARREN_RESTARTS:
                        raise BackendError(
                            f"the {backend.name} workers died {barren} times in a row before running "
                            f"any item (last: {crashed[-1][1]}); check the environment and that "
                            "the function can be loaded in a fresh process")
                elif done:
                    barren = 0
                if beacon is not None and self.timeout is not None:
                    kill_overdue(in_flight.values(), beacon, self.timeout)

                for chunk in finished:
                    n_failed = len(chunk.errors)
                    self.failed += n_failed
                    self.succeeded += len(chunk) - n_failed
                    progress.update(len(chunk), n_failed)
                    if self.on_chunk is not None:
                        self.on_chunk(chunk)
                    if limit is not None and self.halted is None and self.failed >= limit(self):
                        self.halted = self._halt_message()
                    if not self.ordered:
                        open_chunks -= 1
                        yield chunk
                    else:
                        waiting[chunk.seq] = chunk
                # Held-back chunks count as open, so a slow first chunk cannot make the
                # ordered stream buffer the whole input.
                while next_seq in waiting:
                    open_chunks -= 1
                    yield waiting.pop(next_seq)
                    next_seq += 1
            kill = False
        except Interrupted:
            raise
        except BaseException:
            kill = True
            raise
        finally:
            ACTIVE.discard(self)
            stop[0] = True
            self.elapsed = time.monotonic() - started
            for fut in in_flight:
                fut.cancel()
            if progress is not None:
                progress.close()
            try:
                if owned or kill:
                    backend.close(kill=kill)
            finally:
                if beacon is not None:
                    beacon.close()

    # -- what came back ----------------------------------------------------------------------

    def _collect(self, sub: Slice, fut: cf.Future, crashed: list, finished: list,
                 chunker: Chunker, beacon: Beacon | None) -> None:
        exc = fut.exception()
        if isinstance(exc, WorkerCrashed):
            crashed.append((sub, exc))
            return
        if beacon is not None:
            beacon.release(sub.slot)
        if exc is not None:
            if is_pickling_error(exc):
                if not sub.check_values:
                    # Most likely one value could not travel back: re-run the slice checking each.
                    self._queue.append(Slice(sub.chunk, sub.lo, sub.hi, sub.isolated, check_values=True))
                    return
                raise UsageError(f"could not send the function or its items to the workers: {exc}; "
                                 "make them picklable, or use backend='thread'") from exc
            if isinstance(exc, (UsageError, BackendError)):
                raise exc
            raise BackendError(f"the {type(exc).__name__} backend call failed: {exc}") from exc
        result = fut.result()
        if not sub.isolated:
            chunker.observe(len(result.values), result.elapsed)
        n = sub.hi - sub.lo
        if len(result.values) < n:  # a chunk that stopped early: only on interrupt
            raise BackendError("a chunk returned early; the run was interrupted")
        if result.errors:
            self._readable(result.errors)
        sub.chunk.merge(sub.lo, result)
        if sub.chunk.remaining == 0:
            finished.append(sub.chunk)

    def _readable(self, errors: dict) -> None:
        # Frames of code sent by value come back as "<dynamic-code>"; the parent knows better.
        for pos, err in errors.items():
            if DYNAMIC in err.traceback or JOB_MODULE_PREFIX in err.traceback:
                errors[pos] = dataclasses.replace(err, traceback=self._sources.fix(err.traceback))

    # -- max_failures ------------------------------------------------------------------------

    def _failure_limit(self) -> Callable[[Engine], float] | None:
        mf = self.max_failures
        if mf is None:
            return None
        if isinstance(mf, int):
            return lambda e: mf
        if self.total is not None:
            limit = max(1, math.ceil(mf * self.total))
            return lambda e: limit
        # Unknown length: a fraction of the items finished so far, once there are enough of them.
        return lambda e: max(math.ceil(mf * (e.succeeded + e.failed)), math.ceil(1 / mf), 1)

    def _halt_message(self) -> str:
        text = f"max_failures={self.max_failures} reached with {self.failed} failed items; dispatching stopped"
        if self.total is not None:
            text += f", {self.total - self.seen} items not run"
        else:
            text += f", items after input position {self.seen - 1} not run"
        return text

    @property
    def not_run(self) -> int | None:
        """Items never started because dispatching stopped early (``None``: length unknown)."""
        if self.halted is None:
            return 0
        if self.total is None:
            return None
        return self.total - self.seen
