"""The process backend: a loky process pool (cloudpickle, robust to dead workers)."""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import os
import re
import threading
from typing import Any, Callable

from ..errors import BackendError, UsageError, WorkerCrashed
from .base import Backend, failed_future, relay

# How long idle workers stay alive between runs, so notebook re-runs start warm.
IDLE_TIMEOUT = 120


class ProcessBackend(Backend):
    """Runs chunks in worker processes from a loky executor (the executor joblib is built on).

    Functions go to workers with cloudpickle, so lambdas, closures and functions defined in
    ``__main__`` or a notebook cell work. The pool is kept between runs, so a notebook's
    second run starts warm, and rebuilt after a worker dies. ``workers`` defaults to the
    number of CPUs.
    """

    name = "process"
    beacon = True

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._executor: Any = None

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> cf.Future:
        for attempt in (1, 2):
            self._executor = _shared_executor(self.workers, fresh=attempt == 2)
            try:
                inner = self._executor.submit(fn, arg)
            except Exception as exc:
                if attempt == 1 and _is_broken(exc):
                    continue  # the pool died since the last call: build a new one and resubmit
                return failed_future(_translate(exc))
            return relay(inner, _translate)
        raise AssertionError("unreachable")

    def close(self, *, kill: bool = False) -> None:
        # The pool outlives a run on purpose (warm workers for the next one); it is only torn
        # down when a run is interrupted.
        if kill and self._executor is not None:
            _drop_shared(self._executor)
            self._executor.shutdown(wait=False, kill_workers=True)
            self._executor = None


# loky itself rather than the copy vendored in joblib: importing joblib.externals.loky imports all
# of joblib, which costs ~0.2 s in the parent and again in every fresh worker. And batchkit's own
# pool, not loky's get_reusable_executor(): a process-wide singleton is shared with whatever else
# uses it (joblib.Parallel breaks when it finds an executor it did not configure).
_lock = threading.Lock()
_shared: dict[str, Any] = {"executor": None, "workers": 0}


def _shared_executor(workers: int, fresh: bool = False) -> Any:
    from loky import ProcessPoolExecutor

    with _lock:
        executor = _shared["executor"]
        if executor is not None and (fresh or _shared["workers"] != workers):
            executor.shutdown(wait=False, kill_workers=fresh)
            executor = None
        if executor is None:
            executor = ProcessPoolExecutor(max_workers=workers, timeout=IDLE_TIMEOUT)
            _shared.update(executor=executor, workers=workers)
        return executor


@atexit.register
def _shutdown_shared() -> None:
    # Stop the idle pool while the interpreter is still whole; left to garbage collection at
    # exit, loky's cleanup runs after module globals are gone and prints a traceback.
    with _lock:
        executor = _shared["executor"]
        _shared.update(executor=None, workers=0)
    if executor is not None:
        executor.shutdown(wait=True)


def _drop_shared(executor: Any) -> None:
    with _lock:
        if _shared["executor"] is executor:
            _shared.update(executor=None, workers=0)


def _is_broken(exc: BaseException) -> bool:
    from loky.process_executor import BrokenProcessPool, ShutdownExecutorError

    return isinstance(exc, (BrokenProcessPool, ShutdownExecutorError)) or "shutdown" in str(exc)


_EXITCODE = re.compile(r"\((-?\d+)\)|\b(-?\d+)\b")


def _translate(exc: BaseException) -> BaseException:
    from loky.process_executor import BrokenProcessPool, TerminatedWorkerError

    if isinstance(exc, TerminatedWorkerError):
        text = str(exc)
        tail = text.split("exit codes of the workers are", 1)[-1]
        match = _EXITCODE.search(tail)
        code = int(match.group(1) or match.group(2)) if match else None
        return WorkerCrashed(_describe_exit(code), code)
    if isinstance(exc, BrokenProcessPool):
        cause = exc.__cause__
        if "un-serialize" in str(exc) or "serializ" in str(cause):
            return UsageError(
                f"could not send the function or items to the worker processes: {cause or exc}; "
                "use picklable items or backend='thread'"
            )
        return WorkerCrashed(f"worker pool broke: {exc}")
    if type(exc).__name__ in ("PicklingError",) or "pickle" in type(exc).__name__.lower():
        return UsageError(f"could not pickle the function or its items for the worker processes: {exc}")
    if isinstance(exc, (RuntimeError, OSError)) and "shutdown" not in str(exc):
        return BackendError(f"process backend failed: {exc}")
    return exc


def _describe_exit(code: int | None) -> str:
    import signal

    if code is None:
        return "worker process died"
    if code < 0:
        try:
            return f"worker process killed by {signal.Signals(-code).name} (signal {-code})"
        except ValueError:
            return f"worker process killed by signal {-code}"
    return f"worker process exited with code {code}"
