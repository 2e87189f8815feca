"""Consuming a queue with the engine: ``QueueSource`` (items, leases, backpressure, follow, close)
and ``QueueSink`` (outcomes stored by id, unfinished items given back), driven exactly as a run
drives them: ``Engine(fn, source, on_chunk=sink.chunk)``."""

from __future__ import annotations

import subprocess
import textwrap
import threading
import time

import pytest

import batchkit as bk
from batchkit.engine.loop import Engine
from batchkit.sources.queue import QueueSink, QueueSource

from conftest import PY, python_env


def feeder_ahead(chunk_size: int) -> int:
    """Items the engine reads ahead of its open chunks (two chunks and 64 items: engine/feed.py)."""
    return 2 * chunk_size + 64


def consume(fn, source: QueueSource, **options) -> Engine:
    """Run ``fn`` over ``source`` until it ends, storing outcomes as a run's lifecycle does."""
    sink = QueueSink(source)
    sink.open(None)
    options = {"backend": "thread", "workers": 2, "progress": False, **options}
    engine = Engine(fn, source, on_chunk=sink.chunk, **options)
    state = "error"
    try:
        for _ in engine.chunks():
            pass
        state = "succeeded"
    finally:
        sink.close(state)
    return engine


def invert(x):
    return 1 / x


# The process backend consumes in tests/test_queue_processes.py, in its own consumer processes.
@pytest.mark.parametrize("backend", ["serial", "thread"])
def test_every_item_runs_once_and_its_outcome_is_stored_by_id(backend):
    q = bk.Queue("numbers")
    ids = q.put_many([1, 2, 0, 4, 5])
    engine = consume(invert, QueueSource(q), backend=backend)
    assert (engine.succeeded, engine.failed) == (4, 1)
    assert q.stats() == {"pending": 0, "running": 0, "done": 4, "failed": 1, "total": 5}
    assert [q.result(i).value for i in ids] == [1.0, 0.5, None, 0.25, 0.2]
    zero = q.result(ids[2])
    assert (zero.index, zero.item, zero.ok, zero.error.type) == (ids[2], 0, False, "ZeroDivisionError")
    assert "1 / x" in zero.error.traceback


def test_a_drained_source_ends_and_stays_ended():
    q = bk.Queue("drain")
    q.put_many(["a", "b"])
    source = QueueSource(q)
    assert list(source) == ["a", "b"]
    q.put("c")
    assert list(source) == []  # drained means over, for this run
    assert source.held == 2 and q.stats()["running"] == 2
    assert source.release() == 2 and q.stats()["pending"] == 3


def test_keys_name_the_queue_and_id_of_each_position():
    q = bk.Queue("keys")
    ids = q.put_many(["x", "x", "y"])  # equal items still get distinct keys
    source = QueueSource(q)
    assert list(source) == ["x", "x", "y"]
    assert [source.key_of(p) for p in range(3)] == [f"queue:keys:{i}" for i in ids]
    assert [source.id_of(p) for p in range(3)] == ids
    source.release()


def follow_in_thread(q: bk.Queue) -> tuple[QueueSource, threading.Thread, list]:
    source = QueueSource(q, follow=True)
    engines: list = []
    consumer = threading.Thread(target=lambda: engines.append(consume(str.upper, source, chunk_size=1)))
    consumer.start()
    return source, consumer, engines


def put_from_another_process(name: str, items: list) -> list[int]:
    code = f"import batchkit as bk; print(bk.Queue({name!r}).put_many({items!r}))"
    out = subprocess.run([PY, "-c", code], env=python_env(), capture_output=True, text=True, timeout=60, check=True)
    return eval(out.stdout)


def test_a_following_source_takes_items_put_later_by_another_process():
    q = bk.Queue("later")
    source, consumer, engines = follow_in_thread(q)
    try:
        time.sleep(0.3)  # the source is waiting on an empty queue
        ids = put_from_another_process("later", ["a", "b"])
        deadline = time.monotonic() + 30
        while q.stats()["pending"] or len(source._ids) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert consumer.is_alive()  # still following
    finally:
        source.close()
        consumer.join(timeout=10)
    assert not consumer.is_alive() and engines[0].succeeded == 2
    assert [q.result(i, timeout=0).value for i in ids] == ["A", "B"]
    assert q.stats() == {"pending": 0, "running": 0, "done": 2, "failed": 0, "total": 2}


def test_results_arrive_while_a_source_is_still_following():
    q = bk.Queue("live")
    source, consumer, _ = follow_in_thread(q)
    try:
        ids = put_from_another_process("live", ["a", "b"])
        assert [q.result(i, timeout=10).value for i in ids] == ["A", "B"]
    finally:
        source.close()
        consumer.join(timeout=10)


def test_close_wakes_a_waiting_following_source_at_once():
    source = QueueSource(bk.Queue("idle"), follow=True, poll=60)
    ended = threading.Event()

    def pull():
        assert list(source) == []
        ended.set()

    puller = threading.Thread(target=pull, daemon=True)
    puller.start()
    # After 4 s idle its pauses have grown to 2.56 s; close() must not wait for the current one.
    time.sleep(4.0)
    assert not ended.is_set()
    source.close()
    assert ended.wait(0.5)
    puller.join(timeout=5)


def test_long_items_keep_their_lease_while_their_consumer_lives():
    q = bk.Queue("long")
    [id_] = q.put_many([1.5])
    rival = subprocess.Popen([PY, "-c", textwrap.dedent("""
        import time, batchkit as bk
        q, got, end = bk.Queue("long"), [], time.monotonic() + 2.5
        while time.monotonic() < end and not got:
            got = q.claim(1, lease=30)
            time.sleep(0.05)
        print(got, flush=True)
    """)], env=python_env(), stdout=subprocess.PIPE, text=True)
    # A 0.3 s lease, an item of 1.5 s: only the heartbeat keeps it ours.
    consume(time.sleep, QueueSource(q, lease=0.3), chunk_size=1)
    out, _ = rival.communicate(timeout=30)
    assert out.strip() == "[]"
    assert q.result(id_).ok and q.stats()["done"] == 1


def test_a_consumer_holds_about_its_window_not_the_whole_queue():
    q = bk.Queue("window")
    q.put_many(range(2000))
    source = QueueSource(q)
    most = [0]

    def watch(chunk):
        most[0] = max(most[0], q.stats()["running"])

    def slow(x):
        time.sleep(0.002)
        return x

    sink = QueueSink(source)
    engine = Engine(slow, source, backend="thread", workers=2, chunk_size=4, progress=False,
                    on_chunk=lambda c: (watch(c), sink.chunk(c)))
    for n, _ in enumerate(engine.chunks()):
        if n == 100:
            break
    sink.close("interrupted")
    # 2 workers: 8 chunks of 4 open at most, what the engine's feeder reads ahead, and ~20 ms of
    # claims ahead (2 ms items on 2 threads: about 20 items), against 2,000 items waiting.
    assert 0 < most[0] <= 8 * 4 + feeder_ahead(4) + 20, most[0]
    stats = q.stats()
    # Stopped early, the run gives back what it held: nothing stays running, nothing failed.
    assert stats["running"] == 0 and stats["failed"] == 0
    assert stats["done"] >= 400 and stats["pending"] == 2000 - stats["done"]


def test_an_interrupted_or_halted_run_gives_its_unfinished_items_back_unfailed():
    q = bk.Queue("halt")
    q.put_many(list(range(1, 50)) + [0] * 3 + list(range(50, 200)))
    source = QueueSource(q)
    engine = consume(invert, source, chunk_size=5, max_failures=1, workers=1)
    assert engine.halted
    stats = q.stats()
    assert stats["running"] == 0 and source.held == 0
    assert stats["failed"] >= 1 and stats["pending"] > 0
    assert stats["done"] + stats["failed"] + stats["pending"] == 202
