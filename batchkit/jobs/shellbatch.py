"""Several items per command (``batchkit exec -X`` / ``-m``): :class:`Batch` and :func:`batches`.

A command that takes many items is one unit of work: it is one entry in the journal, the counts
and ``--output``, keyed by its items (``first .. last (n items, digest)``); its exit status is
theirs, and ``--resume`` skips the commands that finished. Items are grouped in input order, as
many per command as fit the command line (:func:`command_line_limit`, or ``--max-chars``), so the
grouping, and with it ``--resume``, is the same for the same input and options. As in GNU
parallel, when the items would fill fewer commands than there are workers, they are spread evenly
over the workers instead (``ceil(n / jobs)`` items each), so that a short list still runs in
parallel.

A :class:`Batch` of one item also carries its input position for ``--keep-order``.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any, Iterable, Iterator

from ..state.keys import item_key
from .shellquote import Template, item_values

MAX_ARG_STRLEN = 131072  # Linux: one argument (for us the whole `sh -c` script) is at most 32 pages
MARGIN = 4096  # the shell's own path and arguments, pointers, alignment


class Batch:
    """The items one command runs, and its position among the run's commands (``seq``).

    Its journal key is the item's own key for one item, else ``first .. last (n items, digest)``.
    """

    def __init__(self, seq: int, items: list) -> None:
        self.seq = seq
        self.items = items

    def __batchkit_key__(self) -> str:
        if len(self.items) == 1:
            return item_key(self.items[0])
        keys = [item_key(i) for i in self.items]
        digest = hashlib.blake2b("\0".join(keys).encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()
        return f"{keys[0]} .. {keys[-1]} ({len(keys)} items, {digest})"

    @property
    def tag(self) -> str:
        """The items as ``--tag`` shows them: separated by spaces, as GNU parallel does."""
        return " ".join(_text(i) for i in self.items)

    def __str__(self) -> str:
        return self.__batchkit_key__()

    def __repr__(self) -> str:
        return f"Batch({self.seq}, {self.items!r})"


def _text(item: Any) -> str:
    return os.fspath(item) if isinstance(item, os.PathLike) else str(item)


def command_line_limit() -> int:
    """The longest script ``/bin/sh -c`` can be given here: ``ARG_MAX`` less the environment and a
    margin, and on Linux at most ``MAX_ARG_STRLEN - 1`` (the script is one argument)."""
    try:
        arg_max = os.sysconf("SC_ARG_MAX")
    except (AttributeError, ValueError, OSError):
        arg_max = -1
    if arg_max <= 0:
        arg_max = 4 * MAX_ARG_STRLEN
    env = sum(len(k) + len(v) + 2 + 8 for k, v in os.environ.items())  # NUL and '=' and a pointer each
    limit = arg_max - env - MARGIN
    if sys.platform.startswith("linux"):
        limit = min(limit, MAX_ARG_STRLEN - 1)
    return max(limit, 1024)


def batches(items: Iterable[Any], template: Template, mode: str, *, max_chars: int | None = None,
            jobs: int = 1, limit: int | None = None) -> Iterator[Batch]:
    """Group ``items`` into commands of ``template`` (``mode`` "X" or "m"), lazily.

    A command's script stays within ``limit`` (default :func:`command_line_limit`) and, with
    ``max_chars``, its displayed command line (what ``--dry-run`` prints) is shorter than
    ``max_chars`` (GNU parallel's and xargs' ``-s``). An item too long for any command runs
    alone (and fails with the system's "argument list too long"). At most ``jobs`` full commands
    are held back at a time, to spread a short tail evenly over ``jobs`` commands.
    """
    limit = command_line_limit() if limit is None else limit
    fits = _Fits(template, mode, limit, max_chars)
    seq = 0
    full: list[list] = []
    current: list = []
    for item in items:
        if not fits.add(item, len(current) + 1):  # the first item of a command always fits
            full.append(current)
            current = []
            fits.reset()
            fits.add(item, 1)
        current.append(item)
        if len(full) >= jobs:
            for group in full:
                yield Batch(seq, group)
                seq += 1
            full = []
    groups = full + ([current] if current else [])
    if 0 < len(groups) < jobs:
        groups = _spread(groups, jobs, fits)
    for group in groups:
        yield Batch(seq, group)
        seq += 1


def _spread(groups: list[list], jobs: int, fits: _Fits) -> list[list]:
    """The items of ``groups`` in commands of ``ceil(n / jobs)`` items each, as GNU parallel
    spreads them, if each still fits; else ``groups`` as they are."""
    items = [i for g in groups for i in g]
    size = -(-len(items) // jobs)
    spread = [items[i:i + size] for i in range(0, len(items), size)]
    return spread if all(fits.whole(g) for g in spread) else groups


class _Fits:
    """Running lengths of the command being filled: the script and the displayed line."""

    def __init__(self, template: Template, mode: str, limit: int, max_chars: int | None) -> None:
        self.template = template
        self.mode = mode
        self.limit = limit
        self.max_chars = max_chars
        self.reset()

    def reset(self) -> None:
        self.script = self.template.base(self.mode)
        self.shown = self.template.base(self.mode, inline=True)

    def add(self, item: Any, k: int) -> bool:
        """Count ``item`` as number ``k`` if it fits (always, for the first); whether it did."""
        values = item_values(item)
        script = self.script + self.template.cost(values, k, self.mode)
        shown = self.shown + self.template.cost(values, k, self.mode, inline=True)
        if k > 1 and (script > self.limit or (self.max_chars is not None and shown + 1 > self.max_chars)):
            return False
        self.script, self.shown = script, shown
        return True

    def whole(self, group: list) -> bool:
        self.reset()
        return all(self.add(item, k) for k, item in enumerate(group, 1))
