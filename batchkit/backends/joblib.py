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
import time
from typing import Any, Callable

from ..errors import BackendError, UsageError, WorkerCrashed
from .base import Backend, failed_future, run_now


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
    running chunks. Elsewhere a worker that dies fails the calls in flight (loky does so itself;
    for ``multiprocessing`` batchkit notices, see :class:`_PoolWatch`), which are re-run in halves
    until the item that kills a worker alone is recorded as a crash. A timeout records the item
    as timed out; joblib cannot kill one task's worker.

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
        self._watch: _PoolWatch | None = None

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
        if not self.runs_in_process:
            self._watch = _PoolWatch.of(backend)

    @property
    def joblib_backend(self) -> Any:
        """The joblib backend in use (``LokyBackend``, ``ThreadingBackend``, ...); None before start."""
        return self._backend

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> cf.Future:
        self.start()
        if self._inline:
            return run_now(fn, arg)
        from joblib.parallel import BatchedCalls

        backend = self._backend
        call = BatchedCalls([(fn, (arg,), {})], backend.get_nested_backend())
        outer: cf.Future = cf.Future()
        outer.set_running_or_notify_cancel()
        if self._watch is not None:
            call = self._watch.marked(call, outer)

        def retrieved(out: Any) -> None:  # joblib's completion callback, as Parallel gets it
            _settle_from(outer, backend.retrieve_result_callback, out)

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
        parallel, backend, watch = self._parallel, self._backend, self._watch
        self._parallel = self._backend = self._watch = None
        if parallel is None:
            return
        if watch is not None:
            watch.stop()
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


class _PoolWatch:
    """Notices a dead worker of a ``multiprocessing.Pool`` (joblib's "multiprocessing" backend).

    The pool replaces a worker that died but loses the task it was running: no callback ever
    comes, and the run would wait forever (joblib's own ``Parallel`` does). Each call first
    writes its worker's pid to a marker file; a call whose worker is no longer among the pool's
    live workers fails as a crash, and only such calls: one still queued is taken by another
    worker. (The pool reaps and replaces a dead worker within milliseconds, so looking for
    deaths instead would miss a replacement that died between two looks.)
    """

    POLL = 0.1

    @classmethod
    def of(cls, backend: Any) -> _PoolWatch | None:
        import multiprocessing.pool

        pool = getattr(backend, "_pool", None)
        if not isinstance(pool, multiprocessing.pool.Pool) or isinstance(pool, multiprocessing.pool.ThreadPool):
            return None
        return cls(pool)

    def __init__(self, pool: Any) -> None:
        import itertools
        import tempfile

        self._pool = pool
        self._pending: dict[cf.Future, str] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._dir = tempfile.mkdtemp(prefix="batchkit-joblib-")
        self._ids = itertools.count()
        self._procs = {proc.pid: proc for proc in list(pool._pool)}  # to read exit codes
        threading.Thread(target=self._run, daemon=True, name="batchkit-joblib-pool-watch").start()

    def marked(self, call: Callable[[], Any], fut: cf.Future) -> Callable[[], Any]:
        """``call``, made to leave its worker's pid behind when it starts; ``fut`` is its outcome."""
        import os

        marker = os.path.join(self._dir, str(next(self._ids)))
        with self._lock:
            self._pending[fut] = marker
        fut.add_done_callback(self._done)
        return _Marked(call, marker)

    def _done(self, fut: cf.Future) -> None:
        import os

        with self._lock:
            marker = self._pending.pop(fut, None)
        if marker is not None:
            try:
                os.unlink(marker)
            except OSError:
                pass

    def stop(self) -> None:
        import shutil

        self._stopped.set()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _run(self) -> None:
        ran_on: dict[cf.Future, int] = {}
        while not self._stopped.wait(self.POLL):
            live = set()
            for proc in list(self._pool._pool):
                self._procs.setdefault(proc.pid, proc)
                if proc.exitcode is None:
                    live.add(proc.pid)
            with self._lock:
                pending = list(self._pending.items())
            for fut, marker in pending:
                pid = ran_on.get(fut)
                if pid is None:
                    try:
                        with open(marker) as f:
                            pid = ran_on[fut] = int(f.read())
                    except (OSError, ValueError):
                        continue  # not started yet: a live worker will take it
                if pid not in live and not fut.done() and not self._stopped.is_set():
                    proc = self._procs.get(pid)
                    code = _exit_code(proc) if proc is not None else None
                    if code != 0:  # 0: retired after its tasks (maxtasksperchild); its result is on its way
                        _settle(fut, exc=WorkerCrashed(_describe_exit(code), code))
            for fut in [f for f in ran_on if f.done()]:
                del ran_on[fut]
            for pid in [p for p, proc in self._procs.items() if p not in live and proc.exitcode is not None]:
                if pid not in ran_on.values():
                    del self._procs[pid]


class _Marked:
    """A call that first writes its worker's pid to ``marker`` (see :class:`_PoolWatch`)."""

    def __init__(self, call: Callable[[], Any], marker: str) -> None:
        self.call = call
        self.marker = marker

    def __call__(self) -> Any:
        import os

        with open(self.marker, "w") as f:
            f.write(str(os.getpid()))
        return self.call()


def _describe_exit(code: int | None) -> str:
    from .process import _describe_exit as describe

    return describe(code)


def _exit_code(proc: Any) -> int | None:
    # The pool's own thread may be reaping it at this moment: give the exit code a moment to land.
    for _ in range(100):
        code = proc.exitcode
        if code is not None:
            return code
        time.sleep(0.01)
    return None


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


def _settle(fut: cf.Future, value: Any = None, exc: BaseException | None = None) -> None:
    try:
        if exc is None:
            fut.set_result(value)
        else:
            fut.set_exception(exc)
    except cf.InvalidStateError:  # the other of two completion signals came first
        pass


def _wait_for(backend: Any, job: Any, outer: cf.Future) -> None:
    _settle_from(outer, backend.retrieve_result, job)


def _settle_from(outer: cf.Future, retrieve: Callable[[Any], Any], handle: Any) -> None:
    """Settle ``outer`` with the one result joblib's ``retrieve(handle)`` gives, or its error."""
    try:
        (value,) = retrieve(handle)
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
