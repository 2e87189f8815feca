"""The dispatch window: what is running on the backend, and what must run next.

:class:`Window` keeps about two slices per worker in flight. It submits, in this order: slices
to re-run after a crash (their results died with a worker), crash suspects (each alone, so a
crash can only be its own), then new chunks from the input. Its invariants, which the engine
relies on:

- every beacon slot taken by :meth:`submit` is given back exactly once, when the slice is
  settled or recovered (see :meth:`release`);
- ``open_chunks`` counts chunks taken from the input and not yet handed on by the engine, so
  a slow first chunk cannot make an ordered run buffer the whole input.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections import deque
from queue import Empty, SimpleQueue
from typing import Any, Callable

from .beacon import Beacon
from .chunk import ChunkOutcomes
from .feed import WAKE
from .recovery import Slice
from .worker import Task, run_chunk


class Window:
    """Slices in flight on ``backend``; re-runs and suspects waiting; finished futures reported
    on :attr:`finished` (which the input's feeder also uses to wake the engine)."""

    def __init__(self, backend: Any, make_task: Callable[[Slice], Task], beacon: Beacon | None,
                 capacity: int) -> None:
        self.backend = backend
        self.make_task = make_task
        self.beacon = beacon
        self.capacity = capacity
        self.in_flight: dict[cf.Future, Slice] = {}
        self.rerun: deque[Slice] = deque()
        self.isolate: deque[Slice] = deque()
        self.open_chunks = 0
        # Futures report here when done: waiting on this queue costs O(1) per completion,
        # where cf.wait() over every in-flight future costs O(in flight) per call.
        self.finished: SimpleQueue = SimpleQueue()

    def __len__(self) -> int:
        return len(self.in_flight)

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing waiting to be re-run."""
        return not self.in_flight and not self.rerun and not self.isolate

    def fill(self, next_chunk: Callable[[], ChunkOutcomes | None], more_input: bool,
             urgent: Callable[[], bool] | None = None) -> None:
        """Submit until the window is full: re-runs, then a lone suspect, then new chunks.
        ``urgent()`` says the next chunk must go out even past the open-chunk limit (a walk's
        remainder that chunks held back for order are waiting for)."""
        while len(self.in_flight) < self.capacity:
            if any(sub.isolated for sub in self.in_flight.values()):
                return  # a suspect runs alone, so a crash can only be its own
            if self.rerun:
                if self.submit(self.rerun.popleft()):
                    return
            elif self.isolate:
                if not self.in_flight:
                    self.submit(self.isolate.popleft())
                return
            elif not more_input or (self.open_chunks >= 2 * self.capacity and not (urgent and urgent())):
                return
            else:
                chunk = next_chunk()
                if chunk is None:
                    return
                self.open_chunks += 1
                if self.submit(Slice(chunk, 0, len(chunk))):
                    return

    def submit(self, sub: Slice) -> bool:
        """Start ``sub`` on the backend; True if it finished already (the serial backend runs it
        inside submit: it is collected before another runs, so a stop never strands it)."""
        if self.beacon is not None:
            sub.slot = self.beacon.acquire()
        sub.task = self.make_task(sub)
        fut = self.backend.submit(run_chunk, sub.task)
        self.in_flight[fut] = sub
        fut.add_done_callback(self.finished.put)
        return fut.done()

    def wait(self, timeout: float) -> list[tuple[Slice, cf.Future]]:
        """The slices finished so far, waiting up to ``timeout`` for the first (or a wake-up)."""
        try:
            first = self.finished.get(timeout=timeout)
        except Empty:
            return []
        done = [first]
        while True:
            try:
                done.append(self.finished.get_nowait())
            except Empty:
                break
        # Only futures still ours (a wake-up is None; one collected early may report late).
        return [(self.in_flight.pop(f), f) for f in done if f is not WAKE and f in self.in_flight]

    def take_rest(self, timeout: float) -> list[tuple[Slice, cf.Future]]:
        """Every slice still in flight, waiting up to ``timeout`` for them (a broken loky pool
        fails every call in flight: they are judged together)."""
        done, _ = cf.wait(list(self.in_flight), timeout=timeout)
        return [(self.in_flight.pop(f), f) for f in done]

    def release(self, sub: Slice) -> None:
        """Give back ``sub``'s beacon slot."""
        if self.beacon is not None and sub.slot is not None:
            self.beacon.release(sub.slot)
            sub.slot = None

    def cancel_all(self) -> list[Slice]:
        """Stop waiting for what is in flight; return those slices (their slots released)."""
        subs = list(self.in_flight.values())
        for fut in self.in_flight:
            fut.cancel()
        self.in_flight.clear()
        for sub in subs:
            self.release(sub)
        return subs
