"""``backend="joblib"``: chunks run wherever ``joblib.parallel_config`` sends joblib's work.

Against joblib's own backends as users configure them: loky (its default, real worker
processes), threading, ``n_jobs=1`` (sequential), a real Dask ``LocalCluster`` through
``parallel_config(backend="dask")``, and Ray when asked for.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import threading
import time

import pytest

import batchkit as bk
from batchkit.backends.joblib import JoblibBackend

from conftest import PY, python_env

joblib = pytest.importorskip("joblib")


def seven_fails(x: int) -> tuple:
    if x == 7:
        raise ValueError(f"{x} is unlucky")
    return x * 2, os.getpid(), threading.get_ident()


@pytest.mark.parametrize("where", ["loky", "threading"])
def test_errors_are_captured_per_item_on_joblibs_loky_and_threading(where):
    with joblib.parallel_config(backend=where, n_jobs=2):
        report = bk.run(seven_fails, range(40), backend="joblib", chunk_size=3, progress=False)
    assert report.succeeded == 39 and report.failed == 1
    (bad,) = report.failures
    assert (bad.item, bad.error.type, bad.error.message) == (7, "ValueError", "7 is unlucky")
    assert "seven_fails" in bad.error.traceback
    values = [o.value for o in report.outcomes if o.ok]
    assert [v[0] for v in values] == [x * 2 for x in range(40) if x != 7]  # input order
    pids = {pid for _, pid, _ in values}
    if where == "loky":
        assert os.getpid() not in pids and 1 <= len(pids) <= 2
    else:
        assert pids == {os.getpid()} and threading.get_ident() not in {t for _, _, t in values}


def flaky_once(path: str) -> str:
    # Fails the first time each item runs, wherever it runs: the marker is a real file.
    marker = path + ".seen"
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise ConnectionError("first try fails")
    return os.path.basename(path)


@pytest.mark.parametrize("where", ["loky", "threading"])
def test_retries_run_in_joblibs_workers(tmp_path, where):
    items = [str(tmp_path / f"item{i}") for i in range(12)]
    with joblib.parallel_config(backend=where, n_jobs=2):
        report = bk.run(flaky_once, items, backend="joblib", chunk_size=4, progress=False,
                        retry=bk.Retry(attempts=3, backoff=0.01, on=ConnectionError))
    assert report.ok and report.values() == [f"item{i}" for i in range(12)]
    assert {o.attempts for o in report.outcomes} == {2}


def dies_on_13(x: int) -> int:
    if x == 13:
        os.kill(os.getpid(), 9)
    return x


@pytest.mark.parametrize("where", ["loky", "multiprocessing"])
def test_a_worker_killed_by_its_item_fails_only_that_item_as_a_crash(where):
    # loky fails every call in flight when a worker dies (TerminatedWorkerError); multiprocessing's
    # pool silently loses the task (joblib itself would wait forever), which batchkit notices. The
    # calls in flight are re-run in halves until the item that kills a worker alone is found.
    with joblib.parallel_config(backend=where, n_jobs=2):
        report = bk.run(dies_on_13, range(40), backend="joblib", chunk_size=4, progress=False)
    (bad,) = report.failures
    assert bad.item == 13 and bad.error.kind == "crash" and "SIGKILL" in bad.error.message
    assert [o.value for o in report.outcomes if o.ok] == [x for x in range(40) if x != 13]
    assert all(o.attempts == 1 for o in report.outcomes)


def sleepy(x: float) -> float:
    time.sleep(x)
    return x


def test_an_item_past_its_timeout_is_recorded_as_timed_out_on_loky():
    with joblib.parallel_config(backend="loky", n_jobs=2):
        report = bk.run(sleepy, [0.0, 2.0, 0.0], backend="joblib", chunk_size=1, timeout=0.3, progress=False)
    (slow,) = report.failures
    assert slow.item == 2.0 and slow.error.kind == "timeout"
    assert [o.value for o in report.outcomes if o.ok] == [0.0, 0.0]


def test_workers_come_from_joblibs_n_jobs():
    def started(**kwargs) -> JoblibBackend:
        backend = JoblibBackend(**kwargs)
        backend.start()
        backend.close()
        return backend

    with joblib.parallel_config(backend="threading", n_jobs=3):
        assert started().workers == 3
        assert started(workers=5).workers == 5  # workers= overrides parallel_config
    with joblib.parallel_config(backend="threading", n_jobs=-1):
        assert started().workers == joblib.cpu_count()
    with joblib.parallel_config(backend="threading"):
        assert started().workers == joblib.cpu_count()  # unset: all CPUs, not joblib's default of 1


def test_capabilities_follow_the_selected_joblib_backend():
    def flags(**config) -> tuple:
        with joblib.parallel_config(**config):
            backend = JoblibBackend()
            backend.start()
            try:
                return backend.runs_in_process, backend.killable_workers, backend.workers
            finally:
                backend.close()

    assert flags(backend="loky", n_jobs=2) == (False, False, 2)
    assert flags(backend="threading", n_jobs=2) == (True, False, 2)
    assert flags(backend="loky", n_jobs=1) == (True, False, 1)  # joblib runs n_jobs=1 sequentially


def test_n_jobs_1_runs_chunks_in_the_calling_thread():
    with joblib.parallel_config(backend="loky", n_jobs=1):
        report = bk.run(seven_fails, range(10), backend="joblib", progress=False)
    assert report.failed == 1
    assert {(pid, t) for _, pid, t in (o.value for o in report.outcomes if o.ok)} == {
        (os.getpid(), threading.get_ident())}


def test_a_joblib_backend_instance_keeps_the_configuration_it_was_made_in():
    with joblib.parallel_config(backend="threading", n_jobs=3):
        backend = JoblibBackend()
    with backend:  # like joblib.Parallel, it was configured when made
        report = bk.run(seven_fails, range(10), backend=backend, progress=False)
        assert repr(backend) == "JoblibBackend(threading, workers=3)" and backend.runs_in_process
    assert report.failed == 1
    assert {pid for _, pid, _ in (o.value for o in report.outcomes if o.ok)} == {os.getpid()}


def setup_worker(log: str) -> None:
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")


def test_initializer_runs_once_per_joblib_loky_worker_per_run(tmp_path):
    log = tmp_path / "init.log"
    with joblib.parallel_config(backend="loky", n_jobs=2):
        for _ in range(2):  # joblib's loky workers stay warm between runs; each run sets up again
            report = bk.run(seven_fails, range(30), backend="joblib", chunk_size=2, progress=False,
                            initializer=setup_worker, initargs=(str(log),))
            assert report.failed == 1
    runs = collections.Counter(int(line) for line in log.read_text().splitlines())
    assert os.getpid() not in runs and set(runs.values()) <= {1, 2} and sum(runs.values()) <= 4


def test_joblibs_dask_backend_runs_chunks_on_the_cluster(dask_client):
    with joblib.parallel_config(backend="dask"):
        report = bk.run(seven_fails, range(30), backend="joblib", chunk_size=3, progress=False)
    assert report.failed == 1 and report.failures[0].error.type == "ValueError"
    workers = set(dask_client.run(os.getpid).values())
    assert {pid for _, pid, _ in (o.value for o in report.outcomes if o.ok)} <= workers


RAY_SCRIPT = '''
import collections, json, os, sys
import joblib, ray
from ray.util.joblib import register_ray
import batchkit as bk


def setup(log):
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\\n")


def dies_on_13(x):
    if x == 13:
        os.kill(os.getpid(), 9)
    return x


if __name__ == "__main__":
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    register_ray()
    # max_restarts: Ray's pool replaces an actor that died; without it the pool shrinks and the
    # run ends with a BackendError once no actor is left.
    with joblib.parallel_config(backend="ray", n_jobs=2, ray_remote_args={"max_restarts": -1}):
        report = bk.run(dies_on_13, range(40), backend="joblib", chunk_size=4, progress=False,
                        initializer=setup, initargs=(sys.argv[1],))
    ray.shutdown()
    print(json.dumps([[o.item, o.ok, o.error and o.error.kind] for o in report.outcomes]))
'''


@pytest.mark.skipif(os.environ.get("BATCHKIT_TEST_RAY") != "1",
                    reason="Ray's local instance listens on every interface (it will not take a loopback "
                           "node address); set BATCHKIT_TEST_RAY=1 (and pip install ray) to run it")
def test_rays_joblib_backend_records_a_dead_actor_as_a_crash_of_one_item(tmp_path):
    pytest.importorskip("ray")
    script, log = tmp_path / "on_ray.py", tmp_path / "init.log"
    script.write_text(RAY_SCRIPT)
    run = subprocess.run([PY, str(script), str(log)], capture_output=True, text=True, env=python_env(),
                         cwd=tmp_path, timeout=110)
    assert run.returncode == 0, run.stderr
    outcomes = json.loads(run.stdout.strip().splitlines()[-1])
    assert [(item, kind) for item, ok, kind in outcomes if not ok] == [(13, "crash")]
    runs = collections.Counter(int(line) for line in log.read_text().splitlines())
    assert set(runs.values()) == {1} and len(runs) > 2  # each restarted actor set up again, once


# -- lazily imported; from the command line ------------------------------------------------------

def test_joblib_is_imported_only_when_the_joblib_backend_runs():
    code = ("import sys, batchkit as bk\n"
            "bk.run(abs, [1, -2], backend='thread', progress=False)\n"
            "print('joblib' in sys.modules)\n"
            "print(bk.run(abs, [1, -2], backend='joblib', workers=2, progress=False).values())\n"
            "print('joblib' in sys.modules)\n")
    run = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=python_env(), timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:3] == ["False", "[1, 2]", "True"]


def test_without_joblib_the_backend_says_how_to_install_it():
    code = ("import sys; sys.modules['joblib'] = None\n"
            "import batchkit as bk\n"
            "try:\n    bk.run(abs, [1], backend='joblib')\n"
            "except bk.UsageError as e:\n    print(e)\n")
    run = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=python_env(), timeout=60)
    assert run.stdout.strip() == "the joblib backend needs joblib: pip install 'batchkit[joblib]'"


JOB = '''
import os
import batchkit as bk

@bk.job
def double(item: int) -> list:
    """Double each number, say where."""
    if item == 4:
        raise ValueError("four")
    return [item * 2, os.getpid()]
'''


def test_backend_joblib_from_the_command_line(tmp_path):
    job = tmp_path / "double.py"
    job.write_text(JOB)
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("".join(f"{i}\n" for i in range(20)))
    out = tmp_path / "out.jsonl"
    run = subprocess.run([PY, "-m", "batchkit", "run", str(job), "--input", str(numbers), "--backend", "joblib",
                          "--workers", "2", "--retries", "1", "--output", str(out), "--json"],
                         capture_output=True, text=True, env=python_env(), cwd=tmp_path, timeout=90)
    assert run.returncode == 1, run.stderr
    summary = json.loads(run.stdout)
    assert (summary["succeeded"], summary["failed"]) == (19, 1)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["value"][0] for d in lines if d["ok"]] == [i * 2 for i in range(20) if i != 4]
    assert [d["attempts"] for d in lines if not d["ok"]] == [2]
    pids = {d["value"][1] for d in lines if d["ok"]}
    assert 1 <= len(pids) <= 2 and run.args[0] and os.getpid() not in pids
    history = subprocess.run([PY, "-m", "batchkit", "history", "--json"], capture_output=True, text=True,
                             env=python_env(), cwd=tmp_path, timeout=60)
    assert history.returncode == 0 and "joblib" in history.stdout


def test_backend_joblib_is_listed_in_run_help():
    run = subprocess.run([PY, "-m", "batchkit", "run", "shout", "--help"], capture_output=True, text=True,
                         env=python_env(), timeout=60)
    assert run.returncode == 0 and "joblib" in run.stdout.split("--backend", 1)[1].split("\n")[0]
