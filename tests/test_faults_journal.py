"""Issue 11, items 1, 8 and 11: a journal another writer keeps locked, runs that stopped (exit 3, halted)
continued with --resume, late-refused options that leave no phantom run, and totals after resumes.

Real ``python -m batchkit`` processes, a second real SQLite connection holding ``BEGIN IMMEDIATE``
on the real journal file, real signals. The busy timeout is cut to 1 s with ``BATCHKIT_BUSY_TIMEOUT``.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter

import pytest

import batchkit as bk

from faults_support import (
    communicate,
    env_with,
    error_lines,
    executions,
    hold_write_lock,
    make_project,
    query,
    recorded_keys,
    run,
    start,
    wait_until,
)

N = 200


@pytest.fixture
def project(tmp_path):
    job, items, env = make_project(tmp_path, N)
    return tmp_path, job, items, env_with(env, BATCHKIT_BUSY_TIMEOUT="1"), tmp_path / "home" / "batchkit.db"


def test_a_writer_holding_the_journal_while_chunks_are_written_ends_the_run_with_exit_3_and_resume_finishes(
        project):
    tmp_path, job, items, env, db = project
    log = tmp_path / "executions.log"
    args = ["run", f"{job}:slow", "--input", str(items), "--chunk-size", "5", "--workers", "2", "--delay", "0.01",
            "--log", str(log), "--no-progress"]
    proc = start([*args, "--json"], env, tmp_path)
    wait_until(lambda: len(recorded_keys(db)) >= 20, what="20 journaled items")
    holder = hold_write_lock(db)  # the other writer: held until the run has ended
    try:
        out, err = communicate(proc)  # a run that hangs on the lock fails here
        # The next cron run while the journal is still held: refused with 3 (not 75, not a hang).
        cron = run([*args, "--resume", "--quiet"], env, tmp_path, timeout=30)
        assert cron.returncode == 3 and len(error_lines(cron.stderr)) == 1, cron.stderr
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert proc.returncode == 3, err
    assert "Traceback" not in err
    (line,) = error_lines(err)  # one line: why, and how to go on
    assert "locked" in line and "for more than 1s" in line and "--resume" in line
    summary = json.loads(out)
    journaled = recorded_keys(db)
    assert summary["state"] == "error" and summary["succeeded"] == len(journaled) < N

    # The lock is gone: the next run (cron-style: --quiet) is not refused with 75; it resumes the same run.
    again = run([*args, "--resume", "--json", "--quiet"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout)
    assert resumed["resumed"] and resumed["run_id"] == summary["run_id"]
    assert (resumed["succeeded"], resumed["skipped"], resumed["total"]) == (N, len(journaled), N)
    keys = recorded_keys(db)
    assert sorted(keys) == [f"item{i:04d}" for i in range(N)]  # each item once
    twice = {k for k, n in Counter(executions(log)).items() if n > 1}
    assert not twice & set(journaled)  # what the journal had was never run again


def test_a_writer_holding_the_journal_while_the_run_closes_gives_exit_3_without_a_traceback(project):
    tmp_path, job, items, env, db = project
    gate = tmp_path / "gate"
    args = ["run", f"{job}:gated", "--input", str(items), "--gate", str(gate), "--no-progress"]
    proc = start([*args, "--json"], env, tmp_path)
    wait_until(lambda: (tmp_path / "gate.finishing").exists(), what="the finishing step")
    holder = hold_write_lock(db)  # every item is journaled; now the run must close
    try:
        (tmp_path / "gate.go").touch()
        out, err = communicate(proc)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert proc.returncode == 3, err
    assert "Traceback" not in err
    (line,) = error_lines(err)
    assert "could not close the run" in line and "locked" in line
    summary = json.loads(out)
    assert summary["state"] == "error" and summary["succeeded"] == N and summary["failed"] == 0
    (state,) = json.loads(run(["history", "--json"], env, tmp_path).stdout)
    assert state["state"] == "crashed"  # its process is gone: resumable

    again = run([*args, "--resume", "--json"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout)
    assert resumed["run_id"] == summary["run_id"] and (resumed["ran"], resumed["skipped"]) == (0, N)
    assert len(recorded_keys(db)) == N


def test_a_run_halted_by_max_failures_continues_with_resume(project):
    tmp_path, job, items, env, db = project
    fail = tmp_path / "fail.txt"
    fail.write_text("item0003 item0004 item0005\n")
    args = ["run", f"{job}:slow", "--input", str(items), "--workers", "1", "--chunk-size", "5", "--delay", "0",
            "--fail-file", str(fail), "--max-failures", "2", "--no-progress", "--json"]
    first = run(args, env, tmp_path)
    assert first.returncode == 1, first.stderr
    halted = json.loads(first.stdout)
    assert halted["state"] == "halted" and halted["halted"]
    before = recorded_keys(db)
    assert len(before) < N
    fail.write_text("")
    again = run([*args, "--resume"], env, tmp_path)
    resumed = json.loads(again.stdout)
    assert "starting a new run" not in again.stderr and f"resuming run {halted['run_id']}" in again.stderr
    assert resumed["run_id"] == halted["run_id"] and resumed["skipped"] == len(before)
    assert resumed["succeeded"] + resumed["failed"] == N == len(recorded_keys(db))
    assert resumed["failed"] == halted["failed"]  # its failures stay recorded: --retry-failed runs them
    assert again.returncode == 1 and resumed["state"] == "failed"  # the run as a whole has failed items
    (row,) = json.loads(run(["history", "--json"], env, tmp_path).stdout)
    assert (row["state"], row["failed"]) == ("failed", halted["failed"])
    retried = run([*args, "--retry-failed"], env, tmp_path)
    assert retried.returncode == 0 and json.loads(retried.stdout)["succeeded"] == N


@pytest.mark.parametrize("bad, expect", [(["--timeout", "0"], "timeout"),
                                         (["--chunk-size", "0"], "chunk"),
                                         (["--workers", "0"], "workers")])
def test_an_option_refused_leaves_no_run_that_a_later_resume_attaches_to(project, bad, expect):
    tmp_path, job, items, env, db = project
    args = ["run", f"{job}:slow", "--input", str(items), "--delay", "0", "--no-progress"]
    refused = run([*args, *bad], env, tmp_path)
    assert refused.returncode == 2 and expect in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert query(db, "SELECT id FROM runs") == []
    later = run([*args, "--resume", "--json"], env, tmp_path)
    assert later.returncode == 0 and not json.loads(later.stdout)["resumed"]


def test_chunk_size_0_from_python_with_a_journal_is_refused_before_any_run_is_recorded(project, monkeypatch):
    tmp_path, *_ = project
    monkeypatch.setenv("BATCHKIT_HOME", str(tmp_path / "api"))
    for bad in ({"chunk_size": 0}, {"timeout": 0}, {"workers": -1}):
        with pytest.raises(bk.UsageError):
            bk.run(str.upper, ["a", "b"], backend="serial", journal=True, progress=False, **bad)
    assert query(tmp_path / "api" / "batchkit.db", "SELECT id FROM runs") == []
    report = bk.run(str.upper, ["a", "b"], backend="serial", journal=True, resume=True, progress=False)
    assert report.values() == ["A", "B"] and report.skipped == 0


def test_totals_are_right_after_an_interrupted_then_resumed_run_and_after_retry_failed(project):
    tmp_path, job, _, env, db = project
    items = tmp_path / "ten.txt"
    items.write_text("".join(f"item{i:04d}\n" for i in range(10)))
    slow = tmp_path / "slow.txt"
    slow.write_text("item0004\n")  # runs until released: the run is stopped while it runs
    args = ["run", f"{job}:slow", "--input", str(items), "--workers", "1", "--chunk-size", "1", "--delay", "0",
            "--slow-file", str(slow), "--no-progress", "--json"]
    proc = start(args, env, tmp_path)
    wait_until(lambda: len(recorded_keys(db)) >= 4, what="4 journaled items")
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    slow.write_text("")  # the item in flight finishes within the grace period (or is cut short)
    out, err = communicate(proc)
    assert proc.returncode == 143, err
    stopped = json.loads(out)
    n = len(recorded_keys(db))
    assert 4 <= n < 10 and (stopped["succeeded"], stopped["failed"], stopped["total"]) == (n, 0, n)
    (row,) = json.loads(run(["history", "--json"], env, tmp_path).stdout)
    assert (row["state"], row["succeeded"], row["skipped"]) == ("interrupted", n, 0)
    assert row["total"] in (None, 10)  # never the count of lines read when it stopped
    shown = run(["show", str(stopped["run_id"])], env, tmp_path).stdout
    assert f"{n} succeeded, 0 failed, 0 skipped\n" in shown

    done = json.loads(run([*args, "--resume"], env, tmp_path).stdout)
    assert (done["succeeded"], done["failed"], done["skipped"], done["ran"], done["total"]) == (10, 0, n, 10 - n, 10)
    (row,) = json.loads(run(["history", "--json"], env, tmp_path).stdout)
    assert (row["state"], row["succeeded"], row["failed"], row["skipped"], row["total"]) == (
        "succeeded", 10, 0, n, 10)
    assert f"10 succeeded, 0 failed, {n} skipped of 10" in run(["show", str(done["run_id"])], env, tmp_path).stdout

    fail = tmp_path / "fail.txt"
    fail.write_text("item0002 item0007\n")
    failing = [*args[:-2], "--fail-file", str(fail), "--json"]
    first = json.loads(run(failing, env, tmp_path).stdout)
    assert (first["succeeded"], first["failed"], first["total"]) == (8, 2, 10)
    fail.write_text("")
    retried = json.loads(run([*failing, "--retry-failed"], env, tmp_path).stdout)
    assert (retried["succeeded"], retried["failed"], retried["skipped"], retried["ran"], retried["total"]) == (
        10, 0, 8, 2, 10)
    shown = run(["show", str(retried["run_id"])], env, tmp_path).stdout
    assert "10 succeeded, 0 failed, 8 skipped of 10" in shown


@pytest.mark.parametrize("value", ["abc", "0", "inf"])
def test_a_bad_busy_timeout_setting_is_one_line_and_exit_2(project, value):
    tmp_path, job, items, env, db = project
    args = ["run", f"{job}:slow", "--input", str(items), "--delay", "0", "-q"]
    assert run(args, env, tmp_path).returncode == 0
    for command in (args, ["history"]):
        result = run(command, env_with(env, BATCHKIT_BUSY_TIMEOUT=value), tmp_path)
        assert result.returncode == 2 and "BATCHKIT_BUSY_TIMEOUT" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
