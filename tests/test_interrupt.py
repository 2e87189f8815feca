"""Ctrl-C and SIGTERM: workers stop promptly, nothing is left behind, finished work is recorded."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from conftest import python_env

SCRIPT = textwrap.dedent("""
    import os, sys, time
    import batchkit as bk

    def slow(x):
        time.sleep(0.2)
        return x

    def main():
        print("pid", os.getpid(), flush=True)
        mode = sys.argv[2]
        try:
            if mode == "graceful":
                from batchkit.interrupt import graceful
                with graceful(grace=3):
                    bk.run(slow, range(10000), backend=sys.argv[1], workers=2, chunk_size=2,
                           progress=False, journal=sys.argv[3])
            else:
                bk.run(slow, range(10000), backend=sys.argv[1], workers=2, chunk_size=2, progress=False)
        except KeyboardInterrupt as exc:
            print("interrupted", type(exc).__name__, getattr(exc, "exit_code", ""), flush=True)
            sys.exit(getattr(exc, "exit_code", 130))

    if __name__ == "__main__":  # dask's spawned processes import this file again
        main()
""")



def _start(tmp_path, backend, mode="plain"):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), backend, mode, str(tmp_path / "j.db")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=python_env())
    assert proc.stdout.readline().startswith("pid")
    return proc


def _wait_for_children(pid, n, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = psutil.Process(pid).children(recursive=True)
        if len(kids) >= n:
            return kids
        time.sleep(0.1)
    return psutil.Process(pid).children(recursive=True)


@pytest.mark.parametrize("backend", ["serial", "thread", "process", "dask"])
def test_ctrl_c_stops_every_worker_and_raises_keyboardinterrupt(tmp_path, backend):
    proc = _start(tmp_path, backend)
    # dask: a LocalCluster's nannies live in the parent; each starts one worker process
    kids = {"process": 2, "dask": 2}.get(backend, 0)
    kids = _wait_for_children(proc.pid, kids) if kids else []
    time.sleep(1.0)  # let items run
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert "interrupted KeyboardInterrupt" in out, err
    assert proc.returncode == 130
    # No orphan: every worker process the run started is gone.
    time.sleep(0.5)
    alive = [k for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]
    assert alive == []


def test_sigterm_under_graceful_records_finished_chunks_and_exits_143(tmp_path):
    import sqlite3

    proc = _start(tmp_path, "process", "graceful")
    time.sleep(2.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert "interrupted Interrupted 143" in out, err
    assert proc.returncode == 143
    db = sqlite3.connect(tmp_path / "j.db")
    (state,) = db.execute("SELECT state FROM runs").fetchone()
    (done,) = db.execute("SELECT COUNT(*) FROM items").fetchone()
    assert state == "interrupted"
    assert 0 < done < 10000


SECOND_SIGINT = textwrap.dedent("""
    import sys, time
    import batchkit as bk
    from batchkit.interrupt import graceful

    def very_slow(x):
        time.sleep(20)
        return x

    if __name__ == "__main__":
        print("ready", flush=True)
        try:
            with graceful(grace=60):
                bk.run(very_slow, range(8), backend="process", workers=2, chunk_size=1, progress=False)
        except KeyboardInterrupt as exc:
            print("stopped", type(exc).__name__, flush=True)
            sys.exit(130)
""")


def test_second_ctrl_c_stops_at_once_without_waiting_for_the_grace_period(tmp_path):
    script = tmp_path / "second.py"
    script.write_text(SECOND_SIGINT)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=python_env())
    assert proc.stdout.readline().strip() == "ready"
    kids = _wait_for_children(proc.pid, 2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)  # first: stop dispatching, wait up to 60 s for the 20 s items
    time.sleep(1.0)
    assert proc.poll() is None  # still waiting for in-flight items, as the first Ctrl-C asks
    proc.send_signal(signal.SIGINT)  # second: stop now
    out, err = proc.communicate(timeout=15)  # far less than the 20 s items or the 60 s grace
    assert "stopped KeyboardInterrupt" in out, err
    assert proc.returncode == 130
    time.sleep(0.5)
    assert [k for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE] == []
