"""The machinery behind one iteration of a :class:`~batchkit.sources.watch.FileWatch`: walks,
settling, and the OS watcher (events or polling) with its rescans (why watchfiles, its gaps and
what covers them: :mod:`batchkit.sources.watch`)."""

from __future__ import annotations

import heapq
import logging
import math
import os
import stat
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Iterator

from ..errors import UsageError
from .versions import FileVersion, PathVersion, _path_version

if TYPE_CHECKING:
    from .watch import FileWatch

log = logging.getLogger("batchkit.watch")

#: How often a wait looks for events and ``close()``, in ms: the bound on how long close() takes.
STEP_MS = 50
#: The longest a burst of events is gathered before it is looked at, in ms.
DEBOUNCE_MS = 200
#: Seconds beyond ``settle``: a file last modified longer ago than both is complete on sight.
CLOCK_MARGIN = 60.0
#: Seconds between rescans of the whole tree (insurance against lost events) ...
RESCAN_EVERY = 60.0
#: ... stretched so that rescanning takes at most this share of the time on a large tree.
RESCAN_SHARE = 0.01
#: Seconds between polls with ``poll=True`` (and when OS events cannot be had).
POLL_EVERY = 1.0
#: A walk hands out what is ready every this many files (a millisecond or so).
SCAN_BATCH = 256


class _Watching:
    """One iteration of a :class:`FileWatch`: what ``iter(watch)`` returns.

    Everything runs in the thread that calls ``next()``: the walks, the settling of pending
    files, and waiting for the OS watcher (which owns its own native reader thread, released on
    stop). State: ``pending`` (path -> size, mtime_ns, deadline) holds files seen but not yet
    settled, ordered by deadline in the ``due`` heap (stale heap entries are skipped); ``done``
    (path -> size, mtime_ns) holds the version last yielded per path, forgotten when the file
    goes away, so memory follows the files present, not the files ever seen.

    The OS watcher watches each wanted directory on its own (not the root recursively): an
    unreadable directory then costs only itself (watchfiles gives up on a whole recursive watch
    over one), ignored and excluded directories are not watched at all, and a directory is
    watched only after a walk found it. So every walk is followed by watching the directories
    it found new, then by a walk of those (a *catch-up*): whatever was written there before
    the watch began is found by that second walk, whatever after by events.
    """

    def __init__(self, watch: FileWatch) -> None:
        self._w = watch
        self._stop = threading.Event()
        self._busy = threading.Lock()  # held while next() runs
        self._root = os.fspath(watch.root)
        self._prefix = os.path.join(self._root, "")
        real = os.path.join(os.path.realpath(self._root), "")
        self._real_prefix = real if real != self._prefix else None  # some OS watchers report real paths
        self._follow = watch.follow_symlinks
        self._check_stat = not (watch.min_size is None and watch.max_size is None
                                and watch.newer_than is None and watch.older_than is None)
        self._trust_ns = int((watch.settle + CLOCK_MARGIN) * 1e9)
        self._make = FileVersion if watch.as_str else _path_version
        self._ready: deque = deque()
        self._pending: dict[str, tuple[int, int, float]] = {}
        self._due: list[tuple[float, str]] = []
        self._done: dict[str, tuple[int, int]] = {}
        self._scans: deque[Iterator[None]] = deque()
        self._rescan_at = math.inf
        self._notify: Any = None
        self._watched: set[str] = set()  # the directories the OS watcher watches
        self._poll = watch.poll  # seconds between polls, None: OS events
        self._backlog: list[set] = []  # events taken from a watcher being replaced
        self._failures: dict[str, int] = {}
        self._scans.append(self._scan(self._root, ""))

    # -- the iterator protocol ---------------------------------------------------------------

    def __iter__(self) -> _Watching:
        return self

    def __next__(self) -> PathVersion | FileVersion:
        if self._ready and not self._stop.is_set():  # the common case while a walk streams
            try:
                return self._ready.popleft()
            except IndexError:  # emptied by a close() in another thread
                pass
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("a watch is read by one thread at a time")
        try:
            item = self._next()
            if item is None:
                self._release()
        finally:
            self._busy.release()
        if item is None:
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop: a ``next()`` blocked in another thread raises ``StopIteration`` within ``STEP_MS`` ms."""
        self._stop.set()
        if self._busy.acquire(blocking=False):  # nobody inside next(): release here
            try:
                self._release()
            finally:
                self._busy.release()

    def __del__(self) -> None:
        if hasattr(self, "_busy"):
            self.close()

    def _release(self) -> None:
        notify, self._notify = self._notify, None
        if notify is not None:
            notify.close()  # stops the native reader thread
        for scan in self._scans:
            scan.close()
        self._scans.clear()
        self._ready.clear()
        self._pending.clear()
        self._due.clear()
        self._backlog.clear()

    # -- the loop ----------------------------------------------------------------------------

    def _next(self) -> PathVersion | FileVersion | None:
        """The next complete version, waiting as long as it takes; ``None`` once stopped."""
        stop = self._stop
        while not stop.is_set():
            if self._ready:
                return self._ready.popleft()
            if self._scans:
                if next(self._scans[0], StopIteration) is StopIteration:
                    self._scans.popleft()
                continue
            if self._backlog:
                self._changes(self._backlog.pop())
                continue
            now = time.monotonic()
            if self._due and self._due[0][0] <= now:
                self._settle(now)
                continue
            if now >= self._rescan_at:
                self._rescan_at = math.inf
                self._scans.append(self._scan(self._root, ""))
                continue
            wake = min(self._due[0][0] if self._due else math.inf, self._rescan_at)
            self._wait(min(wake - now, 3600.0))
        return None

    def _wait(self, seconds: float) -> None:
        """Wait up to ``seconds`` for events (or close()) and take in what they report."""
        from watchfiles._rust_notify import WatchfilesRustInternalError

        try:
            raw = self._notify.watch(DEBOUNCE_MS, STEP_MS, max(1, math.ceil(seconds * 1000)), self._stop)
        except WatchfilesRustInternalError as exc:
            self._watcher_failed(str(exc))
            return
        if raw == "signal":  # a signal handler raised (SIGINT's default): watchfiles swallowed it
            raise KeyboardInterrupt
        if isinstance(raw, set):
            self._changes(raw)

    def _changes(self, raw: set[tuple[int, str]]) -> None:
        """Look at each path that events named, whatever the events said: a batch is an unordered
        set, so "deleted" then "added" cannot be told from the reverse; the file system can."""
        new_dirs: list[tuple[str, str]] = []
        for path in {path for _, path in raw}:
            local = self._local(path)
            if local is None:
                continue
            rel = local[len(self._prefix):]
            if os.sep != "/":
                rel = rel.replace(os.sep, "/")
            try:
                st = os.stat(local, follow_symlinks=self._follow)
            except OSError:
                self._forget(local)
                continue
            if stat.S_ISDIR(st.st_mode):
                if local not in self._watched and self._w._wanted_path(rel, True):
                    new_dirs.append((local, rel + "/"))
            elif self._w._wanted_path(rel, False):
                self._consider(local, st)
        if new_dirs:
            # A directory made here or moved in: watch it, then walk it for what it already holds
            # (one we may not read is only walked, which reports it in `errors`).
            self._watch([d for d, _ in new_dirs if os.access(d, os.R_OK | os.X_OK)])
            self._scans.extend(self._scan(d, rel) for d, rel in new_dirs)

    def _local(self, path: str) -> str | None:
        if path.startswith(self._prefix):
            return path if len(path) > len(self._prefix) else None
        if self._real_prefix is not None and path.startswith(self._real_prefix):
            return self._prefix + path[len(self._real_prefix):]
        return None

    # -- deciding when a file is complete ---------------------------------------------------

    def _consider(self, path: str, st: os.stat_result | None = None) -> None:
        """A wanted file was seen (by a walk or an event): yield it, wait for it, or ignore it."""
        if st is None:
            try:
                st = os.stat(path, follow_symlinks=self._follow)
            except OSError:
                self._forget(path)
                return
        if not stat.S_ISREG(st.st_mode) or (self._check_stat and not self._w._wanted_stat(st)):
            self._pending.pop(path, None)
            return
        size, mtime_ns = st.st_size, st.st_mtime_ns
        version = (size, mtime_ns)
        pending = self._pending
        if self._done.get(path) == version:
            pending.pop(path, None)
            return
        if pending:
            entry = pending.get(path)
            if entry is not None and entry[:2] == version:
                return  # already waiting for this version to settle
        if time.time_ns() - mtime_ns >= self._trust_ns:
            self._done[path] = version
            self._ready.append(self._make(path, size, mtime_ns))
        else:
            self._wait_for(path, version, time.monotonic())

    def _wait_for(self, path: str, version: tuple[int, int], now: float) -> None:
        deadline = now + self._w.settle
        self._pending[path] = (version[0], version[1], deadline)
        heapq.heappush(self._due, (deadline, path))

    def _settle(self, now: float) -> None:
        """Look again at every pending file whose deadline has come: unchanged means complete."""
        while self._due and self._due[0][0] <= now:
            deadline, path = heapq.heappop(self._due)
            entry = self._pending.get(path)
            if entry is None or entry[2] != deadline:
                continue  # forgotten, or seen changing since: a later heap entry stands for it
            try:
                st = os.stat(path, follow_symlinks=self._follow)
            except OSError:
                del self._pending[path]
                continue
            if not stat.S_ISREG(st.st_mode) or (self._check_stat and not self._w._wanted_stat(st)):
                del self._pending[path]
                continue
            version = (st.st_size, st.st_mtime_ns)
            if version == entry[:2]:
                del self._pending[path]
                self._done[path] = version
                self._ready.append(self._make(path, *version))
            else:
                self._wait_for(path, version, now)

    def _forget(self, path: str) -> None:
        self._pending.pop(path, None)
        self._done.pop(path, None)

    # -- walking -----------------------------------------------------------------------------

    def _scan(self, top: str, rel_top: str) -> Iterator[None]:
        """Walk ``top`` and consider every wanted file in it, pausing (yielding) every
        :data:`SCAN_BATCH` files so what is ready goes out and close() is heard; then watch the
        directories it found unwatched, and walk those again (see the class docstring).

        A walk of the whole tree also forgets the files gone without an event, and sets when
        the next one is due. The very first walk hands out the backlog before any directory is
        watched: the files present at start stream out at walk speed.
        """
        walk, watched = self._w, self._watched
        whole = top == self._root
        prune = whole and bool(self._watched)  # not the first walk: nothing is known before it
        seen: set[str] | None = set() if prune else None
        unwatched = [top] if top not in watched else []
        errors = len(walk.errors)
        consider = self._consider
        cpu = 0.0
        mark = time.thread_time()
        n = 0
        for path in walk._walk(top, rel_top, lambda d: d in watched or unwatched.append(d)):
            if seen is not None:
                seen.add(path)
            consider(path)
            n += 1
            if n == SCAN_BATCH:
                n = 0
                cpu += time.thread_time() - mark
                yield
                mark = time.thread_time()
        cpu += time.thread_time() - mark
        if n:
            yield  # what the last files made ready goes out first
        if seen is not None and len(walk.errors) == errors:  # unreadable: files hidden, not gone
            for path in [p for p in self._done if p not in seen]:
                del self._done[path]
        # A directory that cannot be read is not watched (a poller would fail on it at every
        # poll); a later walk that can read it watches it.
        unreadable = {p for p, _ in walk.errors}
        unwatched = [d for d in unwatched if d not in unreadable]
        stale = unreadable & watched
        if unwatched or stale:
            watched.difference_update(stale)
            self._watch(unwatched)
            tops: list[str] = []
            for d in sorted(unwatched):  # a parent sorts before its children
                if not tops or not d.startswith(os.path.join(tops[-1], "")):
                    tops.append(d)
            self._scans.extend(self._scan(d, self._rel_dir(d)) for d in tops)
        elif whole:
            self._rescan_at = time.monotonic() + max(RESCAN_EVERY, cpu / RESCAN_SHARE)

    def _rel_dir(self, path: str) -> str:
        if path == self._root:
            return ""
        rel = path[len(self._prefix):]
        return (rel.replace(os.sep, "/") if os.sep != "/" else rel) + "/"

    # -- the OS watcher ----------------------------------------------------------------------

    def _watch(self, dirs: list[str]) -> None:
        """Watch ``dirs`` too: a new OS watcher over every directory replaces the old one, which
        is read one last time so no event is lost in between."""
        from watchfiles._rust_notify import WatchfilesRustInternalError

        self._watched.update(dirs)
        old, self._notify = self._notify, self._start_notify()
        if old is None:
            return
        try:
            raw = old.watch(1, 1, 1, None)  # what it still holds (a millisecond or two)
        except WatchfilesRustInternalError:
            raw = None
            self._rescan_at = 0.0  # it had failed: events may be lost, so walk everything again
        finally:
            old.close()
        if raw == "signal":
            raise KeyboardInterrupt
        if isinstance(raw, set) and raw:
            self._backlog.append(raw)

    def _start_notify(self) -> Any:
        try:
            from watchfiles._rust_notify import RustNotify
        except ImportError:
            raise UsageError("watching a directory needs the watchfiles package: pip install watchfiles") from None
        for _ in range(3):
            # Gone directories are dropped (the kernel drops their watches by itself).
            self._watched.difference_update([d for d in self._watched if not os.path.isdir(d)])
            if self._poll is None and len(self._watched) > _inotify_limit():
                log.warning("watching %s: %d directories exceed fs.inotify.max_user_watches; polling every "
                            "%g s instead (or raise the limit)", self._root, len(self._watched), POLL_EVERY)
                self._poll = POLL_EVERY
            polling = self._poll is not None
            delay_ms = int((self._poll or POLL_EVERY) * 1000)
            try:
                # Each directory on its own (recursive=False); ignore_permission_denied=True
                # skips the ones that cannot be watched without giving up on the others.
                return RustNotify(sorted(self._watched), False, polling, delay_ms, False, True)
            except FileNotFoundError:
                continue  # a directory went away meanwhile: drop it and try again
            except OSError as exc:
                if polling:
                    raise
                log.warning("cannot watch %s for events (%s); polling every %g s instead", self._root, exc,
                            POLL_EVERY)
                self._poll = POLL_EVERY
        return RustNotify([], False, self._poll is not None, int((self._poll or POLL_EVERY) * 1000), False, True)

    def _watcher_failed(self, message: str) -> None:
        """The OS watcher reported an error (and would report it forever): start a new one and
        rescan, since events may have been lost. Each failure costs a second, never a spin."""
        count = self._failures[message] = self._failures.get(message, 0) + 1
        if count == 1:
            log.warning("watching %s: %s; watching again and rescanning", self._root, message)
        notify, self._notify = self._notify, None
        notify.close()
        if self._stop.wait(1.0):
            return
        self._notify = self._start_notify()
        self._scans.append(self._scan(self._root, ""))


def _inotify_limit() -> float:
    """How many directories one user may watch with inotify (no limit known: infinity)."""
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as f:
            return int(f.read())
    except (OSError, ValueError):
        return math.inf
