"""Nothing lost, from the command line: the journal, --resume after SIGTERM and kill -9, --retry-failed,
the one-run-at-a-time lock. Real processes, real signals, asserted on the SQLite journal file itself."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import PY, python_env

SLOW_JOB = '''
import os, time
import batchkit as bk

@bk.job(backend="thread")
def slow(item: str, delay: float = 0.02, log: str = "", fail_file: str = "") -> str:
    """Sleep a little per item; log each execution; fail the items listed in fail_file."""
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, (item + "\\n").encode())
        os.close(fd)
    time.sleep(delay)
    if fail_file and os.path.exists(fail_file) and item in open(fail_file).read().split():
        raise ValueError(item + " told to fail")
    return item.upper()
'''


@pytest.fixture
def env(tmp_path):
    e = python_env()
    e["BATCHKIT_HOME"] = str(tmp_path / "home")
    return e


@pytest.fixture
def job(tmp_path):
    path = tmp_path / "slow.py"
    path.write_text(SLOW_JOB)
    return path


@pytest.fixture
def items(tmp_path):
    path = tmp_path / "items.txt"
    path.write_text("".join(f"item{i:04d}\n" for i in range(300)))
    return path


def db_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "batchkit.db"


def recorded(tmp_path: Path, run_id: int | None = None) -> list[tuple[str, int]]:
    """(key, ok) of every item row in the journal file, read with plain sqlite3."""
    if not db_path(tmp_path).exists():
        return []
    db = sqlite3.connect(db_path(tmp_path), timeout=10)
    try:
        sql = "SELECT key, ok FROM items" + (" WHERE run_id = ?" if run_id else "")
        return db.execute(sql, (run_id,) if run_id else ()).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        db.close()


def runs(tmp_path: Path) -> list[dict]:
    db = sqlite3.connect(db_path(tmp_path), timeout=10)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM runs ORDER BY id")]
    finally:
        db.close()


def start(args: list[str], env: dict, cwd: Path, **kw) -> subprocess.Popen:
    # Its own session, so the whole process group (workers included) can be signalled.
    return subprocess.Popen([PY, "-m", "batchkit", *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def run(args: list[str], env: dict, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "batchkit", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def wait_until(predicate, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_sigterm_mid_run_exits_143_then_resume_finishes_with_exit_0(tmp_path, env, job, items):
    log = tmp_path / "executions.log"
    args = ["run", str(job), "--input", str(items), "--workers", "2", "--chunk-size", "5", "--delay", "0.03",
            "--log", str(log)]
    proc = start(args, env, tmp_path)
    wait_until(lambda: len(recorded(tmp_path)) >= 30, what="30 recorded items")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in err and "Resume with: batchkit run" in err and "--resume" in err
    first = dict(recorded(tmp_path))
    assert 30 <= len(first) < 300
    (row,) = runs(tmp_path)
    assert row["state"] == "interrupted"

    again = run([*args, "--resume", "--json"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["resumed"] and summary["run_id"] == row["id"]
    # The summary covers the whole run; "skipped" says how much an earlier attempt had finished.
    assert summary["total"] == 300 and summary["skipped"] == len(first)
    assert summary["succeeded"] == 300 and summary["failed"] == 0 and summary["ran"] == 300 - len(first)
    # Every item recorded exactly once, in the same run row; finished items were not re-run.
    keys = [k for k, _ in recorded(tmp_path)]
    assert sorted(keys) == [f"item{i:04d}" for i in range(300)]
    executions = Counter(log.read_text().split())
    assert all(executions[k] == 1 for k in first)
    assert [r["state"] for r in runs(tmp_path)] == ["succeeded"]


def test_sigint_stops_cleanly_with_exit_130(tmp_path, env, job, items):
    proc = start(["run", str(job), "--input", str(items), "--workers", "2", "--chunk-size", "5"], env, tmp_path)
    wait_until(lambda: len(recorded(tmp_path)) >= 10, what="10 recorded items")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "stopped by SIGINT" in err and "Traceback" not in err


@pytest.mark.parametrize("kill_after", [15, 120])
def test_kill_9_of_the_process_group_then_resume_records_every_item_exactly_once(
        tmp_path, env, job, items, kill_after):
    log = tmp_path / "executions.log"
    args = ["run", str(job), "--input", str(items), "--backend", "process", "--workers", "2",
            "--chunk-size", "5", "--delay", "0.01", "--log", str(log)]
    proc = start(args, env, tmp_path)
    wait_until(lambda: len(recorded(tmp_path)) >= kill_after, timeout=60, what=f"{kill_after} recorded items")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = dict(recorded(tmp_path))
    assert kill_after <= len(before) < 300

    # The dead run's lock never blocks, and --resume continues the same run row.
    again = run([*args, "--resume", "--json"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["skipped"] == len(before) and summary["ran"] == 300 - len(before)
    assert summary["succeeded"] == 300 and summary["total"] == 300
    rows = recorded(tmp_path)
    assert len(rows) == 300 and sorted(k for k, _ in rows) == [f"item{i:04d}" for i in range(300)]
    assert all(ok == 1 for _, ok in rows)
    (row,) = runs(tmp_path)
    assert row["state"] == "succeeded" and row["resumes"] == 1
    # Items executed twice are at most those in flight when the group died:
    # 2 workers x 2 chunks in flight x 5 items per chunk.
    executions = Counter(log.read_text().split())
    twice = [k for k, n in executions.items() if n > 1]
    assert len(twice) <= 20, twice
    assert not set(twice) & {k for k in before}


def test_second_run_exits_75_naming_the_holder_and_wait_lock_waits(tmp_path, env, job, items):
    args = ["run", str(job), "--input", str(items), "--workers", "2", "--delay", "0.01"]
    first = start(args, env, tmp_path)
    wait_until(lambda: len(recorded(tmp_path)) >= 1, what="the first run to start")
    t0 = time.monotonic()
    second = run(args, env, tmp_path)
    assert second.returncode == 75, second.stderr
    assert f"pid {first.pid}" in second.stderr and "started 20" in second.stderr
    assert second.stderr.count("\n") == 1 and time.monotonic() - t0 < 15
    # Different arguments are a different run: not blocked.
    other = run(["run", str(job), "--input", str(items), "--delay", "0", "--no-progress", "-q"], env, tmp_path)
    assert other.returncode == 0, other.stderr
    waiting = run([*args, "--wait-lock", "60", "--json"], env, tmp_path)
    assert first.wait(timeout=60) == 0
    assert waiting.returncode == 0, waiting.stderr
    assert json.loads(waiting.stdout)["succeeded"] == 300
    # The refused run left no trace in the journal: three runs (first, other, waiting).
    assert len(runs(tmp_path)) == 3


def test_retry_failed_reruns_only_the_items_that_failed(tmp_path, env, job, items):
    fail_file = tmp_path / "fail.txt"
    fail_file.write_text("item0003 item0150\n")
    log = tmp_path / "executions.log"
    args = ["run", str(job), "--input", str(items), "--delay", "0", "--log", str(log),
            "--fail-file", str(fail_file), "--json"]
    first = run(args, env, tmp_path)
    assert first.returncode == 1
    assert json.loads(first.stdout)["failed"] == 2
    fail_file.write_text("")
    log.unlink()
    second = run([*args, "--retry-failed"], env, tmp_path)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert (summary["succeeded"], summary["failed"], summary["skipped"], summary["total"]) == (300, 0, 298, 300)
    assert summary["ran"] == 2
    assert sorted(log.read_text().split()) == ["item0003", "item0150"]
    assert all(ok == 1 for _, ok in recorded(tmp_path)) and len(recorded(tmp_path)) == 300


def test_resume_with_nothing_unfinished_starts_a_new_run(tmp_path, env, job, items):
    args = ["run", str(job), "--input", str(items), "--delay", "0", "--json"]
    assert run(args, env, tmp_path).returncode == 0
    again = run([*args, "--resume"], env, tmp_path)
    assert again.returncode == 0
    summary = json.loads(again.stdout)
    assert not summary["resumed"] and summary["succeeded"] == 300 and summary["skipped"] == 0
    assert "starting a new run" in again.stderr
    assert len(runs(tmp_path)) == 2


def test_no_journal_records_nothing(tmp_path, env, job, items):
    result = run(["run", str(job), "--input", str(items), "--delay", "0", "--no-journal", "--json"], env, tmp_path)
    assert result.returncode == 0
    assert json.loads(result.stdout)["run_id"] is None
    assert not db_path(tmp_path).exists() or recorded(tmp_path) == []


def test_unusable_journal_exits_3_with_one_line(tmp_path, env, job, items):
    home = tmp_path / "home"
    home.mkdir()
    (home / "batchkit.db").write_text("this is not a database\n" * 100)
    result = run(["run", str(job), "--input", str(items), "--delay", "0"], env, tmp_path)
    assert result.returncode == 3
    assert result.stderr.strip().count("\n") == 0 and "batchkit.db is unusable" in result.stderr
    assert "--no-journal" in result.stderr and "Traceback" not in result.stderr
    assert run(["run", str(job), "--input", str(items), "--delay", "0", "--no-journal", "-q"],
               env, tmp_path).returncode == 0


def test_interrupted_checksum_resumes_into_a_complete_manifest(tmp_path, env):
    root = tmp_path / "data"
    root.mkdir()
    for i in range(40):
        (root / f"a{i:03d}").write_text(f"small {i}\n")
    with open(root / "m-big", "wb") as f:  # sparse: slow enough to be in flight when the signal comes
        f.truncate(150 * 2**20)
    for i in range(40):
        (root / f"z{i:03d}").write_text(f"late {i}\n")
    args = ["run", "checksum", "data", "--manifest", "data.sha256", "--workers", "1", "--chunk-size", "1"]
    proc = start(args, env, tmp_path)
    wait_until(lambda: len(recorded(tmp_path)) >= 40, timeout=60, what="the small files")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert not (tmp_path / "data.sha256").exists()  # an interrupted run writes no manifest
    done_before = len(recorded(tmp_path))
    assert done_before < 81

    again = run([*args, "--resume", "--json"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["skipped"] == done_before
    manifest = (tmp_path / "data.sha256").read_text().splitlines()
    # The manifest covers items from both attempts, in the walk's order, and checks out.
    assert [line.split("  ", 1)[1] for line in manifest] == sorted(f"data/{p.name}" for p in root.iterdir())
    check = subprocess.run(["sha256sum", "-c", "--quiet", "data.sha256"], cwd=tmp_path, capture_output=True)
    assert check.returncode == 0, check.stdout


def test_a_failed_finishing_step_is_journaled_as_an_error_and_can_be_resumed(tmp_path, env):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(5):
        (data / f"f{i}").write_text(str(i))
    (tmp_path / "a-file").write_text("")
    nowhere = tmp_path / "a-file" / "sums.sha256"  # the manifest cannot be written there
    result = run(["run", "checksum", str(data), "--manifest", str(nowhere), "--backend", "serial"], env, tmp_path)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    (last,) = runs(tmp_path)
    assert result.stderr.count("\n") == 1 and "cannot write --manifest" in result.stderr
    assert last["state"] == "error" and "cannot write --manifest" in (last["message"] or "")
    assert (last["succeeded"], last["failed"]) == (5, 0)  # every item is recorded all the same
    assert len(recorded(tmp_path)) == 5
    # Once the manifest can be written, --resume runs only the finishing step, with every item.
    good = tmp_path / "sums.sha256"
    again = run(["run", "checksum", str(data), "--manifest", str(nowhere), "--backend", "serial", "--resume",
                 "--json"], env, tmp_path)
    assert again.returncode == 3  # still unwritable: still resumable
    (tmp_path / "a-file").unlink()
    (tmp_path / "a-file").mkdir()
    done = run(["run", "checksum", str(data), "--manifest", str(nowhere), "--backend", "serial", "--resume",
                "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["ran"] == 0 and summary["skipped"] == 5 and summary["succeeded"] == 5
    assert len(nowhere.read_text().splitlines()) == 5 and not good.exists()
