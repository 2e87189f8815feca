"""File runs on worker processes walk the tree in the workers (engine.walkfeed): the parent hands
out pieces of the walk, not files. Everything a user sees is what the parent's own walk gives:
order, input positions, filters, unreadable directories, the journal's keys and crash outcomes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import batchkit as bk
from batchkit.backends.thread import ThreadBackend
from batchkit.engine.walkfeed import walks_in_workers
from batchkit.state.journal import Journal

from conftest import python_env

WORKER_BACKENDS = ["process", "dask"]


def size_of(path) -> int:
    return os.path.getsize(path)


def kill_on_poison(path) -> int:
    if os.path.basename(path) == "poison.dat":
        os.kill(os.getpid(), signal.SIGKILL)
    return os.path.getsize(path)


@pytest.fixture
def tree(tmp_path) -> Path:
    """Files and directories interleaved at several depths, a big directory (more files than a
    first unit's budget), many tiny directories, hidden names, and names that sort around '/'."""
    root = tmp_path / "tree"
    for i in range(60):
        (root / "big").mkdir(parents=True, exist_ok=True)
        (root / "big" / f"f{i:03d}.dat").write_bytes(b"x" * i)
    for i in range(30):
        d = root / "tiny" / f"d{i:02d}"
        d.mkdir(parents=True)
        (d / "a.txt").write_text("a" * i)
        if i % 3 == 0:
            (d / "deeper").mkdir()
            (d / "deeper" / "b.log").write_text("b")
    for name in ("a.txt", "m.log", "z.txt", ".hidden", "a-b.txt", "a0.txt"):
        (root / name).write_text(name)
    (root / "a").mkdir()
    (root / "a" / "inner.txt").write_text("inner")
    (root / ".dot").mkdir()
    (root / ".dot" / "x.txt").write_text("x")
    (root / "empty").mkdir()
    return root


def _seen(report):
    return [(o.index, str(o.item), o.ok, o.value) for o in report.outcomes]


@pytest.mark.parametrize("backend", WORKER_BACKENDS)
@pytest.mark.parametrize("filters", [
    {},
    {"include": "*.txt"},
    {"exclude": ["tiny/d1*", "*.log"]},
    {"hidden": False, "min_size": 5},
    {"recursive": False},
    {"as_str": True},
])
def test_workers_walk_gives_exactly_the_parents_walk(tree, backend, filters, request):
    if backend == "dask":
        backend = bk.DaskBackend(client=request.getfixturevalue("dask_client"))
    walk = bk.files(tree, **filters)
    expected = bk.run(size_of, bk.files(tree, **filters), backend="serial", progress=False)
    report = bk.run(size_of, walk, backend=backend, workers=2, chunk_size=7, progress=False)
    assert walks_in_workers(walk, bk.ProcessBackend(2), timeout=None, key=None, skip=None)
    assert _seen(report) == _seen(expected) and len(expected.outcomes) > 0
    assert all(isinstance(o.item, str if filters.get("as_str") else Path) for o in report.outcomes)
    ordered = [o for o in bk.imap(size_of, bk.files(tree, **filters), backend=backend, workers=2, progress=False)]
    assert [(o.index, str(o.item)) for o in ordered] == [(i, s) for i, s, _, _ in _seen(expected)]


def test_auto_chunks_find_the_same_files_in_the_same_order(tree):
    expected = bk.run(size_of, bk.files(tree), backend="serial", progress=False)
    report = bk.run(size_of, bk.files(tree), backend="process", workers=2, progress=False)
    assert _seen(report) == _seen(expected)


def _too_deep(parent: Path) -> None:
    """A chain of directories whose deepest path is longer than PATH_MAX: listing it fails with
    ENAMETOOLONG, for root too (chmod 000 does not stop root)."""
    fd = os.open(parent, os.O_RDONLY)
    try:
        for _ in range(18):
            name = "n" * 250
            os.mkdir(name, dir_fd=fd)
            new = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
    finally:
        os.close(fd)


def test_unreadable_directories_are_input_errors_in_walk_order(tree):
    _too_deep(tree / "tiny" / "d03")
    _too_deep(tree / "tiny" / "d20")
    serial = bk.run(size_of, bk.files(tree), backend="serial", progress=False)
    report = bk.run(size_of, bk.files(tree), backend="process", workers=2, chunk_size=3, progress=False)
    assert len(serial.input_errors) == 2 and "d03" in serial.input_errors[0][0]
    assert report.input_errors == serial.input_errors
    assert _seen(report) == _seen(serial) and not report.ok


def test_a_file_that_kills_its_worker_is_recorded_as_a_crash_and_the_rest_run(tree):
    (tree / "tiny" / "d07" / "poison.dat").write_text("boom")
    expected = bk.run(size_of, bk.files(tree), backend="serial", progress=False)
    report = bk.run(kill_on_poison, bk.files(tree), backend="process", workers=2, chunk_size=8, progress=False)
    failed = [(str(o.item), o.error.kind) for o in report.failures]
    assert failed == [(str(tree / "tiny" / "d07" / "poison.dat"), "crash")]
    assert [(i, s) for i, s, _, _ in _seen(report)] == [(i, s) for i, s, _, _ in _seen(expected)]
    assert [o.value for o in report.outcomes if o.ok] == [o.value for o in expected.outcomes
                                                           if not str(o.item).endswith("poison.dat")]


def test_the_journal_records_paths_and_positions_as_the_parents_walk_does(tree, tmp_path):
    db = tmp_path / "j.db"
    bk.run(size_of, bk.files(tree), backend="process", workers=2, chunk_size=5, journal=str(db), name="walk",
           progress=False)
    serial = bk.run(size_of, bk.files(tree), backend="serial", progress=False)
    with Journal(str(db)) as journal:
        rows = journal.db.execute("SELECT key, idx, value FROM items ORDER BY idx").fetchall()
    assert [(k, i) for k, i, _ in rows] == [(str(o.item), o.index) for o in serial.outcomes]
    assert [v for _, _, v in rows] == [repr(o.value) for o in serial.outcomes]


def test_max_failures_halts_a_walked_run_without_recording_a_file_twice(tree):
    def fail_txt(path):
        if str(path).endswith(".txt"):
            raise ValueError("no txt")
        return 1

    report = bk.run(fail_txt, bk.files(tree), backend="process", workers=2, chunk_size=4, max_failures=3,
                    progress=False)
    indices = [o.index for o in report.outcomes]
    assert report.halted and report.failed >= 3
    assert indices == sorted(set(indices))


class _RemoteLike(ThreadBackend):
    """Workers on machines that do not see this tree: a walk unit finds no root there."""

    runs_in_process = False

    def submit(self, fn, task):
        if task.walk is not None:
            spec, segments, budget = task.walk
            blind = spec.__class__.__new__(spec.__class__)
            blind.__dict__.update(spec.__dict__, root=Path("/nonexistent-batchkit-root"))
            task.walk = (blind, segments, budget)
        return super().submit(fn, task)


def test_workers_that_cannot_see_the_tree_get_the_files_from_the_parent(tree):
    expected = bk.run(size_of, bk.files(tree), backend="serial", progress=False)
    report = bk.run(size_of, bk.files(tree), backend=_RemoteLike(workers=2), chunk_size=6, progress=False)
    assert _seen(report) == _seen(expected)


PARENT_NEVER_LISTS = textwrap.dedent("""
    import json, os, sys, threading
    import batchkit as bk
    from batchkit.sources import files as files_mod

    root = sys.argv[1]
    listed = []
    real = os.scandir
    # A thread of our own: the workers start loky's way (fresh interpreters, not forked copies of
    # this patched process), so only the parent's listings are counted.
    stop = threading.Event()
    threading.Thread(target=stop.wait, daemon=True).start()
    os.scandir = lambda path=".": (listed.append(os.fspath(path)), real(path))[1]
    report = bk.run(os.path.getsize, bk.files(root), backend="process", workers=2, progress=False)
    stop.set()
    print(json.dumps({"files": len(report.outcomes), "parent_listed": [p for p in listed if p.startswith(root)]}))
""")


def test_the_parent_lists_no_directory_of_the_tree(tree, tmp_path):
    script = tmp_path / "count.py"
    script.write_text(PARENT_NEVER_LISTS)
    out = subprocess.run([sys.executable, str(script), str(tree)], capture_output=True, text=True,
                         env=python_env(), timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["files"] == len(bk.run(size_of, bk.files(tree), backend="serial", progress=False).outcomes)
    assert got["parent_listed"] == []


def test_runs_the_workers_cannot_walk_keep_the_parents_walk(tree):
    process = bk.ProcessBackend(2)
    walk = bk.files(tree)
    assert not walks_in_workers(walk, process, timeout=5.0, key=None, skip=None)
    assert not walks_in_workers(walk, process, timeout=None, key=str, skip=None)
    assert not walks_in_workers(walk, process, timeout=None, key=None, skip=lambda k: False)
    assert not walks_in_workers(bk.files(tree, follow_symlinks=True), process, timeout=None, key=None, skip=None)
    assert not walks_in_workers(walk, ThreadBackend(2), timeout=None, key=None, skip=None)
    assert not walks_in_workers(bk.files(tree / "a.txt"), process, timeout=None, key=None, skip=None)
    timed = bk.run(size_of, bk.files(tree), backend="process", workers=2, timeout=30, progress=False)
    assert _seen(timed) == _seen(bk.run(size_of, bk.files(tree), backend="serial", progress=False))
