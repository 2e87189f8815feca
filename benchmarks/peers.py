"""The contenders: batchkit's backends and its peers, each behind one small ``map`` function.

A :class:`Peer` opens whatever it needs (a pool, a cluster) as a context manager that yields
``go(fn, items) -> list``; only calls to ``go`` are timed. Peers that keep their pool between
calls (``warm=True``) start it when opened, so their times exclude pool start-up, exactly as
batchkit's process backend reuses loky's executor between runs; peers that build a pool inside
every call (``warm=False``) pay for it in every timed call, as their users do.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib.util
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterator

MapFn = Callable[[Callable[[Any], Any], list], list]


class Shared:
    """What peers share within one benchmark run: a Dask LocalCluster, started on first use.

    One cluster of 2 single-threaded worker processes serves client.map, dask.bag and
    batchkit's Dask backend alike, so none of them is charged for starting it.
    """

    def __init__(self, dask_workers: int = 2) -> None:
        self.dask_workers = dask_workers
        self._cluster: Any = None
        self._client: Any = None

    def dask_client(self) -> Any:
        """The shared :class:`distributed.Client` (starting the LocalCluster the first time)."""
        if self._client is None:
            import distributed

            # Starting a LocalCluster writes MALLOC_TRIM_THRESHOLD_=65536, OMP_NUM_THREADS=1 and
            # more into this process's os.environ for good. Every process started later would
            # inherit them (the trim threshold alone nearly doubles the checksum CLI's time), so
            # the environment is put back once the workers are up.
            saved = dict(os.environ)
            try:
                # ":0": any free port. None still binds the scheduler's HTTP server to 8787 in
                # recent releases and warns when another cluster holds it.
                self._cluster = distributed.LocalCluster(
                    n_workers=self.dask_workers, threads_per_worker=1, processes=True,
                    dashboard_address=":0", silence_logs=logging.ERROR)
                self._client = distributed.Client(self._cluster)
            finally:
                os.environ.clear()
                os.environ.update(saved)
        return self._client

    def close(self) -> None:
        """Stop the cluster, if one was started."""
        if self._client is not None:
            self._client.close()
            self._cluster.close()
            self._client = self._cluster = None


@dataclass(frozen=True)
class Peer:
    """One contender. ``open(shared, workers)`` yields its ``go(fn, items)``."""

    name: str
    open: Callable[[Shared, int], ContextManager[MapFn]]
    warm: bool
    note: str = ""
    requires: tuple[str, ...] = ()
    ours: bool = False

    def missing(self) -> str | None:
        """The first required module that is not installed, or ``None``."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                return module
        return None


# -- the plain loop and the standard library --------------------------------------------------


@contextmanager
def _serial(shared: Shared, workers: int) -> Iterator[MapFn]:
    yield lambda fn, items: [fn(x) for x in items]


@contextmanager
def _pool(shared: Shared, workers: int) -> Iterator[MapFn]:
    import multiprocessing

    with multiprocessing.Pool(workers) as pool:
        yield pool.map  # default chunksize: len(items) / (4 * workers)


@contextmanager
def _cf_processes(shared: Shared, workers: int) -> Iterator[MapFn]:
    with cf.ProcessPoolExecutor(workers) as ex:
        yield lambda fn, items: list(ex.map(fn, items))  # default chunksize=1


@contextmanager
def _cf_threads(shared: Shared, workers: int) -> Iterator[MapFn]:
    def go(fn: Callable[[Any], Any], items: list) -> list:
        with cf.ThreadPoolExecutor(workers) as ex:
            return list(ex.map(fn, items))

    yield go


# -- joblib -------------------------------------------------------------------------------------


@contextmanager
def _joblib(shared: Shared, workers: int, backend: str) -> Iterator[MapFn]:
    from joblib import Parallel, delayed

    def go(fn: Callable[[Any], Any], items: list) -> list:
        return Parallel(n_jobs=workers, backend=backend)(delayed(fn)(x) for x in items)

    yield go


# -- dask ---------------------------------------------------------------------------------------


@contextmanager
def _dask_map(shared: Shared, workers: int) -> Iterator[MapFn]:
    client = shared.dask_client()
    yield lambda fn, items: client.gather(client.map(fn, items, pure=False))


@contextmanager
def _dask_bag(shared: Shared, workers: int) -> Iterator[MapFn]:
    import dask.bag as db

    client = shared.dask_client()
    yield lambda fn, items: db.from_sequence(items).map(fn).compute(scheduler=client)


# -- mpire and pqdm -----------------------------------------------------------------------------


@contextmanager
def _mpire(shared: Shared, workers: int, start_method: str) -> Iterator[MapFn]:
    from mpire import WorkerPool

    kwargs = {} if start_method == "default" else {"start_method": start_method}
    with WorkerPool(n_jobs=workers, keep_alive=True, **kwargs) as pool:
        yield lambda fn, items: pool.map(fn, items)


@contextmanager
def _pqdm(shared: Shared, workers: int, kind: str) -> Iterator[MapFn]:
    if kind == "threads":
        from pqdm.threads import pqdm
    else:
        from pqdm.processes import pqdm
    yield lambda fn, items: pqdm(items, fn, n_jobs=workers, disable=True)


# -- batchkit -----------------------------------------------------------------------------------


@contextmanager
def _batchkit(shared: Shared, workers: int, backend: str) -> Iterator[MapFn]:
    import batchkit as bk

    where: Any = backend
    if backend == "dask":
        where = bk.DaskBackend(client=shared.dask_client())

    def go(fn: Callable[[Any], Any], items: list) -> list:
        # Default options: chunk_size="auto", per-item error capture on, no journal.
        return bk.run(fn, items, backend=where, workers=None if backend == "dask" else workers,
                      progress=False).values()

    yield go


def _bind(factory: Callable[..., ContextManager[MapFn]], *args: Any) -> Callable[[Shared, int], Any]:
    return lambda shared, workers: factory(shared, workers, *args)


SERIAL = Peer("serial loop", _serial, True, "plain `[fn(x) for x in items]`")
POOL = Peer("multiprocessing.Pool.map", _pool, True, "default chunksize")
CF_PROCESSES = Peer("cf.ProcessPoolExecutor.map", _cf_processes, True, "default chunksize=1")
CF_THREADS = Peer("cf.ThreadPoolExecutor.map", _cf_threads, False, "pool built per call")
JOBLIB_LOKY = Peer("joblib.Parallel loky", _bind(_joblib, "loky"), True, "auto batching; reusable executor",
                   ("joblib",))
JOBLIB_THREADS = Peer("joblib.Parallel threading", _bind(_joblib, "threading"), False,
                      "auto batching; pool built per call", ("joblib",))
DASK_MAP = Peer("dask client.map", _dask_map, True, "one task per item", ("distributed",))
DASK_BAG = Peer("dask.bag", _dask_bag, True, "from_sequence default partitions", ("distributed",))
MPIRE = Peer("mpire WorkerPool.map", _bind(_mpire, "default"), True, "keep_alive pool, default chunking",
             ("mpire",))
MPIRE_THREADS = Peer("mpire WorkerPool.map threading", _bind(_mpire, "threading"), True,
                     "keep_alive pool, default chunking", ("mpire",))
PQDM_PROCESSES = Peer("pqdm processes", _bind(_pqdm, "processes"), False, "executor built per call; a future per item",
                      ("pqdm",))
PQDM_THREADS = Peer("pqdm threads", _bind(_pqdm, "threads"), False, "executor built per call; a future per item",
                    ("pqdm",))
BK_SERIAL = Peer("batchkit serial", _bind(_batchkit, "serial"), True, "error capture on", ours=True)
BK_THREAD = Peer("batchkit thread", _bind(_batchkit, "thread"), False, "error capture on; pool built per run",
                 ours=True)
BK_PROCESS = Peer("batchkit process", _bind(_batchkit, "process"), True, "error capture on; loky executor reused",
                  ours=True)
BK_DASK = Peer("batchkit dask", _bind(_batchkit, "dask"), True, "error capture on; chunked tasks",
               ("distributed",), ours=True)
