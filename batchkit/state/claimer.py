"""A queue consumer as a claimer: its id, whether it is gone, and the error of an item it keeps losing.

A claimed item is ``running`` under its consumer's id, ``host:pid:start time`` (a pid alone may be
reused). A consumer on this host whose process has ended gives its items up at once; one on another
host only when its lease runs out. An item whose consumers vanished too often fails with
:func:`_lost_error` (see :class:`batchkit.state.queue.Queue`).
"""

from __future__ import annotations

import os
import socket

from ..outcome import ItemError


def _claimer_id() -> str:
    """This process as a claimer: host, pid and start time (a pid alone may be reused)."""
    import psutil  # only consumers need it

    return f"{socket.gethostname()}:{os.getpid()}:{psutil.Process().create_time():.2f}"


def _claimer_gone(claimer: str, host: str) -> bool:
    """Whether ``claimer`` ran on this host and its process has ended (its items can go at once)."""
    try:
        where, pid, start = claimer.rsplit(":", 2)
        pid_number = int(pid)
    except ValueError:
        return False
    if where != host:
        return False  # another machine: only its lease can tell
    import psutil

    try:
        proc = psutil.Process(pid_number)
        return f"{proc.create_time():.2f}" != start or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _lost_error(times: int) -> ItemError:
    return ItemError("LeaseLost", f"its consumer stopped (killed or crashed) while running it {times} times; failed "
                     "so that it cannot stop more consumers: fix the cause, then retry the failed items",
                     kind="crash")
