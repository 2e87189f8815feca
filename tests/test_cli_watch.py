"""`batchkit run JOB --files ROOT --watch`: files as they arrive, each complete version once, across a
kill -9 and a restart; SIGTERM stops it cleanly; `batchkit status` shows it while it watches."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time

from conftest import PY, python_env

JOB = '''
import hashlib, json, os, time
import batchkit as bk

@bk.job(backend="thread")
def ingest(path, log: str = "") -> int:
    """Record what each version held when it was processed."""
    data = open(path, "rb").read()
    time.sleep(0.05)
    line = json.dumps({"path": os.path.basename(str(path)), "size": len(data),
                       "sha": hashlib.sha256(data).hexdigest(), "at": time.time()})
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (line + "\\n").encode())
    os.close(fd)
    return len(data)
'''


def seen(log):
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_watch_processes_each_complete_version_once_across_a_kill_and_stops_on_sigterm(tmp_path):
    inbox, log = tmp_path / "inbox", tmp_path / "seen.log"
    inbox.mkdir()
    (tmp_path / "ingest.py").write_text(JOB)
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    for i in range(5):  # present before the start
        (inbox / f"old{i}.csv").write_text(f"old {i}\n" * 10)
    args = [PY, "-m", "batchkit", "run", "ingest.py", "--files", str(inbox), "--watch", "--settle", "0.3",
            "--log", str(log), "--workers", "2"]

    def start():
        return subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)

    final: dict[str, bytes] = {f"old{i}.csv": f"old {i}\n".encode() * 10 for i in range(5)}
    proc = start()
    wait_for(lambda: len(seen(log)) >= 5, what="the files present at start")
    # Written fast; written slowly in pieces (pauses shorter than --settle); renamed into place.
    (inbox / "fast.csv").write_bytes(b"fast\n" * 100)
    final["fast.csv"] = b"fast\n" * 100
    with open(inbox / "slow.csv", "wb") as f:
        for _ in range(8):
            f.write(b"piece\n" * 50)
            f.flush()
            time.sleep(0.1)
    final["slow.csv"] = b"piece\n" * 400
    (inbox / "renamed.csv.part").write_bytes(b"whole\n" * 30)
    os.rename(inbox / "renamed.csv.part", inbox / "renamed.csv")
    final["renamed.csv"] = b"whole\n" * 30
    wait_for(lambda: {s["path"] for s in seen(log)} >= {"fast.csv", "slow.csv", "renamed.csv"}, what="arrivals")
    closed = time.time()
    (inbox / "fast.csv").write_bytes(b"changed\n")  # changed after it was processed: a new version
    final["fast.csv"] = b"changed\n"
    wait_for(lambda: any(s["path"] == "fast.csv" and s["size"] == 8 for s in seen(log)), what="the new version")
    latency = next(s["at"] for s in seen(log) if s["path"] == "fast.csv" and s["size"] == 8) - closed
    assert latency < 0.3 + 2.0  # within settle + 2 s of being complete

    status = subprocess.run([PY, "-m", "batchkit", "status", "--json"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    (running,) = json.loads(status.stdout)
    assert running["job"] == "ingest" and running["done"] >= 9

    os.killpg(proc.pid, signal.SIGKILL)  # a crash: the next start picks up where it was
    proc.communicate(timeout=30)
    before = len(seen(log))
    (inbox / "while_down.csv").write_text("arrived while nobody watched\n")
    final["while_down.csv"] = b"arrived while nobody watched\n"
    proc = start()
    wait_for(lambda: any(s["path"] == "while_down.csv" for s in seen(log)), what="the file that came while down")
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in err

    records = seen(log)
    # Nothing half-written was ever processed: every record is a version the writer had completed.
    complete = {(name, hashlib.sha256(data).hexdigest()) for name, data in final.items()}
    complete |= {("fast.csv", hashlib.sha256(b"fast\n" * 100).hexdigest())}
    assert {(s["path"], s["sha"]) for s in records} <= complete
    # Every final version was processed; after the restart only new versions ran (repeats at most
    # what was in flight at the kill: 2 workers).
    assert {(n, hashlib.sha256(d).hexdigest()) for n, d in final.items()} <= {(s["path"], s["sha"]) for s in records}
    versions = [(s["path"], s["sha"]) for s in records]
    assert len(versions) - len(set(versions)) <= 2
    assert len(records) - before <= 1 + 2
