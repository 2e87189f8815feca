"""Issue 11, items 10 and 13: a full disk under the journal or under ``--output``, a read-only home,
and the files a run killed with -9 leaves in /dev/shm.

Real file systems: a small tmpfs mounted for the test (skipped, with the reason, where mounting is
not allowed), remounted larger ("space freed") or read-only; real ``kill -9`` of a process group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from conftest import PY, python_env
from faults_support import error_lines, make_project, query, run, wait_until

N = 12_000  # long items: enough rows to fill a 1 MB file system several times over


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def tmpfs(tmp_path):
    """``make(name, size)``: a tmpfs of ``size`` mounted at ``tmp_path / name``; unmounted afterwards."""
    mounted: list[Path] = []

    def make(name: str, size: str = "1m") -> Path:
        where = tmp_path / name
        where.mkdir()
        if os.name != "posix" or not hasattr(os, "geteuid") or os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root (a full disk cannot be made otherwise)")
        done = _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where))
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield make
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def remount(where: Path, options: str) -> None:
    done = _mount("-o", f"remount,{options}", str(where))
    assert done.returncode == 0, done.stderr


@pytest.fixture
def long_items(tmp_path):
    job, _, env = make_project(tmp_path, 1)
    items = tmp_path / "long.txt"
    items.write_text("".join(f"item{i:06d}-{'v' * 150}\n" for i in range(N)))
    return job, items, env


def test_a_full_disk_under_the_journal_stops_with_exit_3_one_line_true_counts_and_resumes(tmpfs, long_items):
    job, items, env = long_items
    home = tmpfs("home")
    env["BATCHKIT_HOME"] = str(home)
    args = ["run", f"{job}:slow", "--input", str(items), "--delay", "0", "--chunk-size", "200", "--no-progress",
            "--json"]
    full = run(args, env, home.parent)
    assert full.returncode == 3, full.stderr
    (line,) = error_lines(full.stderr)
    assert "the disk is full" in line and "--resume" in line and "Traceback" not in full.stderr
    summary = json.loads(full.stdout)
    journaled = query(home / "batchkit.db", "SELECT COUNT(*) FROM items")[0][0]
    assert summary["state"] == "error" and summary["succeeded"] == journaled and 0 < journaled < N

    remount(home, "size=64m")  # space freed
    again = run([*args, "--resume"], env, home.parent)
    assert again.returncode == 0, again.stderr
    done = json.loads(again.stdout)
    assert done["run_id"] == summary["run_id"] and (done["skipped"], done["succeeded"]) == (journaled, N)
    assert query(home / "batchkit.db", "SELECT COUNT(DISTINCT key), COUNT(*) FROM items") == [(N, N)]


def test_a_full_disk_under_output_stops_with_exit_3_one_line_and_resumes_into_a_complete_file(
        tmpfs, long_items, tmp_path):
    job, items, env = long_items
    where = tmpfs("out")
    out = where / "out.jsonl"
    args = ["run", f"{job}:slow", "--input", str(items), "--delay", "0", "--chunk-size", "200", "--output", str(out),
            "--no-progress", "--json"]
    full = run(args, env, tmp_path)
    assert full.returncode == 3, full.stderr
    (line,) = error_lines(full.stderr)
    assert f"cannot write --output {out}: the disk is full" in line and "Traceback" not in full.stderr
    summary = json.loads(full.stdout)
    journaled = query(tmp_path / "home" / "batchkit.db", "SELECT COUNT(*) FROM items")[0][0]
    assert summary["succeeded"] == journaled < N

    remount(where, "size=64m")
    again = run([*args, "--resume"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["index"] for x in lines] == list(range(N))  # each item once, in order; no torn line
    assert all(x["value"] == x["key"].upper() for x in lines)


def test_a_read_only_home_still_shows_history_and_runs_without_a_journal(tmpfs, tmp_path):
    job, items, env = make_project(tmp_path, 20)
    home = tmpfs("home", "4m")
    env["BATCHKIT_HOME"] = str(home)
    fail = tmp_path / "fail.txt"
    fail.write_text("item0007\n")
    first = run(["run", f"{job}:slow", "--input", str(items), "--delay", "0", "--fail-file", str(fail), "-q"],
                env, tmp_path)
    assert first.returncode == 1, first.stderr
    remount(home, "ro")
    before = sorted((p.relative_to(home), p.stat().st_mtime_ns) for p in home.rglob("*"))

    history = run(["history"], env, tmp_path)
    assert history.returncode == 0 and "slow" in history.stdout and "failed" in history.stdout, history.stderr
    assert json.loads(run(["history", "--json"], env, tmp_path).stdout)[0]["failed"] == 1
    shown = run(["show", "1"], env, tmp_path)
    assert shown.returncode == 0 and "item0007: ValueError" in shown.stdout, shown.stderr
    status = run(["status"], env, tmp_path)
    assert status.returncode == 0 and "no runs in progress" in status.stdout, status.stderr

    loose = run(["run", f"{job}:slow", "--input", str(items), "--delay", "0", "--no-journal", "--json"],
                env, tmp_path)
    assert loose.returncode == 0, loose.stderr
    assert json.loads(loose.stdout)["succeeded"] == 20 and error_lines(loose.stderr) == []
    refused = run(["run", f"{job}:slow", "--input", str(items), "--delay", "0"], env, tmp_path)
    assert refused.returncode == 3 and "Traceback" not in refused.stderr
    (line,) = error_lines(refused.stderr)
    assert "read-only" in line.lower() or "read only" in line.lower()
    assert sorted((p.relative_to(home), p.stat().st_mtime_ns) for p in home.rglob("*")) == before


KILLED_RUN = textwrap.dedent("""
    import threading, time, batchkit as bk
    # Another thread: the workers start loky's way (named semaphores); a single-threaded process
    # forks them, and a forked pool's semaphores are unlinked at once (nothing left to sweep).
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    bk.run(time.sleep, [0.05] * 2000, backend="process", workers=2, chunk_size=5, progress=False)
""")


def test_loky_semaphores_left_by_a_process_run_killed_with_9_are_removed_by_the_next_run():
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        pytest.skip("no writable /dev/shm: loky's semaphores live elsewhere")
    env = python_env()
    leftovers = []
    for _ in range(2):  # two runs killed: each leaves its own
        proc = subprocess.Popen([PY, "-c", KILLED_RUN], env=env, start_new_session=True)
        mine = f"sem.loky-{proc.pid}-"
        beacon = f"batchkit-beacon-{proc.pid}-"
        wait_until(lambda beacon=beacon: any(n.startswith(beacon) for n in os.listdir(shm)), what="the workers")
        time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        left = [n for n in os.listdir(shm) if n.startswith(mine)]
        assert left, "the killed run left no semaphore: nothing to test"
        leftovers += left
    follow = subprocess.run([PY, "-c", "import batchkit as bk; bk.run(abs, [1, -2], backend='process', workers=1, "
                             "progress=False)"], env=env, timeout=60, capture_output=True, text=True)
    assert follow.returncode == 0, follow.stderr
    assert set(leftovers).isdisjoint(os.listdir(shm))
