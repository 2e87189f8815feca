"""bk.files(watch=True): complete file versions from a real directory, as real writers make them.

Writers are real threads and processes writing real files; settle is small (0.3 s) to keep the
tests fast. Every wait is bounded; nothing here times how fast a watch is (see benchmarks/watch.py).
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from pathlib import Path

import pytest

import batchkit as bk
from batchkit.sources import watcher
from batchkit.sources.watch import FileVersion, FileWatch, PathVersion
from batchkit.state.keys import item_key

from faults_support import wait_until

SETTLE = 0.3


class Collector:
    """Iterates a watch in a thread, keeping (when, item) for everything it yields."""

    def __init__(self, source):
        self.source = source
        self.it = iter(source)  # the OS watcher starts here, before the caller makes any file
        self.items: list[tuple[float, object]] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for item in self.it:
                self.items.append((time.monotonic(), item))
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def names(self) -> list[str]:
        return [os.path.basename(item) for _, item in self.items]

    def wait_for(self, predicate, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.02)
        return predicate(self)

    def wait_names(self, *names: str, timeout: float = 15.0) -> bool:
        return self.wait_for(lambda c: set(names) <= set(c.names()), timeout)

    def stop(self) -> None:
        self.source.close()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the watch did not stop on close()"
        if self.error is not None:
            raise self.error


def write(path: Path, data: bytes, old: bool = False) -> None:
    path.write_bytes(data)
    if old:  # as if written long before the watch started
        os.utime(path, (time.time() - 3600, time.time() - 3600))


def write_in_pieces(path: Path, pieces: int, pause: float, piece: bytes = b"x" * 1000) -> None:
    with open(path, "wb") as f:
        for _ in range(pieces):
            f.write(piece)
            f.flush()
            time.sleep(pause)


@pytest.fixture
def watching(tmp_path):
    """Start a watch over tmp_path (kwargs as bk.files); every started watch is stopped at the end."""
    started: list[Collector] = []

    def start(**kwargs) -> Collector:
        kwargs.setdefault("settle", SETTLE)
        c = Collector(bk.files(tmp_path, watch=True, **kwargs))
        started.append(c)
        time.sleep(0.2)  # let the initial walk finish, so what the test makes next arrives by events
        return c

    yield start
    for c in started:
        c.source.close()
        c.thread.join(10)


def test_files_present_at_start_come_first_in_walk_order_then_arrivals(tmp_path, watching):
    (tmp_path / "sub").mkdir()
    for rel in ("b.txt", "a.txt", "sub/c.txt"):
        write(tmp_path / rel, rel.encode(), old=True)
    c = watching()
    assert c.wait_names("a.txt", "b.txt", "c.txt")
    write(tmp_path / "later.txt", b"later")
    assert c.wait_names("later.txt")
    c.stop()
    assert c.names() == ["a.txt", "b.txt", "c.txt", "later.txt"]
    # The backlog needs no settling: its files are old.
    assert c.items[2][0] - c.items[0][0] < SETTLE


def test_recent_file_present_at_start_waits_for_settle(tmp_path, watching):
    write(tmp_path / "fresh.txt", b"fresh")
    started = time.monotonic()
    c = watching()
    assert c.wait_names("fresh.txt")
    c.stop()
    assert c.items[0][0] - started >= SETTLE


def test_file_written_slowly_in_pieces_is_yielded_once_and_complete(tmp_path, watching):
    c = watching()
    target = tmp_path / "slow.dat"
    # Pauses shorter than settle: the file is not complete until the writer is done.
    write_in_pieces(target, pieces=8, pause=SETTLE / 3)
    finished = time.monotonic()
    assert c.wait_names("slow.dat")
    time.sleep(2 * SETTLE)
    c.stop()
    assert c.names() == ["slow.dat"]
    when, version = c.items[0]
    assert when >= finished
    assert version.size == 8000 == target.stat().st_size
    assert version.mtime_ns == target.stat().st_mtime_ns


def test_file_renamed_into_place_is_yielded_under_its_final_name_only(tmp_path, watching):
    c = watching()
    part = tmp_path / "report.csv.part"
    write_in_pieces(part, pieces=4, pause=0.05)
    part.rename(tmp_path / "report.csv")
    assert c.wait_names("report.csv")
    time.sleep(2 * SETTLE)
    c.stop()
    assert c.names() == ["report.csv"]
    assert c.items[0][1].size == 4000


def test_file_changed_after_it_was_yielded_is_yielded_again_as_a_new_version(tmp_path, watching):
    target = tmp_path / "data.txt"
    write(target, b"one", old=True)
    c = watching()
    assert c.wait_names("data.txt")
    with open(target, "ab") as f:
        f.write(b" two")
    assert c.wait_for(lambda c: len(c.items) == 2)
    os.chmod(target, 0o600)  # metadata only: the same version, not yielded again
    time.sleep(3 * SETTLE)
    c.stop()
    first, second = (item for _, item in c.items)
    assert (first.size, second.size) == (3, 7)
    assert first == second and first.key != second.key
    assert len(c.items) == 2


def test_a_file_deleted_and_made_again_is_a_new_arrival_even_with_the_same_size_and_mtime(tmp_path, watching):
    target = tmp_path / "again.txt"
    write(target, b"same", old=True)
    stamp = target.stat().st_mtime_ns
    c = watching()
    assert c.wait_names("again.txt")
    target.unlink()
    time.sleep(3 * SETTLE)  # the deletion is seen: the file is forgotten
    write(target, b"same")
    os.utime(target, ns=(stamp, stamp))
    assert c.wait_for(lambda c: len(c.items) == 2)
    c.stop()
    assert [(v.size, v.mtime_ns) for _, v in c.items] == [(4, stamp), (4, stamp)]


def test_temporary_names_are_ignored_by_default_and_the_list_can_be_replaced(tmp_path, watching):
    names = ["keep.txt", "a.part", "b.tmp", ".~lock.doc#", ".hidden"]
    (tmp_path / ".staging").mkdir()
    for name in names:
        write(tmp_path / name, b"x", old=True)
    write(tmp_path / ".staging" / "inside.txt", b"x", old=True)
    default = watching()
    everything = watching(ignore=())
    only_part = watching(ignore="*.part")
    assert everything.wait_names(*names, "inside.txt")
    assert only_part.wait_names("keep.txt", "b.tmp", ".hidden", "inside.txt")
    assert default.wait_names("keep.txt")
    write(tmp_path / "new.part", b"x")
    write(tmp_path / "new.txt", b"x")
    assert default.wait_names("new.txt")
    for c in (default, everything, only_part):
        c.stop()
    assert default.names() == ["keep.txt", "new.txt"]
    assert "a.part" not in only_part.names() and "new.part" not in only_part.names()
    assert "new.part" in everything.names()


def test_include_and_exclude_apply_to_arrivals_as_to_the_walk(tmp_path, watching):
    (tmp_path / "skip").mkdir()
    (tmp_path / "in").mkdir()
    c = watching(include="*.csv", exclude="skip")
    for rel in ("a.csv", "a.txt", "skip/b.csv", "in/c.csv"):
        write(tmp_path / rel, b"x")
    assert c.wait_names("a.csv", "c.csv")
    time.sleep(2 * SETTLE)
    c.stop()
    assert sorted(c.names()) == ["a.csv", "c.csv"]


def test_new_directories_are_walked_including_files_made_before_they_were_watched(tmp_path, watching):
    c = watching()
    deep = tmp_path / "x" / "y" / "z"
    deep.mkdir(parents=True)
    for i in range(20):
        write(deep / f"f{i}.txt", b"x")
    # A tree made elsewhere and moved in whole: no event for any of its files.
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    (outside / "inner").mkdir(parents=True)
    write(outside / "inner" / "moved.txt", b"m")
    outside.rename(tmp_path / "arrived")
    expected = {f"f{i}.txt" for i in range(20)} | {"moved.txt"}
    assert c.wait_for(lambda c: set(c.names()) == expected)
    time.sleep(2 * SETTLE)
    c.stop()
    assert sorted(c.names()) == sorted(expected)  # each once


def test_polling_finds_arrivals_and_changes(tmp_path, watching):
    write(tmp_path / "old.txt", b"old", old=True)
    c = watching(poll=0.2)
    assert c.wait_names("old.txt")
    write_in_pieces(tmp_path / "new.dat", pieces=5, pause=SETTLE / 3)
    assert c.wait_names("new.dat")
    with open(tmp_path / "old.txt", "ab") as f:
        f.write(b"er")
    assert c.wait_for(lambda c: c.names().count("old.txt") == 2)
    c.stop()
    sizes = {(os.path.basename(v), v.size) for _, v in c.items}
    assert sizes == {("old.txt", 3), ("new.dat", 5000), ("old.txt", 5)}


def test_files_lost_by_the_os_watcher_are_found_by_the_periodic_rescan(tmp_path, monkeypatch, watching):
    # As after an inotify queue overflow, which watchfiles does not report: the events are gone.
    monkeypatch.setattr(watcher._Watching, "_changes", lambda self, raw: None)
    monkeypatch.setattr(watcher, "RESCAN_EVERY", 0.5)
    c = watching()
    write(tmp_path / "missed.txt", b"x", old=True)
    assert c.wait_names("missed.txt")
    c.stop()


def test_close_unblocks_a_waiting_next_and_ends_the_iteration(tmp_path):
    source = bk.files(tmp_path, watch=True, settle=SETTLE)
    it = iter(source)
    outcome: list = []
    waiter = threading.Thread(target=lambda: outcome.append(next(it, "ended")))
    waiter.start()
    time.sleep(0.3)
    assert waiter.is_alive()  # blocked: nothing to yield
    source.close()
    waiter.join(2)
    assert not waiter.is_alive() and outcome == ["ended"]
    assert list(source) == []  # closed for good


def test_closing_the_iterator_itself_stops_it(tmp_path):
    write(tmp_path / "a.txt", b"a", old=True)
    it = iter(bk.files(tmp_path, watch=True, settle=SETTLE))
    assert os.path.basename(next(it)) == "a.txt"
    it.close()
    assert next(it, "ended") == "ended"


def os_thread_ids() -> set[str]:
    """The native ids of this process's threads (a C library's threads included)."""
    return set(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc")
@pytest.mark.parametrize("poll", [False, 0.2])
def test_no_thread_is_left_behind_after_close(tmp_path, poll):
    # Threads are told apart by id, not counted: threads that earlier tests left (a warm pool's,
    # a timer retiring it) may end meanwhile without hiding a leak or faking one.
    before_py, before_os = set(threading.enumerate()), os_thread_ids()
    kept = []  # still referenced: close() itself must end the threads, not garbage collection
    for _ in range(3):
        source = bk.files(tmp_path, watch=True, settle=SETTLE, poll=poll)
        c = Collector(source)
        wait_until(lambda: len(os_thread_ids() - before_os) >= 2, timeout=10,
                   what="the collector's thread and the OS watcher's reader")
        source.close()
        c.thread.join(10)
        kept.append(c)
    assert [t for t in threading.enumerate() if t not in before_py] == []
    # Native threads end a moment after they are released.
    wait_until(lambda: not os_thread_ids() - before_os, timeout=10, what="the watch's native threads to end")


def test_an_idle_watch_does_not_spin(tmp_path):
    # Not a speed figure: a busy loop would burn a whole core (1 s of CPU per second).
    c = Collector(bk.files(tmp_path, watch=True, settle=SETTLE))
    time.sleep(0.3)
    cpu = time.process_time()
    time.sleep(1.5)
    used = time.process_time() - cpu
    c.stop()
    assert used < 0.3, f"{used:.2f} s of CPU in 1.5 s idle"


def test_versions_are_paths_or_strings_carrying_size_mtime_and_a_versioned_key(tmp_path):
    write(tmp_path / "a.txt", b"abc", old=True)
    st = (tmp_path / "a.txt").stat()
    with bk.files(tmp_path, watch=True) as source:
        p = next(iter(source))
    with bk.files(tmp_path, watch=True, as_str=True) as source:
        s = next(iter(source))
    assert isinstance(p, PathVersion) and isinstance(p, Path)
    assert isinstance(s, FileVersion) and isinstance(s, str) and s == str(tmp_path / "a.txt") == str(p)
    for v in (p, s):
        assert (v.size, v.mtime_ns) == (3, st.st_mtime_ns)
        assert v.key == f"{tmp_path / 'a.txt'}@3:{st.st_mtime_ns}"
        back = pickle.loads(pickle.dumps(v))  # as sent to process and Dask workers
        assert type(back) is type(v) and back == v and (back.size, back.mtime_ns, back.key) == (3, v.mtime_ns, v.key)
    assert p.read_bytes() == b"abc" and open(s).read() == "abc"
    # The journal keys them by version, not by path alone.
    assert item_key(p) == item_key(s) == p.key


def test_identity_names_the_root_filters_and_watch_but_not_settle_or_poll(tmp_path):
    plain = repr(bk.files(tmp_path, include="*.csv"))
    watched = repr(bk.files(tmp_path, include="*.csv", watch=True))
    assert watched != plain and "watch=True" in watched and str(tmp_path) in watched and "*.csv" in watched
    assert repr(bk.files(tmp_path, include="*.csv", watch=True, settle=10, poll=True)) == watched
    assert repr(bk.files(tmp_path, include="*.csv", watch=True, ignore="*.part")) != watched
    assert isinstance(bk.files(tmp_path, watch=True), FileWatch)


def test_bad_watch_options_are_usage_errors(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(bk.UsageError, match="watch=True"):
        bk.files(tmp_path, settle=5)
    with pytest.raises(bk.UsageError, match="poll"):
        bk.files(tmp_path, watch=True, poll=0)
    with pytest.raises(bk.UsageError, match="not a directory"):
        bk.files(tmp_path / "f.txt", watch=True)
    with pytest.raises(bk.UsageError, match="duration"):
        bk.files(tmp_path, watch=True, settle="soon")
