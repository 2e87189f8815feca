"""Input order: :class:`Sequencer` holds finished chunks back until those before them are done.

This is the run's one ordering: the chunks it releases go, in the same order, to ``imap``'s
consumer and to every sink (journal, ``--output``, operations), so what the journal recorded
and what ``--output`` wrote always agree, also after a crash.
"""

from __future__ import annotations

import heapq
from typing import Callable, Iterator

from .chunk import ChunkOutcomes

_LAST = (float("inf"),)


class Sequencer:
    """Releases chunks in input order (``ordered=True``) or as they finish."""

    def __init__(self, ordered: bool) -> None:
        self.ordered = ordered
        self._held: dict[int, ChunkOutcomes] = {}
        self._next = 0

    def __len__(self) -> int:
        """Chunks held back, waiting for an earlier one."""
        return len(self._held)

    def add(self, chunk: ChunkOutcomes) -> Iterator[ChunkOutcomes]:
        """Take a finished chunk; yield every chunk that may now go on."""
        if not self.ordered:
            yield chunk
            return
        self._held[chunk.seq] = chunk
        while self._next in self._held:
            yield self._held.pop(self._next)
            self._next += 1

    def is_next(self, seq: int) -> bool:
        """Whether the chunk ``seq`` would be released at once."""
        return not self.ordered or seq == self._next

    def drop_held(self) -> int:
        """Forget the chunks held back behind one that will never finish (a run that stops):
        they are not recorded, so ``--resume`` runs them again. Returns how many were dropped."""
        n = len(self._held)
        self._held.clear()
        return n


class WalkOrder:
    """The order of a walk carried out by the workers (see :mod:`batchkit.engine.walkfeed`).

    Chunks carry ordering keys (``chunk.order``, tuples) rather than sequence numbers, since a
    unit's remainder comes back later with keys between those already out. A finished chunk goes
    on once no unit with an earlier key is out or waiting (``pending_min()``); ``on_release``
    then gives it its input positions. Chunks are released in walk order whether the run is
    ordered or not: positions are only known in that order.
    """

    ordered = True

    def __init__(self, pending_min: Callable[[], tuple], on_release: Callable[[ChunkOutcomes], None],
                 on_land: Callable[[tuple], None]) -> None:
        self._pending_min = pending_min
        self._on_release = on_release
        self._on_land = on_land
        self._held: list[tuple[tuple, ChunkOutcomes]] = []

    def __len__(self) -> int:
        """Chunks held back, waiting for an earlier one."""
        return len(self._held)

    def add(self, chunk: ChunkOutcomes) -> Iterator[ChunkOutcomes]:
        """Take a finished chunk; yield every chunk that may now go on (empty ones included)."""
        self._on_land(chunk.order)
        heapq.heappush(self._held, (chunk.order, chunk))  # keys are unique: chunks are never compared
        while self._held and self._held[0][0] < self._pending_min():
            _, ready = heapq.heappop(self._held)
            self._on_release(ready)
            yield ready

    def first_held(self) -> tuple:
        """The key of the first chunk held back (after every key when there is none)."""
        return self._held[0][0] if self._held else _LAST

    def is_next(self, seq: int) -> bool:
        """Never: a walk's chunks are not cut short (only in-process backends do that)."""
        return False

    def drop_held(self) -> int:
        """Forget the chunks held back (a stop): ``--resume`` runs them again."""
        n = len(self._held)
        self._held.clear()
        return n
