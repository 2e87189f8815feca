"""The beacon: a small shared-memory table in which process workers say what they are doing.

Each in-flight task owns one slot of three 8-byte fields: the worker's pid, the position of the
item it is running (-1 before the first, ``len(items)`` once done), and the ``time.monotonic()``
at which that item started (CLOCK_MONOTONIC is the same clock in every process). Writing it
costs two memory stores per item. From it the engine can tell which item a dead worker was
running (so a crash is pinned on one item and the items before it are re-run, not lost) and
which item has overrun its timeout (so its worker can be killed).

A parent killed with -9 cannot remove its beacon file, nor (when its whole process group died)
loky's semaphore files in /dev/shm: each new beacon first removes those of dead pids.
"""

from __future__ import annotations

import mmap
import os
import tempfile
import time

from ..state.lock import pid_exists

FIELDS = 3
SLOT_BYTES = 8 * FIELDS
PREFIX = "batchkit-beacon-"
# loky's named semaphores (its call and result queues' locks), ``sem.loky-PID-RANDOM`` in /dev/shm,
# named for the pid that made them: unlinked by loky's resource tracker, unless a kill -9 of the
# process group took the tracker down too. Then nobody ever removes them; we do (see _remove_stale).
LOKY_SEMAPHORE = "sem.loky-"


def _remove_stale(where: str) -> None:
    """Remove the beacon files, and loky's semaphore files, of processes that are gone (killed
    before they could remove them). A live pid keeps its files; another user's cannot be removed."""
    prefixes = (PREFIX, LOKY_SEMAPHORE)
    try:
        entries = [e.name for e in os.scandir(where) if e.name.startswith(prefixes)]
    except OSError:
        return
    alive: dict[int, bool] = {}
    for name in entries:
        pid = name[len(PREFIX if name.startswith(PREFIX) else LOKY_SEMAPHORE):].split("-", 1)[0]
        if not pid.isdigit():
            continue
        if int(pid) not in alive:
            alive[int(pid)] = pid_exists(int(pid))
        if alive[int(pid)]:
            continue
        try:
            os.unlink(os.path.join(where, name))
        except OSError:
            pass  # another user's, or already gone


class Beacon:
    """Parent side: owns the file, hands out slots, reads them."""

    def __init__(self, slots: int) -> None:
        where = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
        _remove_stale(where)
        # The owner's pid in the name: a parent killed with -9 cannot remove its file, so the
        # next run does (see _remove_stale).
        fd, self.path = tempfile.mkstemp(prefix=f"{PREFIX}{os.getpid()}-", dir=where)
        try:
            os.ftruncate(fd, slots * SLOT_BYTES)
            self._map = mmap.mmap(fd, slots * SLOT_BYTES)
        finally:
            os.close(fd)
        self._ints = memoryview(self._map).cast("q")
        self._floats = memoryview(self._map).cast("d")
        self._free = list(range(slots - 1, -1, -1))

    def acquire(self) -> int | None:
        """A free slot, reset; ``None`` when all are taken."""
        if not self._free:
            return None
        slot = self._free.pop()
        base = slot * FIELDS
        self._ints[base] = 0
        self._ints[base + 1] = -1
        self._floats[base + 2] = 0.0
        return slot

    def release(self, slot: int | None) -> None:
        """Give ``slot`` back."""
        if slot is not None:
            self._free.append(slot)

    def read(self, slot: int) -> tuple[int, int, float]:
        """``(pid, position, started)`` of ``slot``; pid 0 means no worker has started it."""
        base = slot * FIELDS
        return self._ints[base], self._ints[base + 1], self._floats[base + 2]

    def close(self) -> None:
        """Release the memory and remove the file."""
        self._ints.release()
        self._floats.release()
        self._map.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


class WorkerBeacon:
    """Worker side: maps the file and writes its slot."""

    def __init__(self, path: str, slot: int) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
        self._ints = memoryview(self._map).cast("q")
        self._floats = memoryview(self._map).cast("d")
        self._base = slot * FIELDS
        self._ints[self._base] = os.getpid()
        # For the hot loop: ``positions[position_index] = i`` without a method call.
        self.positions = self._ints
        self.position_index = self._base + 1

    def at(self, position: int) -> None:
        """The worker is starting the item at ``position`` (or is done, at ``len(items)``)."""
        self._floats[self._base + 2] = time.monotonic()
        self._ints[self._base + 1] = position

    def close(self) -> None:
        """Unmap (views first: an mmap with live views cannot close)."""
        self.positions = None
        self._ints.release()
        self._floats.release()
        self._map.close()
