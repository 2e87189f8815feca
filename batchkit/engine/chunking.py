"""Chunk sizes: fixed, or "auto", which grows chunks until each takes a fraction of a second.

The auto rule follows joblib's batching: start with one item per chunk, measure how long a chunk
takes *inside the worker*, and size the next chunk so it takes about ``TARGET`` seconds (kept
within 0.2-2 s). Two caps keep every worker busy: with a known total, no chunk is larger than
``total / (8 * workers)`` (half what ``multiprocessing.Pool.map`` uses: the last chunks then end
closer together, which matters more than the few extra round trips); with an unknown total, no
chunk exceeds ``MAX_UNKNOWN`` items, so memory stays flat. Growth is limited to ``GROWTH`` per
step so one fast first item cannot produce a huge chunk of slow ones.
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterable, Iterator, Union

from ..errors import UsageError

ChunkSize = Union[int, str]

MIN_DURATION = 0.2
MAX_DURATION = 2.0
TARGET = 0.5
GROWTH = 16
MAX_UNKNOWN = 20_000
# A chunk shorter than this gains less in balance than its round trip costs: the balance cap
# (total / (8 * workers)) of a small input does not cut chunks below it, up to SMALL items. Ten
# fast items then go out in two waves of tasks rather than three.
MIN_CHUNK = 0.01
SMALL = 256


def check_chunk_size(chunk_size: ChunkSize) -> ChunkSize:
    """Validate ``chunk_size``: ``"auto"`` or a whole number >= 1."""
    if chunk_size == "auto":
        return chunk_size
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise UsageError(f"chunk_size={chunk_size!r}: use 'auto' or a whole number >= 1")
    return chunk_size


class Chunker:
    """Decides the size of the next chunk; :meth:`observe` feeds it what chunks took."""

    def __init__(self, chunk_size: ChunkSize, workers: int, total: int | None = None) -> None:
        self.fixed = None if check_chunk_size(chunk_size) == "auto" else int(chunk_size)
        self._balance = total is not None  # the cap is for balance (else: for memory)
        if total is not None:
            self.cap = max(1, total // (8 * max(1, workers)))
        else:
            self.cap = MAX_UNKNOWN
        self.size = self.fixed or 1
        self._per_item: float | None = None

    def observe(self, n_items: int, elapsed: float) -> None:
        """A chunk of ``n_items`` took ``elapsed`` seconds of work in its worker."""
        if self.fixed or n_items <= 0:
            return
        per_item = max(elapsed, 1e-7) / n_items
        # Smooth a little so one odd chunk does not swing the size.
        self._per_item = per_item if self._per_item is None else 0.5 * (self._per_item + per_item)
        duration_now = self._per_item * self.size
        if MIN_DURATION <= duration_now <= MAX_DURATION:
            return
        ideal = int(TARGET / self._per_item)
        if self._balance:
            self.cap = max(self.cap, min(SMALL, int(MIN_CHUNK / self._per_item)))
        self.size = max(1, min(ideal, self.size * GROWTH, self.cap))

    def next_size(self) -> int:
        """How many items to put in the next chunk."""
        return self.size


def split(items: Iterable[Any], chunker: Chunker) -> Iterator[list]:
    """Cut ``items`` into lists, each as long as the chunker says at that moment. Lazy."""
    it = iter(items)
    while True:
        chunk = list(islice(it, chunker.next_size()))
        if not chunk:
            return
        yield chunk
