"""File versions: what a watch yields, a path plus the size and mtime it had when it was complete,
keyed in the journal by :func:`version_key` (``PATH@SIZE:MTIME_NS``).

:class:`PathVersion` (a ``Path``, the default) and :class:`FileVersion` (a ``str``, with
``as_str=True``) carry their version to process and Dask workers and give it to
:func:`batchkit.state.keys.item_key`, so a restarted watch skips the versions an earlier run finished.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_ConcretePath = type(Path())


def version_key(path: str, size: int | None, mtime_ns: int | None) -> str:
    """A file version's key in the journal: ``PATH@SIZE:MTIME_NS``; the path alone without a version.

    The suffix holds only digits and ``:``, so the last ``@`` always starts it, whatever the path holds.
    """
    if size is None or mtime_ns is None:
        return path
    return f"{path}@{size}:{mtime_ns}"


class FileVersion(str):
    """One version of a file, as a watch yields it with ``as_str=True``: the path itself (a
    ``str``), plus ``size`` and ``mtime_ns`` as seen when it was complete, and :attr:`key`."""

    size: int
    mtime_ns: int

    def __new__(cls, path: str, size: int, mtime_ns: int) -> FileVersion:
        self = super().__new__(cls, path)
        self.size = size
        self.mtime_ns = mtime_ns
        return self

    @property
    def key(self) -> str:
        """The version's identity in the journal (see :func:`version_key`)."""
        return version_key(str(self), self.size, self.mtime_ns)

    def __batchkit_key__(self) -> str:
        # What batchkit.state.keys.item_key asks an item for before anything else.
        return self.key

    def __reduce__(self) -> tuple:
        # Travels to process and Dask workers with its version.
        return FileVersion, (str(self), self.size, self.mtime_ns)


class PathVersion(_ConcretePath):  # type: ignore[misc, valid-type]
    """One version of a file, as a watch yields it by default: a ``Path``, plus ``size``,
    ``mtime_ns`` and :attr:`key` (``None`` / the path alone on paths derived from it)."""

    size: int | None = None
    mtime_ns: int | None = None

    @property
    def key(self) -> str:
        """The version's identity in the journal (see :func:`version_key`)."""
        return version_key(os.fspath(self), self.size, self.mtime_ns)

    def __batchkit_key__(self) -> str:
        return self.key

    def with_segments(self, *args: Any) -> Path:
        # Python >= 3.12: paths derived from a version (parent, joinpath, ...) are plain paths.
        return Path(*args)

    def __reduce__(self) -> tuple:
        return _path_version, (os.fspath(self), self.size, self.mtime_ns)


def _path_version(path: str, size: int | None, mtime_ns: int | None) -> PathVersion:
    p = PathVersion(path)
    p.size, p.mtime_ns = size, mtime_ns
    return p
