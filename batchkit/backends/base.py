"""The backend protocol: submit a call, get a future; close. Nothing else.

A backend knows nothing of chunks, retries, journals or progress: the engine does all that.
"""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any, Callable


class Backend:
    """Base class of the four backends; a new backend implements :meth:`submit`.

    ``workers`` is how many calls can run at once (the engine keeps about two per worker
    in flight). ``beacon`` is True when workers are local processes that can read the
    engine's shared-memory beacon and be killed by pid: that is what lets the engine stop an
    item that overran its timeout and pin a crash on the item that caused it.
    """

    name = "backend"
    beacon = False
    workers: int = 1

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> cf.Future:
        """Start ``fn(arg)``; return a :class:`concurrent.futures.Future` for its result.

        When the worker dies the future's exception is :class:`~batchkit.errors.WorkerCrashed`.
        """
        raise NotImplementedError

    def close(self, *, kill: bool = False) -> None:
        """Release what :meth:`submit` started. ``kill=True`` stops running calls at once."""

    def __enter__(self) -> Backend:
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


def failed_future(exc: BaseException) -> cf.Future:
    """A future that has already failed with ``exc``."""
    fut: cf.Future = cf.Future()
    fut.set_exception(exc)
    return fut
