"""A job on a real Dask cluster: `dask scheduler` and `dask worker` processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import python_env

pytest.importorskip("distributed")

JOB = '''
import os
import batchkit as bk

@bk.job
def tag(item: str, prefix: str = "seen") -> str:
    """Tag each item with the worker that ran it."""
    return f"{prefix}:{item}:{os.getpid()}"
'''


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


def test_job_file_runs_on_a_real_cluster_that_cannot_import_it(cluster, tmp_path):
    address, worker_pids = cluster
    job = tmp_path / "jobdir" / "tag_job.py"
    job.parent.mkdir()
    job.write_text(JOB)
    items = tmp_path / "items.txt"
    items.write_text("\n".join(f"i{n}" for n in range(40)) + "\n")
    out = tmp_path / "out.jsonl"
    run = subprocess.run([sys.executable, "-m", "batchkit", "run", str(job), "--input", str(items),
                          "--scheduler", address, "--prefix", "ok", "--chunk-size", "5",
                          "--output", str(out), "--json", "--no-progress"],
                         capture_output=True, text=True, env=python_env(), cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["succeeded"] == 40 and summary["failed"] == 0
    values = [json.loads(line)["value"] for line in out.read_text().splitlines()]
    assert [v.split(":")[1] for v in values] == [f"i{n}" for n in range(40)]
    assert all(v.startswith("ok:") for v in values)
    # The work really ran in the cluster's worker processes, not locally.
    assert {int(v.split(":")[2]) for v in values} <= set(worker_pids)


def test_unreachable_scheduler_exits_3_with_one_line(tmp_path):
    job = tmp_path / "tag_job.py"
    job.write_text(JOB)
    run = subprocess.run([sys.executable, "-m", "batchkit", "run", str(job), "--input", "-",
                          "--scheduler", f"tcp://127.0.0.1:{_free_port()}", "--no-progress"],
                         input="a\n", capture_output=True, text=True, env=python_env(), cwd=tmp_path, timeout=120)
    assert run.returncode == 3, run.stderr
    assert "Traceback" not in run.stderr
    assert "could not start the dask backend" in run.stderr
