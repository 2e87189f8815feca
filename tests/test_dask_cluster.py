"""A job on a real Dask cluster: `dask scheduler` and `dask worker` processes on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import _free_port, python_env

pytest.importorskip("distributed")

JOB = '''
import os
import batchkit as bk

@bk.job
def tag(item: str, prefix: str = "seen") -> str:
    """Tag each item with the worker that ran it."""
    return f"{prefix}:{item}:{os.getpid()}"
'''




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
