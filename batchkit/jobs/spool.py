"""A run's outcomes kept on disk for its finishing step: :class:`OutcomeSpool`.

A job's ``finish`` sees every outcome in input order (the checksum job writes its manifest from
them). Kept in memory, a run over a million files would hold a million outcomes until it ends
(≈ 0.8 KB each for the checksum job: 780 MB at 1M files). The command line needs them for the
finishing step only, so the lifecycle hands each finished chunk to a spool instead: the first
``MEMORY_ITEMS`` items' chunks stay in memory (a run of that size pays nothing), the chunks after
them are pickled to an unnamed temporary file (≈ 0.3 µs per item) and read back one chunk at a
time when ``finish`` iterates. The driver's memory stays flat however large the tree.

A chunk that cannot be pickled (items or values of a custom job that are not picklable on an
in-process backend) stays in memory, and so does every chunk once the temporary directory has
refused a write (full, read-only, missing): nothing is ever dropped.
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
from itertools import chain, islice
from typing import Any, Iterable, Iterator, Sequence

from ..engine.chunk import ChunkOutcomes
from ..outcome import Outcome

# Items whose chunks stay in memory before the spool writes to disk (≈ 5 MB of a checksum run's
# paths and digests): small runs never touch the disk, large ones stop growing there. (At 100k
# in memory, the checksum CLI's peak was 91 MB at 100k files and 131 MB at 1M; at 20k, 56 and 58.)
MEMORY_ITEMS = 20_000


def successes(outcomes: Iterable[Outcome], piece: int = 2000) -> Iterator[tuple[Sequence, list]]:
    """The items that succeeded and their values, ``(items, values)`` a piece at a time, from
    ``outcomes`` in their order: :meth:`OutcomeSpool.successes` for a spool, and the same for any
    other iterable of outcomes, read ``piece`` at a time (keep it small: each piece's outcomes are
    then freed before the garbage collector's first generation fills up and traverses them)."""
    if isinstance(outcomes, OutcomeSpool):
        return outcomes.successes(piece)
    return _grouped(iter(outcomes), piece)


def _grouped(outcomes: Iterator[Outcome], piece: int) -> Iterator[tuple[Sequence, list]]:
    while taken := list(islice(outcomes, piece)):
        ok = [o for o in taken if o.ok]
        yield [o.item for o in ok], [o.value for o in ok]


class OutcomeSpool:
    """Every outcome a run delivered, on disk, iterable in input order (and again, as often as
    wanted). ``earlier``: outcomes of a resumed run's earlier attempts, merged in by index.

    It behaves as the list ``finish`` has always received: ``len``, iteration, indexing
    (indexing reads every outcome into memory once; iterate to keep memory flat).
    """

    def __init__(self) -> None:
        self._file: Any = None
        # Per chunk: (first input index, file offset or None, the chunk itself when kept in memory)
        self._entries: list[tuple[int, int | None, ChunkOutcomes | None]] = []
        self._count = 0
        self._in_memory = 0
        self._disk_failed = False
        self._earlier: list[Outcome] = []
        self._listed: list[Outcome] | None = None

    def add(self, chunk: ChunkOutcomes) -> None:
        """Keep ``chunk``'s outcomes (a chunk the run delivered, in any order)."""
        if not len(chunk):
            return
        first = chunk.index(0)
        self._count += len(chunk)
        if self._disk_failed or self._in_memory + len(chunk) <= MEMORY_ITEMS:
            self._in_memory += len(chunk)
            self._entries.append((first, None, chunk))
            return
        state = (chunk.start, chunk.indices, chunk.items, chunk.values, chunk.errors, chunk.attempts,
                 chunk.durations)
        try:
            data = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # not picklable: this chunk stays in memory
            self._entries.append((first, None, chunk))
            return
        try:
            if self._file is None:
                self._file = tempfile.TemporaryFile(prefix="batchkit-outcomes-")
            offset = self._file.tell()
            self._file.write(data)
        except OSError:  # $TMPDIR full or unwritable: memory it is, for this chunk and the rest
            self._disk_failed = True
            self._entries.append((first, None, chunk))
            return
        self._entries.append((first, offset, None))

    def set_earlier(self, earlier: list[Outcome]) -> None:
        """The outcomes an earlier attempt of this run finished (merged in by input index)."""
        self._earlier = sorted(earlier, key=lambda o: o.index)

    def __len__(self) -> int:
        return self._count + len(self._earlier)

    def __iter__(self) -> Iterator[Outcome]:
        if self._listed is not None:
            return iter(self._listed)
        mine = chain.from_iterable(c.outcomes() for c in self._chunks())
        if not self._earlier:
            return mine
        return heapq.merge(mine, self._earlier, key=lambda o: o.index)

    def successes(self, piece: int = 2000) -> Iterator[tuple[Sequence, list]]:
        """The items that succeeded and their values, ``(items, values)`` a piece at a time, in
        input order: for a finishing step that reads nothing else (the checksum manifest), with
        no :class:`Outcome` built per item. A piece is one chunk, or up to ``piece`` outcomes of
        a resumed run (whose earlier attempts' outcomes are merged in by index)."""
        if self._earlier or self._listed is not None:
            yield from _grouped(iter(self), piece)
            return
        for chunk in self._chunks():
            yield chunk.successes()

    def __getitem__(self, index: Any) -> Any:
        if self._listed is None:
            self._listed = list(self)
        return self._listed[index]

    def _chunks(self) -> Iterator[ChunkOutcomes]:
        """The chunks in input order (chunks cover disjoint, increasing ranges of positions)."""
        f = self._file
        if f is not None:
            f.flush()
        for _, offset, kept in sorted(self._entries, key=lambda e: e[0]):
            if kept is not None:
                yield kept
                continue
            f.seek(offset)
            start, indices, items, values, errors, attempts, durations = pickle.load(f)
            chunk = ChunkOutcomes(0, start, items, indices)
            chunk.values, chunk.errors, chunk.attempts, chunk.durations = values, errors, attempts, durations
            chunk.remaining = 0
            yield chunk

    def close(self) -> None:
        """Remove the temporary file (it is unnamed: it also goes when the process ends)."""
        f, self._file = self._file, None
        if f is not None:
            f.close()
        self._entries.clear()
        self._listed = None
