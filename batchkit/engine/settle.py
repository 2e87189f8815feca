"""Settling finished slices: merge their outcomes, and turn every fault of a call into outcomes.

:func:`settle` is the engine's step for the slices its window reports finished. A slice that came
back is merged into its chunk (a unit of a file walk first becomes a chunk of the files it found).
A slice whose worker died is recovered (:mod:`~batchkit.engine.recovery`): its unfinished items
re-run, the item that killed the worker is recorded as a crash, and too many crashes in a row
without progress end the run. A slice whose results could not travel back is re-run checking each
value, then halved until the one item or value at fault is found. While the run stops, what the
stop cut short is dropped, or cut to the outcomes before it: it is never recorded as failed.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import time
from typing import TYPE_CHECKING, Any

from ..errors import BackendError, UsageError, WorkerCrashed
from ..outcome import ItemError
from .chunk import ChunkOutcomes
from .chunking import Chunker
from .recovery import Slice, is_pickling_error, recover
from .sequencer import Sequencer
from .tracebacks import DYNAMIC, JOB_MODULE_PREFIX
from .window import Window

if TYPE_CHECKING:
    from .loop import Engine

# How many times in a row the workers may die without a sign of progress before we give up.
MAX_BARREN_RESTARTS = 5
# How long an item stopped by a signal waits for the run's own stop request to arrive.
STOP_NOTICE = 1.0


def settle(engine: Engine, window: Window, done: list[tuple[Slice, cf.Future]], chunker: Chunker,
           sequencer: Sequencer) -> list[ChunkOutcomes]:
    """Merge finished slices; recover from crashed workers; return the chunks now complete."""
    crashed: list[tuple[Slice, WorkerCrashed]] = []
    finished: list[ChunkOutcomes] = []
    for sub, fut in done:
        _collect(engine, window, sub, fut, crashed, finished, chunker, sequencer)
    if crashed and engine.stopping is None:
        if window.beacon is not None and window.in_flight:
            for sub, fut in window.take_rest(timeout=30):
                _collect(engine, window, sub, fut, crashed, finished, chunker, sequencer)
        _recover(engine, window, crashed, finished)
    elif crashed:  # stopping: the crash is most likely the stop itself; nothing is recorded
        for sub, _ in crashed:
            window.release(sub)
    return finished


def _collect(engine: Engine, window: Window, sub: Slice, fut: cf.Future, crashed: list, finished: list,
             chunker: Chunker, sequencer: Sequencer) -> None:
    exc = fut.exception() if not fut.cancelled() else cf.CancelledError()
    chunk = sub.chunk
    if chunk.walk is not None:
        # A unit of a walk done by its worker: from here on an ordinary chunk of the files it
        # found. Whatever failed is walked again here, so the usual rules (crash pinning,
        # halving, value checks) apply to known files.
        if exc is not None or not engine._feed.unfold(chunk, fut.result()):
            engine._feed.expand(chunk)
            if exc is None:  # the worker could not see the tree: its files run as they are
                window.release(sub)
                if len(chunk):
                    window.rerun.append(Slice(chunk, 0, len(chunk)))
                else:
                    finished.append(chunk)
                return
        sub.hi = len(chunk)
    if isinstance(exc, WorkerCrashed):
        crashed.append((sub, exc))
        return
    window.release(sub)
    if exc is not None:
        if engine.stopping is not None:
            return  # cut short by the stop: left for --resume
        _failed_call(engine, window, sub, exc)
        if sub.chunk.remaining == 0:  # its last item failed alone (it could not travel)
            finished.append(sub.chunk)
        return
    result = fut.result()
    n = sub.hi - sub.lo
    if not sub.isolated:
        chunker.observe(len(result.values), result.elapsed)
    if result.errors:
        cut = _readable(engine, result.errors)
        if cut is not None:  # an item stopped by the run's own stop signal
            _cut(sub, result, cut, finished, sequencer)
            return
    if len(result.values) < n:  # a chunk that stopped early: only when the run stops
        _cut(sub, result, len(result.values), finished, sequencer)
        return
    if sub.attempt > 1:  # an item re-run after a crash or timeout
        result.attempts = {p: result.attempts.get(p, 1) + sub.attempt - 1 for p in range(n)}
    sub.chunk.merge(sub.lo, result)
    engine._barren = 0
    if sub.chunk.remaining == 0:
        finished.append(sub.chunk)


def _failed_call(engine: Engine, window: Window, sub: Slice, exc: BaseException) -> None:
    if not is_pickling_error(exc):
        if isinstance(exc, (UsageError, BackendError)):
            raise exc
        raise BackendError(f"the {engine.backend_name} backend failed: {type(exc).__name__}: {exc}") from exc
    if not sub.check_values:
        # Most likely one value could not travel back: re-run the slice checking each.
        window.rerun.append(dataclasses.replace(sub, slot=None, task=None, killed_at=None, check_values=True))
        return
    _check_picklable(engine.fn, "the function", exc)
    if engine.options.initializer is not None:
        _check_picklable((engine.options.initializer, engine.options.initargs), "the initializer", exc)
    if sub.hi - sub.lo > 1:  # still failing: halve until the one item or value at fault is found
        mid = (sub.lo + sub.hi) // 2
        window.rerun.extend(dataclasses.replace(sub, lo=lo, hi=hi, slot=None, task=None, killed_at=None)
                            for lo, hi in ((sub.lo, mid), (mid, sub.hi)))
        return
    reason = str(exc).splitlines()[0] if str(exc) else repr(exc)
    try:
        _check_picklable(sub.chunk.items[sub.lo], "the item", exc)
        what = f"its value could not be sent back from the worker: {reason}"
    except UsageError as bad_item:
        what = str(bad_item)
    else:
        if not sub.isolated:
            # A value that fails to unpickle here breaks the whole pool, and every slice in flight
            # gets the same error: only one that failed running alone is at fault.
            window.isolate.append(dataclasses.replace(sub, isolated=True, slot=None, task=None,
                                                      killed_at=None))
            return
    sub.chunk.fail(sub.lo, ItemError(type(exc).__name__, what, "", "exception"))


def _readable(engine: Engine, errors: dict) -> int | None:
    """Fix tracebacks of code sent by value; return the first position stopped by a stop signal."""
    cut = None
    for pos, err in errors.items():
        if DYNAMIC in err.traceback or JOB_MODULE_PREFIX in err.traceback:
            errors[pos] = dataclasses.replace(err, traceback=engine._sources.fix(err.traceback))
        if err.kind == "interrupted":
            if _stop_arrives(engine):
                cut = pos if cut is None else min(cut, pos)
            else:  # stopped by a signal that was not the run's: an ordinary failure
                errors[pos] = dataclasses.replace(err, kind="exception")
    return cut


def _stop_arrives(engine: Engine) -> bool:
    # A stop signal reaches the item's process (a shell command) and us at the same moment;
    # give our own handler a moment to run before deciding the item failed on its own.
    deadline = time.monotonic() + STOP_NOTICE
    while engine.stopping is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return engine.stopping is not None


def _cut(sub: Slice, result: Any, n: int, finished: list, sequencer: Sequencer) -> None:
    """The run is stopping: keep the first ``n`` outcomes of a whole chunk, if its turn allows."""
    chunk = sub.chunk
    if sub.lo != 0 or sub.hi != len(chunk) or n == 0 or not sequencer.is_next(chunk.seq):
        return
    part = ChunkOutcomes(chunk.seq, chunk.start, chunk.items[:n],
                         None if chunk.indices is None else chunk.indices[:n],
                         None if chunk.keys is None else chunk.keys[:n], chunk.keyfn)
    result.values, result.durations = result.values[:n], result.durations[:n]
    result.errors = {p: e for p, e in result.errors.items() if p < n}
    result.attempts = {p: a for p, a in result.attempts.items() if p < n}
    result.events = [e for e in result.events if e[0] < n]
    part.merge(0, result)
    finished.append(part)


def _recover(engine: Engine, window: Window, crashed: list, finished: list) -> None:
    fix = recover(crashed, window.beacon, engine.timeout, engine.retry)
    window.rerun.extend(fix.rerun)
    window.isolate.extend(fix.isolate)
    now = time.time()
    for chunk, pos, error, duration, attempts in fix.failed:
        chunk.fail(pos, error, duration, attempts, when=now)
        if chunk.remaining == 0:
            finished.append(chunk)
    engine.restarts += 1
    # With a beacon, a crash that found an item running is progress; without one (Dask, a
    # plain executor) only a chunk that came back is, and halving the slices that died is free:
    # it ends in single items, whose deaths count. A chunk is down to single items after
    # log2(its size) halvings, so workers that die on everything still end the run.
    if fix.progressed:
        engine._barren = 0
    elif not fix.narrowed:
        engine._barren += 1
    if engine._barren >= MAX_BARREN_RESTARTS:
        raise BackendError(
            f"the {engine.backend_name} workers died {engine._barren} times in a row without finishing any "
            f"item (last: {crashed[-1][1]}); check the workers' environment and that the function "
            "can be loaded in a fresh process")


def _check_picklable(obj: Any, what: str, exc: BaseException) -> None:
    """Raise :class:`UsageError` if ``obj`` cannot be sent to other processes."""
    import cloudpickle

    try:
        cloudpickle.dumps(obj)
    except Exception as err:
        raise UsageError(f"{what} cannot be sent to the worker processes: {type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else err!r}; make it picklable, "
                         "or use backend='thread'") from exc
