"""A watch driven as users drive it: through the real engine while writer processes add files,
on the process backend, and stopped by real signals. Bounded in time; settle is 0.3 s."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import batchkit as bk
from batchkit.engine import Engine

from conftest import python_env

SETTLE = 0.3

# One writer process: files written at once, in pieces with pauses shorter than settle, renamed
# into place from a .part name, in a new directory, and rewritten after a first complete version.
# Each complete version is logged ("REL SIZE") to the manifest after the writer closes it.
WRITER = textwrap.dedent("""
    import os, random, sys, time
    root, manifest = sys.argv[1], sys.argv[2]
    seed, count, settle = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    rng = random.Random(seed)
    log = open(manifest, "a")

    def complete(rel):
        log.write(f"{rel} {os.path.getsize(os.path.join(root, rel))}\\n")
        log.flush()

    def pieces(f, n):
        for _ in range(n):
            f.write(b"p" * rng.randint(1, 5000))
            f.flush()
            time.sleep(rng.uniform(0, settle * 0.6))
        f.write(b"END\\n")

    for i in range(count):
        mode = ("fast", "slow", "rename", "newdir", "rewrite")[i % 5]
        rel = f"w{seed}-{i}.dat" if mode != "newdir" else f"d{seed}-{i}/inner/w.dat"
        path = os.path.join(root, rel)
        if mode == "fast":
            with open(path, "wb") as f:
                f.write(b"f" * rng.randint(0, 10000) + b"END\\n")
        elif mode == "slow":
            with open(path, "wb") as f:
                pieces(f, rng.randint(2, 5))
        elif mode == "rename":
            with open(path + ".part", "wb") as f:
                pieces(f, 3)
            os.rename(path + ".part", path)
        elif mode == "newdir":
            os.makedirs(os.path.dirname(path))
            with open(path, "wb") as f:
                f.write(b"n" * rng.randint(0, 10000) + b"END\\n")
        else:
            with open(path, "wb") as f:
                f.write(b"v1 END\\n")
            complete(rel)
            time.sleep(settle * 4)
            with open(path, "ab") as f:
                pieces(f, 3)
        complete(rel)
""")


def start_writers(root, manifest, n_writers: int = 2, count: int = 10) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(manifest), str(seed), str(count),
                              str(SETTLE)], env=python_env()) for seed in range(n_writers)]


def complete_versions(manifest) -> tuple[set[tuple[str, int]], dict[str, int]]:
    """Every complete (rel, size) the writers made, and each file's final size."""
    complete, final = set(), {}
    for line in manifest.read_text().splitlines():
        rel, size = line.rsplit(" ", 1)
        complete.add((rel, int(size)))
        final[rel] = int(size)
    return complete, final


class Lines:
    """A process's output lines, read by a thread so each wait can be bounded."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.queue.put(line.strip())
        self.queue.put(None)  # end of output

    def next(self, timeout: float = 15.0) -> str | None:
        """The next line ("" if none comes within ``timeout``; None at the end of the output)."""
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return ""

    def rest(self, timeout: float = 15.0) -> list[str]:
        """Every line up to the end of the output."""
        out = []
        while (line := self.next(timeout)) not in (None, ""):
            out.append(line)
        return out


def wait_until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.mark.parametrize("poll", [False, 0.25], ids=["events", "polling"])
def test_engine_runs_every_complete_version_of_arriving_files_and_nothing_half_written(tmp_path, poll):
    root, manifest = tmp_path / "in", tmp_path / "manifest.txt"
    root.mkdir()
    (root / "before.dat").write_bytes(b"b END\n")
    seen: list[tuple[str, int, int]] = []

    def job(path):
        # What the job itself reads must be the version it was given (no writer touches it again
        # here except the rewrite, which only appends after its first version is complete).
        rel = os.path.relpath(path, root)
        seen.append((rel, path.size, path.mtime_ns))
        return rel, path.size

    source = bk.files(root, watch=True, settle=SETTLE, poll=poll)
    engine = Engine(job, source, backend="thread", workers=2, progress=False)
    chunks: list = []
    runner = threading.Thread(target=lambda: chunks.extend(engine.chunks()))
    runner.start()
    writers = start_writers(root, manifest)
    for w in writers:
        assert w.wait(60) == 0
    complete, final = complete_versions(manifest)
    final["before.dat"] = 6
    complete.add(("before.dat", 6))
    # Outcomes come out while the watch waits for more (a partial chunk goes out when input stalls).
    assert wait_until(lambda: set(final.items()) <= {tuple(o.value) for c in list(chunks) for o in c.outcomes()}), (
        final, seen)
    source.close()
    runner.join(20)
    assert not runner.is_alive()

    outcomes = [o for chunk in chunks for o in chunk.outcomes()]
    assert all(o.ok for o in outcomes)
    values = [tuple(o.value) for o in outcomes]
    assert sorted(values) == sorted((rel, size) for rel, size, _ in seen)  # every item started came out
    # Nothing half-written: every version run is one the writers had completed ...
    assert set(values) <= complete, set(values) - complete
    # ... each version ran once, and every file's final version ran.
    assert len(seen) == len(set(seen))
    assert set(final.items()) <= set(values)


def test_process_workers_receive_versions_with_their_size_and_key(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"abc")
    os.utime(tmp_path / "a.txt", (1, 1))
    source = bk.files(tmp_path, watch=True, settle=SETTLE)
    engine = Engine(_describe, source, backend="process", workers=1, chunk_size=1, progress=False)
    chunks: list = []
    runner = threading.Thread(target=lambda: chunks.extend(engine.chunks()))
    runner.start()
    time.sleep(1.0)
    source.close()
    runner.join(60)
    assert not runner.is_alive()
    [outcome] = [o for chunk in chunks for o in chunk.outcomes()]
    assert outcome.ok, outcome.error
    assert outcome.value == ("PathVersion", 3, 1_000_000_000, f"{tmp_path / 'a.txt'}@3:1000000000", "abc")


def _describe(path):
    return type(path).__name__, path.size, path.mtime_ns, path.key, path.read_text()


# Iterates a watch in the main thread, as `batchkit run --watch` does; SIGTERM closes it.
MAIN_THREAD = textwrap.dedent("""
    import os, signal, sys
    import batchkit as bk
    source = bk.files(sys.argv[1], watch=True, settle=0.3)
    if sys.argv[2] == "close-on-term":
        signal.signal(signal.SIGTERM, lambda *a: source.close())
    print("ready", flush=True)
    try:
        for path in source:
            print("got", os.path.basename(path), flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
    print("closed", flush=True)
""")


@pytest.mark.parametrize("sig, mode, code, last", [(signal.SIGTERM, "close-on-term", 0, "closed"),
                                                   (signal.SIGINT, "default", 130, "interrupted")])
def test_a_signal_stops_a_watch_waiting_in_the_main_thread(tmp_path, sig, mode, code, last):
    proc = subprocess.Popen([sys.executable, "-c", MAIN_THREAD, str(tmp_path), mode], stdout=subprocess.PIPE,
                            text=True, env=python_env())
    lines = Lines(proc)
    try:
        assert lines.next() == "ready"
        (tmp_path / "one.txt").write_text("1")
        assert lines.next() == "got one.txt"
        time.sleep(0.3)  # blocked in the watch again
        proc.send_signal(sig)
        assert proc.wait(10) == code
        assert lines.rest() == [last]
    finally:
        proc.kill()


AS_NOBODY = textwrap.dedent("""
    import json, os, signal, sys
    import batchkit as bk
    import batchkit.sources.watch, watchfiles._rust_notify  # imported first: the interpreter lives under /root
    os.setgid(65534); os.setuid(65534)
    source = bk.files(sys.argv[1], watch=True, settle=0.2, poll=float(sys.argv[2]) or False)
    signal.signal(signal.SIGTERM, lambda *a: source.close())
    for path in source:
        print("got", os.path.relpath(path, sys.argv[1]), flush=True)
    print(json.dumps(source.errors), flush=True)
""")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to the 'nobody' user")
@pytest.mark.parametrize("poll", [0, 0.2], ids=["events", "polling"])
def test_unreadable_directories_are_reported_and_the_rest_still_watched(poll):
    # As root nothing is unreadable, so watch as 'nobody' a tree with chmod 000 directories,
    # one there at start and one made later: both listed in `errors`, everything else watched.
    import json
    import shutil
    import tempfile

    root = tempfile.mkdtemp(prefix="bk-watch-perm-", dir="/tmp")
    try:
        os.chmod(root, 0o755)
        for d in ("a", "locked", "z"):
            os.mkdir(os.path.join(root, d), 0o755)
        with open(os.path.join(root, "locked", "secret.txt"), "w") as f:
            f.write("s")
        with open(os.path.join(root, "a", "f.txt"), "w") as f:
            f.write("f")
        os.chmod(os.path.join(root, "locked"), 0)
        proc = subprocess.Popen([sys.executable, "-c", AS_NOBODY, root, str(poll)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=python_env(), cwd="/")
        lines = Lines(proc)
        try:
            assert lines.next() == "got a/f.txt"
            time.sleep(0.5)  # the catch-up walk is done; what follows arrives by events
            os.mkdir(os.path.join(root, "later"), 0)
            for rel in ("a/g.txt", "z/h.txt"):
                with open(os.path.join(root, rel), "w") as f:
                    f.write(rel)
            assert {lines.next(), lines.next()} == {"got a/g.txt", "got z/h.txt"}
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
            [out] = lines.rest()
            err = proc.stderr.read()
        finally:
            proc.kill()
        errors = json.loads(out)
        assert sorted(errors) == [[os.path.join(root, d), "Permission denied"] for d in ("later", "locked")]
        assert err.count("cannot read") == 2, err  # each logged once, however often rescanned
        assert "watching again" not in err  # the OS watcher never failed on them
    finally:
        for d in ("locked", "later"):
            if os.path.exists(os.path.join(root, d)):
                os.chmod(os.path.join(root, d), 0o755)
        shutil.rmtree(root)
