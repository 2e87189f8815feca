"""Watching a directory: :class:`FileWatch`, an endless source of complete file versions.

``bk.files(root, watch=True)`` yields the files present at start (the same walk, filters and
order as ``bk.files``), then every file that arrives or changes, each *version* (path, size,
mtime) once. A version is yielded only when it is complete:

- **settled**: its size and mtime were seen unchanged ``settle`` seconds apart (a writer that
  pauses for less than that between pieces is still writing); a file whose mtime is already
  older than ``settle`` plus :data:`~batchkit.sources.watcher.CLOCK_MARGIN` seconds is complete
  on sight, so a backlog of old files streams out at walk speed (the margin covers a file
  server whose clock is behind ours: a file being written always carries a recent mtime);
- **not temporary**: names matching ``ignore`` (by default ``*.part``, ``*.tmp``, ``.~*`` and
  names starting with ``.``, as written by browsers, rsync, curl, office suites) are skipped,
  directories too, so a file renamed into place is seen once, under its final name.

A file changed after it was yielded is yielded again as a new version; a version already
yielded is not yielded again by the same iteration while its file stays (events about it, e.g.
a chmod, are ignored); a file deleted and made again is a new arrival, whatever its mtime.
The journal keys a version by :attr:`~batchkit.sources.versions.FileVersion.key`, so a
restarted run skips the versions an earlier one finished and redoes only what changed. A job
that writes into the watched tree makes new versions there: write elsewhere, or under an
ignored name.

How the watching is done is :mod:`batchkit.sources.watcher`; the versions yielded are
:mod:`batchkit.sources.versions`.

**Why watchfiles** (and not watchdog): its Rust core (the ``notify`` crate) gives a blocking,
thread-free API — ``RustNotify.watch(debounce, step, timeout, stop_event)`` waits in the
calling thread and returns within ``step`` ms of ``stop_event`` being set — where watchdog
delivers events through callbacks on its own Python threads that we would have to queue and
join. Its native reader thread drains inotify continuously into a de-duplicated set, so the
kernel queue rarely overflows however slowly we consume; it polls on request
(``force_polling``, in Rust) and falls back to polling where inotify is missing; it is actively
maintained, with abi3 wheels for Linux, macOS and Windows (pip picks 1.1 on Python 3.9, the
latest on 3.10–3.14; watchdog 7 needs 3.11). Its gaps, and what we do about them:

- an inotify overflow is dropped silently (watchfiles issue #348): we rescan the whole tree
  every :data:`~batchkit.sources.watcher.RESCAN_EVERY` seconds (less often on a tree so big that rescans would take more
  than :data:`~batchkit.sources.watcher.RESCAN_SHARE` of the time) and after any watcher error;
- one unreadable directory makes a recursive watch give up entirely, and a directory made after
  the watch began may hold files older than its OS watch: we watch each wanted directory on
  its own (see :class:`~batchkit.sources.watcher._Watching`), each after a walk found it, followed by a catch-up walk;
- polling stats every file of every watched directory each interval, in a native thread: on a
  big tree, poll less often (``poll=5``).

**Stopping**: :meth:`FileWatch.close` (or the iterator's ``close()``), from any thread or a
signal handler, makes a blocked ``next()`` raise ``StopIteration`` within
:data:`~batchkit.sources.watcher.STEP_MS` ms; the OS watcher is released then, and no thread is
left behind. Idle, the wait wakes every ``STEP_MS`` ms to look for events and ``close()``: no
busy loop.

**Identity** (``repr``, the journal's name for the input): ``files(ROOT, <filters>, watch=True)``,
not the plain walk's. A watch keys items by version and a plain run by path, so one run could
not use the other's finished items anyway, and a watch resuming an interrupted plain run's
record (or the reverse) would mix the two kinds of keys in one record. ``settle`` and ``poll``
are not part of it: they change when a version is yielded, not which, so a restart with
another ``--settle`` still skips what is done.
"""

from __future__ import annotations

import os
import weakref
from typing import Any, Iterator, Union

from ..errors import UsageError
from ..units import parse_duration
from .files import FileWalk, Patterns, When, _matches, _patterns
from .versions import FileVersion, PathVersion, _path_version  # noqa: F401 - pickles made before the split name it here
from .watcher import POLL_EVERY, _Watching

#: Names skipped by default: partial downloads, temporary files, office lock files, dot-files.
TEMP_NAMES = ("*.part", "*.tmp", ".~*", ".*")


def _poll_interval(poll: bool | float | str | None) -> float | None:
    if poll is None or poll is False:
        return None
    if poll is True:
        return POLL_EVERY
    seconds = parse_duration(poll)
    if seconds <= 0:
        raise UsageError(f"poll={poll!r}: use True or a number of seconds > 0 between polls")
    return seconds


class FileWatch(FileWalk):
    """An endless source of complete file versions under ``root``: what
    ``bk.files(root, ..., watch=True)`` returns (see the module docstring for the rules).

    Iterating it yields :class:`PathVersion` objects (:class:`FileVersion` strings with
    ``as_str=True``) until :meth:`close`. Unreadable directories are logged once and listed in
    ``errors``, as with :class:`FileWalk`; :meth:`paths` is the plain walk of what is there now.

    >>> with bk.files("/incoming", include="*.csv", watch=True, settle=5) as incoming:
    ...     for path in incoming:          # blocks until the next file is complete
    ...         load(path)
    """

    # An endless source: a run that stops calls close() (safe from any thread) to end its input.
    endless = True

    def __init__(self, root: str | os.PathLike, include: Patterns = "*", exclude: Patterns = (),
                 recursive: bool = True, follow_symlinks: bool = False, hidden: bool = True,
                 min_size: int | str | None = None, max_size: int | str | None = None,
                 newer_than: When = None, older_than: When = None, as_str: bool = False, *,
                 settle: float | str = 2.0, poll: bool | float | str | None = False,
                 ignore: Patterns = None) -> None:
        super().__init__(root, include, exclude, recursive, follow_symlinks, hidden, min_size, max_size,
                         newer_than, older_than, as_str)
        if not os.path.isdir(self.root):
            raise UsageError(f"{self.root}: not a directory; a watch needs a directory to watch")
        self.settle = parse_duration(settle)
        self.poll = _poll_interval(poll)
        self.ignore = TEMP_NAMES if ignore is None else _patterns(ignore)
        self._identity = self._describe()
        # The ignored names become filters: ".*" is exactly what hidden=False skips (and cheaper
        # than a pattern), the others prune like `exclude`.
        rest = self.ignore
        if ".*" in rest:
            self.hidden = False
            rest = tuple(p for p in rest if not p.startswith("."))  # all covered by ".*"
        self.exclude = self.exclude + tuple(p for p in rest if p not in self.exclude)
        self._accept_all = self._accept_all and not self.exclude
        self._closed = False
        self._live: weakref.WeakSet[_Watching] = weakref.WeakSet()

    def _describe(self) -> str:
        opts = {"include": self.include, "exclude": self.exclude, "recursive": self.recursive,
                "follow_symlinks": self.follow_symlinks, "hidden": self.hidden, "min_size": self.min_size,
                "max_size": self.max_size}
        shown = [f"{k}={v!r}" for k, v in opts.items() if v not in ((), None)]
        shown.append("watch=True")
        if self.ignore != TEMP_NAMES:
            shown.append(f"ignore={self.ignore!r}")
        return f"files({os.path.abspath(self.root)!r}, {', '.join(shown)})"

    def __repr__(self) -> str:
        # The watch's identity in the journal: everything that changes which versions it yields.
        return self._identity

    def __iter__(self) -> Iterator[Union[PathVersion, FileVersion]]:  # type: ignore[override]
        if self._closed:
            return iter(())
        it = _Watching(self)
        self._live.add(it)
        return it

    def close(self) -> None:
        """Stop watching: every iteration in progress ends (a blocked ``next()`` raises
        ``StopIteration`` within :data:`~batchkit.sources.watcher.STEP_MS` ms), and later ones
        yield nothing. Safe from any thread and from a signal handler; safe to call twice."""
        self._closed = True
        for it in list(self._live):
            it.close()

    def __enter__(self) -> FileWatch:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _error(self, path: str, exc: OSError) -> None:
        # Rescans meet the same unreadable directory again: log and list it once.
        if (path, exc.strerror or str(exc)) not in self.errors:
            super()._error(path, exc)

    def _wanted_path(self, rel: str, is_dir: bool) -> bool:
        """Whether the walk would yield (or enter) the entry at ``rel`` (relative to the root, ``/``-separated)."""
        parts = rel.split("/")
        if not self.recursive and (is_dir or len(parts) > 1):
            return False
        hidden, exclude = self.hidden, self.exclude
        dirs = parts if is_dir else parts[:-1]
        for i, name in enumerate(dirs):
            if not hidden and name[:1] == ".":
                return False
            if exclude and _matches(exclude, name, "/".join(parts[:i + 1])):
                return False
        if is_dir:
            return True
        name = parts[-1]
        if not hidden and name[:1] == ".":
            return False
        return _matches(self.include, name, rel) and not (exclude and _matches(exclude, name, rel))


