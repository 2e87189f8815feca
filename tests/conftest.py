"""Shared fixtures. ``backend`` runs a test once per backend: serial, thread, process, dask, joblib (loky).

The Dask backend uses one real LocalCluster (2 single-threaded worker processes) for the
whole session; the process backend uses loky's real worker processes.
"""

from __future__ import annotations

import os
import sys

import pytest

BACKENDS = ["serial", "thread", "process", "dask", "joblib"]


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


@pytest.fixture(params=BACKENDS)
def backend(request):
    """A backend (name or instance) to pass as ``backend=``, with 2 workers where it matters."""
    name = request.param
    if name == "dask":
        import batchkit as bk

        return bk.DaskBackend(client=request.getfixturevalue("dask_client"))
    return name


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
