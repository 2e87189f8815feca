"""The process backend: a loky process pool (cloudpickle, robust to dead workers).

Its workers start by ``fork`` where that is safe, else as loky starts them (a fresh interpreter
each, which imports what the work needs: ≈ 0.2 s of a short run's wall time on 2 cores). Forking
is safe on Linux when this process has a single thread at that moment (no lock can then be held
by another thread, in Python or in a C library); the pool then starts its workers at once, before
loky's own threads exist, and never starts more (no idle timeout inside loky: a timer of ours
retires an idle pool instead). A process with other threads (a notebook kernel, a run that starts
a second pool, a pool replaced after a crash) starts its workers loky's way. Either way the
workers are fresh processes that leave stop signals to the parent, crash alone, get functions by
cloudpickle and never re-run the user's script.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import importlib.util
import os
import re
import sys
import threading
import time
from typing import Any, Callable

from ..errors import BackendError, UsageError, WorkerCrashed
from .base import Backend, failed_future, relay

# How long idle workers stay alive between runs, so notebook re-runs start warm.
IDLE_TIMEOUT = 120


class ProcessBackend(Backend):
    """Runs chunks in worker processes from a loky executor (the executor joblib is built on).

    Functions go to workers with cloudpickle, so lambdas, closures and functions defined in
    ``__main__`` or a notebook cell work. A pool is kept warm between runs, so a notebook's
    second run starts at once; a run that finds the warm pool in use (two runs at once in one
    process) gets a pool of its own, so one run's crash, timeout or interrupt never touches
    another's workers. ``workers`` defaults to the CPUs this process may use.
    """

    name = "process"
    killable_workers = True

    def __init__(self, workers: int | None = None) -> None:
        from ..options import cpu_count

        self.workers = workers or cpu_count()
        self._executor: Any = None

    @property
    def start_method(self) -> str | None:
        """How the current pool's workers were started: ``"fork"`` or ``"loky"`` (``None`` before start)."""
        if self._executor is None:
            return None
        return "fork" if getattr(self._executor, "_batchkit_forked", False) else "loky"

    def start(self) -> None:
        if self._executor is None:
            self._executor = _acquire(self.workers)

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> cf.Future:
        self.start()
        for attempt in (1, 2):
            try:
                inner = self._executor.submit(fn, arg)
            except Exception as exc:
                if attempt == 1 and _is_broken(exc):
                    # The pool died (a crashed worker, or a timeout's kill): replace ours only.
                    _discard(self._executor)
                    self._executor = _new_pool(self.workers)
                    continue
                return failed_future(_translate(exc))
            return relay(inner, _translate)
        raise AssertionError("unreachable")

    def close(self, *, kill: bool = False) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            _release(executor, kill)


# loky itself rather than the copy vendored in joblib: importing joblib.externals.loky imports all
# of joblib, which costs ~0.2 s in the parent and again in every fresh worker. And batchkit's own
# pools, not loky's get_reusable_executor(): a process-wide singleton is shared with whatever else
# uses it (joblib.Parallel breaks when it finds an executor it did not configure), and two runs
# must never share one (one's kill would break the other's calls).
_lock = threading.Lock()
# Warm pools not used by any run, by worker count (at most one kept). Their workers follow the
# caller's working directory task by task (engine.worker.Task.cwd), so a pool stays warm across an
# os.chdir (a notebook, a test) and relative paths still mean what they mean to the caller.
_idle: dict[int, Any] = {}
_busy: set = set()
_timers: dict[Any, threading.Timer] = {}  # retire idle forked pools (loky's own idle timeout is off for them)


class _PsutilOnDemand:
    """Stands in for psutil inside ``loky.backend.utils`` until loky first uses it.

    loky imports psutil when it is imported, but uses it only to kill a worker's process tree
    (a broken or killed pool). Importing psutil costs ≈ 6 ms, ≈ 5 % of a short run from a fresh
    interpreter; this object imports it at the first attribute loky reads (the ordinary, thread-safe
    import), so loky behaves exactly as with psutil present.
    """

    def __getattr__(self, name: str) -> Any:
        import psutil

        return getattr(psutil, name)


def _single_threaded() -> bool:
    # Linux: the process's tasks, native threads included (a C library's threads count too).
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _import_loky() -> None:
    """Import loky without importing psutil yet (see :class:`_PsutilOnDemand`).

    Only from a single-threaded process (a script, the command line: where start-up counts):
    while loky is imported, ``import psutil`` fails, and no other thread may be importing it then.
    """
    if "loky" in sys.modules or "psutil" in sys.modules or not _single_threaded():
        import loky  # noqa: F401 - already imported, psutil is here anyway, or other threads run
        return
    sys.modules["psutil"] = None  # type: ignore[assignment]  # loky's `import psutil` fails...
    try:
        import loky.backend.utils
    finally:
        if "psutil" in sys.modules and sys.modules["psutil"] is None:
            del sys.modules["psutil"]  # ...and only while loky is imported
    # ...so that it holds this instead of None (unless psutil is missing: then loky's own fallback).
    if loky.backend.utils.psutil is None and importlib.util.find_spec("psutil") is not None:
        loky.backend.utils.psutil = _PsutilOnDemand()


def fork_is_safe() -> bool:
    """Whether worker processes may be started by ``fork`` now: on Linux, from a process that
    has exactly one thread (native threads included) and is not itself a loky worker."""
    if sys.platform != "linux" or not hasattr(os, "fork"):
        return False
    _import_loky()
    from loky import process_executor

    if process_executor._CURRENT_DEPTH > 0:  # loky refuses nested pools started by fork
        return False
    return _single_threaded()


def _new_pool(workers: int) -> Any:
    forked = fork_is_safe()  # first: it imports loky (without psutil, where it can)
    from loky import ProcessPoolExecutor

    from .base import hangup_ignored, ignore_stop_signals

    if forked:
        import multiprocessing

        executor = ProcessPoolExecutor(max_workers=workers, timeout=None, initializer=ignore_stop_signals,
                                       context=multiprocessing.get_context("fork"))
        executor._batchkit_forked = True
        # Start every worker now, while this is the only thread: loky forks them before its own
        # threads start, and a pool with no idle timeout never starts another.
        executor.submit(int)
    else:
        from loky.backend import resource_tracker

        with hangup_ignored():
            resource_tracker.ensure_running()
            executor = ProcessPoolExecutor(max_workers=workers, timeout=IDLE_TIMEOUT,
                                           initializer=ignore_stop_signals)
    with _lock:
        _busy.add(executor)
    return executor


def _acquire(workers: int) -> Any:
    with _lock:
        executor = _idle.pop(workers, None)
        timer = _timers.pop(executor, None) if executor is not None else None
        if executor is not None:
            _busy.add(executor)
    if timer is not None:
        timer.cancel()
    return executor if executor is not None else _new_pool(workers)


def _release(executor: Any, kill: bool) -> None:
    """A run is done with ``executor``: keep it warm for the next run, or stop it."""
    with _lock:
        _busy.discard(executor)
        stale = []
        if not kill and not getattr(executor, "_broken", False):
            stale = [e for e in list(_idle.values()) if e is not executor]
            _idle.clear()
            _idle[executor._max_workers] = executor
            if getattr(executor, "_batchkit_forked", False):
                timer = _timers[executor] = threading.Timer(IDLE_TIMEOUT, _retire, (executor,))
                timer.daemon = True
                timer.start()
        stale_timers = [_timers.pop(e) for e in stale if e in _timers]
    for timer in stale_timers:
        timer.cancel()
    for old in stale:  # one warm pool at a time: idle processes cost memory
        old.shutdown(wait=False)
    if kill or getattr(executor, "_broken", False):
        _kill_now(executor)
        executor.shutdown(wait=False, kill_workers=True)


def _retire(executor: Any) -> None:
    """A forked pool idle for ``IDLE_TIMEOUT`` seconds: stop it (loky's workers would exit on their own)."""
    with _lock:
        if _idle.get(executor._max_workers) is not executor:
            return  # taken by a run meanwhile
        del _idle[executor._max_workers]
        _timers.pop(executor, None)
    executor.shutdown(wait=False)


def _discard(executor: Any) -> None:
    with _lock:
        _busy.discard(executor)
    _kill_now(executor)
    executor.shutdown(wait=False, kill_workers=True)


def _kill_now(executor: Any, wait: float = 2.0) -> None:
    """SIGKILL the pool's workers (and what they started) and wait until they are dead.

    loky kills them from its manager thread, after ``shutdown`` has returned: on a loaded machine
    an item of a run that was stopped (a ``with bk.imap(...)`` block left early, Ctrl-C, a
    timeout's kill) could still run for a while. Once the run has stopped, none of its items may.
    """
    import psutil

    procs = []
    for worker in list(getattr(executor, "_processes", {}).values()):
        try:
            proc = psutil.Process(worker.pid)
            procs += proc.children(recursive=True) + [proc]
        except (psutil.Error, TypeError, ValueError):  # already gone, or not started
            continue
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    deadline = time.monotonic() + wait
    for proc in procs:
        while time.monotonic() < deadline:
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:  # dead; loky reaps it
                    break
            except psutil.Error:  # reaped already
                break
            time.sleep(0.002)


@atexit.register
def _shutdown_all() -> None:
    # Stop the pools while the interpreter is still whole; left to garbage collection at
    # exit, loky's cleanup runs after module globals are gone and prints a traceback.
    with _lock:
        idle, busy = list(_idle.values()), list(_busy)
        _idle.clear()
        _busy.clear()
        timers = list(_timers.values())
        _timers.clear()
    for timer in timers:
        timer.cancel()
    for executor in idle:
        executor.shutdown(wait=True)
    for executor in busy:  # a run still going at exit (an exception unwound past it): stop it
        executor.shutdown(wait=False, kill_workers=True)


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
        if "result has failed to un-serialize" in str(exc):
            # A value came back but cannot be rebuilt in this process: say why, in one line (the
            # engine then finds the item whose value it is).
            return UsageError(f"a value could not be unpickled in this process: {_last_line(cause) or exc}")
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


def _last_line(exc: BaseException | None) -> str:
    """The last line of a (remote) traceback's text: the error itself."""
    lines = [line.strip() for line in str(exc or "").splitlines() if line.strip().strip('"')]
    return lines[-1] if lines else ""


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
