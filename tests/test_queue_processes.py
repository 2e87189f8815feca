"""The queue across real processes: 4 producers at once; 2 consumers (thread and process backends),
one killed with -9 mid-way and restarted; SIGTERM stopping a following consumer cleanly."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

import batchkit as bk

from conftest import PY, python_env

PRODUCER = """
import json, os, sys, time
import batchkit as bk

name, first, count, mode, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
while not os.path.exists(go):   # every producer starts at the same moment
    time.sleep(0.002)
q = bk.Queue(name)
items = list(range(first, first + count))
if mode == "single":
    ids = [q.put(item) for item in items]
else:
    ids = [i for k in range(0, count, 50) for i in q.put_many(items[k:k + 50])]
print(json.dumps(dict(zip(ids, items))))
"""

# A consumer as `batchkit run JOB --queue NAME [--follow]` will run one: the engine over a
# QueueSource, outcomes to a QueueSink, SIGTERM closing the source and stopping the run cleanly.
CONSUMER = """
import os, signal, sys, time
import batchkit as bk
from batchkit.engine.loop import Engine
from batchkit.errors import Interrupted
from batchkit.interrupt import graceful
from batchkit.sources.queue import QueueSink, QueueSource

name, log, backend, follow, seconds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "follow", float(sys.argv[5])


def work(n):
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{os.getpid()} {n}\\n".encode())   # one small write: lines never interleave
    os.close(fd)
    time.sleep(seconds)
    if n % 97 == 0:
        raise ValueError(f"unlucky {n}")
    return 2 * n


source = QueueSource(bk.Queue(name), follow=follow, lease=30)
sink = QueueSink(source)
sink.open(None)
state, code = "error", 3
with graceful():
    stop_run = signal.getsignal(signal.SIGTERM)

    def stop(signum, frame):
        source.close()
        stop_run(signum, frame)

    signal.signal(signal.SIGTERM, stop)
    try:
        engine = Engine(work, source, backend=backend, workers=2, chunk_size=2, on_chunk=sink.chunk, progress=False)
        for _ in engine.chunks():
            pass
        state, code = "succeeded", 0
    except Interrupted as exc:
        state, code = "interrupted", exc.exit_code
    finally:
        sink.close(state)
sys.exit(code)
"""


@pytest.fixture
def scripts(tmp_path: Path) -> dict[str, Path]:
    paths = {"producer": tmp_path / "producer.py", "consumer": tmp_path / "consumer.py"}
    paths["producer"].write_text(PRODUCER)
    paths["consumer"].write_text(CONSUMER)
    return paths


def start_producers(scripts: dict, name: str, go: Path, per: int = 250) -> list[subprocess.Popen]:
    modes = ["single", "bulk", "single", "bulk"]
    return [subprocess.Popen([PY, str(scripts["producer"]), name, str(k * per), str(per), mode, str(go)],
                             env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for k, mode in enumerate(modes)]


def collect(producers: list[subprocess.Popen]) -> dict[int, int]:
    """id -> item, from every producer's output."""
    found: dict[int, int] = {}
    for proc in producers:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        part = {int(k): v for k, v in json.loads(out).items()}
        assert not set(part) & set(found), "an id was given twice"
        found.update(part)
    return found


def start_consumer(scripts: dict, name: str, log: Path, backend: str, follow: bool = False,
                   seconds: float = 0.01) -> subprocess.Popen:
    return subprocess.Popen([PY, str(scripts["consumer"]), name, str(log), backend,
                             "follow" if follow else "drain", str(seconds)],
                            env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def executions(log: Path) -> list[tuple[int, int]]:
    """(pid, item) of every time an item started running."""
    if not log.exists():
        return []
    return [(int(pid), int(n)) for pid, n in (line.split() for line in log.read_text().splitlines())]


@pytest.mark.timeout(120)
def test_four_producer_processes_put_1000_items_at_once_with_unique_ids(scripts, tmp_path):
    go = tmp_path / "go"
    producers = start_producers(scripts, "many", go)
    time.sleep(0.5)  # all four started and waiting
    go.touch()
    by_id = collect(producers)
    assert len(by_id) == 1000 and sorted(by_id.values()) == list(range(1000))
    q = bk.Queue("many")
    assert q.stats() == {"pending": 1000, "running": 0, "done": 0, "failed": 0, "total": 1000}
    assert dict(q.claim(1000, lease=60)) == by_id  # each id holds the item it was given for


@pytest.mark.timeout(120)
def test_two_consumers_one_killed_with_sigkill_and_restarted_finish_every_item_once(scripts, tmp_path):
    name, log, go = "work", tmp_path / "runs.log", tmp_path / "go"
    q = bk.Queue(name)
    producers = start_producers(scripts, name, go)
    go.touch()
    # Drain-and-end consumers, restarted whenever one ends while work remains (as cron would run them).
    slots = {"thread": start_consumer(scripts, name, log, "thread"),
             "process": start_consumer(scripts, name, log, "process")}
    killed: int | None = None
    held_at_kill: set[int] = set()
    ended: list[subprocess.Popen] = []
    deadline = time.monotonic() + 90
    try:
        while True:
            stats = q.stats()
            if stats["done"] + stats["failed"] == 1000:
                break
            assert time.monotonic() < deadline, stats
            for backend, proc in slots.items():
                if proc.poll() is not None:
                    assert proc.returncode == 0, proc.stderr.read()
                    ended.append(proc)
                    slots[backend] = start_consumer(scripts, name, log, backend)
            victim = slots["thread"]
            if killed is None and sum(pid == victim.pid for pid, _ in executions(log)) >= 150:
                victim.send_signal(signal.SIGSTOP)  # frozen: it can claim nothing more while we look
                with sqlite3.connect(q.path) as db:
                    held_at_kill = {i for (i,) in db.execute(
                        "SELECT id FROM items WHERE status='running' AND claimer LIKE ?",
                        (f"{socket.gethostname()}:{victim.pid}:%",))}
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                killed = victim.pid
                slots["thread"] = start_consumer(scripts, name, log, "thread")
            time.sleep(0.05)
        for proc in slots.values():  # nothing left: they drain and end on their own
            proc.wait(timeout=60)
            assert proc.returncode == 0, proc.stderr.read()
    finally:
        for proc in slots.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    by_id = collect(producers)
    # About its window: 8 open chunks of 2, what the engine's feeder reads ahead (2 chunks and 64
    # items, engine/feed.py), and a few claimed ahead.
    assert killed is not None and 0 < len(held_at_kill) <= 8 * 2 + (2 * 2 + 64) + 10

    # Exact counts, and each item's own result by its id.
    unlucky = {n for n in range(1000) if n % 97 == 0}
    assert q.stats() == {"pending": 0, "running": 0, "done": 1000 - len(unlucky), "failed": len(unlucky),
                         "total": 1000}
    for id_, n in by_id.items():
        outcome = q.result(id_, timeout=0)
        assert (outcome.index, outcome.item) == (id_, n)
        if n in unlucky:
            assert not outcome.ok and outcome.error.type == "ValueError" and outcome.error.message == f"unlucky {n}"
        else:
            assert outcome.ok and outcome.value == 2 * n

    # Every item ran; the only repeats are items the killed consumer held, each at most once more.
    runs = Counter(n for _, n in executions(log))
    assert set(runs) == set(range(1000))
    repeated = {n: count - 1 for n, count in runs.items() if count > 1}
    id_of = {n: id_ for id_, n in by_id.items()}
    assert {id_of[n] for n in repeated} <= held_at_kill
    assert all(extra == 1 for extra in repeated.values())
    assert sum(pid == killed for pid, _ in executions(log)) >= 150


@pytest.mark.timeout(120)
def test_sigterm_stops_a_following_consumer_with_143_and_fails_nothing(scripts, tmp_path):
    name, log = "follow", tmp_path / "runs.log"
    q = bk.Queue(name)
    ids = q.put_many(range(1, 41))
    consumer = start_consumer(scripts, name, log, "thread", follow=True, seconds=0.05)
    try:
        deadline = time.monotonic() + 60
        while len(executions(log)) < 10:
            assert time.monotonic() < deadline and consumer.poll() is None, consumer.stderr.read()
            time.sleep(0.02)
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(timeout=30) == 143, consumer.stderr.read()
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
    stats = q.stats()
    # Items in flight finished and were stored; the ones it held but never started went back.
    assert stats["failed"] == 0 and stats["running"] == 0
    assert stats["done"] >= 10 and stats["done"] + stats["pending"] == 40
    started = {n for _, n in executions(log)}
    done = {n for id_, n in zip(ids, range(1, 41)) if q.status(id_) == "done"}
    assert done == started  # nothing started was lost, nothing unstarted was marked done
