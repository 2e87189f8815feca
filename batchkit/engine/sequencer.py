"""Input order: :class:`Sequencer` holds finished chunks back until those before them are done.

This is the run's one ordering: the chunks it releases go, in the same order, to ``imap``'s
consumer and to every sink (journal, ``--output``, operations), so what the journal recorded
and what ``--output`` wrote always agree, also after a crash.
"""

from __future__ import annotations

from typing import Iterator

from .chunk import ChunkOutcomes


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
