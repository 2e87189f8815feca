"""How the process backend starts its workers: by fork where that is safe, loky's way otherwise.

Each test runs a fresh interpreter (a script without a main guard, as users write them), since
whether forking is safe depends on the threads of the whole process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from conftest import python_env

HEADER = textwrap.dedent("""
    import json, os, signal, sys, threading, time
    import batchkit as bk
    from batchkit.backends import process as proc

    def pids(backend):
        return sorted(backend._executor._processes)

    def crash(x):
        if x == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return x * 10

    def slow(x):
        if x == 2:
            time.sleep(30)
        return x
""")


def _run(tmp_path, body: str, timeout: float = 90) -> dict:
    script = tmp_path / "script.py"
    script.write_text(HEADER + textwrap.dedent(body))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=python_env(),
                         cwd=tmp_path, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_single_threaded_script_forks_its_workers_and_keeps_every_behaviour(tmp_path):
    got = _run(tmp_path, """
        print("started", file=sys.stderr)  # printed once: the script is never re-run by a worker
        b = bk.ProcessBackend(2)
        plain = bk.run(lambda x: x + 1, range(10), backend=b, progress=False)
        method, first = b.start_method, pids(b)
        crashed = bk.run(crash, range(8), backend=b, progress=False)
        timed = bk.run(slow, range(4), backend=b, timeout=1, progress=False)
        print(json.dumps({"method": method, "values": plain.values(), "workers": len(first),
                          "crashed": [(o.index, o.error.kind) for o in crashed.failures],
                          "crash_values": [o.value for o in crashed.outcomes if o.ok],
                          "timed": [(o.index, o.error.kind) for o in timed.failures],
                          "timed_values": [o.value for o in timed.outcomes if o.ok],
                          }))
    """)
    assert got["method"] == "fork"
    assert got["values"] == list(range(1, 11)) and got["workers"] == 2
    assert got["crashed"] == [[3, "crash"]] and got["crash_values"] == [0, 10, 20, 40, 50, 60, 70]
    assert got["timed"] == [[2, "timeout"]] and got["timed_values"] == [0, 1, 3]
    # The crash and the timeout's kill broke the pool; the one that replaced it started by fork if this
    # process had a single thread at that moment, else loky's way: either way, every value is right.


def test_a_script_with_another_thread_starts_its_workers_the_loky_way(tmp_path):
    got = _run(tmp_path, """
        stop = threading.Event()
        threading.Thread(target=stop.wait, daemon=True).start()
        b = bk.ProcessBackend(2)
        report = bk.run(lambda x: -x, range(5), backend=b, progress=False)
        stop.set()
        print(json.dumps({"method": b.start_method, "values": report.values()}))
    """)
    assert got == {"method": "loky", "values": [0, -1, -2, -3, -4]}


def test_a_forked_pool_stays_warm_between_runs_and_is_retired_when_idle(tmp_path):
    got = _run(tmp_path, """
        import psutil
        proc.IDLE_TIMEOUT = 1.0
        b = bk.ProcessBackend(2)
        bk.run(abs, range(4), backend=b, progress=False)
        method, first = b.start_method, pids(b)
        b.close()
        b2 = bk.ProcessBackend(2)
        bk.run(abs, range(4), backend=b2, progress=False)
        again = pids(b2)
        b2.close()
        warm = [p.pid for p in psutil.Process().children()]
        for _ in range(200):  # the idle timer stops the pool about a second later
            left = [p for p in again if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
            if not left:
                break
            time.sleep(0.1)
        print(json.dumps({"method": method, "first": first, "again": again, "warm": warm, "left": left,
                          "idle": len(proc._idle)}))
    """)
    assert got["method"] == "fork"
    assert got["first"] == got["again"]  # the second run reused the warm pool's workers
    assert set(got["again"]) <= set(got["warm"])  # still running after the run ended
    assert got["left"] == [] and got["idle"] == 0  # retired once idle for IDLE_TIMEOUT


def test_warm_workers_follow_the_parents_current_directory(tmp_path):
    got = _run(tmp_path, """
        os.makedirs("a", exist_ok=True); os.makedirs("b", exist_ok=True)
        open("a/f.txt", "w").write("in a"); open("b/f.txt", "w").write("in b, longer")
        read = lambda p: open(p).read()
        os.chdir("a")
        first = bk.run(read, ["f.txt"], workers=2, progress=False).values()
        os.chdir("../b")  # the pool stays warm from the first run
        second = bk.run(read, ["f.txt"], workers=2, progress=False).values()
        print(json.dumps([first, second]))
    """)
    assert got == [["in a"], ["in b, longer"]]


def test_a_forked_pool_killed_with_9_leaves_no_named_semaphore(tmp_path):
    import os
    import signal
    import time
    from pathlib import Path

    shm = Path("/dev/shm")
    if not shm.is_dir():
        import pytest

        pytest.skip("no /dev/shm")
    script = tmp_path / "killed.py"
    script.write_text(HEADER + textwrap.dedent("""
        b = bk.ProcessBackend(2)
        bk.run(time.sleep, [0.05] * 2000, backend=b, chunk_size=5, progress=False)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], env=python_env(), start_new_session=True)
    deadline = time.monotonic() + 60
    while not any(n.startswith(f"batchkit-beacon-{proc.pid}-") for n in os.listdir(shm)):
        assert time.monotonic() < deadline, "the workers never started"
        time.sleep(0.05)
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert not [n for n in os.listdir(shm) if n.startswith(f"sem.loky-{proc.pid}-")]


def test_a_short_run_defers_psutil_and_loky_still_kills_a_process_tree(tmp_path):
    # loky imports psutil only to kill a worker's process tree; a short run must not pay its import,
    # and the stand-in loky holds must still kill a child and its grandchild when loky needs it.
    got = _run(tmp_path, """
        import multiprocessing, subprocess
        plain = bk.run(abs, range(-5, 5), progress=False)
        loaded_after_run = "psutil" in sys.modules
        import loky.backend.utils as lu

        def parent_of_one(pipe):
            p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            pipe.send(p.pid)
            time.sleep(60)

        here, there = multiprocessing.Pipe()
        child = multiprocessing.get_context("fork").Process(target=parent_of_one, args=(there,))
        child.start()
        grandchild = here.recv()
        lu.kill_process_tree(child)
        for _ in range(200):
            try:
                os.kill(grandchild, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the grandchild survived kill_process_tree")
        print(json.dumps({"values": plain.values(), "loaded_after_run": loaded_after_run,
                          "loaded_after_kill": "psutil" in sys.modules, "child": child.exitcode}))
    """)
    assert got["values"] == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]
    assert got["loaded_after_run"] is False
    assert got["loaded_after_kill"] is True and got["child"] == -9


def test_a_process_with_other_threads_imports_loky_with_psutil_as_usual(tmp_path):
    # While loky is imported without psutil, `import psutil` fails: only a single-threaded process may
    # do that (no other thread could be importing psutil at that moment).
    got = _run(tmp_path, """
        import queue
        hold = queue.Queue()
        t = threading.Thread(target=hold.get)
        t.start()
        values = bk.run(abs, range(-3, 3), progress=False).values()
        import loky.backend.utils as lu
        print(json.dumps({"values": values, "holds": type(lu.psutil).__name__}))
        hold.put(None)
    """)
    assert got["values"] == [3, 2, 1, 0, 1, 2]
    assert got["holds"] == "module"
