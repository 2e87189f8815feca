"""RunLock: one run at a time across processes, released by the OS when the holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from batchkit.errors import Locked
from batchkit.state.lock import RunLock

from conftest import python_env

HOLD = """import sys, time
from batchkit.state.lock import RunLock
lock = RunLock("nightly", sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
lock.release()
"""


def hold(directory, seconds):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory), str(seconds)], env=python_env(),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


def test_a_second_holder_is_refused_naming_the_first_holders_pid(tmp_path):
    first = hold(tmp_path, 30)
    try:
        with pytest.raises(Locked, match=rf"another run of this job is in progress \(pid {first.pid}, started 20"):
            RunLock("nightly", tmp_path).acquire()
        assert RunLock("other", tmp_path).acquire().held  # another name is another lock
    finally:
        first.kill()
        first.wait()


def test_the_lock_of_a_killed_holder_is_free_at_once(tmp_path):
    first = hold(tmp_path, 60)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    lock = RunLock("nightly", tmp_path).acquire()
    assert lock.holder()["pid"] == os.getpid()
    lock.release()
    assert not lock.holder_path.exists() and lock.path.exists()  # the lock file stays for waiting runs


def test_wait_takes_the_lock_once_the_holder_lets_go(tmp_path):
    first = hold(tmp_path, 1.0)
    lock = RunLock("nightly", tmp_path)
    with pytest.raises(Locked):
        lock.acquire()
    assert lock.acquire(wait=30).held
    assert first.wait(timeout=30) == 0  # it finished its sleep and released: we did not break in
    lock.release()
