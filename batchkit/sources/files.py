"""File-tree input: :func:`files`, a lazy ``os.scandir`` walk that yields ``Path`` objects."""

from __future__ import annotations

import fnmatch
import functools
import logging
import operator
import os
import re
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

from ..errors import UsageError
from ..units import parse_duration, parse_size

log = logging.getLogger("batchkit.files")
_BY_NAME = operator.attrgetter("name")

Patterns = Union[str, Sequence[str], None]
When = Union[datetime, timedelta, str, float, int, None]


def _patterns(value: Patterns) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@functools.lru_cache(maxsize=256)
def _path_regex(pattern: str) -> re.Pattern:
    # Like a shell glob on a path: `*` and `?` stay within one directory, `**/` spans any number.
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            j = pattern.find("]", i + 1) if pattern[i] == "[" else -1
            if j > 0:
                out.append(fnmatch.translate(pattern[i:j + 1])[4:-3])
                i = j + 1
            else:
                out.append(re.escape(pattern[i]))
                i += 1
    return re.compile("".join(out) + r"\Z")


@functools.lru_cache(maxsize=256)
def _matcher(patterns: tuple[str, ...]) -> tuple[Callable[[str], object] | None, Callable[[str], object] | None]:
    """One compiled regex for the name patterns and one for the path patterns (a slash) of a
    list: one match call per file, however many patterns."""
    names = [fnmatch.translate(p) for p in patterns if "/" not in p]
    paths = [_path_regex(p).pattern for p in patterns if "/" in p]
    return (re.compile("|".join(f"(?:{r})" for r in names)).match if names else None,
            re.compile("|".join(f"(?:{r})" for r in paths)).match if paths else None)


def _matches(patterns: tuple[str, ...], name: str, rel: str) -> bool:
    # A pattern with a slash is matched against the path relative to the root, else the name.
    by_name, by_path = _matcher(patterns)
    return bool(by_name is not None and by_name(name) or by_path is not None and by_path(rel))


def _cutoff(value: When) -> float | None:
    """An mtime threshold: a datetime is absolute; a duration (timedelta, "7d", seconds) is an age."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return time.time() - parse_duration(value)


class FileWalk:
    """A lazy, re-iterable walk of a directory tree (what :func:`files` returns).

    Directories it cannot read are logged, skipped and listed in ``errors`` as
    ``(path, message)``; the run's :class:`~batchkit.Report` carries them as ``input_errors``.
    """

    def __init__(self, root: str | os.PathLike, include: Patterns = "*", exclude: Patterns = (),
                 recursive: bool = True, follow_symlinks: bool = False, hidden: bool = True,
                 min_size: int | str | None = None, max_size: int | str | None = None,
                 newer_than: When = None, older_than: When = None, as_str: bool = False,
                 leave_out: Iterable[str | os.PathLike] = ()) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise UsageError(f"{self.root}: no such file or directory")
        self.include = _patterns(include) or ("*",)
        self.exclude = _patterns(exclude)
        self.recursive = recursive
        self.follow_symlinks = follow_symlinks
        self.hidden = hidden
        self.min_size = parse_size(min_size) if min_size is not None else None
        self.max_size = parse_size(max_size) if max_size is not None else None
        self.newer_than = _cutoff(newer_than)
        self.older_than = _cutoff(older_than)
        self.as_str = as_str
        self.errors: list[tuple[str, str]] = []
        self.quiet = False  # a copy walking in a worker collects errors for the parent to log
        # Files left out by identity (device, inode), whatever name the walk meets them under:
        # a manifest written into the tree it lists must not list itself.
        self.leave_out = tuple(os.path.abspath(os.fspath(p)) for p in leave_out)
        self._left_out: dict[int, int] = {}
        for p in self.leave_out:
            try:
                st = os.stat(p)
                self._left_out[st.st_ino] = st.st_dev
            except OSError:
                pass  # not there (yet): nothing to leave out
        self._accept_all = (self.include == ("*",) and not self.exclude and self.min_size is None
                            and self.max_size is None and self.newer_than is None and self.older_than is None)

    def __repr__(self) -> str:
        # Also the walk's identity in the journal: everything that changes which files it yields.
        opts = {"include": self.include, "exclude": self.exclude, "recursive": self.recursive,
                "follow_symlinks": self.follow_symlinks, "hidden": self.hidden, "min_size": self.min_size,
                "max_size": self.max_size}
        if getattr(self, "leave_out", ()):
            opts["leave_out"] = self.leave_out
        shown = ", ".join(f"{k}={v!r}" for k, v in opts.items() if v not in ((), None))
        return f"files({os.path.abspath(self.root)!r}, {shown})"

    def __iter__(self) -> Iterator[Path]:
        if self.as_str:
            return self.paths()
        return map(Path, self.paths())

    def paths(self) -> Iterator[str]:
        """The same walk, yielding path strings (no ``Path`` objects: cheaper per file)."""
        self.errors = []
        root = os.fspath(self.root)
        if not os.path.isdir(root):
            name = os.path.basename(root)
            if self._wanted_file(root, name, name, None):
                yield root
            return
        yield from self._walk(root, "")

    def _walk(self, top: str, rel_top: str, on_dir: Callable[[str], Any] | None = None) -> Iterator[str]:
        """The wanted files under directory ``top``, whose path relative to the root is
        ``rel_top`` (``""`` for the root itself, else ending with ``/``); ``on_dir`` is told
        each directory below ``top`` that the walk enters."""
        seen: set[tuple[int, int]] | None = None
        if self.follow_symlinks:
            try:
                st = os.stat(top)
            except OSError as exc:  # a directory that a watch saw appear may be gone again
                self._error(top, exc)
                return
            seen = {(st.st_dev, st.st_ino)}
        # Depth first, in name order, descending into a directory when it is met, as `find`
        # does: a stack of the directories being listed.
        stack = [self.scan(top, rel_top, seen)]
        while stack:
            for path, rel in stack[-1]:
                if rel is None:
                    yield path
                    continue
                if on_dir is not None:
                    on_dir(path)
                stack.append(self.scan(path, rel, seen))
                break  # go down now; this directory's listing resumes afterwards
            else:
                stack.pop()

    @functools.cached_property
    def _need_rel(self) -> bool:
        # Relative paths are only built when a pattern needs them (one with a slash).
        return any("/" in p for p in self.include + self.exclude)

    def scan(self, top: str, rel_dir: str, seen: set[tuple[int, int]] | None = None
             ) -> Iterator[tuple[str, str | None]]:
        """One directory of the walk, in walk order (name order): ``(path, None)`` for each wanted
        file and ``(path, rel)`` for each subdirectory the walk descends into, ``rel`` being its
        path relative to the root ending with ``/`` (``""`` when no pattern needs it). ``top`` is
        listed when the first entry is asked for; with ``follow_symlinks``, ``seen`` holds the
        directories met so far, so a symlink loop is walked once. A directory that cannot be read
        is recorded in ``errors``."""
        follow = self.follow_symlinks
        hidden, recursive, exclude = self.hidden, self.recursive, self.exclude
        accept_all = self._accept_all
        left_out = getattr(self, "_left_out", None)
        need_rel = self._need_rel
        if not need_rel:
            rel_dir = ""
        for entry in self._entries(top):
            name = entry.name
            if not hidden and name[0] == ".":
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=follow)
                is_file = not is_dir and entry.is_file(follow_symlinks=follow)
            except OSError:
                continue
            rel = f"{rel_dir}{name}" if need_rel else name
            if is_dir:
                if not recursive or (exclude and _matches(exclude, name, rel)):
                    continue
                if seen is not None:
                    try:
                        st = entry.stat()
                    except OSError as exc:
                        self._error(entry.path, exc)
                        continue
                    ident = (st.st_dev, st.st_ino)
                    if ident in seen:  # a symlink loop, or a tree reached twice
                        continue
                    seen.add(ident)
                yield entry.path, rel + "/" if need_rel else ""
            elif is_file and (accept_all or self._wanted_file(entry.path, name, rel, entry)):
                if left_out and entry.inode() in left_out and self._is_left_out(entry):
                    continue
                yield entry.path, None

    def _is_left_out(self, entry: os.DirEntry) -> bool:
        try:
            return self._left_out.get(entry.inode()) == entry.stat(follow_symlinks=False).st_dev
        except OSError:
            return False

    def _entries(self, path: str) -> Iterator[os.DirEntry]:
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=_BY_NAME)
        except OSError as exc:
            self._error(path, exc)
            return iter(())
        return iter(entries)

    def _error(self, path: str, exc: OSError) -> None:
        error = (path, exc.strerror or str(exc))
        if self.quiet:
            self.errors.append(error)
        else:
            self.note_errors([error])

    def note_errors(self, errors: list[tuple[str, str]]) -> None:
        """Record directories that a walk run elsewhere (a worker) could not read: logged here, in order."""
        for path, message in errors:
            log.warning("cannot read %s: %s (skipped)", path, message)
            self.errors.append((path, message))

    def _wanted_file(self, path: str, name: str, rel: str, entry: os.DirEntry | None) -> bool:
        if self.include != ("*",) and not _matches(self.include, name, rel):
            return False
        if self.exclude and _matches(self.exclude, name, rel):
            return False
        if self.min_size is None and self.max_size is None and self.newer_than is None and self.older_than is None:
            return True
        try:
            st = entry.stat(follow_symlinks=self.follow_symlinks) if entry else os.stat(path)
        except OSError:
            return False
        return self._wanted_stat(st)

    def _wanted_stat(self, st: os.stat_result) -> bool:
        """The size and age filters."""
        if self.min_size is not None and st.st_size < self.min_size:
            return False
        if self.max_size is not None and st.st_size > self.max_size:
            return False
        if self.newer_than is not None and st.st_mtime <= self.newer_than:
            return False
        if self.older_than is not None and st.st_mtime >= self.older_than:
            return False
        return True


def files(root: str | os.PathLike, include: Patterns = "*", exclude: Patterns = (), recursive: bool = True,
          follow_symlinks: bool = False, hidden: bool = True, min_size: int | str | None = None,
          max_size: int | str | None = None, newer_than: When = None, older_than: When = None,
          as_str: bool = False, *, watch: bool = False, settle: float | str = 2.0,
          poll: bool | float | str = False, ignore: Patterns = None,
          leave_out: Iterable[str | os.PathLike] = ()) -> FileWalk:
    """The files under ``root``, lazily, as ``Path`` objects (depth first, in name order).

    ``include`` / ``exclude``: glob patterns (one or a list) matched against the file name, or
    against the path relative to ``root`` when the pattern has a ``/``; ``exclude`` also prunes
    directories. ``hidden=False`` skips dot-files and dot-directories. Symlinks are not
    followed unless ``follow_symlinks=True``, and then a symlink loop is walked once.
    ``min_size`` / ``max_size`` take bytes or ``"10MB"``; ``newer_than`` / ``older_than`` take
    a ``datetime`` or an age (``"7d"``, a ``timedelta``, seconds). ``as_str=True`` yields path
    strings instead of ``Path`` objects: building a ``Path`` costs more than hashing a small file.
    ``leave_out``: files never yielded, whatever name the walk meets them under (a manifest or
    a log written inside the tree being walked).

    ``watch=True`` makes an endless source of complete file versions instead: the files present
    now, then each file that arrives or changes, once its size and mtime have not changed for
    ``settle`` seconds; temporary names (``ignore``, by default ``*.part``, ``*.tmp``, ``.~*``
    and names starting with ``.``) are skipped; ``poll=True`` (or a number of seconds) polls
    instead of using the OS's events, for network filesystems. See
    :class:`~batchkit.sources.watch.FileWatch`.

    >>> report = bk.run(checksum, bk.files("/data", include="*.csv", older_than="1d"))
    """
    if watch:
        from .watch import FileWatch

        return FileWatch(root, include, exclude, recursive, follow_symlinks, hidden, min_size, max_size,
                         newer_than, older_than, as_str, settle=settle, poll=poll, ignore=ignore)
    if settle != 2.0 or poll is not False or ignore is not None:
        raise UsageError("settle=, poll= and ignore= only apply to a watch: add watch=True")
    if leave_out:
        return FileWalk(root, include, exclude, recursive, follow_symlinks, hidden, min_size, max_size,
                        newer_than, older_than, as_str, leave_out=leave_out)
    return FileWalk(root, include, exclude, recursive, follow_symlinks, hidden,
                    min_size, max_size, newer_than, older_than, as_str)
