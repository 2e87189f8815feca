"""The engine's input: :class:`Feed` cuts the items into chunks, skipping what a resumed run finished.

A list, tuple or range is sliced directly. Any other iterable (a generator, a file walk, lines of
stdin, a watched directory, a queue) may block between items, so it is read by a feeder thread
into a bounded buffer: the engine keeps collecting finished work while the input waits, and a
chunk that has items but whose input has gone quiet goes out partial — after :data:`STALL`
seconds without a new item, or once its oldest item has waited :data:`MAX_WAIT` — rather than
waiting to fill. Items that flow fast still fill whole chunks, so auto chunk sizing applies.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sized
from itertools import islice
from queue import SimpleQueue
from typing import Any, Callable, Iterable, Iterator

from ..state.keys import Occurrences, item_key, key_list
from .chunk import ChunkOutcomes
from .chunking import Chunker
from .sequencer import Sequencer

STALL = 0.05  # an input quiet this long sends a partial chunk
MAX_WAIT = 1.0  # no item waits longer than this for its chunk to fill (a steady trickle)
WAKE = None  # what the feeder puts on the engine's queue to wake it


class Feed:
    """Chunks of ``items`` as the engine asks for them (:meth:`next_chunk`), never blocking it.

    ``keyed`` (a run with a journal): each item's key is computed as it is read, in input order,
    so the n-th repeat of a key becomes its own item (:class:`~batchkit.state.keys.Occurrences`).
    ``skip`` (a resumed run): items whose key it accepts are counted in ``skipped`` and left
    out; with ``keep_skipped`` they are kept in ``skipped_items`` as ``(index, item, key)``.
    """

    def __init__(self, items: Iterable[Any], chunker: Chunker, *, key: Callable[[Any], Any] | None = None,
                 skip: Callable[[str], bool] | None = None, wake: SimpleQueue | None = None,
                 keyed: bool = False, keep_skipped: bool = False) -> None:
        self.chunker = chunker
        self.keyed = keyed or skip is not None
        self.key = key if key is not None or not self.keyed else item_key
        self.skip = skip
        self.skipped_items: list[tuple[int, Any, str]] | None = [] if keep_skipped else None
        self._occurrences = Occurrences() if self.keyed else None
        self.seen = 0  # input positions read so far (skipped ones included)
        self.skipped = 0
        self.exhausted = False
        self._seq = 0
        self._direct = isinstance(items, (list, tuple, range)) or (
            isinstance(items, Sized) and hasattr(items, "__getitem__"))
        # Lists, tuples and ranges are cut by slicing: a range's chunks stay ranges (nothing is
        # materialised, in the parent or on the way to the workers).
        self._sliced = items if isinstance(items, (list, tuple, range)) else None
        self._it: Iterator[Any] = iter(items) if self._direct else iter(())
        # A source may say how far ahead it may be read (a queue: not beyond the chunk being filled).
        ahead = getattr(items, "read_ahead", None)
        capacity = ((lambda: chunker.next_size() + ahead) if isinstance(ahead, int)
                    else (lambda: 2 * chunker.next_size() + 64))
        self._feeder = None if self._direct else _Feeder(items, wake, capacity)
        # A source that knows its items' keys by input position (a queue: its ids).
        self._key_of = getattr(items, "key_of", None) if self.keyed else None
        self._pending: list[tuple[int, Any, Any]] = []  # read, not yet sent: (index, item, key)
        self._first_wait = 0.0

    def next_chunk(self) -> ChunkOutcomes | None:
        """The next chunk, or ``None`` when none is ready now (see :attr:`exhausted`)."""
        if self.exhausted:
            return None
        size = self.chunker.next_size()
        if self._direct and not self.keyed:
            return self._plain(size)
        return self._gathered(size)

    def sequencer(self, ordered: bool) -> Sequencer:
        """The run's one order: input order (``ordered``) or as chunks finish."""
        return Sequencer(ordered)

    def urgent(self) -> bool:
        """Never: chunks go out in input order, so the window's limit cannot hold back an earlier one."""
        return False

    def wait_hint(self) -> float | None:
        """Seconds until a partial chunk may be due (for the engine's wait), or ``None``."""
        if self._feeder is None or not self._pending:
            return None
        due = min(self._feeder.last_arrival + STALL, self._first_wait + MAX_WAIT)
        return max(0.0, due - time.monotonic())

    def close(self) -> None:
        """Stop reading: a feeder thread blocked in the input stays parked (a daemon)."""
        if self._feeder is not None:
            self._feeder.closed = True

    # -- direct (sized input, nothing to skip): keys are computed later, where needed ---------

    def _plain(self, size: int) -> ChunkOutcomes | None:
        if self._sliced is not None:
            batch = self._sliced[self.seen:self.seen + size]
        else:
            batch = list(islice(self._it, size))
        if not batch:
            self.exhausted = True
            return None
        chunk = ChunkOutcomes(self._seq, self.seen, batch, keyfn=self.key)
        self.seen += len(batch)
        self._seq += 1
        return chunk

    # -- gathered: through the skip filter and/or from a feeder thread --------------------------

    def _read(self, n: int) -> tuple[list, bool]:
        if self._feeder is None:
            batch = list(islice(self._it, n))
            return batch, len(batch) < n
        return self._feeder.take(n)

    def _gathered(self, size: int) -> ChunkOutcomes | None:
        pending = self._pending
        ended = False
        while len(pending) < size and not ended:
            batch, ended = self._read(size - len(pending))
            if not batch:
                break
            if not pending:
                self._first_wait = time.monotonic()
            start = self.seen
            self.seen += len(batch)
            if self._occurrences is None:
                pending.extend(zip(range(start, self.seen), batch, [None] * len(batch)))
                continue
            if self._key_of is not None:
                keys = [self._key_of(i) for i in range(start, self.seen)]
            else:
                keys = self._occurrences.number(key_list(self.key, batch))
            if self.skip is None:
                pending.extend(zip(range(start, self.seen), batch, keys))
                continue
            skip, kept = self.skip, self.skipped_items
            for i, item, k in zip(range(start, self.seen), batch, keys):
                if skip(k):
                    self.skipped += 1
                    if kept is not None:
                        kept.append((i, item, k))
                else:
                    pending.append((i, item, k))
        if ended and not pending:
            self.exhausted = True
            return None
        if not pending:
            return None
        if len(pending) < size and not ended and not self._due():
            return None
        take, self._pending = pending[:size], pending[size:]
        if self._pending:
            self._first_wait = time.monotonic()
        indices = [t[0] for t in take]
        keys = None if self._occurrences is None else [t[2] for t in take]
        chunk = ChunkOutcomes(self._seq, indices[0], [t[1] for t in take],
                              None if indices[-1] - indices[0] == len(indices) - 1 else indices, keys,
                              keyfn=self.key)
        if ended and not self._pending:
            self.exhausted = True
        self._seq += 1
        return chunk

    def _due(self) -> bool:
        if self._feeder is None:
            return False
        now = time.monotonic()
        return now - self._feeder.last_arrival >= STALL or now - self._first_wait >= MAX_WAIT


class _Feeder:
    """Reads an iterable in a daemon thread into a bounded buffer.

    Appending to a deque needs no lock; the engine is woken (through its completion queue)
    only when it may be waiting for input, so a fast input costs about one append per item.
    """

    def __init__(self, items: Iterable[Any], wake: SimpleQueue | None, capacity: Callable[[], int]) -> None:
        self._items = items
        self._wake = wake
        self._buf: deque = deque()
        # Read ahead about two chunks: the input is consumed lazily (a queue claims only what is
        # about to run) and memory stays flat.
        self._capacity = capacity
        self._room = threading.Event()
        self._done = False
        self._error: BaseException | None = None
        self.closed = False
        self.last_arrival = time.monotonic()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        buf, room, capacity = self._buf, self._room, self._capacity
        cap = capacity()
        try:
            for item in self._items:
                if self.closed:
                    return
                was_empty = not buf
                buf.append(item)
                self.last_arrival = time.monotonic()
                if was_empty and self._wake is not None:
                    self._wake.put(WAKE)  # the engine may be waiting for input
                if len(buf) >= cap:
                    cap = capacity()
                while len(buf) >= cap and not self.closed:
                    room.clear()
                    if len(buf) >= cap:
                        room.wait(0.05)
                    cap = capacity()
        except BaseException as exc:  # noqa: BLE001 - handed to the engine's thread by take()
            self._error = exc
        finally:
            self._done = True
            if self._wake is not None:
                self._wake.put(WAKE)

    def take(self, n: int) -> tuple[list, bool]:
        """Up to ``n`` buffered items, without waiting; and whether the input has ended."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="batchkit-input", daemon=True)
            self._thread.start()
        buf = self._buf
        done = self._done  # read before draining: items appended after it are taken next time
        out = []
        popleft = buf.popleft
        for _ in range(min(n, len(buf))):
            out.append(popleft())
        self._room.set()
        if done and not buf and self._error is not None:
            error, self._error = self._error, None
            raise error
        return out, done and not buf
