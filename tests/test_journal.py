"""The journal through the Python API: one row per finished item, resume skips them, nothing lost."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import batchkit as bk
from batchkit.state.journal import Journal, item_key

from conftest import python_env


def test_run_records_every_item_once_with_errors(tmp_path):
    db = tmp_path / "j.db"
    report = bk.run(lambda x: 10 // x, [5, 0, 2], backend="thread", journal=db, progress=False, name="div")
    assert report.run_id is not None
    with Journal(db) as j:
        run = j.run(report.run_id)
        items = j.items(report.run_id)
    assert run["job"] == "div" and run["state"] == "failed"
    assert (run["succeeded"], run["failed"]) == (2, 1)
    assert [(i["idx"], i["ok"]) for i in items] == [(0, 1), (1, 0), (2, 1)]
    assert items[1]["error_type"] == "ZeroDivisionError" and items[1]["error_kind"] == "exception"
    assert items[0]["value"] == "2"
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_resume_skips_finished_items_and_counts_them(tmp_path):
    db = tmp_path / "j.db"
    seen = []

    def fn(x):
        seen.append(x)
        if x == 6 and len(seen) < 20:
            raise KeyboardInterrupt  # the first run is interrupted at item 6
        return x

    with pytest.raises(KeyboardInterrupt):
        bk.run(fn, range(12), backend="serial", chunk_size=3, journal=db, progress=False, name="job")
    with Journal(db) as j:
        (first,) = j.runs()
    assert first["state"] == "interrupted"
    seen.clear()
    seen.extend([None] * 20)  # let item 6 pass now
    report = bk.run(fn, range(12), backend="serial", chunk_size=3, journal=db, resume=True,
                    progress=False, name="job")
    assert report.skipped == 6  # chunks [0-2] and [3-5] were recorded before the interrupt
    assert sorted(x for x in seen if x is not None) == list(range(6, 12))  # only the rest ran
    # The report is the whole run's: every item, in input order, with its exact value.
    assert report.succeeded == 12 and report.run_id == first["id"]
    assert [o.item for o in report.outcomes] == list(range(12)) and report.values() == list(range(12))
    with Journal(db) as j:
        items = j.items(first["id"])
        assert j.run(first["id"])["state"] == "succeeded"
    assert sorted(i["idx"] for i in items) == list(range(12))  # each exactly once


def test_resume_after_a_finished_run_starts_a_new_run(tmp_path):
    db = tmp_path / "j.db"
    first = bk.run(str, range(5), backend="serial", journal=db, progress=False, name="x")
    second = bk.run(str, range(5), backend="serial", journal=db, resume=True, progress=False, name="x")
    assert second.run_id != first.run_id and second.skipped == 0 and second.succeeded == 5


def test_retry_failed_reruns_only_failures(tmp_path):
    db = tmp_path / "j.db"
    marker = tmp_path / "fixed"

    ran = []

    def fn(x):
        ran.append(x)
        if x % 4 == 0 and not marker.exists():
            raise OSError("not yet")
        return x * 10

    first = bk.run(fn, range(12), backend="thread", journal=db, progress=False, name="r")
    assert first.failed == 3
    marker.touch()
    ran.clear()
    second = bk.run(fn, range(12), backend="thread", journal=db, resume="failed", progress=False, name="r")
    assert second.run_id == first.run_id
    assert sorted(ran) == [0, 4, 8] and second.ok
    assert second.skipped == 9 and second.values() == [x * 10 for x in range(12)]
    with Journal(db) as j:
        run = j.run(first.run_id)
    assert (run["state"], run["succeeded"], run["failed"]) == ("succeeded", 12, 0)
    rows = sqlite3.connect(db).execute("SELECT key, ok, idx FROM items WHERE run_id=?", (first.run_id,)).fetchall()
    # Each item once, now succeeded.
    assert sorted(r[1:] for r in rows) == [(1, i) for i in range(12)] and len({r[0] for r in rows}) == 12


def test_keys_are_stable_and_independent_of_order(tmp_path):
    assert item_key(Path("/a/b")) == "/a/b"
    assert item_key("hello") == "hello"
    assert item_key((1, 2)) == item_key((1, 2)) != item_key((2, 1))
    db = tmp_path / "j.db"

    def fn(x):
        if x == 3:
            raise KeyboardInterrupt
        return x

    with pytest.raises(KeyboardInterrupt):
        bk.run(fn, [1, 2, 3, 4], backend="serial", chunk_size=1, journal=db, progress=False, name="k",
               key=lambda x: f"item-{x}")
    # Resume with the input in another order: finished items are still recognised by key.
    ran = []
    report = bk.run(lambda x: ran.append(x) or x, [4, 3, 2, 1], backend="serial", chunk_size=1, journal=db,
                    resume=True, progress=False, name="k", key=lambda x: f"item-{x}")
    assert report.skipped == 2 and sorted(ran) == [3, 4]
    assert report.values() == [4, 3, 2, 1]  # in this input's order, earlier values included


def test_unusable_journal_is_a_backend_error_with_a_hint(tmp_path):
    bad = tmp_path / "file"
    bad.write_text("x")
    with pytest.raises(bk.BackendError, match="unusable.*BATCHKIT_HOME"):
        bk.run(str, [1], backend="serial", journal=bad / "sub" / "j.db", progress=False)


KILL_SCRIPT = textwrap.dedent("""
    import os, sys, time
    import batchkit as bk

    def work(x):
        with open(sys.argv[2], "a") as f:
            f.write(f"{x}\\n")
        time.sleep(0.01)
        return x

    bk.run(work, range(400), backend="process", workers=2, chunk_size=5, progress=False,
           journal=sys.argv[1], resume=True, name="killme")
""")


@pytest.mark.parametrize("delay", [0.8, 1.6])
def test_kill_9_of_the_whole_process_group_then_resume_loses_nothing(tmp_path, delay):
    script = tmp_path / "job.py"
    script.write_text(KILL_SCRIPT)
    db, log = tmp_path / "j.db", tmp_path / "executed.log"
    proc = subprocess.Popen([sys.executable, str(script), str(db), str(log)], env=python_env(),
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().split()) < 40):
        time.sleep(0.05)
    time.sleep(delay - 0.8)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    with Journal(db) as j:
        (run,) = j.runs()
        assert run["state"] == "crashed"  # "running" in the file, but its process is gone
        before = {i["key"] for i in j.items(run["id"])}
    assert 0 < len(before) < 400
    executed_before = log.read_text().split()

    subprocess.run([sys.executable, str(script), str(db), str(log)], env=python_env(), check=True, timeout=60)
    with Journal(db) as j:
        (run,) = j.runs()
        items = j.items(run["id"])
    assert run["state"] == "succeeded"
    assert sorted(i["idx"] for i in items) == list(range(400))
    executed = [int(x) for x in log.read_text().split()]
    twice = {x for x in set(executed) if executed.count(x) > 1}
    # Only items that were in flight at the kill ran twice: never one that was recorded before it.
    assert not twice & {i["idx"] for i in items if i["key"] in before}
    assert len(twice) <= 2 * 2 * 5 + 5  # two chunks per worker in flight, plus a chunk being written
    assert len(executed_before) >= len(before)


def test_journal_of_another_schema_version_is_refused_clearly(tmp_path):
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY)")
    con.execute("PRAGMA user_version=1")
    con.commit()
    con.close()
    with pytest.raises(bk.BackendError, match="another version of batchkit.*move it aside"):
        Journal(db)


def test_resume_of_a_file_walk_only_continues_the_same_tree(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            (tmp_path / name / f"{i}.txt").write_text(name)
    db = tmp_path / "j.db"

    def stop_at_second(path):
        if path.name == "1.txt" and path.parent.name == "a":
            raise KeyboardInterrupt
        return path.name

    with pytest.raises(KeyboardInterrupt):
        bk.run(stop_at_second, bk.files(tmp_path / "a"), backend="serial", chunk_size=1, journal=db,
               progress=False, name="walk")
    other = bk.run(str, bk.files(tmp_path / "b"), backend="serial", journal=db, resume=True, progress=False,
                   name="walk")
    assert other.skipped == 0 and other.succeeded == 3  # another tree: a new run, nothing skipped
    same = bk.run(str, bk.files(tmp_path / "a"), backend="serial", journal=db, resume=True, progress=False,
                  name="walk")
    assert same.skipped == 1 and same.succeeded == 3  # one from the first attempt, two now


def test_six_processes_opening_a_new_journal_at_once_all_record_their_runs(tmp_path):
    """Cron entries that fire at the same minute on a fresh machine all create the journal at once."""
    import subprocess
    import sys

    from conftest import python_env

    db = tmp_path / "fresh.db"
    code = ("import sys, batchkit as bk; "
            "r = bk.run(str, range(50), backend='thread', journal=sys.argv[1], name=sys.argv[2], progress=False); "
            "print(r.succeeded)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db), f"job{i}"], env=python_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(6)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [err for _, err in outs]
    assert [out.strip() for out, _ in outs] == ["50"] * 6
    with Journal(db) as j:
        assert sorted(r["job"] for r in j.runs()) == [f"job{i}" for i in range(6)]


JOURNAL_RACE = textwrap.dedent('''
    import os, sys, time
    from batchkit.state.journal import Journal

    role, root, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for i in range(n):
        path = os.path.join(root, f"j{i}", "batchkit.db")
        if role == "create":
            time.sleep(0.002)
        else:  # open each journal the moment its file appears, while it is being created
            deadline = time.monotonic() + 30
            while not os.path.exists(path) and time.monotonic() < deadline:
                pass
        Journal(path).close()
''')


def test_a_journal_opened_while_another_run_creates_it_is_never_taken_for_another_version(tmp_path):
    """A run that opens the journal while another creates it reads its version and its tables
    at one moment: read apart, it saw the tables but not yet the version, and refused the
    journal as "written by another version" (1 open in ~500 on this machine)."""
    n = 1500
    procs = [subprocess.Popen([sys.executable, "-c", JOURNAL_RACE, role, str(tmp_path), str(n)], env=python_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for role in ("open", "create")]
    outs = [p.communicate(timeout=100) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-500:] for _, err in outs]
