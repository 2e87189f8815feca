"""Options mean the same everywhere: durations as text from Python, the default worker count under
CPU affinity (``taskset``) and a cgroup CPU quota, and the counts a resumed run shows (log progress,
``history``, ``show``, the exit code) covering the whole run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

import batchkit as bk
from batchkit.options import cpu_count

from conftest import PY, python_env
from faults_support import items_recorded as recorded


def nap(x):
    time.sleep(x)
    return x


# -- durations ------------------------------------------------------------------------------------

def test_durations_as_text_work_from_python_as_on_the_command_line():
    report = bk.run(nap, [0.0, 3.0], backend="thread", workers=2, timeout="0.5s",
                    retry=bk.Retry(attempts=2, backoff="0s", max_backoff="1m"), progress=False)
    assert report.outcomes[0].ok
    assert not report.outcomes[1].ok and report.outcomes[1].error.kind == "timeout"
    retry = bk.Retry(backoff="1s", max_backoff="2m")
    assert (retry.backoff, retry.max_backoff) == (1.0, 120.0)
    assert bk.RunOptions.build(timeout="30s").timeout == 30.0


@pytest.mark.parametrize("call, expect", [
    (lambda: bk.run(nap, [0], backend="serial", timeout="soon"), "cannot read 'soon' as a duration"),
    (lambda: bk.run(nap, [0], backend="serial", timeout="0s"), "timeout='0s'"),
    (lambda: bk.Retry(backoff="fast"), "cannot read 'fast' as a duration"),
    (lambda: bk.Retry(backoff=True), "Retry(backoff=True)"),
])
def test_a_bad_duration_is_one_usage_error_saying_what_to_write(call, expect):
    with pytest.raises(bk.UsageError) as info:
        call()
    assert expect in str(info.value) and "\n" not in str(info.value)


# -- how many workers by default ------------------------------------------------------------------

COUNT_WORKERS = '''
import time
import psutil
import batchkit as bk

def nap(x):
    time.sleep(0.02)
    return x

seen = 0
for outcome in bk.imap(nap, range(40), backend="process", chunk_size=1, progress=False):
    if outcome.index == 20:  # mid-run: the pool is up
        # the worker processes, forked or started by loky (not loky's resource tracker)
        seen = sum("resource_tracker" not in " ".join(p.cmdline()) for p in psutil.Process().children())
print(seen)
'''


def workers_started(tmp_path, prefix=(), **env) -> int:
    script = tmp_path / "count_workers.py"
    script.write_text(COUNT_WORKERS)
    proc = subprocess.run([*prefix, PY, str(script)], capture_output=True, text=True, timeout=90,
                          env={**python_env(), **env}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1])


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is a Linux feature")
def test_the_default_worker_count_follows_cpu_affinity(tmp_path):
    taskset = subprocess.run(["which", "taskset"], capture_output=True, text=True).stdout.strip()
    if not taskset:
        pytest.skip("taskset is not installed")
    assert workers_started(tmp_path, prefix=(taskset, "-c", "0")) == 1
    if len(os.sched_getaffinity(0)) >= 2:  # the same script without taskset uses more: the count is not fixed
        assert workers_started(tmp_path) == min(len(os.sched_getaffinity(0)), 40)


def fake_cgroup(root, *, v2: str | None = None, v1: tuple[int, int] | None = None) -> str:
    root.mkdir(parents=True, exist_ok=True)
    if v2 is not None:
        (root / "cpu.max").write_text(v2 + "\n")
    if v1 is not None:
        (root / "cpu").mkdir()
        (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{v1[0]}\n")
        (root / "cpu" / "cpu.cfs_period_us").write_text(f"{v1[1]}\n")
    return str(root)


@pytest.mark.parametrize("v2, v1, cpus", [
    ("200000 100000", None, 2),     # a container limited to 2 CPUs
    ("100000 100000", None, 1),
    ("50000 100000", None, 1),      # half a CPU still gets one worker
    ("150000 100000", None, 2),
    ("max 100000", None, None),     # no quota: the CPUs this process may use
    (None, (100000, 100000), 1),    # cgroup v1
    (None, (-1, 100000), None),
])
def test_the_default_worker_count_follows_a_cgroup_cpu_quota(tmp_path, monkeypatch, v2, v1, cpus):
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    monkeypatch.setenv("BATCHKIT_CGROUP_ROOT", fake_cgroup(tmp_path / "cgroup", v2=v2, v1=v1))
    assert cpu_count() == (allowed if cpus is None else min(cpus, allowed))


def test_a_process_run_in_a_one_cpu_container_starts_one_worker(tmp_path):
    root = fake_cgroup(tmp_path / "cgroup", v2="100000 100000")
    assert workers_started(tmp_path, BATCHKIT_CGROUP_ROOT=root) == 1


# -- a resumed run's counts -----------------------------------------------------------------------

def double(x):
    time.sleep(0.002)
    return 2 * x


def progress_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("resumable:")]


@pytest.mark.parametrize("items", [list, iter], ids=["list", "generator"])
def test_resumed_log_progress_counts_only_this_attempts_items_and_ends_at_n_of_n(items, tmp_path, monkeypatch,
                                                                                  capsys):
    monkeypatch.setenv("BATCHKIT_PROGRESS_INTERVAL", "0")  # a line per chunk
    journal = tmp_path / "j.db"
    with bk.imap(double, items(range(100)), backend="thread", workers=2, chunk_size=5, journal=journal,
                 name="resumable", progress=False) as outcomes:
        for outcome in outcomes:
            if outcome.index == 49:
                break  # leaving the block stops the run: 50 items are recorded
    capsys.readouterr()
    report = bk.run(double, items(range(100)), backend="thread", workers=2, chunk_size=5, journal=journal,
                    resume=True, name="resumable", desc="resumable", progress="log")
    assert report.skipped == 50 and report.succeeded == 100
    lines = progress_lines(capsys.readouterr().err)
    assert lines, "no progress lines"
    assert lines[-1].startswith("resumable: 50/50 (100%), 0 failed, 50 skipped"), lines
    assert not any("/-" in line or "/100" in line for line in lines), lines
    counts = [int(re.match(r"resumable: (\d+)", line).group(1)) for line in lines]
    assert counts == sorted(set(counts)), f"a line printed twice: {lines}"
    assert "ETA" not in lines[0], lines[0]


def test_the_last_log_line_is_not_repeated_when_the_run_ends(monkeypatch, capsys):
    monkeypatch.setenv("BATCHKIT_PROGRESS_INTERVAL", "0")
    bk.run(double, range(40), backend="thread", workers=2, chunk_size=10, desc="resumable", progress="log")
    lines = progress_lines(capsys.readouterr().err)
    assert [line.split(",")[0] for line in lines] == ["resumable: 10/40 (25%)", "resumable: 20/40 (50%)",
                                                      "resumable: 30/40 (75%)", "resumable: 40/40 (100%)"]
    assert "ETA" not in lines[0] and all("ETA" in line for line in lines[1:])


SLOW_JOB = '''
import time
import batchkit as bk

@bk.job(backend="thread")
def slow(item: str, fail: str = "") -> str:
    """Sleep a little; fail the item named by --fail."""
    time.sleep(0.03)
    if item == fail:
        raise ValueError(item + " told to fail")
    return item
'''



def test_a_run_interrupted_then_resumed_counts_the_whole_run_in_history_show_and_exit_code(tmp_path):
    env = {**python_env(), "BATCHKIT_HOME": str(tmp_path / "home")}
    (tmp_path / "slow.py").write_text(SLOW_JOB)
    (tmp_path / "items.txt").write_text("".join(f"{i}\n" for i in range(120)))
    args = [PY, "-m", "batchkit", "run", "slow.py", "--input", "items.txt", "--workers", "2", "--chunk-size", "2",
            "--fail", "3"]
    first = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while recorded(tmp_path / "home" / "batchkit.db") < 30:
        assert time.monotonic() < deadline and first.poll() is None, "the first run did not get going"
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=30)
    assert first.returncode == 143, err
    done_before = recorded(tmp_path / "home" / "batchkit.db")
    assert 30 <= done_before < 120

    # The failure happened in the first attempt: the resumed run, as a whole, failed.
    again = subprocess.run([*args, "--resume"], env={**env, "BATCHKIT_PROGRESS_INTERVAL": "0"}, cwd=tmp_path,
                           capture_output=True, text=True, timeout=90)
    assert again.returncode == 1, again.stderr
    assert "119 succeeded, 1 failed" in again.stdout
    lines = [line for line in again.stderr.splitlines() if line.startswith("slow: ")]
    rest = 120 - done_before
    assert lines[-1].startswith(f"slow: {rest}/{rest} (100%), 0 failed, {done_before} skipped"), lines

    history = json.loads(subprocess.run([PY, "-m", "batchkit", "history", "--json"], env=env, cwd=tmp_path,
                                        capture_output=True, text=True, timeout=60).stdout)
    (run,) = history
    assert (run["state"], run["total"], run["succeeded"], run["failed"], run["skipped"]) == (
        "failed", 120, 119, 1, done_before)
    show = subprocess.run([PY, "-m", "batchkit", "show", str(run["run_id"])], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60).stdout
    assert f"119 succeeded, 1 failed, {done_before} skipped of 120" in show
    assert "3: ValueError: 3 told to fail" in show
