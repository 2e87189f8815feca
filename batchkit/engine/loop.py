"""The engine: one loop, shared by every backend, that runs chunks and turns faults into outcomes.

:meth:`Engine.chunks` pulls chunks lazily from the input (:mod:`~batchkit.engine.feed`), keeps
about two per worker in flight (:mod:`~batchkit.engine.window`), settles each finished one —
merging outcomes (:mod:`~batchkit.engine.settle`), reporting progress, applying ``max_failures`` —
and hands it on in the run's one order (:mod:`~batchkit.engine.sequencer`). Infrastructure faults
never reach the user: when a worker dies, the items of its chunk that had not finished are re-run
and the item it was running is pinned down and recorded as a crash (:mod:`~batchkit.engine.recovery`);
an item that overruns ``timeout`` on local worker processes has its worker killed and is recorded
as timed out.

A stop (:meth:`Engine.request_stop`, from a signal) ends dispatching, lets in-flight chunks finish
for a grace period and raises :class:`~batchkit.errors.Interrupted`. Whatever the stop cut short
is simply not handed on: it is never recorded as failed, and ``--resume`` runs it again.
"""

from __future__ import annotations

import math
import os
import time
import uuid
import weakref
from typing import Any, Callable, Iterable, Iterator

from ..backends import resolve
from ..errors import Interrupted, UsageError
from ..options import MaxFailures, RunOptions, check_max_failures
from .beacon import Beacon
from .chunk import ChunkOutcomes
from .chunking import Chunker
from .feed import WAKE, Feed
from .progress import make_progress
from .recovery import Slice, kill_overdue
from .sequencer import Sequencer
from .settle import settle
from .tracebacks import SourceMap
from .walkfeed import make_feed
from .window import Window
from .worker import Task

__all__ = ["ACTIVE", "Engine", "MaxFailures", "parse_max_failures"]

# Engines running now, so a signal handler (see batchkit.interrupt) can ask them to stop cleanly.
ACTIVE: weakref.WeakSet = weakref.WeakSet()

parse_max_failures = check_max_failures  # the name older code imports


class Engine:
    """One run of ``fn`` over ``items``: iterate :meth:`chunks`; the rest is bookkeeping.

    ``options`` is a :class:`~batchkit.options.RunOptions` (or pass its fields as keywords).
    ``key`` computes item keys; ``skip(key)`` leaves out items an earlier attempt finished;
    ``on_chunk`` is called with each chunk as it finishes (before ordering).
    """

    def __init__(self, fn: Callable[[Any], Any], items: Iterable[Any], options: RunOptions | None = None, *,
                 key: Callable[[Any], Any] | None = None, skip: Callable[[str], bool] | None = None,
                 on_chunk: Callable[[ChunkOutcomes], None] | None = None, keyed: bool = False,
                 keep_skipped: bool = False, **kwargs: Any) -> None:
        if not callable(fn):
            raise UsageError(f"fn must be callable, got {type(fn).__name__}")
        if options is None:
            options = RunOptions.build(**kwargs)
        elif kwargs:
            options = options.replace(**kwargs)
        self.fn = fn
        self.items = items
        self.options = options
        self.ordered = options.ordered
        self.retry = options.retry
        self.timeout = options.timeout
        self.desc = options.desc
        self.key = key if key is not None else options.key
        self.skip = skip
        self.keyed = keyed
        self.keep_skipped = keep_skipped
        self.skipped_items: list | None = None
        self.on_chunk = on_chunk
        self._sources = SourceMap(fn)  # puts file names back into tracebacks from workers
        # What the run found out, read by the lifecycle when it ends.
        self.total = _length(items)
        self.seen = 0
        self.skipped = 0
        self.succeeded = 0
        self.failed = 0
        self.halted: str | None = None
        self.elapsed = 0.0
        self.restarts = 0
        self.backend_name = ""
        self.stopping: Interrupted | None = None
        self._stop_deadline = 0.0
        self._window: Window | None = None
        self._feed: Any = None
        self._barren = 0

    def request_stop(self, reason: Interrupted, grace: float) -> None:
        """Stop dispatching; let in-flight chunks finish for ``grace`` seconds, then raise ``reason``.

        Called from a signal handler (see :mod:`batchkit.interrupt`); safe to call twice.
        """
        if self.stopping is None:
            self.stopping = reason
            self._stop_deadline = time.monotonic() + grace
            close_endless(self.items)
        if self._window is not None:
            self._window.finished.put(WAKE)  # wake the loop now rather than at its next poll

    # -- the loop ----------------------------------------------------------------------------

    def chunks(self) -> Iterator[ChunkOutcomes]:
        """Run, yielding each chunk once all its items have an outcome (in the run's order)."""
        backend, owned = resolve(self.options.backend, self.options.workers)
        self.backend_name = backend.name
        started = time.monotonic()
        kill, beacon, progress, feed = True, None, None, None
        ACTIVE.add(self)
        from ..interrupt import current

        stop = current()
        if stop is not None and stop.requested is not None:  # the signal came before we registered
            self.request_stop(stop.requested, stop.grace)
        stop_flag = [False]
        try:
            backend.start()
            workers = max(1, backend.workers)
            chunker = Chunker(self.options.chunk_size, workers, self.total)
            if backend.killable_workers:
                beacon = Beacon(2 * workers + 1)
            window = self._window = Window(backend, self._task_maker(backend, beacon, stop_flag), beacon,
                                           2 * workers)
            feed = self._feed = make_feed(
                self.items, chunker, backend, timeout=self.timeout, key=self.key, skip=self.skip, keyed=self.keyed,
                make_plain=lambda: Feed(self.items, chunker, key=self.key, skip=self.skip, wake=window.finished,
                                        keyed=self.keyed, keep_skipped=self.keep_skipped))
            self.skipped_items = feed.skipped_items
            progress = make_progress(self.options.progress, self.total, self.desc)
            self._limit = self._failure_limit()
            sequencer: Sequencer = feed.sequencer(self.ordered)
            shown_skipped = 0
            while True:
                if self.stopping is None:
                    window.fill(self._next_chunk(feed), more_input=not feed.exhausted and not self.halted,
                                urgent=feed.urgent)
                    if feed.skipped != shown_skipped:
                        shown_skipped = feed.skipped
                        progress.skip(shown_skipped)
                    if feed.exhausted and self.total is None:
                        progress.set_total(feed.seen)
                elif not window.in_flight or time.monotonic() > self._stop_deadline:
                    kill = bool(window.in_flight)
                    window.cancel_all()
                    sequencer.drop_held()
                    raise self.stopping
                if window.idle and (feed.exhausted or self.halted or self.stopping):
                    if self.stopping is not None:
                        continue  # nothing left in flight: the check above raises
                    break
                finished = settle(self, window, window.wait(self._poll(feed, beacon)), chunker, sequencer)
                if beacon is not None and self.timeout is not None:
                    kill_overdue(window.in_flight.values(), beacon, self.timeout)
                for chunk in finished:
                    self._account(chunk, progress)
                    for ready in sequencer.add(chunk):
                        window.open_chunks -= 1
                        if len(ready):  # a piece of a walk may have found no file
                            yield ready
            kill = False
        except BaseException:
            kill = True
            raise
        finally:
            ACTIVE.discard(self)
            stop_flag[0] = True
            if feed is not None:
                self.seen, self.skipped = feed.seen, feed.skipped
                feed.close()
                close_endless(self.items)
            self.elapsed = time.monotonic() - started
            self._close(backend, owned, kill, progress, beacon)

    def _next_chunk(self, feed: Feed) -> Callable[[], ChunkOutcomes | None]:
        def pull() -> ChunkOutcomes | None:
            chunk = feed.next_chunk()
            self.seen, self.skipped = feed.seen, feed.skipped
            return chunk
        return pull

    def _poll(self, feed: Feed, beacon: Beacon | None) -> float:
        poll = 0.5 if self.timeout is None or beacon is None else min(0.5, self.timeout / 10)
        if self.stopping is not None:
            poll = min(poll, max(0.0, self._stop_deadline - time.monotonic()))
        hint = feed.wait_hint()
        return poll if hint is None else min(poll, hint)

    def _task_maker(self, backend: Any, beacon: Beacon | None, stop_flag: list) -> Callable[[Slice], Task]:
        in_process = backend.runs_in_process
        local = backend.killable_workers  # worker processes on this machine: they follow our directory
        init = None
        if self.options.initializer is not None:
            init = (uuid.uuid4().hex, self.options.initializer, self.options.initargs)

        def make(sub: Slice) -> Task:
            whole = sub.lo == 0 and sub.hi == len(sub.chunk)
            items = sub.chunk.items if whole else sub.chunk.items[sub.lo:sub.hi]
            where = (beacon.path, sub.slot) if beacon is not None and sub.slot is not None else None
            # `stop` only reaches in-memory workers; pickling drops it (see Task).
            return Task(self.fn, items, self.retry, self.timeout, where, stop_flag if in_process else None,
                        sub.check_values, init, sub.chunk.walk, os.getcwd() if local else None)
        return make

    def _close(self, backend: Any, owned: bool, kill: bool, progress: Any, beacon: Beacon | None) -> None:
        window, self._window = self._window, None
        if window is not None:
            window.cancel_all()
        if progress is not None:
            progress.close(ok=self.failed == 0 and not self.halted)
        try:
            if owned or kill:
                backend.close(kill=kill)
        finally:
            backend.finish()
            if beacon is not None:
                beacon.close()

    # -- counts, progress, max_failures ---------------------------------------------------------

    def _account(self, chunk: ChunkOutcomes, progress: Any) -> None:
        n_failed = len(chunk.errors)
        self.failed += n_failed
        self.succeeded += len(chunk) - n_failed
        progress.update(len(chunk), n_failed)
        if self.on_chunk is not None:
            self.on_chunk(chunk)
        if self._limit is not None and self.halted is None and self.failed >= self._limit(self):
            self.halted = self._halt_message()

    def _failure_limit(self) -> Callable[[Engine], float] | None:
        mf = self.options.max_failures
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
        text = (f"max_failures={self.options.max_failures} reached with {self.failed} failed items; "
                "dispatching stopped")
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


def close_endless(items: Any) -> None:
    """End an endless source (a watched directory, a followed queue) that declares it can be
    closed from any thread: its reader, blocked waiting for the next item, returns."""
    close = getattr(items, "close", None)
    if close is not None and getattr(items, "endless", False):
        try:
            close()
        except Exception:  # a source that fails to close must not hide how the run ended
            pass


def _length(items: Iterable[Any]) -> int | None:
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None
