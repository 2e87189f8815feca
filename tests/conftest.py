"""Shared fixtures. ``backend`` runs a test once per backend: serial, thread, process, dask, joblib (loky).

The Dask backend uses one real LocalCluster (2 single-threaded worker processes) for the
whole session; the process backend uses loky's real worker processes.
"""

from __future__ import annotations

import os
import sys

import pytest

NAMED_BACKENDS = ["serial", "thread", "process", "dask", "joblib"]  # what backend="..." accepts
BACKENDS = [*NAMED_BACKENDS, "executor-thread", "executor-process"]
# Backends whose calls run in this process (nothing is pickled): serial, threads, a thread pool.
IN_PROCESS = ("serial", "thread", "executor-thread")


@pytest.fixture(scope="session")
def dask_client():
    distributed = pytest.importorskip("distributed")
    import logging

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="session")
def process_pool():
    """A plain concurrent.futures process pool, the kind users already have."""
    import concurrent.futures as cf
    import multiprocessing

    pool = cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    yield pool
    pool.shutdown(cancel_futures=True)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """A backend to pass as ``backend=`` (a name, a backend instance, or a plain executor),
    with 2 workers where it matters."""
    name = request.param
    if name == "dask":
        import batchkit as bk

        return bk.DaskBackend(client=request.getfixturevalue("dask_client"))
    if name == "executor-thread":
        import concurrent.futures as cf

        pool = cf.ThreadPoolExecutor(2)
        request.addfinalizer(pool.shutdown)
        return pool
    if name == "executor-process":
        return request.getfixturevalue("process_pool")
    return name


@pytest.fixture
def backend_kind(request, backend):
    """The name of the backend the test runs on (``backend`` itself may be an instance)."""
    return request.node.callspec.params["backend"]


@pytest.fixture
def workers(backend):
    return None if not isinstance(backend, str) else 2


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own BATCHKIT_HOME, so journals and locks never leak between tests."""
    monkeypatch.setenv("BATCHKIT_HOME", str(tmp_path / "bkhome"))
    yield


def python_env() -> dict:
    """Environment for subprocesses: the repo on PYTHONPATH."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


PY = sys.executable
