"""The thread backend: a pool of daemon threads, for I/O-bound items."""

from __future__ import annotations

import concurrent.futures as cf
import queue
import threading
from typing import Any, Callable

from .base import Backend


class ThreadBackend(Backend):
    """Runs chunks on a pool of threads.

    For I/O-bound work (downloads, file copies, database calls); CPU-bound pure Python code
    does not speed up on threads. ``workers`` defaults to ``min(32, CPUs + 4)`` as in the
    standard library. A thread cannot be killed: an item that overruns its timeout is recorded
    as timed out, but its thread may keep running until the item returns.

    The threads are daemons (unlike ``ThreadPoolExecutor``'s, which the interpreter joins at
    exit): a run stopped by SIGTERM exits within its grace period even if an item is stuck.
    """

    name = "thread"
    runs_in_process = True

    def __init__(self, workers: int | None = None) -> None:
        from ..options import cpu_count

        self.workers = workers or min(32, cpu_count() + 4)
        self._calls: queue.SimpleQueue | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self._calls is None:
            self._calls = queue.SimpleQueue()
            for i in range(self.workers):
                t = threading.Thread(target=_work, args=(self._calls,), name=f"batchkit-{i}", daemon=True)
                t.start()
                self._threads.append(t)

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> cf.Future:
        self.start()
        assert self._calls is not None
        fut: cf.Future = cf.Future()
        self._calls.put((fut, fn, arg))
        return fut

    def close(self, *, kill: bool = False) -> None:
        calls, self._calls = self._calls, None
        if calls is None:
            return
        threads, self._threads = self._threads, []
        for _ in threads:
            calls.put(None)
        if not kill:  # on kill, don't join: a hung item would hang the caller too
            for t in threads:
                t.join()


def _work(calls: queue.SimpleQueue) -> None:
    while True:
        job = calls.get()
        if job is None:
            return
        fut, fn, arg = job
        if not fut.set_running_or_notify_cancel():
            continue
        try:
            fut.set_result(fn(arg))
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
            fut.set_exception(exc)
