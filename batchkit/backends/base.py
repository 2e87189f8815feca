"""The backend protocol: start; submit a call, get a future; close.

A backend knows nothing of chunks, retries, journals or progress: the engine does all that. It
declares two capabilities, and the engine adapts to them:

- ``runs_in_process``: calls run in this process (the serial and thread backends). A stop flag
  reaches a running chunk, so it can end early; an item past its timeout is abandoned by a
  watchdog thread (a thread cannot be killed).
- ``killable_workers``: workers are local processes that report, through the engine's
  shared-memory beacon, which item they are running (the process backend). A crash is then
  pinned on the item that caused it, and a worker whose item overran its timeout is killed.

A backend with neither (Dask, a plain executor) runs calls elsewhere: a crash is located by
re-running halves of the chunk, and a timeout is recorded by a watchdog thread in the worker.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import signal
import threading
from typing import Any, Callable, Iterator


class Backend:
    """Base class of the backends; a new backend implements :meth:`submit` (and :meth:`close`
    if it holds resources).

    ``workers`` is how many calls can run at once (the engine keeps about two per worker in
    flight).
    """

    name = "backend"
    workers: int = 1
    runs_in_process = False
    killable_workers = False

    def start(self) -> None:
        """Get ready (start a pool, connect to a cluster); ``workers`` is final afterwards."""

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> cf.Future:
        """Start ``fn(arg)``; return a :class:`concurrent.futures.Future` for its result.

        When the worker dies the future's exception is :class:`~batchkit.errors.WorkerCrashed`.
        """
        raise NotImplementedError

    def close(self, *, kill: bool = False) -> None:
        """Release what :meth:`submit` started. ``kill=True`` stops running calls at once."""

    def finish(self) -> None:
        """The run that :meth:`start` began is over, whether or not the backend is closed (one you
        made serves your next run too): let go of what was held for the length of a run."""

    def __enter__(self) -> Backend:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(kill=exc[0] is not None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers})"


def relay(inner: Any, translate: Callable[[BaseException], BaseException]) -> cf.Future:
    """A concurrent.futures.Future that follows ``inner`` with its exception translated.

    ``inner`` is anything with ``add_done_callback`` whose callback receives a finished future
    (concurrent.futures, loky, dask.distributed). This is the one place where a backend's own
    exceptions become batchkit's.
    """
    outer: cf.Future = cf.Future()
    outer.set_running_or_notify_cancel()

    def done(fut: Any) -> None:
        try:
            outer.set_result(fut.result())
        except BaseException as exc:  # noqa: BLE001 - every failure is relayed, translated
            try:
                outer.set_exception(translate(exc))
            except cf.InvalidStateError:
                pass

    inner.add_done_callback(done)
    return outer


def run_now(fn: Callable[[Any], Any], arg: Any) -> cf.Future:
    """``fn(arg)`` run in this thread, as a finished future (the serial backend's way)."""
    fut: cf.Future = cf.Future()
    fut.set_running_or_notify_cancel()
    try:
        fut.set_result(fn(arg))
    except Exception as exc:  # run_chunk captures item errors; this is a bug in batchkit
        fut.set_exception(exc)
    return fut


def failed_future(exc: BaseException) -> cf.Future:
    """A future that has already failed with ``exc``."""
    fut: cf.Future = cf.Future()
    fut.set_exception(exc)
    return fut


def ignore_stop_signals() -> None:
    """In a worker process: leave SIGINT, SIGTERM and SIGHUP to the parent.

    A terminal's Ctrl-C and a service manager's stop reach the whole process group. The parent
    then stops the run cleanly (in-flight items may finish, nothing is recorded as failed); a
    worker that died of the same signal would look like a crash of the item it was running.
    """
    import signal

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None:
            try:
                signal.signal(signum, signal.SIG_IGN)
            except (OSError, ValueError):
                pass


@contextlib.contextmanager
def hangup_ignored() -> Iterator[None]:
    """Start helper processes (resource trackers, pools) with SIGHUP ignored.

    loky's and multiprocessing's resource trackers ignore SIGINT and SIGTERM but not SIGHUP: a
    closed terminal would kill them with the run, and their relaunched copies print tracebacks.
    A signal set to "ignore" stays ignored across exec, so helpers started inside this block keep
    it. (A SIGHUP arriving in these few milliseconds is lost; the run's own handler is restored.)
    """
    hup = getattr(signal, "SIGHUP", None)
    if hup is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(hup, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(hup, previous)
