"""Shared fixtures. ``backend`` runs a test once per backend: serial, thread, process, dask, joblib (loky).

The Dask backend uses one real LocalCluster (2 single-threaded worker processes) for the
whole session; the process backend uses loky's real worker processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two single-threaded workers, started in a directory with no job files."""
    port = _free_port()
    elsewhere = tmp_path / "workers-cwd"
    elsewhere.mkdir()
    env = dict(os.environ)  # the workers do NOT get the repo's tests or the job file on their path
    common = dict(cwd=elsewhere, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                  start_new_session=True)
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"], **common)]
    procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                   "--nworkers", "2", "--nthreads", "1", "--no-dashboard",
                                   "--host", "127.0.0.1"], **common))
    import distributed

    deadline = time.monotonic() + 60
    while True:
        try:
            with distributed.Client(address, timeout="2s") as client:
                client.wait_for_workers(2, timeout=30)
                worker_pids = list(client.run(os.getpid).values())
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    yield address, worker_pids
    for p in procs:
        os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
