"""The Dask backend: chunks as tasks on a dask.distributed cluster (local or remote)."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import threading
from typing import Any, Callable

from ..errors import BackendError, UsageError, WorkerCrashed
from .base import Backend, failed_future, hangup_ignored, ignore_stop_signals, relay


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise UsageError(
            "the dask backend needs dask.distributed: pip install 'batchkit[dask]'"
        ) from None
    return distributed


class DaskBackend(Backend):
    """Runs chunks as tasks on a dask.distributed cluster.

    With no arguments it starts a ``LocalCluster`` of ``workers`` single-threaded worker
    processes and closes it when the run ends. ``address="tcp://host:8786"`` connects to a
    running scheduler; ``client=`` uses a :class:`distributed.Client` you already have. A
    cluster batchkit did not start is never shut down by it.

    Each chunk is one task, so per-task scheduler overhead (milliseconds) is paid per chunk,
    not per item. Functions travel with cloudpickle, by value. A worker that dies mid-task is
    replaced and its task re-run by the scheduler; a task that kills workers repeatedly is
    isolated by the engine and recorded as a crash, and the run waits (up to 10 s) for the
    killed workers to be back before it returns. A timeout records the item as timed out
    when it passes; the worker's thread may keep running it (Dask cannot kill a task).

    >>> with bk.DaskBackend(address="tcp://10.0.0.5:8786") as cluster:
    ...     bk.run(fn, items, backend=cluster)
    """

    name = "dask"
    # Neither capability: workers are remote (or at least not ours to signal); crashes are
    # located by re-running halves, timeouts recorded by a watchdog thread in the worker.

    def __init__(
        self,
        address: str | None = None,
        client: Any = None,
        workers: int | None = None,
        threads_per_worker: int = 1,
        **cluster_kwargs: Any,
    ) -> None:
        if address is not None and client is not None:
            raise UsageError("DaskBackend: pass address= or client=, not both")
        self.address = address
        self._client = client
        self._own_client = False
        self._cluster: Any = None
        self._n_workers = workers
        self._threads = threads_per_worker
        self._cluster_kwargs = cluster_kwargs
        self._main: _MainNotReimported | None = None
        self._holding = False
        self._live = 0  # workers registered when the run started
        self._deaths = False  # a worker died under one of our tasks
        self.workers = workers or 1

    @property
    def client(self) -> Any:
        """The :class:`distributed.Client` in use (connecting or starting a cluster on first use)."""
        if self._client is None:
            self._start()
        return self._client

    def _start(self) -> None:
        distributed = _import_distributed()
        try:
            if self.address is not None:
                self._client = distributed.Client(self.address, timeout="10s")
            else:
                from ..options import cpu_count

                n = self._n_workers or cpu_count()
                kwargs = {
                    "n_workers": n,
                    "threads_per_worker": self._threads,
                    "processes": True,
                    "dashboard_address": ":0",  # None still binds :8787 in recent distributed
                    "silence_logs": logging.ERROR,
                }
                kwargs.update(self._cluster_kwargs)
                # LocalCluster writes MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS and friends into
                # os.environ for its workers and leaves them there; every process started later
                # (process-backend workers, `batchkit exec` commands) would inherit them.
                saved = dict(os.environ)
                self._main = _MainNotReimported()
                try:
                    from multiprocessing import resource_tracker

                    import dask

                    with hangup_ignored(), dask.config.set(_own_scheduler_config(dask)):
                        resource_tracker.ensure_running()
                        self._cluster = distributed.LocalCluster(**kwargs)
                finally:
                    os.environ.clear()
                    os.environ.update(saved)
                self._client = distributed.Client(self._cluster)
                # Our cluster's workers are our children: a Ctrl-C or SIGTERM to the process
                # group is for us to handle (a clean stop), not for them to die of.
                self._client.register_plugin(_stop_signal_plugin(distributed), name="batchkit-ignore-stop-signals")
        except UsageError:
            raise
        except Exception as exc:
            where = self.address or "a LocalCluster"
            raise BackendError(f"could not start the dask backend on {where}: {exc}") from exc
        self._own_client = True
        self._refresh_workers()

    def _refresh_workers(self) -> None:
        try:
            nthreads = self._client.nthreads()
        except Exception:
            nthreads = {}
        self._live = len(nthreads)
        self.workers = max(1, sum(nthreads.values()) or self._n_workers or 1)

    def start(self) -> DaskBackend:
        """Connect or start the cluster now (otherwise it happens on the first submit)."""
        if self._client is None:
            self._start()
        else:
            self._refresh_workers()
        if not self._holding and getattr(self._client, "cluster", None) is not None:
            _LOST_WORKERS.hold()  # a cluster in this process: keep its nannies while we run
            self._holding = True
        return self

    def finish(self) -> None:
        if self._deaths:
            # Workers that died under our tasks are still being restarted: give the cluster back
            # whole. Closing a nanny mid-restart also fails inside distributed ("can only join
            # a started process"), so a cluster closed right after the run needs this too.
            self._deaths = False
            try:
                self._client.wait_for_workers(self._live, timeout=10)
            except Exception:  # a worker that does not come back is the cluster's business
                pass
        if self._holding:
            self._holding = False
            _LOST_WORKERS.release()

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> cf.Future:
        try:
            inner = self.client.submit(fn, arg, pure=False)
        except (UsageError, BackendError):
            raise
        except Exception as exc:
            return failed_future(_translate(exc))
        return relay(inner, self._translate)

    def _translate(self, exc: BaseException) -> BaseException:
        out = _translate(exc)
        if isinstance(out, WorkerCrashed):
            self._deaths = True
        return out

    def close(self, *, kill: bool = False) -> None:
        self.finish()
        if self._own_client and self._client is not None:
            try:
                self._client.close()
            finally:
                if self._cluster is not None:
                    self._cluster.close()
                self._client = self._cluster = None
                self._own_client = False
                if self._main is not None:
                    self._main.restore()
                    self._main = None


# A cluster we start has its workers back within seconds of a death; one with none for this
# long has lost them for good (a worker process that cannot start any more), and its tasks
# would wait forever. The scheduler then fails them (NoWorkerError): the run ends, resumable.
NO_WORKERS_TIMEOUT = "60s"


def _own_scheduler_config(dask: Any) -> dict:
    """Settings for the scheduler of a LocalCluster we start; the user's own settings win."""
    key = "distributed.scheduler.no-workers-timeout"
    return {} if dask.config.get(key, None) is not None else {key: NO_WORKERS_TIMEOUT}


class _LostWorkerTimeoutHold:
    """Holds ``distributed.deploy.lost-worker-timeout`` far off while any run uses a cluster in
    this process, and puts the user's value back when the last such run ends.

    When a worker leaves, a cluster running in this process (a ``LocalCluster``, any
    ``SpecCluster``) waits that long (15 s) and then closes the worker's nanny for good if no
    worker of that name is registered at that moment. That is what happens to a nanny busy
    restarting a worker that an item keeps killing: pinning such an item down takes a worker's
    death per halving, and under load those deaths last past 15 s. The cluster is then left with
    no workers, and the run would wait forever for its tasks. Held, the nannies keep restarting
    their workers. The setting is read in this process only, when a worker leaves.
    """

    KEY = "distributed.deploy.lost-worker-timeout"
    HELD = "30 days"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs = 0
        self._saved: Any = None

    def hold(self) -> None:
        import dask

        with self._lock:
            if self._runs == 0:
                self._saved = dask.config.get(self.KEY, "15s")  # distributed's default
                dask.config.set({self.KEY: self.HELD})
            self._runs += 1

    def release(self) -> None:
        import dask

        with self._lock:
            self._runs -= 1
            if self._runs == 0 and dask.config.get(self.KEY, None) == self.HELD:  # unless set since
                dask.config.set({self.KEY: self._saved})


_LOST_WORKERS = _LostWorkerTimeoutHold()


def _stop_signal_plugin(distributed: Any) -> Any:
    """A worker plugin: the worker process leaves SIGINT/SIGTERM/SIGHUP to batchkit."""

    class IgnoreStopSignals(distributed.WorkerPlugin):
        def setup(self, worker: Any) -> None:
            ignore_stop_signals()

    return IgnoreStopSignals()


class _MainNotReimported:
    """While our LocalCluster lives, its worker processes do not re-run the user's script.

    distributed starts workers with multiprocessing's "spawn", which re-executes ``__main__``'s
    file in each new process: a script without an ``if __name__ == "__main__":`` guard would
    start its run again in every worker ("Nanny failed to start"). Functions travel to workers by
    value (cloudpickle), so workers never need the script; multiprocessing skips re-importing a
    main module whose spec is named ``__main__``. Restored when the cluster closes.
    """

    def __init__(self) -> None:
        import sys

        self._module = sys.modules.get("__main__")
        self._patched = (self._module is not None and getattr(self._module, "__spec__", None) is None
                         and getattr(self._module, "__file__", None) is not None)
        if self._patched:
            import importlib.machinery

            self._module.__spec__ = importlib.machinery.ModuleSpec("__main__", None)

    def restore(self) -> None:
        if self._patched:
            self._module.__spec__ = None
            self._patched = False


def _translate(exc: BaseException) -> BaseException:
    name = type(exc).__name__
    if name == "KilledWorker":
        return WorkerCrashed(f"dask workers kept dying while running this task: {exc}")
    if name == "NoWorkerError":
        timeout = getattr(exc, "timeout", None)
        waited = f" for {timeout:g} s" if isinstance(timeout, (int, float)) else ""
        return BackendError(f"the dask cluster has had no worker{waited} "
                            "(distributed.scheduler.no-workers-timeout); start workers, then resume")
    if name in ("CommClosedError", "TimeoutError", "OSError", "CancelledError", "FutureCancelledError"):
        return BackendError(f"lost the dask cluster: {exc}")
    return exc
