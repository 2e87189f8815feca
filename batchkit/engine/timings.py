"""Per-item durations of a chunk, compact when most items share one figure: :class:`Durations`.

A worker times the first items of a chunk one by one; once they prove tiny, the rest run untimed
and share the average (see :mod:`batchkit.engine.worker`). Storing that shared figure once rather
than once per item keeps eight bytes per item off the pipe and out of the parent's memory: for
ten million tiny items, 80 MB.
"""

from __future__ import annotations

from array import array
from itertools import chain, repeat
from typing import Iterator, Union, overload


class Durations:
    """A read-only sequence of floats: ``head`` (timed items), then ``rest`` items of ``each`` seconds.

    Indexing, slicing, ``len`` and iteration behave like an ``array("d")``; ``array("d", d)``
    gives the expanded array.
    """

    __slots__ = ("head", "rest", "each")

    def __init__(self, head: array, rest: int, each: float) -> None:
        self.head = head
        self.rest = rest
        self.each = each

    def __len__(self) -> int:
        return len(self.head) + self.rest

    def __iter__(self) -> Iterator[float]:
        return chain(self.head, repeat(self.each, self.rest))

    @overload
    def __getitem__(self, i: int) -> float: ...

    @overload
    def __getitem__(self, i: slice) -> Durations | array: ...

    def __getitem__(self, i: int | slice) -> float | Durations | array:
        n = len(self)
        if isinstance(i, slice):
            start, stop, step = i.indices(n)
            if step != 1:
                return array("d", self)[i]
            stop = max(start, stop)
            k = len(self.head)
            return Durations(self.head[start:stop], max(0, stop - max(start, k)), self.each)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("durations index out of range")
        return self.head[i] if i < len(self.head) else self.each

    def __eq__(self, other: object) -> bool:
        try:
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))  # type: ignore[arg-type]
        except TypeError:
            return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Durations({len(self.head)} timed, {self.rest} x {self.each:.3g}s)"

    def __reduce__(self) -> tuple:
        return (Durations, (self.head, self.rest, self.each))


Timings = Union[array, Durations]


def as_array(durations: Timings) -> array:
    """``durations`` as an ``array("d")`` (itself when it is one)."""
    return durations if isinstance(durations, array) else array("d", durations)
