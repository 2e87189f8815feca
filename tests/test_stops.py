"""Stopping a run the way users do: Ctrl-C in a terminal and a service manager's stop reach the whole
process group; a closed terminal sends SIGHUP. A stop is never a failure of any item: the run is
recorded as interrupted, says how to resume, and --resume finishes it with every item exactly once."""

from __future__ import annotations

import http.server
import json
import os
import pty
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import PY, python_env
from faults_support import items_recorded, query

SLOW_JOB = '''
import os, time
import batchkit as bk

@bk.job
def slow(item: str, delay: float = 0.05, log: str = "") -> str:
    """Sleep per item; log each execution."""
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, (item + "\\n").encode())
        os.close(fd)
    time.sleep(delay)
    return item.upper()
'''
N = 200


@pytest.fixture
def project(tmp_path):
    (tmp_path / "slow.py").write_text(SLOW_JOB)
    (tmp_path / "items.txt").write_text("".join(f"item{i:04d}\n" for i in range(N)))
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    return tmp_path, env


def journal_rows(tmp_path: Path, sql: str, args: tuple = ()) -> list:
    return query(tmp_path / "home" / "batchkit.db", sql, args)


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start(args, env, cwd, **kw):
    # Its own session and process group, like a terminal's job or a systemd unit.
    return subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)


def run_args(tmp_path, backend, workers=2, chunk=2):
    return [PY, "-m", "batchkit", "run", "slow.py", "--input", "items.txt", "--backend", backend,
            "--workers", str(workers), "--chunk-size", str(chunk), "--log", str(tmp_path / "ran.log")]


def assert_resumes_to_exactly_once(tmp_path, env, args, before: set[str]):
    again = subprocess.run([*args, "--resume", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (N, N, 0)
    keys = [k for (k,) in journal_rows(tmp_path, "SELECT key FROM items")]
    assert sorted(keys) == [f"item{i:04d}" for i in range(N)]  # each item recorded exactly once
    ran = Counter((tmp_path / "ran.log").read_text().split())
    assert not [k for k in before if ran[k] > 1]  # what was recorded never ran again


@pytest.mark.parametrize("signame, backend", [
    ("SIGINT", "serial"), ("SIGINT", "process"), ("SIGINT", "dask"),
    ("SIGTERM", "thread"), ("SIGTERM", "process"), ("SIGTERM", "dask"),
    ("SIGHUP", "process"),
])
def test_a_signal_to_the_process_group_stops_cleanly_and_resume_finishes(project, signame, backend):
    tmp_path, env = project
    args = run_args(tmp_path, backend)
    proc = start(args, env, tmp_path)
    wait_for(lambda: len(journal_rows(tmp_path, "SELECT key FROM items")) >= 20, what="20 recorded items")
    os.killpg(proc.pid, getattr(signal, signame))
    _, err = proc.communicate(timeout=60)
    sig = getattr(signal, signame)
    assert proc.returncode == 128 + sig, err
    assert f"stopped by {signame}" in err and "Resume with: batchkit run" in err and "--resume" in err
    assert "Traceback" not in err and "Error" not in err.replace("error: stopped", "")
    ((state, message, failed),) = journal_rows(tmp_path, "SELECT state, message, failed FROM runs")
    assert (state, message, failed) == ("interrupted", f"stopped by {signame}", 0)
    assert journal_rows(tmp_path, "SELECT COUNT(*) FROM failures") == [(0,)]
    before = {k for (k,) in journal_rows(tmp_path, "SELECT key FROM items")}
    assert 20 <= len(before) < N
    assert_resumes_to_exactly_once(tmp_path, env, args, before)


def test_ctrl_c_typed_in_a_terminal_stops_the_process_backend_cleanly(project):
    tmp_path, env = project
    args = run_args(tmp_path, "process")
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session leader whose controlling terminal is the pty
        os.chdir(tmp_path)
        os.execve(args[0], args, env)
    out = b""
    try:
        wait_for(lambda: len(journal_rows(tmp_path, "SELECT key FROM items")) >= 20, what="20 recorded items")
        os.write(fd, b"\x03")  # the terminal turns ^C into SIGINT for its whole foreground group
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    text = out.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 130, text
    assert "stopped by SIGINT" in text and "--resume" in text and "Traceback" not in text
    assert journal_rows(tmp_path, "SELECT state FROM runs") == [("interrupted",)]


def test_sigterm_with_one_worker_never_records_the_item_in_flight_and_the_manifest_is_complete(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3000):
        (data / f"f{i:05d}").write_text(f"{i}\n" * 50)
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    args = [PY, "-m", "batchkit", "run", "checksum", "data", "--manifest", "SUMS", "--workers", "1",
            "--chunk-size", "1"]
    proc = start(args, env, tmp_path)
    wait_for(lambda: len(journal_rows(tmp_path, "SELECT key FROM items")) >= 50, what="50 hashed files")
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert journal_rows(tmp_path, "SELECT COUNT(*) FROM failures") == [(0,)]  # no WorkerCrashed
    assert journal_rows(tmp_path, "SELECT state, message FROM runs") == [("interrupted", "stopped by SIGTERM")]
    again = subprocess.run([*args, "--resume"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    lines = (tmp_path / "SUMS").read_text().splitlines()
    assert len(lines) == 3000
    check = subprocess.run(["sha256sum", "-c", "--quiet", "SUMS"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_exec_stopped_by_ctrl_c_records_no_failure_and_kill_9_leaves_no_command(tmp_path):
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    (tmp_path / "items.txt").write_text("".join(f"{i}\n" for i in range(40)))
    pids = tmp_path / "pids"
    pids.mkdir()
    cmd = f"echo $$ > {pids}/$$; sleep 0.3; : {{}}"  # the item is a no-op argument
    args = [PY, "-m", "batchkit", "exec", cmd, "--input", "items.txt", "--workers", "2", "--chunk-size", "1"]
    proc = start(args, env, tmp_path)
    wait_for(lambda: len(journal_rows(tmp_path, "SELECT key FROM items")) >= 4, what="4 commands done")
    os.killpg(proc.pid, signal.SIGINT)  # the commands get the terminal's SIGINT too
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert journal_rows(tmp_path, "SELECT COUNT(*) FROM failures") == [(0,)]
    assert "Resume with: batchkit exec" in err
    resumed = subprocess.run([*args, "--resume", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.splitlines()[-1])["succeeded"] == 40

    # kill -9 of batchkit's whole group: no command outlives it (they would sleep 60 s).
    import psutil

    for p in pids.iterdir():
        p.unlink()
    long_cmd = f"echo $$ > {pids}/$$; sleep 60; : {{}}"
    proc = start([PY, "-m", "batchkit", "exec", long_cmd, "--input", "items.txt", "--workers", "2", "--no-journal"],
                 env, tmp_path)
    wait_for(lambda: len(list(pids.iterdir())) >= 2, what="commands started")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)

    def running(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    wait_for(lambda: not any(running(int(p.name)) for p in pids.iterdir()), timeout=10, what="no command left")


SCRIPT = textwrap.dedent('''
    import sys, time
    import batchkit as bk

    def slow(x):
        time.sleep(0.05)
        return x * 2

    print("started", flush=True)
    if sys.argv[1] == "run":
        report = bk.run(slow, range(400), backend=sys.argv[2], workers=2, chunk_size=2, progress=False,
                        journal=sys.argv[3], resume=True, name="script")
        print("values", len(report.values()), report.values()[:3], report.skipped, flush=True)
    else:
        with bk.imap(slow, range(400), backend=sys.argv[2], workers=2, chunk_size=2, progress=False,
                     journal=sys.argv[3], resume=True, name="script") as outcomes:
            n = sum(1 for _ in outcomes)
        print("streamed", n, outcomes.report.skipped, flush=True)
''')  # no `if __name__ == "__main__":` guard, as scripts often have none


@pytest.mark.parametrize("api, backend", [("run", "process"), ("imap", "thread"), ("run", "dask")])
def test_ctrl_c_stops_bk_run_and_imap_in_a_script_and_resume_continues(tmp_path, api, backend):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    db = str(tmp_path / "j.db")
    env = python_env()
    proc = start([PY, str(script), api, backend, db], env, tmp_path)
    assert proc.stdout.readline().strip() == "started"

    wait_for(lambda: items_recorded(db) >= 20, what="20 recorded items")
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (-signal.SIGINT, 130), err  # an uncaught KeyboardInterrupt
    assert "KeyboardInterrupt" in err and "resume=True" in err
    assert "BackendError" not in err and "WorkerCrashed" not in err
    con = sqlite3.connect(db)
    assert con.execute("SELECT state FROM runs").fetchall() == [("interrupted",)]
    done = con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    assert con.execute("SELECT COUNT(*) FROM failures").fetchone()[0] == 0
    con.close()
    again = subprocess.run([PY, str(script), api, backend, db], env=env, cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    if api == "run":  # the whole run's values, earlier ones included, in input order
        assert f"values 400 [0, 2, 4] {done}" in again.stdout
    else:  # a stream yields what this attempt runs; the report counts the rest
        assert f"streamed {400 - done} {done}" in again.stdout


class _Hanging(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server API
        time.sleep(30)

    do_POST = do_GET

    def log_message(self, *args):
        pass


def test_a_signal_while_end_of_run_pings_wait_keeps_the_run_succeeded(project):
    tmp_path, env = project
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hanging)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "few.txt").write_text("a\nb\n")
        proc = start([PY, "-m", "batchkit", "run", "slow.py", "--input", "few.txt", "--backend", "thread",
                      "--ping", f"http://127.0.0.1:{server.server_port}/check"], env, tmp_path)
        wait_for(lambda: journal_rows(tmp_path, "SELECT state FROM runs") == [("succeeded",)], what="the run's end")
        os.killpg(proc.pid, signal.SIGTERM)  # the end-of-run ping is still waiting (up to 2 s)
        _, err = proc.communicate(timeout=30)
    finally:
        server.shutdown()
    assert proc.returncode == 143, err
    assert "Aborted" not in err and "Traceback" not in err
    assert journal_rows(tmp_path, "SELECT state FROM runs") == [("succeeded",)]  # unchanged


def test_sigterm_ends_a_thread_run_with_a_stuck_item_within_the_grace_period(project):
    tmp_path, env = project
    (tmp_path / "one.txt").write_text("stuck\n")
    proc = start([PY, "-m", "batchkit", "run", "slow.py", "--input", "one.txt", "--backend", "thread",
                  "--delay", "120", "--log", str(tmp_path / "ran.log")], env, tmp_path)
    wait_for(lambda: (tmp_path / "ran.log").exists(), what="the item to start")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert time.monotonic() - t0 < 20  # the grace period (5 s) and clean-up, not the item's 120 s
    assert journal_rows(tmp_path, "SELECT state FROM runs") == [("interrupted",)]


def test_output_to_a_closed_pipe_stops_like_sigpipe_and_resumes(project):
    tmp_path, env = project
    shell = (f"{sys.executable} -m batchkit run slow.py --input items.txt --backend thread --delay 0.01 "
             "--output - | head -2")
    res = subprocess.run(["bash", "-o", "pipefail", "-c", shell], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert len(res.stdout.splitlines()) == 2
    assert res.returncode == 141, res.stderr  # as a shell reports SIGPIPE
    assert "BrokenPipe" not in res.stderr and "error" not in res.stderr.lower()
    assert journal_rows(tmp_path, "SELECT state FROM runs") == [("interrupted",)]
    history = subprocess.run(["bash", "-c", f"{sys.executable} -m batchkit history | head -1"], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert history.stderr == "" and history.stdout.startswith("RUN")
