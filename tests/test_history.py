"""``batchkit history``, ``show`` and ``status`` over a real journal written by real runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time

import pytest
from click.testing import CliRunner

import batchkit as bk
from batchkit.cli.main import cli

from conftest import PY, python_env


def bk_cli(*args):
    return CliRunner().invoke(cli, list(args))


def parity(n):
    if n % 4 == 3:
        raise ValueError(f"item {n} is unlucky")
    return n


def double(n):
    return 2 * n


@pytest.fixture
def two_runs():
    first = bk.run(double, range(6), backend="serial", journal=True, progress=False, name="double")
    second = bk.run(parity, range(8), backend="serial", journal=True, progress=False, name="parity")
    return first, second


def test_history_lists_runs_newest_first_with_counts(two_runs):
    result = bk_cli("history")
    assert result.exit_code == 0, result.output
    header, newest, oldest = result.output.splitlines()
    assert header.split() == ["RUN", "JOB", "STATE", "STARTED", "DURATION", "OK", "FAILED", "SKIPPED", "RATE"]
    assert newest.split()[:3] == [str(two_runs[1].run_id), "parity", "failed"]
    assert newest.split()[6:9] == ["6", "2", "0"]
    assert oldest.split()[:3] == [str(two_runs[0].run_id), "double", "succeeded"]


def test_history_json_filters_by_job_and_limits(two_runs):
    runs = json.loads(bk_cli("history", "--json", "--job", "parity").output)
    assert [(r["job"], r["state"], r["succeeded"], r["failed"]) for r in runs] == [("parity", "failed", 6, 2)]
    assert runs[0]["started"] and runs[0]["elapsed"] >= 0
    assert len(json.loads(bk_cli("history", "--json", "--limit", "1").output)) == 1


def test_history_without_a_journal_says_so_and_creates_nothing():
    result = bk_cli("history")
    assert result.exit_code == 0 and "no runs recorded" in result.output
    assert not os.path.exists(os.path.join(os.environ["BATCHKIT_HOME"], "batchkit.db"))


def test_show_lists_the_failures_with_messages(two_runs):
    run_id = two_runs[1].run_id
    result = bk_cli("show", str(run_id))
    assert result.exit_code == 0, result.output
    assert f"run {run_id}: parity" in result.output and "6 succeeded, 2 failed" in result.output
    assert "ValueError: item 3 is unlucky" in result.output and "ValueError: item 7 is unlucky" in result.output
    assert "Traceback" not in result.output
    with_tb = bk_cli("show", str(run_id), "--tracebacks").output
    assert "Traceback (most recent call last)" in with_tb and 'raise ValueError(f"item {n} is unlucky")' in with_tb
    data = json.loads(bk_cli("show", str(run_id), "--json").output)
    assert [f["idx"] for f in data["failures"]] == [3, 7]
    assert [f["message"] for f in data["failures"]] == ["item 3 is unlucky", "item 7 is unlucky"]


def test_show_of_an_unknown_run_exits_2_with_one_line(two_runs):
    result = bk_cli("show", "999")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["batchkit: error: no run 999 in the journal; "
                                                  "`batchkit history` lists the runs"]


SLOW = textwrap.dedent("""
    import time, batchkit as bk

    def slow(n):
        time.sleep(0.02)
        if n == 5:
            raise RuntimeError("five")
        return n

    bk.run(slow, range(100000), backend="serial", chunk_size=5, journal=True, progress=False, name="slow")
""")


def test_status_shows_a_run_in_progress_from_another_process(tmp_path):
    script = tmp_path / "slow.py"
    script.write_text(SLOW)
    proc = subprocess.Popen([PY, str(script)], env=python_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        rows = []
        while time.monotonic() < deadline:
            rows = json.loads(bk_cli("status", "--json").output or "[]")
            if rows and rows[0]["done"] >= 20:
                break
            time.sleep(0.1)
        [row] = rows
        assert (row["job"], row["pid"], row["total"]) == ("slow", proc.pid, 100000)
        assert row["done"] >= 20 and row["failed"] == 1
        assert row["pending"] == 100000 - row["done"]
        assert row["rate"] > 0 and row["eta"] > 0
        table = bk_cli("status").output.splitlines()
        assert table[0].split() == ["RUN", "JOB", "PID", "STARTED", "DONE", "FAILED", "PENDING", "RATE", "ETA"]
        assert table[1].split()[1:3] == ["slow", str(proc.pid)]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    # A run whose process is gone is not "in progress" (history shows it as crashed).
    assert "no runs in progress" in bk_cli("status").output
    assert json.loads(bk_cli("history", "--json").output)[0]["state"] == "crashed"
