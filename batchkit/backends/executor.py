"""Any :class:`concurrent.futures.Executor` as a backend: :class:`ExecutorBackend`.

``bk.run(fn, items, backend=my_executor)`` wraps it: batchkit's chunking, error capture,
retries, journal and progress on an executor you already have (a ``ThreadPoolExecutor``, a
``ProcessPoolExecutor``, loky's, or a third-party one). batchkit never shuts it down.
"""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any, Callable

from ..errors import BackendError, WorkerCrashed
from .base import Backend, failed_future, relay


class ExecutorBackend(Backend):
    """Runs chunks on ``executor``. ``workers`` defaults to the executor's ``_max_workers``.

    A thread pool runs calls in this process (a stop reaches running chunks). A process pool of
    the standard library cannot replace a worker that died: after a crash it is broken for good,
    and the run ends with a clear error (``backend="process"`` recovers from crashes).
    """

    name = "executor"

    def __init__(self, executor: cf.Executor, workers: int | None = None) -> None:
        self.executor = executor
        self.workers = workers or getattr(executor, "_max_workers", None) or 1
        self.runs_in_process = isinstance(executor, cf.ThreadPoolExecutor)
        self.name = type(executor).__name__

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> cf.Future:
        try:
            if self.runs_in_process:
                inner = self.executor.submit(fn, arg)
            else:  # plain pickle cannot send lambdas, closures or notebook functions: cloudpickle can
                import cloudpickle

                try:
                    blob = cloudpickle.dumps((fn, arg))
                except Exception as exc:  # the engine finds the item that cannot travel
                    return failed_future(exc)
                inner = self.executor.submit(_call_pickled, blob)
        except cf.BrokenExecutor as exc:
            raise BackendError(f"the {self.name} is broken ({exc}); a standard-library pool cannot replace "
                               "a worker that died: use backend='process'") from None
        except RuntimeError as exc:  # shut down by its owner
            return failed_future(BackendError(f"the {self.name} cannot take work: {exc}"))
        return relay(inner, _translate)


def _call_pickled(blob: bytes) -> Any:
    """In the executor's worker: run a call that travelled with cloudpickle."""
    import pickle

    fn, arg = pickle.loads(blob)
    return fn(arg)


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, cf.BrokenExecutor):
        return WorkerCrashed(f"a worker of the executor died: {exc}")
    return exc
