"""The durable queue's storage (``bk.Queue``): ids, claims and leases, results, retries, a busy or
foreign file. Real SQLite files; other processes are real processes."""

from __future__ import annotations

import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import batchkit as bk
from batchkit.state.queue import MAX_LOST_LEASES, QueueBusy, QueueTimeout, UnknownItem, default_path, list_queues

from conftest import PY, python_env


def child(code: str, *args: str, **kwargs) -> subprocess.Popen:
    """A Python process running ``code`` (with this worktree's batchkit and BATCHKIT_HOME)."""
    return subprocess.Popen([PY, "-c", textwrap.dedent(code), *args], env=python_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def wait_line(proc: subprocess.Popen, expected: str) -> None:
    line = proc.stdout.readline().strip()
    assert line == expected, (line, proc.stderr.read() if proc.poll() is not None else "")


def test_put_returns_new_ids_and_stats_count_exactly():
    q = bk.Queue("jobs")
    first = q.put("a")
    more = q.put_many(["b", "c", "d"])
    assert more == [first + 1, first + 2, first + 3]
    assert q.put_many([]) == []
    assert q.stats() == {"pending": 4, "running": 0, "done": 0, "failed": 0, "total": 4}
    assert q.path == default_path() and default_path().parent == bk.state.journal.default_home()
    # Queues share the file but not their items, counts or ids.
    other = bk.Queue("other")
    assert other.put("x") == first + 4
    assert other.stats()["total"] == 1 and q.stats()["total"] == 4
    assert list_queues() == {"jobs": q.stats(), "other": other.stats()}


def test_items_of_any_picklable_kind_come_back_as_they_were_put():
    q = bk.Queue("kinds")
    items = [{"url": "https://example.org", "tries": [1, 2]}, b"\x00\xff", (1, 2.5, None), 10**30, "é" * 5000,
             bk.ItemError("E", "m")]
    ids = q.put_many(items)
    claimed = q.claim(len(items) + 3, lease=30)
    assert claimed == list(zip(ids, items))
    with pytest.raises(bk.UsageError, match="not picklable"):
        q.put(lambda x: x)
    with pytest.raises(bk.UsageError, match="not picklable"):
        q.put_many(["fine", threading.Lock()])
    assert q.stats()["total"] == len(items)  # the failed put_many stored nothing


def test_claim_takes_the_oldest_items_and_each_only_once():
    q = bk.Queue("order")
    ids = q.put_many(range(10))
    first = q.claim(4, lease=30)
    second = q.claim(4, lease=30)
    assert [i for i, _ in first] == ids[:4] and [i for i, _ in second] == ids[4:8]
    assert q.stats() == {"pending": 2, "running": 8, "done": 0, "failed": 0, "total": 10}
    assert q.status(ids[0]) == "running" and q.status(ids[9]) == "pending"
    with pytest.raises(bk.UsageError, match="whole number"):
        q.claim(0)
    with pytest.raises(bk.UsageError, match="lease"):
        q.claim(1, lease=0)


def test_an_expired_lease_returns_the_item_to_anyone():
    q = bk.Queue("leases")
    [id_] = q.put_many(["slow"])
    holder = child("""
        import sys, time, batchkit as bk
        got = bk.Queue("leases").claim(1, lease=1.0)
        print(got[0][0], flush=True)
        time.sleep(30)      # alive, but renewing nothing
    """)
    try:
        wait_line(holder, str(id_))
        assert q.claim(1, lease=30) == []  # held by a live consumer
        assert q.stats()["running"] == 1
        deadline = time.monotonic() + 10
        while q.stats()["running"]:  # the lease runs out: the item counts as pending again
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert q.stats()["pending"] == 1 and q.status(id_) == "pending"
        assert q.claim(1, lease=30) == [(id_, "slow")]
        assert q.renew([id_], lease=30) == 1
    finally:
        holder.kill()
        holder.wait()


def test_items_of_a_consumer_killed_on_this_host_are_taken_at_once():
    q = bk.Queue("killed")
    ids = q.put_many(["a", "b", "c"])
    holder = child("""
        import time, batchkit as bk
        q = bk.Queue("killed")
        print(len(q.claim(2, lease=3600)), flush=True)
        time.sleep(60)
    """)
    wait_line(holder, "2")
    assert q.claim(3, lease=30) == [(ids[2], "c")]  # the other two belong to a live consumer
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    # Its lease would last an hour, but its process is gone: no need to wait.
    assert q.claim(3, lease=30) == [(ids[0], "a"), (ids[1], "b")]
    with sqlite3.connect(q.path) as db:
        assert db.execute("SELECT id, claims, lost FROM items WHERE queue='killed' ORDER BY id").fetchall() == [
            (ids[0], 2, 1), (ids[1], 2, 1), (ids[2], 1, 0)]


def test_an_item_whose_consumer_keeps_vanishing_fails_as_a_crash():
    q = bk.Queue("poison")
    [id_] = q.put_many(["segfaults"])
    for _ in range(MAX_LOST_LEASES):
        assert q.claim(1, lease=0.01) == [(id_, "segfaults")]
        time.sleep(0.02)  # the lease runs out without a result, as when the consumer died
    assert q.claim(1, lease=30) == []
    outcome = q.result(id_)
    assert not outcome.ok and outcome.error.kind == "crash" and outcome.error.type == "LeaseLost"
    assert f"{MAX_LOST_LEASES} times" in outcome.error.message
    assert q.retry_failed() == 1 and q.claim(1, lease=30) == [(id_, "segfaults")]  # a fresh start


def test_results_are_outcomes_by_id_and_failures_keep_their_error_until_retried():
    q = bk.Queue("results")
    ok_id, bad_id = q.put_many([2, 0])
    claimed = dict(q.claim(2, lease=30))
    error = bk.ItemError("ZeroDivisionError", "division by zero", "Traceback ...\nZeroDivisionError", "exception")
    stored = q.complete([(ok_id, bk.Outcome(0, claimed[ok_id], True, 0.5, attempts=2, duration=0.25)),
                         (bad_id, bk.Outcome(1, claimed[bad_id], False, None, error))])
    assert stored == 2
    assert q.result(ok_id) == bk.Outcome(ok_id, 2, True, 0.5, None, 2, 0.25)  # index is the queue id
    failed = q.result(bad_id, timeout=0)
    assert failed == bk.Outcome(bad_id, 0, False, None, error, 1, 0.0)
    with pytest.raises(bk.BatchFailed, match="ZeroDivisionError"):
        failed.unwrap()
    assert q.stats() == {"pending": 0, "running": 0, "done": 1, "failed": 1, "total": 2}
    assert q.retry_failed() == 1
    assert q.stats() == {"pending": 1, "running": 0, "done": 1, "failed": 0, "total": 2}
    assert q.claim(5, lease=30) == [(bad_id, 0)]
    assert q.retry_failed() == 0


def test_result_waits_for_a_consumer_then_times_out_with_a_timeout_error():
    q = bk.Queue("wait")
    [id_] = q.put_many(["x"])
    consumer = child("""
        import time, batchkit as bk
        q = bk.Queue("wait")
        [(id_, item)] = q.claim(1, lease=30)
        time.sleep(0.5)
        q.complete([(id_, bk.Outcome(0, item, True, item.upper()))])
    """)
    try:
        started = time.monotonic()
        assert q.result(id_, timeout=30).value == "X"
        assert time.monotonic() - started >= 0.4  # it did wait for the consumer
    finally:
        consumer.wait(timeout=30)
    [late] = q.put_many(["y"])
    with pytest.raises(QueueTimeout, match=f"item {late} of queue 'wait' is still pending after 0.2 s") as info:
        q.result(late, timeout=0.2)
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, bk.BatchkitError)
    with pytest.raises(bk.UsageError, match="timeout"):
        q.result(late, timeout=-1)


def test_an_unknown_id_is_a_clear_error_even_one_of_another_queue():
    q = bk.Queue("mine")
    theirs = bk.Queue("theirs").put("z")
    for id_ in (theirs, 12345):
        with pytest.raises(UnknownItem, match=f"queue 'mine' has no item {id_}"):
            q.result(id_, timeout=5)
        with pytest.raises(LookupError):
            q.status(id_)


def test_the_first_result_of_an_item_wins():
    q = bk.Queue("first")
    [id_] = q.put_many(["x"])
    q.claim(1, lease=30)
    assert q.complete([(id_, bk.Outcome(0, "x", True, "first"))]) == 1
    # A consumer whose lease had run out finishes the same item later: it changes nothing.
    assert q.complete([(id_, bk.Outcome(0, "x", False, None, bk.ItemError("E", "late")))]) == 0
    assert q.result(id_).value == "first"


def test_release_returns_only_this_processs_claims_unrun():
    q = bk.Queue("release")
    ids = q.put_many(["a", "b", "c"])
    q.claim(2, lease=30)
    other = child("""
        import batchkit as bk
        q = bk.Queue("release")
        print(q.release([1, 2, 3]), [i for i, _ in q.claim(5, lease=30)], flush=True)
    """.replace("[1, 2, 3]", repr(ids)))
    wait_line(other, f"0 [{ids[2]}]")  # it cannot release our claims
    other.wait(timeout=30)
    assert q.release(ids) == 2
    assert q.stats() == {"pending": 2, "running": 1, "done": 0, "failed": 0, "total": 3}
    with sqlite3.connect(q.path) as db:
        assert db.execute("SELECT COUNT(*) FROM items WHERE outcome IS NOT NULL").fetchone()[0] == 0


def test_a_value_that_cannot_be_stored_fails_its_item_saying_why():
    q = bk.Queue("values")
    a, b = q.put_many(["lock", "fine"])
    q.claim(2, lease=30)
    assert q.complete([(a, bk.Outcome(0, "lock", True, threading.Lock())), (b, bk.Outcome(1, "fine", True, 1))]) == 2
    outcome = q.result(a)
    assert not outcome.ok and "could not be stored in the queue" in outcome.error.message
    assert q.result(b).value == 1


def test_an_item_no_consumer_can_load_fails_instead_of_coming_back(tmp_path):
    (tmp_path / "privatemod.py").write_text("class Thing:\n    pass\n")
    producer = child("""
        import batchkit as bk, privatemod
        print(bk.Queue("loads").put(privatemod.Thing()), flush=True)
    """, cwd=str(tmp_path))
    id_ = int(producer.stdout.readline())
    producer.wait(timeout=30)
    q = bk.Queue("loads")
    good = q.put("ok")
    assert q.claim(5, lease=30) == [(good, "ok")]
    outcome = q.result(id_, timeout=0)
    assert not outcome.ok and outcome.error.type == "ModuleNotFoundError" and outcome.item is None
    assert "cannot be loaded by this consumer" in outcome.error.message


def test_a_queue_travels_by_name_and_file(tmp_path):
    q = bk.Queue("travel", path=tmp_path / "elsewhere.db")
    q.put(1)
    copy = pickle.loads(pickle.dumps(q))
    assert (copy.name, copy.path) == (q.name, q.path) and copy.stats()["pending"] == 1
    assert repr(q) == f"Queue('travel', path='{tmp_path / 'elsewhere.db'}')"
    with pytest.raises(bk.UsageError, match="non-empty string"):
        bk.Queue("  ")


def test_a_busy_database_raises_queue_busy_after_the_timeout_and_stays_sound():
    q = bk.Queue("busy", timeout=0.5)
    q.put("before")
    holder = child(f"""
        import sqlite3, time
        db = sqlite3.connect({str(q.path)!r}, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        print("locked", flush=True)
        time.sleep(60)
    """)
    try:
        wait_line(holder, "locked")
        started = time.monotonic()
        with pytest.raises(QueueBusy, match="stayed locked for more than 0.5 s"):
            q.put("during")
        assert time.monotonic() - started < 30  # bounded: it gave up rather than hang
        assert q.stats()["total"] == 1  # readers are not blocked by a writer (WAL)
    finally:
        holder.kill()
        holder.wait()
    assert q.put("after") and q.stats()["total"] == 2
    with sqlite3.connect(q.path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_file_that_is_not_a_queue_is_refused_clearly(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    with pytest.raises(bk.errors.BackendError, match="unusable.*move the file aside"):
        bk.Queue("x", path=garbage)
    future = tmp_path / "future.db"
    with sqlite3.connect(future) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(bk.errors.BackendError, match="another version of batchkit"):
        bk.Queue("x", path=future)


def test_purge_deletes_finished_items_and_ids_are_never_reused():
    q = bk.Queue("purge")
    ids = q.put_many(["a", "b", "c"])
    claimed = q.claim(2, lease=30)
    q.complete([(claimed[0][0], bk.Outcome(0, "a", True, 1)),
                (claimed[1][0], bk.Outcome(1, "b", False, None, bk.ItemError("E", "m")))])
    assert q.purge(older_than=3600) == 0  # finished just now
    assert q.purge() == 1
    assert q.stats() == {"pending": 1, "running": 0, "done": 0, "failed": 1, "total": 2}
    assert q.purge(failed=True) == 1
    assert q.put("d") == ids[-1] + 1
    with pytest.raises(UnknownItem):
        q.result(ids[0])


def test_a_forked_child_uses_its_own_connection():
    # Forked from a small single-threaded process: forking pytest itself (threads of other tests
    # holding locks) could leave the child stuck, whatever the queue does.
    script = textwrap.dedent("""
        import os, signal, batchkit as bk
        q = bk.Queue("fork")
        q.put("parent")
        pid = os.fork()
        if pid == 0:
            signal.alarm(30)  # never outlive the test
            code = 0
            try:
                q.put("child")
            except BaseException:
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), [item for _, item in q.claim(5, lease=30)])
    """)
    out = subprocess.run([PY, "-c", script], env=python_env(), capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "0 ['parent', 'child']", out.stderr


def test_importing_batchkit_does_not_load_the_queue():
    code = "import sys, batchkit; print('batchkit.state.queue' in sys.modules, batchkit.Queue.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=python_env(), check=True)
    assert out.stdout.split() == ["False", "batchkit.state.queue"]
