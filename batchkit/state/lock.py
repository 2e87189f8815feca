"""One run at a time: :class:`RunLock`, an ``flock`` on a file beside the journal.

The kernel drops an flock when its process dies, so a lock left by a crashed or killed run
never blocks the next one. The holder writes its pid and start time into the file so a
refused run can say who holds it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from ..errors import Locked


class RunLock:
    """An exclusive lock named ``name`` in ``directory`` (``$BATCHKIT_HOME/locks`` by default)."""

    def __init__(self, name: str, directory: str | os.PathLike | None = None) -> None:
        if directory is None:
            from .journal import default_home

            directory = default_home() / "locks"
        self.path = Path(directory) / f"{name}.lock"
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0) -> RunLock:
        """Take the lock, waiting up to ``wait`` seconds; raise :class:`~batchkit.errors.Locked`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self.holder()
                    os.close(fd)
                    pid = holder.get("pid")
                    since = holder.get("started", "an unknown time")
                    raise Locked(
                        f"another run of this job is in progress (pid {pid or '?'}, started {since}); "
                        "try again later, or pass --wait-lock SECONDS", pid, holder.get("started")
                    ) from None
                time.sleep(min(0.2, max(0.01, deadline - time.monotonic())))
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.write(fd, f"{os.getpid()} {socket.gethostname()} {stamp}\n".encode())
        self._fd = fd
        return self

    def holder(self) -> dict:
        """``{"pid", "host", "started"}`` as written by the current holder (may be empty)."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return {}
        parts = text.split(" ", 2)
        if len(parts) < 3 or not parts[0].isdigit():
            return {}
        return {"pid": int(parts[0]), "host": parts[1], "started": parts[2]}

    def release(self) -> None:
        """Let go of the lock (the file stays: removing it would race with a waiting run)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
