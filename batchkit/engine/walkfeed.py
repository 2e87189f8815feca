"""The engine's input when the workers walk the file tree themselves: :class:`WalkFeed`.

With :func:`batchkit.files` on worker processes (the process and Dask backends), the parent does
not list the tree. It hands out *units* — pieces of the walk (see
:mod:`batchkit.sources.walkunits`) with a budget of files — and each worker lists what its unit
covers, runs the files it found and sends back their outcomes, their paths and the part of its
unit it did not reach; that remainder becomes new units. The parent's work is per unit, not per
file, and on a cluster the listing happens where the files are.

The walk's one order is kept with ordering keys (tuples): a unit's files come first, then its
remainder, whose keys extend the unit's; a remainder split further gets keys that extend again.
Sorting keys as tuples therefore sorts files as a plain walk meets them, and
:class:`~batchkit.engine.sequencer.WalkOrder` releases finished chunks in that order, giving each
its input positions then. Results, the journal, ``input_errors`` and resume are exactly those of
the parent's own walk.

A unit that fails as a whole (its worker died, its values could not travel back) is walked again
here, with the same budget, and becomes an ordinary chunk: crash pinning, retries and value
checks then work as for any chunk. Runs this does not cover keep the parent's walk
(:class:`~batchkit.engine.feed.Feed`): an in-process backend, a resumed run (its items to skip),
a ``key=`` function, a timeout (the parent must know which file overran), ``follow_symlinks``
(one walk decides which directories were already met), and a :class:`~batchkit.sources.watch.FileWatch`.
"""

from __future__ import annotations

import heapq
import os
from pathlib import Path
from typing import Any, Callable

from ..sources.files import FileWalk
from ..sources.walkunits import Segment, gather, quiet_copy
from .chunk import ChunkOutcomes
from .chunking import Chunker
from .sequencer import _LAST, WalkOrder

# The most files one unit may run. The walk's total is unknown, so a unit is also what one worker
# may be left finishing alone at the end of the run: 100k small files ran 5 % faster with units
# of 4-8k files than of 20k (the chunker's cap for inputs of unknown length).
UNIT_FILES = 5000


def walks_in_workers(items: Any, backend: Any, *, timeout: float | None, key: Any, skip: Any) -> bool:
    """Whether ``items`` can be walked by the workers of ``backend`` (see the module's docstring)."""
    return (type(items) is FileWalk and not items.follow_symlinks and not backend.runs_in_process
            and timeout is None and key is None and skip is None and os.path.isdir(items.root))


class WalkFeed:
    """Units of a :class:`~batchkit.sources.files.FileWalk` as the engine asks for them; the
    interface of :class:`~batchkit.engine.feed.Feed` plus :meth:`unfold` and :meth:`expand`,
    which turn a unit that came back (or failed) into an ordinary chunk of files."""

    def __init__(self, walk: FileWalk, chunker: Chunker, *, keyed: bool = False) -> None:
        self.walk = walk
        self.chunker = chunker
        self.keyed = keyed
        self.skipped = 0
        self.skipped_items: list | None = None
        self.seen = 0  # files found so far
        walk.errors = []
        self._spec = quiet_copy(walk)
        self._as_str = walk.as_str
        self._ready: list[tuple[tuple, Segment]] = [((0,), ("d", os.fspath(walk.root), ""))]
        self._flying: list[tuple] = []  # keys of units out, lazily deleted
        self._landed: set[tuple] = set()
        self._errors: dict[tuple, list[tuple[str, str]]] = {}
        self._files = self._dirs = 0  # for the estimate of files per directory
        self._next_index = 0
        self._next_seq = 0
        self._local = False  # the workers cannot see the tree: walk here
        self.order = WalkOrder(self._pending_min, self._released, self._landed.add)

    # -- the Feed interface --------------------------------------------------------------------

    @property
    def exhausted(self) -> bool:
        """Nothing left to hand out, and no unit out that could bring more back."""
        return not self._ready and self._pending_min() is _LAST

    def next_chunk(self) -> ChunkOutcomes | None:
        """The next unit (a chunk whose files its worker finds), or ``None`` when none is ready."""
        if not self._ready:
            return None
        size = min(self.chunker.next_size(), UNIT_FILES)
        key, seg = heapq.heappop(self._ready)
        if seg[0] == "f" and len(seg[1]) > size:
            # Files already listed, more than a unit's budget: cut them into pieces in order.
            files = seg[1]
            for j, lo in enumerate(range(0, len(files), size)):
                heapq.heappush(self._ready, (key + (j,), ("f", files[lo:lo + size])))
            key, seg = heapq.heappop(self._ready)
        segments = [seg]
        estimate = self._estimate(seg, size)
        # Batch the next pieces while they are its siblings (nothing else can come between them).
        while estimate < size and self._ready:
            nxt = self._ready[0][0]
            if nxt[:-1] != key[:-1] or nxt[-1] != key[-1] + len(segments):
                break
            _, more = heapq.heappop(self._ready)
            segments.append(more)
            estimate += self._estimate(more, size)
        chunk = ChunkOutcomes(0, 0, [])
        chunk.order = key
        chunk.walk = (self._spec, segments, size)
        heapq.heappush(self._flying, key)
        if self._local:
            self.expand(chunk)
        return chunk

    def wait_hint(self) -> float | None:
        """Units go out at once: no partial chunk is ever due."""
        return None

    def close(self) -> None:
        """Nothing to stop: the walk happens in the units."""

    def sequencer(self, ordered: bool) -> WalkOrder:
        """The run's one order: the walk's, whether ``ordered`` or not (positions are known only in it)."""
        return self.order

    def urgent(self) -> bool:
        """Whether the next ready piece comes before a chunk held back for order: it must go out
        even when the window is full, or the held chunks would wait for it forever."""
        return bool(self._ready) and self._ready[0][0] < self.order.first_held()

    # -- units coming back ---------------------------------------------------------------------

    def unfold(self, chunk: ChunkOutcomes, result: Any) -> bool:
        """A unit's worker came back with ``result``: the chunk now holds its files. False when
        the worker could not see the tree (the unit is then walked here: :meth:`expand`)."""
        if result.blind:
            self._local = True
            return False
        self._fill(chunk, result.paths, result.rest, result.errors_walk, result.dirs)
        return True

    def expand(self, chunk: ChunkOutcomes) -> None:
        """Walk a unit here, with the budget its worker had: the chunk then holds those files."""
        if chunk.walk is None:
            return
        _, segments, budget = chunk.walk
        paths, rest, errors, dirs = gather(self._spec, segments, budget)
        self._fill(chunk, paths, rest, errors, dirs)

    def _fill(self, chunk: ChunkOutcomes, paths: list[str], rest: list[Segment],
              errors: list[tuple[str, str]], dirs: int) -> None:
        key = chunk.order
        chunk.items = paths if self._as_str else list(map(Path, paths))
        chunk.keys = paths if self.keyed else None
        chunk.remaining = len(paths)
        chunk.walk = None
        self.seen += len(paths)
        self._files += len(paths)
        self._dirs += dirs
        for i, seg in enumerate(rest):
            heapq.heappush(self._ready, (key + (i,), seg))
        if errors:
            self._errors[key] = errors

    # -- the order -----------------------------------------------------------------------------

    def _pending_min(self) -> tuple:
        flying, landed = self._flying, self._landed
        while flying and flying[0] in landed:
            landed.discard(heapq.heappop(flying))
        first = flying[0] if flying else _LAST
        if self._ready and self._ready[0][0] < first:
            return self._ready[0][0]
        return first

    def _released(self, chunk: ChunkOutcomes) -> None:
        errors = self._errors.pop(chunk.order, None)
        if errors:
            self.walk.note_errors(errors)
        chunk.start = self._next_index
        self._next_index += len(chunk)
        if len(chunk):
            chunk.seq = self._next_seq
            self._next_seq += 1

    def _estimate(self, seg: Segment, size: int) -> float:
        if seg[0] == "f":
            return len(seg[1])
        return self._files / self._dirs if self._dirs and self._files else size


def make_feed(items: Any, chunker: Chunker, backend: Any, *, timeout: float | None, key: Any, skip: Any,
              keyed: bool, make_plain: Callable[[], Any]) -> Any:
    """A :class:`WalkFeed` when the workers can walk ``items``, else ``make_plain()``."""
    if walks_in_workers(items, backend, timeout=timeout, key=key, skip=skip):
        return WalkFeed(items, chunker, keyed=keyed)
    return make_plain()
