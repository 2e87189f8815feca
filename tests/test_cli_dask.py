"""`batchkit run JOB --scheduler tcp://...` on a real cluster: `dask scheduler` and `dask worker`
processes started in another directory, which cannot import the job file: its code goes by value."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest

from conftest import PY, python_env

pytest.importorskip("distributed")

JOB = '''
import os
import batchkit as bk

FACTOR = 3  # module state travels with the job


def helper(x: int) -> int:
    return x * FACTOR


@bk.job(backend="process")
def remote(item: int) -> str:
    """Runs on the Dask worker."""
    return f"{helper(item)}:{os.getpid()}"
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    where = tmp_path / "cluster-cwd"
    where.mkdir()
    env = python_env()
    env.pop("PYTHONPATH", None)  # the workers see batchkit as installed, never the job's directory
    logs = open(tmp_path / "cluster.log", "wb")
    procs = [subprocess.Popen([PY, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], cwd=where, env=env, stdout=logs, stderr=logs)]
    procs.append(subprocess.Popen([PY, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                   "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1"],
                                  cwd=where, env=env, stdout=logs, stderr=logs))
    try:
        deadline = time.monotonic() + 60
        while b"Starting established connection" not in (tmp_path / "cluster.log").read_bytes():
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                pytest.fail("the dask cluster did not start:\n" + (tmp_path / "cluster.log").read_text())
            time.sleep(0.2)
        yield address, procs
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        logs.close()


def test_a_job_file_runs_on_an_existing_dask_cluster_by_value(cluster, tmp_path):
    address, procs = cluster
    jobdir = tmp_path / "somewhere" / "else"
    jobdir.mkdir(parents=True)
    (jobdir / "remote_job.py").write_text(JOB)
    items = tmp_path / "items.txt"
    items.write_text("".join(f"{i}\n" for i in range(30)))
    out = tmp_path / "out.jsonl"
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    cli = subprocess.Popen([PY, "-m", "batchkit", "run", str(jobdir / "remote_job.py"), "--input", str(items),
                            "--scheduler", address, "--output", str(out), "--json"],
                           cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = cli.communicate(timeout=120)
    assert cli.returncode == 0, stderr
    assert json.loads(stdout)["succeeded"] == 30
    values = [json.loads(line)["value"] for line in out.read_text().splitlines()]
    assert [int(v.split(":")[0]) for v in values] == [3 * i for i in range(30)]
    pids = {int(v.split(":")[1]) for v in values}
    assert cli.pid not in pids and len(pids) == 1  # computed in the one worker process, not here
    assert all(p.poll() is None for p in procs)  # batchkit never shuts down a cluster it did not start


def test_an_unreachable_scheduler_exits_3_with_one_line(tmp_path):
    items = tmp_path / "items.txt"
    items.write_text("1\n")
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    run = subprocess.run([PY, "-m", "batchkit", "run", "shout", "--input", str(items), "--scheduler",
                          f"tcp://127.0.0.1:{free_port()}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 3, run.stderr
    assert "could not start the dask backend" in run.stderr and "Traceback" not in run.stderr
