"""The joblib backend: chunks run wherever ``joblib.parallel_config`` sends joblib's work.

People who use joblib have already said where their work runs: loky processes (joblib's
default), threads, a Dask cluster (``parallel_config(backend="dask")``), Ray
(``ray.util.joblib.register_ray()`` then ``backend="ray"``), Spark (``joblibspark``).
``backend="joblib"`` sends batchkit's chunks there, with batchkit's error capture, retries,
progress and journal on top.

How: one ``joblib.Parallel``, entered as a context manager, configures the selected backend
exactly as joblib would (``n_jobs``, temporary folder and memmapping, the backend's own
arguments); each chunk is then handed to that backend's ``submit(func, callback)``, the
protocol joblib documents for writing backends and that every third-party backend implements,
as one batch of one call (``BatchedCalls``, so a nested joblib call inside the function gets the
nested backend joblib would give it). ``Parallel.__call__`` itself does not fit the engine: it
pulls its input from its own callback threads while holding its lock, so input that waits for the
engine's next submit would stall it, and its first task to raise aborts all the others, where
batchkit keeps every item's outcome and re-runs what a dead worker took with it.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from typing import Any, Callable

from ..errors import BackendError, UsageError, WorkerCrashed
from .base import Backend, failed_future


def _import_joblib() -> Any:
    try:
        import joblib
    except ImportError:
        raise UsageError("the joblib backend needs joblib: pip install 'batchkit[joblib]'") from None
    return joblib


class JoblibBackend(Backend):
    """Runs chunks on the backend ``joblib.parallel_config`` selects where this is made (like
    ``joblib.Parallel``, it keeps that configuration; ``backend="joblib"`` makes it when the run
    starts, in the calling thread).

    ``workers`` becomes joblib's ``n_jobs``; without it, ``parallel_config(n_jobs=...)`` if set,
    else ``-1`` (all the backend's CPUs, a whole cluster's on Dask or Ray). ``n_jobs=1`` runs the
    chunks in this process, as joblib does. Workers are joblib's own: its loky workers stay warm
    between runs and are shared with other joblib code in the process.

    On joblib's threading backend (or ``n_jobs=1``) calls run in this process, so a stop reaches
    running chunks; elsewhere a worker that dies is treated as on Dask: its items are re-run in
    halves until the one that kills a worker alone is recorded as a crash. A timeout records the
    item as timed out; joblib cannot kill one task's worker.

    >>> with joblib.parallel_config(backend="threading", n_jobs=8):
    ...     bk.run(fetch, urls, backend="joblib")
    """

    name = "joblib"

    def __init__(self, workers: int | None = None) -> None:
        joblib = _import_joblib()
        from joblib.parallel import get_active_backend

        try:
            n_jobs = workers
            if n_jobs is None:
                n_jobs = get_active_backend()[1]
                n_jobs = -1 if n_jobs is None else n_jobs
            # Parallel reads parallel_config (a per-thread setting) when it is made.
            self._config = joblib.Parallel(n_jobs=n_jobs)
        except Exception as exc:
            raise BackendError(f"joblib's configuration cannot be used: {type(exc).__name__}: {exc}") from exc
        self.workers = workers or 1
        self._parallel: Any = None
        self._backend: Any = None
        self._inline = False

    def start(self) -> None:
        if self._parallel is not None:
            return
        from joblib.parallel import SequentialBackend

        parallel = self._config
        try:
            parallel.__enter__()  # configures the backend (or falls back to sequential for n_jobs=1)
        except Exception as exc:
            raise BackendError(f"could not start joblib's backend: {type(exc).__name__}: {exc}") from exc
        backend = parallel._backend  # the configured backend: Parallel has no public name for it
        try:
            self.workers = max(1, int(backend.effective_n_jobs(parallel.n_jobs)))
            if hasattr(backend, "start_call"):
                backend.start_call()
        except Exception as exc:
            parallel.__exit__(None, None, None)
            raise BackendError(f"could not start joblib's {_describe(backend)} backend: {exc}") from exc
        self._parallel, self._backend = parallel, backend
        self._submit = _submitter(backend)
        self._inline = isinstance(backend, SequentialBackend)
        # Threads (joblib's threading backend, or sequential) run calls in this process.
        self.runs_in_process = bool(getattr(backend, "uses_threads", False))

    @property
    def joblib_backend(self) -> Any:
        """The joblib backend in use (``LokyBackend``, ``ThreadingBackend``, ...); None before start."""
        return self._backend

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> cf.Future:
        self.start()
        if self._inline:
            return _run_here(fn, arg)
        from joblib.parallel import BatchedCalls

        backend = self._backend
        call = BatchedCalls([(fn, (arg,), {})], backend.get_nested_backend())
        outer: cf.Future = cf.Future()
        outer.set_running_or_notify_cancel()

        def retrieved(out: Any) -> None:  # joblib's completion callback, as Parallel gets it
            try:
                (value,) = backend.retrieve_result_callback(out)
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                _settle(outer, exc=_translate(exc))
            else:
                _settle(outer, value)

        callback = retrieved if backend.supports_retrieve_callback else None
        for attempt in (1, 2):
            try:
                job = self._submit(call, callback=callback)
                break
            except Exception as exc:
                if attempt == 1 and _is_broken(exc):
                    try:  # a dead worker broke loky's pool: joblib's own remedy is a fresh one
                        backend.abort_everything(ensure_ready=True)
                        continue
                    except Exception as err:
                        exc = err
                return failed_future(BackendError(f"joblib's {_describe(backend)} backend cannot take work: "
                                                  f"{type(exc).__name__}: {exc}"))
        if callback is None:
            # An older-style backend: its result is fetched by a blocking call, as Parallel does.
            threading.Thread(target=_wait_for, args=(backend, job, outer), daemon=True,
                             name="batchkit-joblib-wait").start()
        elif hasattr(job, "add_done_callback"):
            # Some backends (Dask's) call back only on success; a task that failed as a whole
            # (its workers kept dying) shows on the future they return.
            job.add_done_callback(lambda fut: _failed_task(fut, outer))
        return outer

    def close(self, *, kill: bool = False) -> None:
        parallel, backend = self._parallel, self._backend
        self._parallel = self._backend = None
        if parallel is None:
            return
        try:
            if kill and not self.runs_in_process:
                try:  # stop what runs now: loky kills its workers, Dask forgets the tasks
                    backend.abort_everything(ensure_ready=False)
                except Exception:
                    pass
            if hasattr(backend, "stop_call"):
                backend.stop_call()
        finally:
            parallel.__exit__(None, None, None)  # terminate: loky keeps its workers warm for reuse

    def __repr__(self) -> str:
        where = _describe(self._backend) if self._backend is not None else "not started"
        return f"JoblibBackend({where}, workers={self.workers})"


def _submitter(backend: Any) -> Callable[..., Any]:
    """The backend's ``submit`` (joblib >= 1.5), or ``apply_async`` where it has only that (older
    joblib, older third-party backends: calling their inherited ``submit`` would warn per chunk)."""
    from joblib.parallel import ParallelBackendBase

    submit = getattr(type(backend), "submit", None)
    if submit is None or submit is getattr(ParallelBackendBase, "submit", None):
        return backend.apply_async
    return backend.submit


def _describe(backend: Any) -> str:
    return type(backend).__name__.replace("Backend", "").lower() or "custom"


def _run_here(fn: Callable[[Any], Any], arg: Any) -> cf.Future:
    fut: cf.Future = cf.Future()
    fut.set_running_or_notify_cancel()
    try:
        fut.set_result(fn(arg))
    except Exception as exc:  # run_chunk captures item errors; this is a bug in batchkit
        fut.set_exception(exc)
    return fut


def _settle(fut: cf.Future, value: Any = None, exc: BaseException | None = None) -> None:
    try:
        if exc is None:
            fut.set_result(value)
        else:
            fut.set_exception(exc)
    except cf.InvalidStateError:  # the other of two completion signals came first
        pass


def _wait_for(backend: Any, job: Any, outer: cf.Future) -> None:
    try:
        (value,) = backend.retrieve_result(job)
    except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
        _settle(outer, exc=_translate(exc))
    else:
        _settle(outer, value)


def _failed_task(fut: Any, outer: cf.Future) -> None:
    if fut.cancelled():
        _settle(outer, exc=BackendError("joblib's backend cancelled the task"))
        return
    exc = fut.exception()
    if exc is not None:
        _settle(outer, exc=_translate(exc))


def _is_broken(exc: BaseException) -> bool:
    return (type(exc).__name__ in ("BrokenProcessPool", "TerminatedWorkerError", "ShutdownExecutorError")
            or "shutdown" in str(exc))


_CRASHES = ("KilledWorker", "WorkerCrashedError", "RayActorError", "ActorDiedError", "ActorUnavailableError")


def _translate(exc: BaseException) -> BaseException:
    """joblib's and its backends' exceptions as batchkit's (a dead worker, a lost cluster)."""
    from .process import _EXITCODE, _describe_exit

    name = type(exc).__name__
    if name == "TerminatedWorkerError":  # loky, through joblib
        tail = str(exc).split("exit codes of the workers are", 1)[-1]
        match = _EXITCODE.search(tail)
        code = int(match.group(1) or match.group(2)) if match else None
        return WorkerCrashed(_describe_exit(code), code)
    if name == "BrokenProcessPool" and "serializ" not in f"{exc} {exc.__cause__}":
        return WorkerCrashed(f"joblib's worker pool broke: {exc}")
    if name in _CRASHES:
        return WorkerCrashed(f"joblib's worker died running this task: {exc}")
    if name in ("CommClosedError", "CancelledError", "FutureCancelledError"):
        return BackendError(f"joblib's backend lost the task: {exc}")
    return exc
