"""What the fault tests of issue 11 share: a small job file, starting ``python -m batchkit`` as a real
process in its own session, and reading the journal file with plain sqlite3."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from conftest import PY, python_env

# A job that sleeps a little per item, logs each execution (O_APPEND: one line per run of an item,
# whichever process runs it), fails the items listed in a file, prints when asked, and may wait at
# its finishing step for a gate file (so a test can act at the exact moment the run closes).
JOB = '''
import os, time
import batchkit as bk

@bk.job(backend="thread")
def slow(item: str, delay: float = 0.02, log: str = "", fail_file: str = "", slow_file: str = "",
         chatty: bool = False) -> str:
    """Sleep a little per item (those listed in slow_file: while they are listed, up to 30 s); log
    each execution; fail the items listed in fail_file; with chatty, print a line per item."""
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, (item + "\\n").encode())
        os.close(fd)
    if chatty:
        print("chatter from", item)
    deadline = time.monotonic() + 30
    while slow_file and item in open(slow_file).read().split() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    if fail_file and os.path.exists(fail_file) and item in open(fail_file).read().split():
        raise ValueError(item + " told to fail")
    return item.upper()


@bk.job(backend="thread")
def gated(item: str, gate: str = "") -> str:
    """Upper-case; the finishing step waits until GATE.go exists (after writing GATE.finishing)."""
    return item.upper()


@gated.finish
def wait_at_the_gate(outcomes, gate: str = "") -> None:
    if gate:
        open(gate + ".finishing", "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(gate + ".go") and time.monotonic() < deadline:
            time.sleep(0.02)
'''


def make_project(tmp_path: Path, n: int = 200) -> tuple[Path, Path, dict]:
    """``(job file, items file, env)`` with ``BATCHKIT_HOME`` under ``tmp_path``."""
    job = tmp_path / "slowjob.py"
    job.write_text(JOB)
    items = tmp_path / "items.txt"
    items.write_text("".join(f"item{i:04d}\n" for i in range(n)))
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    return job, items, env


def start(args: list[str], env: dict, cwd: Path, **kw) -> subprocess.Popen:
    """``python -m batchkit ARGS`` in its own session, so its whole group can be signalled."""
    return subprocess.Popen([PY, "-m", "batchkit", *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def communicate(proc: subprocess.Popen, timeout: float = 30) -> tuple[str, str]:
    """``proc.communicate`` that kills the process group of a run that hangs (then fails the test)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise


def run(args: list[str], env: dict, cwd: Path, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """``python -m batchkit ARGS`` to the end (a hang fails the test at ``timeout``)."""
    return subprocess.run([PY, "-m", "batchkit", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, **kw)


def wait_until(predicate, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def query(db: Path, sql: str, args: tuple = ()) -> list[tuple]:
    """Rows of ``sql`` from the journal file, read-only ([] before its tables exist)."""
    if not db.exists():
        return []
    con = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def items_recorded(db: str | os.PathLike) -> int:
    """How many items the journal file has recorded so far (0 before its tables exist)."""
    rows = query(Path(db), "SELECT COALESCE(SUM(n), 0) FROM chunks")
    return rows[0][0] if rows else 0


def recorded_keys(db: Path) -> list[str]:
    """Every item row's key (all runs)."""
    return [k for (k,) in query(db, "SELECT key FROM items")]


def error_lines(stderr: str) -> list[str]:
    """The lines batchkit printed as errors (``batchkit: error: ...``)."""
    return [line for line in stderr.splitlines() if "error:" in line]


def json_doc(stdout: str) -> dict:
    """stdout parsed as exactly one JSON document (anything else around it fails the test)."""
    return json.loads(stdout)


def executions(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def hold_write_lock(db: Path) -> sqlite3.Connection:
    """A second connection holding ``BEGIN IMMEDIATE`` on the journal (the other writer of the attack)."""
    con = sqlite3.connect(db, timeout=10, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    return con


def env_with(env: dict, **more: str) -> dict:
    e = dict(env)
    e.update(more)
    return e


__all__ = ["JOB", "communicate", "error_lines", "env_with", "executions", "hold_write_lock", "json_doc", "make_project",
           "query", "recorded_keys", "run", "start", "wait_until"]
