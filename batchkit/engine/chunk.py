"""One chunk's outcomes as the engine collects them: :class:`ChunkOutcomes`.

Stored compactly (lists, not one object per item): a run of ten million items builds no
:class:`~batchkit.Outcome` unless someone asks for one. This is what the run's sinks (journal,
``--output``, operations, a queue) receive for every finished chunk.
"""

from __future__ import annotations

from array import array
from itertools import repeat
from typing import Any, Iterator, Sequence

from ..outcome import ItemError, Outcome
from ..state.keys import key_list, text_key
from .timings import Timings, as_array


class ChunkOutcomes:
    """The outcomes of one chunk: ``items``, ``values`` (``None`` where an item failed),
    ``errors`` (position -> :class:`ItemError`), ``attempts`` (position -> count, where not 1)
    and ``durations``.

    The engine fills it, possibly in pieces when a worker crash forced part of the chunk to be
    re-run; ``remaining`` counts the items still without an outcome. ``spans`` records, for the
    run's timeline, each piece that ran: ``(worker, started, ended, items)`` in wall-clock time;
    ``events`` the retries, crashes and timeouts: ``(position, kind, time, detail)``.
    """

    __slots__ = ("seq", "start", "indices", "items", "keys", "keyfn", "values", "errors", "attempts",
                 "durations", "remaining", "spans", "events", "order", "walk")

    def __init__(self, seq: int, start: int, items: list, indices: list[int] | None = None,
                 keys: list | None = None, keyfn: Any = None) -> None:
        n = len(items)
        self.seq = seq
        self.start = start
        self.indices = indices  # None: the chunk covers input positions start .. start + n - 1
        self.items = items
        self.keys = keys
        self.keyfn = keyfn  # keys are computed on demand when nothing needed them up front
        # Filled by merge(); allocated here only when the chunk arrives in pieces.
        self.values: list = []
        self.errors: dict[int, ItemError] = {}
        self.attempts: dict[int, int] = {}
        self.durations: Timings = array("d")
        self.remaining = n
        self.spans: list[tuple[str, float, float, int]] = []
        self.events: list[tuple[int, str, float, str]] = []
        # A piece of a file walk that its worker carries out (see engine.walkfeed): its ordering
        # key, and until its files are known (items empty) the unit to send.
        self.order: tuple | None = None
        self.walk: Any = None

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"<ChunkOutcomes seq={self.seq} items={len(self.items)} failed={len(self.errors)}>"

    def index(self, pos: int) -> int:
        """The input position of the item at ``pos`` in this chunk."""
        return self.start + pos if self.indices is None else self.indices[pos]

    def merge(self, lo: int, result: Any) -> None:
        """Store a worker's :class:`~batchkit.engine.worker.ChunkResult` for positions ``lo`` onwards."""
        n = len(result.values)
        if lo == 0 and n == len(self.items):
            self.values = result.values
            self.durations = result.durations
        else:
            self._allocate()
            self.values[lo:lo + n] = result.values
            self.durations[lo:lo + n] = as_array(result.durations)
        for pos, err in result.errors.items():
            self.errors[lo + pos] = err
        for pos, count in result.attempts.items():
            self.attempts[lo + pos] = count
        for pos, kind, when, detail in result.events:
            self.events.append((lo + pos, kind, when, detail))
        self.spans.append((result.worker, result.started, result.started + result.elapsed, n))
        self.remaining -= n

    def _allocate(self) -> None:
        n = len(self.items)
        if len(self.values) != n:
            self.values = [None] * n
            self.durations = array("d", bytes(8 * n))
        elif not isinstance(self.durations, array):
            self.durations = as_array(self.durations)

    def fail(self, pos: int, error: ItemError, duration: float = 0.0, attempts: int = 1,
             when: float | None = None) -> None:
        """Record ``error`` for the item at ``pos`` (a crash or a timeout seen by the engine)."""
        self._allocate()
        self.values[pos] = None
        self.errors[pos] = error
        self.durations[pos] = duration
        if attempts != 1:
            self.attempts[pos] = attempts
        if when is not None:
            self.events.append((pos, error.kind, when, error.message))
        self.remaining -= 1

    def truncated(self, n: int) -> ChunkOutcomes:
        """A chunk of this chunk's first ``n`` items, each of which has its outcome (used when a
        run stops: what finished is recorded, the rest is left for ``--resume``)."""
        part = ChunkOutcomes(self.seq, self.start, self.items[:n],
                             None if self.indices is None else self.indices[:n],
                             None if self.keys is None else self.keys[:n], self.keyfn)
        part.values = self.values[:n]
        part.durations = self.durations[:n]
        part.errors = {p: e for p, e in self.errors.items() if p < n}
        part.attempts = {p: a for p, a in self.attempts.items() if p < n}
        part.spans = list(self.spans)
        part.events = [e for e in self.events if e[0] < n]
        part.remaining = 0
        return part

    def outcome(self, pos: int) -> Outcome:
        """The :class:`Outcome` of the item at ``pos``."""
        err = self.errors.get(pos)
        return Outcome(self.index(pos), self.items[pos], err is None,
                       self.values[pos] if err is None else None, err,
                       self.attempts.get(pos, 1), self.durations[pos])

    def outcomes(self) -> Iterator[Outcome]:
        """Every outcome of this chunk, in input order."""
        if self.errors or self.attempts or self.indices is not None:
            return (self.outcome(pos) for pos in range(len(self.items)))
        # The common case (every item succeeded on its first attempt), built in bulk.
        return map(Outcome, range(self.start, self.start + len(self.items)), self.items,
                   repeat(True, len(self.items)), self.values, repeat(None), repeat(1), self.durations)

    def successes(self) -> tuple[Sequence, list]:
        """The items that succeeded and their values, in input order (no :class:`Outcome` built).
        Read-only: with no failure they are the chunk's own ``items`` (a list, or a ``range``) and
        ``values``."""
        if not self.errors:
            return self.items, self.values
        ok = [pos for pos in range(len(self.items)) if pos not in self.errors]
        return [self.items[pos] for pos in ok], [self.values[pos] for pos in ok]

    def key(self, pos: int) -> Any:
        """The item's key (``None`` when the run has no key function)."""
        if self.keys is not None:
            return self.keys[pos]
        return text_key(self.keyfn(self.items[pos])) if self.keyfn is not None else None

    def key_list(self) -> list:
        """Every item's key, computed once."""
        if self.keys is None:
            keyfn = self.keyfn
            self.keys = key_list(keyfn, self.items) if keyfn is not None else [None] * len(self.items)
        return self.keys
