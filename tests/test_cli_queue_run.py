"""`batchkit run JOB --queue NAME [--follow]`: consumers side by side, results by id, a --follow consumer
stopped by SIGTERM gives its unfinished items back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from conftest import PY, python_env

JOB = '''
import time
import batchkit as bk

@bk.job(backend="thread")
def square(item: int, delay: float = 0.0) -> int:
    """Square a number; 13 is unlucky."""
    time.sleep(delay)
    if item == 13:
        raise ValueError("13 is unlucky")
    return item * item
'''


def bk(args, env, cwd, **kw):
    return subprocess.run([PY, "-m", "batchkit", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120, **kw)


def test_two_consumers_drain_a_queue_and_results_come_back_by_id(tmp_path):
    (tmp_path / "square.py").write_text(JOB)
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    put = bk(["queue", "put", "nums", *map(str, range(40))], env, tmp_path)
    assert put.returncode == 0, put.stderr
    ids = [int(x) for x in put.stdout.split()]
    consumers = [subprocess.Popen([PY, "-m", "batchkit", "run", "square.py", "--queue", "nums", "--delay", "0.02",
                                   "--workers", "2", "--json"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    summaries = []
    for c in consumers:  # no lock between consumers of one queue: both run
        out, err = c.communicate(timeout=120)
        assert c.returncode in (0, 1), err
        summaries.append(json.loads(out))
    assert sum(s["ran"] for s in summaries) == 40  # each item once, between them
    stats = json.loads(bk(["queue", "stats", "nums", "--json"], env, tmp_path).stdout)
    assert (stats["done"], stats["failed"], stats["pending"], stats["running"]) == (39, 1, 0, 0)
    r = bk(["queue", "result", "nums", str(ids[5]), "--json"], env, tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["value"] == 25
    bad = bk(["queue", "result", "nums", str(ids[13]), "--json"], env, tmp_path)
    assert bad.returncode == 1 and "13 is unlucky" in bad.stdout


def test_a_following_consumer_takes_new_items_and_sigterm_gives_back_the_rest(tmp_path):
    (tmp_path / "square.py").write_text(JOB)
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen([PY, "-m", "batchkit", "run", "square.py", "--queue", "live", "--follow", "--delay",
                             "0.3", "--workers", "1", "--chunk-size", "1"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(1.5)
    ids = [int(x) for x in bk(["queue", "put", "live", "2", "3"], env, tmp_path).stdout.split()]
    waited = bk(["queue", "result", "live", str(ids[1]), "--wait", "30", "--json"], env, tmp_path)
    assert waited.returncode == 0 and json.loads(waited.stdout)["value"] == 9  # arrived while it followed
    bk(["queue", "put", "live", *map(str, range(20, 40))], env, tmp_path)
    time.sleep(0.8)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    stats = json.loads(bk(["queue", "stats", "live", "--json"], env, tmp_path).stdout)
    # Nothing is left claimed by the stopped consumer and nothing failed: the rest waits for the next one.
    assert stats["running"] == 0 and stats["failed"] == 0 and stats["pending"] > 0
    assert stats["done"] + stats["pending"] == 22
