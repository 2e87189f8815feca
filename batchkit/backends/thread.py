"""The thread backend: a ThreadPoolExecutor, for I/O-bound items."""

from __future__ import annotations

import concurrent.futures as cf
import os
from typing import Any, Callable

from .base import Backend


class ThreadBackend(Backend):
    """Runs chunks on a :class:`~concurrent.futures.ThreadPoolExecutor`.

    For I/O-bound work (downloads, file copies, database calls); CPU-bound pure Python code
    does not speed up on threads. ``workers`` defaults to ``min(32, cpu_count + 4)`` as in the
    standard library. A thread cannot be killed: an item that overruns its timeout is recorded
    as timed out, but its thread may keep running until the item returns.
    """

    name = "thread"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or min(32, (os.cpu_count() or 1) + 4)
        self._pool: cf.ThreadPoolExecutor | None = None

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> cf.Future:
        if self._pool is None:
            self._pool = cf.ThreadPoolExecutor(self.workers, thread_name_prefix="batchkit")
        return self._pool.submit(fn, arg)

    def close(self, *, kill: bool = False) -> None:
        if self._pool is not None:
            # On kill, don't join: a hung item would hang the caller too.
            self._pool.shutdown(wait=not kill, cancel_futures=True)
            self._pool = None
