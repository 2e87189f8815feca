"""Consuming a durable queue: :class:`QueueSource` hands its items to a run, :class:`QueueSink` stores
their outcomes.

A run consumes a queue like any other input: the engine pulls items from a :class:`QueueSource`
and the run's lifecycle passes every finished chunk to a :class:`QueueSink`, which stores the
outcomes in the queue (one transaction per chunk) for :meth:`batchkit.Queue.result` to read.

- Backpressure: the source claims only when the engine pulls, about what the engine pulls in
  20 ms at a time (one item when items are slow, up to ``batch`` when they are tiny), so a
  consumer holds what its in-flight window holds and little more; the other consumers get the rest.
- Leases: a daemon thread renews the leases of the items claimed and not yet finished every
  ``lease / 3`` seconds, so a long item is not taken by another consumer while its own lives; a
  consumer killed with -9 stops renewing and its items return to the queue (see
  :mod:`batchkit.state.queue`).
- The end: without ``follow`` the source ends when nothing is left to claim; with it, it waits
  for new items (polling with backoff, at most ``poll`` seconds apart) until :meth:`close`, which
  the run calls on SIGTERM or Ctrl-C and which wakes a waiting ``next()`` at once. The sink's
  :meth:`QueueSink.close` puts back whatever was claimed and not finished: an interrupted item is
  never a failure.

The engine reports outcomes by input position: the source remembers which queue id it handed out
at each position (8 bytes an item), :meth:`QueueSource.id_of`, and gives each a stable journal
key, :meth:`QueueSource.key_of` (``queue:NAME:ID``).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from array import array
from collections import deque
from typing import Any, Iterator

from ..errors import UsageError
from ..state.queue import DEFAULT_LEASE, MAX_POLL, Queue

__all__ = ["QueueSink", "QueueSource"]

log = logging.getLogger("batchkit.queue")

DEFAULT_BATCH = 1000  # most items claimed at once
AHEAD = 0.02  # claim about what the engine pulls in this many seconds
WINDOW = 0.25  # seconds over which the engine's pace is measured


class QueueSource:
    """The items of a queue, as an iterable the engine runs like any input.

    ``queue``: a :class:`~batchkit.Queue` or its name. ``follow``: keep waiting for new items
    until :meth:`close` (otherwise end once nothing is left to claim). ``lease``: seconds an item
    is held without renewal (renewed every ``lease / 3`` while this process lives). ``batch``:
    the most items claimed in one go. ``poll``: the longest pause between two looks for new
    items when following.

    Drive it with a :class:`QueueSink`, which stores the outcomes and gives back what is left::

        source = QueueSource(bk.Queue("thumbnails"))
        sink = QueueSink(source)
        engine = Engine(make_thumbnail, source, backend="thread", on_chunk=sink.chunk, progress=False)
        try:
            for _ in engine.chunks():
                pass
        finally:
            sink.close()
    """

    def __init__(self, queue: Queue | str, *, follow: bool = False, lease: float = DEFAULT_LEASE,
                 batch: int = DEFAULT_BATCH, poll: float = MAX_POLL) -> None:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise UsageError(f"batch={batch!r}: use a whole number >= 1")
        for name, value in (("lease", lease), ("poll", poll)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise UsageError(f"{name}={value!r}: use a number of seconds > 0")
        self.queue = queue if isinstance(queue, Queue) else Queue(queue)
        self.follow = follow
        self.lease = float(lease)
        self.batch = batch
        self.poll = float(poll)
        self._lock = threading.Lock()
        # Held across one claim (the database's and our books'): release() waits on it, so a claim
        # still in flight in the feeder thread cannot leave items "running" after release returns.
        self._claiming = threading.Lock()
        self._buffer: deque[tuple[int, Any]] = deque()  # claimed, not yet handed to the engine
        self._ids = array("q")  # position -> queue id
        self._held: dict[int, None] = {}  # claimed and neither finished nor given back: leases to renew
        self._closed = threading.Event()
        self._ended = False
        self._size = 1
        self._marks: deque[tuple[float, int]] = deque()  # (time, items handed out) at recent claims
        self._stop_renewing = threading.Event()
        self._renewer: threading.Thread | None = None

    # The engine reads no further ahead than the chunk it is filling: what a consumer claims is
    # what it is about to run, and the other consumers get the rest.
    read_ahead = 0

    @property
    def endless(self) -> bool:
        """A following source runs until closed: the run closes it when it stops."""
        return self.follow

    def __repr__(self) -> str:
        return f"QueueSource({self.queue.name!r}, follow={self.follow}, held={self.held})"

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        pause = 0.01
        while True:
            with self._lock:
                if self._buffer:
                    id_, item = self._buffer.popleft()
                    self._ids.append(id_)
                    return item
                if self._ended or self._closed.is_set():
                    raise StopIteration
            if self._claim():
                pause = 0.01
                continue
            if not self.follow:
                self._ended = True  # drained: the end is final, even if items arrive later
                raise StopIteration
            if self._closed.wait(pause):  # close() wakes this at once
                raise StopIteration
            pause = min(2 * pause, self.poll)

    def _claim(self) -> bool:
        # Claim what the engine pulls in about AHEAD seconds: one transaction per many items when
        # it pulls fast, one item at a time when items are slow. The rate is measured over at
        # least WINDOW seconds, so the burst of a new chunk (many next() calls at once) is not
        # taken for the pace of the run.
        now, handed = time.monotonic(), len(self._ids)
        marks = self._marks
        while len(marks) > 1 and now - marks[1][0] >= WINDOW:
            marks.popleft()  # keep the newest mark at least WINDOW old, and the ones after it
        if marks:
            then, handed_then = marks[0]
            rate = (handed - handed_then) / max(now - then, WINDOW)
            self._size = max(1, min(self.batch, int(rate * AHEAD)))
        marks.append((now, handed))
        with self._claiming:
            if self._closed.is_set():
                return False
            claimed = self.queue.claim(self._size, self.lease)
            if not claimed:
                return False
            with self._lock:
                closed = self._closed.is_set()
                if not closed:
                    self._buffer.extend(claimed)
                    self._held.update(dict.fromkeys(id_ for id_, _ in claimed))
            if closed:  # close() came while we were claiming: these go straight back
                self.queue.release([id_ for id_, _ in claimed])
                return False
        self._start_renewing()
        return True

    def _start_renewing(self) -> None:
        if self._renewer is None:
            self._renewer = threading.Thread(target=_renew_leases, name=f"batchkit-queue-{self.queue.name}-leases",
                                             args=(weakref.ref(self), self._stop_renewing, self.lease / 3),
                                             daemon=True)
            self._renewer.start()

    def renew(self) -> int:
        """Renew the leases of every item claimed and not finished (the heartbeat thread calls this)."""
        with self._lock:
            ids = list(self._held)
        return self.queue.renew(ids, self.lease) if ids else 0

    # -- what the run needs ------------------------------------------------------------------

    def id_of(self, position: int) -> int:
        """The queue id of the item handed out at input ``position``."""
        return self._ids[position]

    def key_of(self, position: int) -> str:
        """The journal key of the item at input ``position``: ``queue:NAME:ID``, stable and unique."""
        return f"queue:{self.queue.name}:{self._ids[position]}"

    @property
    def held(self) -> int:
        """How many items this source has claimed and not yet finished or given back."""
        return len(self._held)

    def complete(self, chunk: Any) -> int:
        """Store the outcomes of a finished chunk (``len``, ``index(pos)``, ``outcome(pos)``) in
        one transaction; return how many were stored (an item another consumer finished first is not)."""
        pairs = [(self._ids[chunk.index(pos)], chunk.outcome(pos)) for pos in range(len(chunk))]
        stored = self.queue.complete(pairs)
        with self._lock:  # only once stored: until then the leases are still renewed
            for id_, _ in pairs:
                self._held.pop(id_, None)
        return stored

    def close(self) -> None:
        """Stop handing out items: a waiting ``next()`` returns at once, and the items claimed but
        not yet handed to the engine go back to the queue. Safe from any thread, and twice."""
        self._closed.set()
        with self._lock:
            unsent = [id_ for id_, _ in self._buffer]
            self._buffer.clear()
            for id_ in unsent:
                self._held.pop(id_, None)
        if unsent:
            self.queue.release(unsent)

    def release(self) -> int:
        """:meth:`close`, then give back every item claimed and not finished (they were not run,
        or their run was cut short) and stop renewing leases; return how many went back."""
        self.close()
        self._stop_renewing.set()
        with self._claiming, self._lock:  # after any claim in flight has settled its items
            ids = list(self._held)
            self._held.clear()
        return self.queue.release(ids) if ids else 0

    def __enter__(self) -> QueueSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _renew_leases(ref: weakref.ref, stop: threading.Event, interval: float) -> None:
    """The heartbeat: renew the source's leases every ``interval`` seconds until ``stop``.

    Holds the source only by a weak reference, so a source that is dropped is not kept alive.
    """
    while not stop.wait(interval):
        source = ref()
        if source is None:
            return
        try:
            source.renew()
        except Exception as exc:  # a busy database now and then: the next beat tries again
            log.warning("could not renew the leases of queue %r: %s", source.queue.name, exc)
        del source


class QueueSink:
    """Stores a queue run's outcomes: the chunk sink that goes with a :class:`QueueSource`.

    The run calls :meth:`open` once, :meth:`chunk` for every finished chunk and :meth:`close`
    once with the run's end state.
    """

    def __init__(self, source: QueueSource) -> None:
        self.source = source

    def open(self, run_info: Any = None) -> None:
        """Nothing to prepare: the items are claimed as the engine pulls them."""

    def chunk(self, chunk: Any) -> None:
        """Store the chunk's outcomes in the queue: done or failed, one transaction."""
        self.source.complete(chunk)

    def close(self, state: str | None = None) -> None:
        """Whatever the end state, give back the items claimed and not finished."""
        released = self.source.release()
        if released:
            log.info("queue %r: %d unfinished items returned to the queue (run %s)", self.source.queue.name,
                     released, state or "ended")
