"""One run at a time: :class:`RunLock`, an OS file lock on a file beside the journal.

The lock is the ``filelock`` library's: ``flock`` on Unix, ``msvcrt.locking`` on Windows. Both
are dropped by the operating system when the process dies, so a lock left by a crashed or killed
run never blocks the next one. (Where neither exists, filelock falls back to a marker file that
it clears once the pid in it is gone.) We use the library rather than calling ``fcntl`` and
``msvcrt`` ourselves because the corner cases are its daily work: Windows sharing modes and
``EACCES`` for contention, file systems without ``flock``, descriptors after ``fork``.

The holder writes its pid, host and start time into a second file, ``NAME.holder``, so a
refused run can say who holds the lock. Not into the lock file: Windows forbids reading a
locked byte range, and filelock may truncate the lock file or keep its own marker in it. Only
the holder writes or removes the holder file, always while it holds the lock.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

from ..errors import Locked

POLL = 0.2  # seconds between attempts while --wait-lock waits


def pid_exists(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (a zombie counts).

    On POSIX by signal 0, as psutil does there, without importing psutil (≈ 6 ms, paid by every
    run that finds another run's files); elsewhere by psutil (on Windows ``os.kill(pid, 0)``
    would terminate the process).
    """
    if pid <= 0:
        return pid == 0
    if os.name != "posix":
        import psutil

        return psutil.pid_exists(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: it exists, another user's
    return True


def _file_lock(path: Path) -> Any:
    # Imported on first use: `import batchkit` and `batchkit --help` never load it.
    with warnings.catch_warnings():
        # "only soft file lock is available" where there is no fcntl: the soft lock is the
        # documented fallback, not something a cron log should carry on every run.
        warnings.simplefilter("ignore")
        import filelock

        return filelock.FileLock(str(path), thread_local=False), filelock.Timeout


class RunLock:
    """An exclusive lock named ``name`` in ``directory`` (``$BATCHKIT_HOME/locks`` by default).

    >>> with RunLock("nightly") as lock:   # raises batchkit.errors.Locked if another run holds it
    ...     pass
    """

    def __init__(self, name: str, directory: str | os.PathLike | None = None) -> None:
        if directory is None:
            from .journal import default_home

            directory = default_home() / "locks"
        self.path = Path(directory) / f"{name}.lock"
        self.holder_path = Path(directory) / f"{name}.holder"
        self._lock: Any = None

    def acquire(self, wait: float = 0.0) -> RunLock:
        """Take the lock, waiting up to ``wait`` seconds; raise :class:`~batchkit.errors.Locked`.

        An ``OSError`` (a read-only or missing directory) is raised as it is: the caller says
        where state should live.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # filelock's notes on file systems without flock
            lock, timeout = _file_lock(self.path)
            try:
                lock.acquire(timeout=max(0.0, wait), poll_interval=POLL)
            except timeout:
                holder = self.holder()
                pid = holder.get("pid")
                since = holder.get("started", "an unknown time")
                raise Locked(
                    f"another run of this job is in progress (pid {pid or '?'}, started {since}); "
                    "try again later, or pass --wait-lock SECONDS", pid, holder.get("started")
                ) from None
        self._lock = lock
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            from ..atomic import write_atomic

            write_atomic(self.holder_path, f"{os.getpid()} {socket.gethostname()} {stamp}\n")
        except OSError:
            pass  # the holder file is a courtesy for the refused run's message
        return self

    def holder(self) -> dict:
        """``{"pid", "host", "started"}`` as written by the current holder (may be empty)."""
        try:
            text = self.holder_path.read_text().strip()
        except OSError:
            return {}
        parts = text.split(" ", 2)
        if len(parts) < 3 or not parts[0].isdigit():
            return {}
        return {"pid": int(parts[0]), "host": parts[1], "started": parts[2]}

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._lock is not None

    def release(self) -> None:
        """Let go of the lock. The lock file stays: removing it would race with a waiting run."""
        if self._lock is None:
            return
        try:
            self.holder_path.unlink()  # while still holding: never another holder's file
        except OSError:
            pass
        lock, self._lock = self._lock, None
        lock.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
