"""Recovery from infrastructure faults: dead workers and items that overran their timeout.

When a worker dies, the items of its slice that had not finished are re-run and the item it
was running is pinned down: the beacon says which one it was; if several workers were busy when
a loky pool broke, each of their items is re-run alone to learn which one kills its worker. An
item past its timeout on a local process is stopped by killing that worker.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from typing import Iterable

from ..errors import WorkerCrashed
from ..outcome import ItemError
from ..retry import Retry
from .beacon import Beacon
from .chunk import ChunkOutcomes
from .worker import Task


@dataclass
class Slice:
    """Items ``[lo, hi)`` of a chunk, submitted as one task."""

    chunk: ChunkOutcomes
    lo: int
    hi: int
    isolated: bool = False  # runs alone, so a crash can only be its own
    slot: int | None = None
    killed_at: int | None = None  # position at which we killed its worker, for a timeout
    task: Task | None = None
    check_values: bool = False  # re-run after its results could not be pickled
    attempt: int = 1  # a single item re-run after a crash or timeout (Retry(on_crash/on_timeout))


@dataclass
class Recovered:
    """What to do after a fault: slices to re-run, suspects to run alone, items that failed."""

    rerun: list[Slice] = field(default_factory=list)
    isolate: list[Slice] = field(default_factory=list)
    failed: list[tuple[ChunkOutcomes, int, ItemError, float, int]] = field(default_factory=list)
    progressed: bool = False  # some item was found running: the restart was not barren
    # Without a beacon: every slice that died held several items and was halved, which narrows
    # the search. Such a restart is neither progress nor barren.
    narrowed: bool = False

    def fail(self, sl: Slice, at: int, error: ItemError, duration: float, retry: Retry | None) -> None:
        """``error`` for the item at ``at``, or, when the policy retries its kind, a new attempt alone."""
        if retry is not None and retry.retries_kind(error.kind, sl.attempt):
            self.isolate.append(Slice(sl.chunk, at, at + 1, isolated=True, attempt=sl.attempt + 1))
        else:
            self.failed.append((sl.chunk, at, error, duration, sl.attempt))


def recover(crashed: list[tuple[Slice, WorkerCrashed]], beacon: Beacon | None, timeout: float | None,
            retry: Retry | None = None) -> Recovered:
    """Turn the slices whose worker died back into work and outcomes."""
    out = Recovered()
    if beacon is None:
        # No beacon (Dask, a plain executor): the scheduler may already have re-run the task
        # elsewhere. Tasks merely queued on a dying worker can be blamed too, so bisect: halves
        # are re-run, a single item is re-run alone, and only one that kills a worker alone crashed.
        # A worker's death takes the tasks queued on it along, and the scheduler may report them
        # one by one, so the restarts that halving costs are not counted against the run; those
        # where a single item died are (see settle._recover).
        out.narrowed = all(sl.hi - sl.lo > 1 for sl, _ in crashed)
        for sl, exc in crashed:
            if sl.isolated:
                out.fail(sl, sl.lo, crash_error(exc), 0.0, retry)
            elif sl.hi - sl.lo == 1:
                out.isolate.append(Slice(sl.chunk, sl.lo, sl.hi, isolated=True, attempt=sl.attempt))
            else:
                mid = (sl.lo + sl.hi) // 2
                out.rerun += [Slice(sl.chunk, sl.lo, mid), Slice(sl.chunk, mid, sl.hi)]
        return out

    suspects: list[tuple[Slice, int, WorkerCrashed]] = []
    # If we killed a worker ourselves (a timeout), that kill explains the broken pool.
    explained = any(sl.killed_at is not None for sl, _ in crashed)
    for sl, exc in crashed:
        _, pos, started = beacon.read(sl.slot) if sl.slot is not None else (0, -1, 0.0)
        beacon.release(sl.slot)
        if sl.killed_at is not None:
            pos = sl.killed_at
        if not 0 <= pos < sl.hi - sl.lo:
            out.rerun.append(Slice(sl.chunk, sl.lo, sl.hi))  # never started, or ended unsent
            continue
        out.progressed = True
        at = sl.lo + pos
        if sl.lo < at:
            out.rerun.append(Slice(sl.chunk, sl.lo, at))  # finished, but the results died with it
        if at + 1 < sl.hi:
            out.rerun.append(Slice(sl.chunk, at + 1, sl.hi))
        if sl.killed_at is not None:
            err = ItemError("TimeoutError", f"item did not finish within {timeout:g}s; "
                            "its worker process was killed", "", "timeout")
            out.fail(sl, at, err, time.monotonic() - started, retry)
        elif explained:
            out.rerun.append(Slice(sl.chunk, at, at + 1, attempt=sl.attempt))  # collateral of our own kill
        else:
            suspects.append((sl, at, exc))
    if len(suspects) == 1:
        # Only one item was running when the pool died: it is the one that killed it.
        sl, at, exc = suspects[0]
        out.fail(sl, at, crash_error(exc), 0.0, retry)
    else:
        # Several were running: run each alone to learn which one kills its worker.
        out.isolate += [Slice(sl.chunk, at, at + 1, isolated=True, attempt=sl.attempt) for sl, at, _ in suspects]
    return out


def kill_overdue(slices: Iterable[Slice], beacon: Beacon, timeout: float) -> None:
    """SIGKILL the worker of every slice whose current item has run longer than ``timeout``."""
    now = time.monotonic()
    for sl in slices:
        if sl.slot is None or sl.killed_at is not None:
            continue
        pid, pos, started = beacon.read(sl.slot)
        if pid > 0 and 0 <= pos < sl.hi - sl.lo and now - started > timeout:
            sl.killed_at = pos
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def is_pickling_error(exc: BaseException) -> bool:
    """Whether ``exc`` says something could not be pickled or unpickled."""
    text = f"{type(exc).__name__} {exc}".lower()
    return "pickl" in text or "serializ" in text


def crash_error(exc: WorkerCrashed) -> ItemError:
    """The outcome of an item whose worker died running it."""
    return ItemError("WorkerCrashed", str(exc), "", "crash")
