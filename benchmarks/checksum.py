"""The checksum job through the CLI over a tree of small files, against xargs and GNU parallel.

Every contender writes a ``sha256sum``-format manifest of the same tree to a file, and each
round's manifest is checked (one line per file) off the clock. The tree is built once and kept
in the temp directory (``batchkit-bench/tree-N``); the page cache is warmed before timing, so
all contenders read from memory. Each batchkit round gets a fresh, empty ``$BATCHKIT_HOME``.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from .measure import Target, Timing, cost_ratio, time_command, time_round

PER_DIR = 1000
PAIRED = "median of the per-round ratios (rounds interleaved, order reversed every other round)"


def bench_dir() -> Path:
    """Where the benchmarks keep their trees and scratch files."""
    path = Path(tempfile.gettempdir()) / "batchkit-bench"
    path.mkdir(exist_ok=True)
    return path


def make_tree(n: int) -> Path:
    """A tree of ``n`` small files (100 B - 4 KiB, fixed seed), ``PER_DIR`` per directory; cached."""
    root = bench_dir() / f"tree-{n}"
    done = bench_dir() / f"tree-{n}.complete"  # beside the tree, so it is not one of its files
    if done.exists() and root.is_dir():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(n)
    blob = rng.randbytes(8192)
    for i in range(n):
        d = root / f"d{i // PER_DIR:04d}"
        if i % PER_DIR == 0:
            d.mkdir(parents=True)
        size = rng.randint(100, 4096)
        start = rng.randint(0, len(blob) - size)
        (d / f"f{i:07d}.dat").write_bytes(i.to_bytes(8, "little") + blob[start:start + size])
    # Write the new tree out before anything is timed: its writeback would otherwise run during
    # the first rounds, and any fsync then (the journal's checkpoints) waits for all of it
    # (seconds, after a 1M-file tree).
    if hasattr(os, "sync"):
        os.sync()
    done.touch()
    return root


def batchkit_exe() -> str | None:
    """The ``batchkit`` console script of the interpreter running the benchmarks (the one beside
    ``sys.executable``, as an activated venv would find it), else the first on ``PATH``.

    (``shutil.which`` alone may find another install's script, or a version manager's shim
    that runs a shell first, and time that instead.)
    """
    beside = Path(sys.executable).parent / ("batchkit.exe" if os.name == "nt" else "batchkit")
    return str(beside) if beside.is_file() else shutil.which("batchkit")


def cli_ready() -> str | None:
    """``None`` when ``batchkit run checksum --help`` works, else why it does not."""
    exe = batchkit_exe()
    if exe is None:
        return "the batchkit console script is neither beside this python nor on PATH"
    proc = subprocess.run([exe, "run", "checksum", "--help"], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"`batchkit run checksum --help` exited {proc.returncode}: {proc.stderr.strip()[-200:]}"
    if "--no-journal" not in proc.stdout:
        return "`batchkit run checksum` has no --no-journal option yet"
    return None


def _lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def run(n: int, rounds: int, log: Callable[[str], None]) -> tuple[list[Timing], list[Target], list[str]]:
    """Time xargs, GNU parallel and ``batchkit run checksum`` with and without the journal."""
    notes: list[str] = []
    why = cli_ready()
    if why is not None:
        notes.append(f"batchkit rows skipped: {why}.")
    log(f"  building / reusing a tree of {n:,} files")
    root = make_tree(n)
    out = bench_dir() / "manifest.out"
    home = bench_dir() / "home"
    q = shlex.quote(str(root))

    def check() -> None:
        got = _lines(out)
        if got != n:
            raise AssertionError(f"manifest has {got} lines, expected {n}")

    def fresh_home() -> None:
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir()

    env = dict(os.environ, BATCHKIT_HOME=str(home))
    xargs = f"find {q} -type f -print0 | xargs -0 -P2 -n500 sha256sum > {shlex.quote(str(out))}"
    subprocess.run(xargs, shell=True, check=True)  # warms the page cache for everyone
    plan: list[tuple[str, str | list[str] | None, str, bool]] = [
        ("find | xargs -0 -P2 -n500 sha256sum", xargs, "coreutils, 500 files per process", False)]
    if shutil.which("parallel"):
        cmd = f"find {q} -type f -print0 | parallel --will-cite -0 -j2 -X sha256sum > {shlex.quote(str(out))}"
        plan.append(("find | parallel -j2 -X sha256sum", cmd, "GNU parallel", False))
    else:
        notes.append("GNU parallel is not installed (Debian package `parallel`): its row is skipped.")
        plan.append(("find | parallel -j2 -X sha256sum", None, "skipped: GNU parallel not installed", False))
    exe = batchkit_exe() or "batchkit"
    base = f"{shlex.quote(exe)} run checksum {q} --workers 2"
    plan.append(("batchkit run checksum --workers 2", None if why else f"{base} > {shlex.quote(str(out))}",
                 "journal on (the default), fresh $BATCHKIT_HOME each round", True))
    plan.append(("batchkit run checksum --workers 2 --no-journal",
                 None if why else f"{base} --no-journal > {shlex.quote(str(out))}", "journal off", True))
    timings = [Timing(name, n, note=note, ours=ours) for name, _, note, ours in plan]
    for (_, cmd, _, ours), t in zip(plan, timings):
        if cmd is None:
            t.skipped = why if ours else "GNU parallel not installed"
    log(f"  {len(plan)} commands x {rounds} rounds, interleaved")
    # Rounds interleaved, and the order reversed every other round (A B C D, D C B A, ...): load
    # from elsewhere hits every contender alike, and no contender always runs right after the
    # same one (the first run after GNU parallel's 4 s of full load is measurably slower).
    for r in range(rounds):
        order = list(zip(plan, timings))
        for (_, cmd, _, ours), t in (order if r % 2 == 0 else order[::-1]):
            if t.skipped:
                continue
            time_round(t, cmd, shell=True, env=env, before=fresh_home if ours else None, check=check)
    shutil.rmtree(home, ignore_errors=True)
    out.unlink(missing_ok=True)
    bk, nj, xa, par = (timings[2], timings[3], timings[0], timings[1])

    def rel(a: Timing, b: Timing) -> float | None:
        return cost_ratio(a, b, paired=True)  # all four ran interleaved, round by round

    targets = [
        Target(f"checksum, {n:,} files, CLI, journal on: wall ≤ 1.1 × find | xargs -P2", rel(bk, xa), 1.1, "<=",
               note=PAIRED),
        Target(f"checksum, {n:,} files, CLI, journal on: wall ≤ 0.4 × GNU parallel -j2 -X", rel(bk, par), 0.4,
               "<=", note=PAIRED),
        Target(f"journal cost on the {n:,}-file checksum run ≤ 5 % (wall with ÷ without)", rel(bk, nj), 1.05,
               "<=", note=PAIRED),
    ]
    return timings, targets, notes



def scale(small: int, large: int, rounds: int, log: Callable[[str], None]
          ) -> tuple[list[str], list[list[str]], list[Target], list[Timing]]:
    """``batchkit run checksum`` (journal on) over ``small`` and ``large`` files, rounds interleaved:
    wall, CPU and the CLI parent's peak RSS (``benchmarks.peak``); then the parent's peak RSS of a
    streaming run over the same trees (``benchmarks.rss files``)."""
    import json
    import statistics
    import sys

    from . import rss
    from .table import count, seconds

    why = cli_ready()
    if why is not None:
        raise RuntimeError(why)
    trees = {}
    for n in (small, large):
        log(f"  building / reusing a tree of {n:,} files; reading it once (page cache warm for every round)")
        trees[n] = make_tree(n)
        subprocess.run(f"find {shlex.quote(str(trees[n]))} -type f -print0 | xargs -0 -P2 -n1000 cat > /dev/null",
                       shell=True, check=True)
    out = bench_dir() / "scale-manifest.out"
    home = bench_dir() / "scale-home"
    peak_file = bench_dir() / "scale-peak.json"
    env = dict(os.environ, BATCHKIT_HOME=str(home))
    timings = {n: Timing(f"batchkit run checksum, {n:,} files", n, ours=True,
                         note="journal on, fresh $BATCHKIT_HOME each round, --workers 2") for n in (small, large)}
    peaks: dict[int, list[float]] = {small: [], large: []}

    def fresh() -> None:
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir()

    for r in range(rounds):
        for n in ((small, large) if r % 2 == 0 else (large, small)):
            def check(n: int = n) -> None:
                got = _lines(out)
                if got != n:
                    raise AssertionError(f"manifest has {got} lines, expected {n}")

            log(f"  round {r + 1}: {n:,} files")
            cmd = (f"{shlex.quote(sys.executable)} -m benchmarks.peak {shlex.quote(str(peak_file))} run checksum "
                   f"{shlex.quote(str(trees[n]))} --workers 2 > {shlex.quote(str(out))}")
            wall, cpu = time_command(cmd, 1, shell=True, env=env, before=fresh, check=check)
            timings[n].times += wall
            timings[n].cpu += cpu
            peaks[n].append(json.loads(peak_file.read_text())["peak_mb"])
    shutil.rmtree(home, ignore_errors=True)
    out.unlink(missing_ok=True)
    peak_file.unlink(missing_ok=True)
    rows = []
    for n, t in timings.items():
        t.extra["peak_mb"] = peaks[n]
        rows.append([f"**{t.name}**", count(n),
                     f"{seconds(t.median)} ({seconds(min(t.times))}–{seconds(max(t.times))})",
                     seconds(statistics.median(t.cpu)), count(t.throughput),
                     f"{statistics.median(peaks[n]):.0f} ({min(peaks[n]):.0f}–{max(peaks[n]):.0f})", t.note])
    streamed = {}
    for n in (small, large):
        log(f"  streaming run over {n:,} files, fresh process")
        got = rss.measure("files", n)
        if got["seen"] != n or got["failed"]:
            raise AssertionError(f"streaming run over {n} files: {got['seen']} outcomes, {got['failed']} failed")
        streamed[n] = got["peak_mb"]
        rows.append([f"**bk.imap(sha256, bk.files(tree)), {n:,} files**", count(n), seconds(got["elapsed"]), "—",
                     count(n / got["elapsed"]), f"{got['peak_mb']:.0f}",
                     "streaming: no outcome kept; one fresh process"])
    a, b = timings[small], timings[large]
    cli_small, cli_large = statistics.median(peaks[small]), statistics.median(peaks[large])
    per_file = (cli_large - cli_small) * 2**20 / (large - small)
    limit = round(large / small * 1.05, 2)
    targets = [
        Target(f"checksum of {large:,} files: wall ≤ {limit:g} × the {small:,}-file run's", b.median / a.median,
               limit, "<=", note="ratio of the medians"),
        Target(f"parent memory flat: `batchkit run checksum`'s peak RSS at {large:,} files ≤ 1.2 × at {small:,}",
               cli_large / cli_small, 1.2, "<=",
               note=f"{cli_small:.0f} and {cli_large:.0f} MB (≈ {per_file:.0f} bytes per file more): the outcomes "
               "its manifest is written from wait in a spool on disk"),
        Target(f"parent memory flat: a streaming run's peak RSS at {large:,} files ≤ 1.2 × at {small:,}",
               streamed[large] / streamed[small], 1.2, "<=",
               note=f"{streamed[small]:.0f} and {streamed[large]:.0f} MB: `bk.imap` over `bk.files`"),
    ]
    header = ["contender", "files", "median s (min–max)", "CPU s, all processes", "files/s", "parent peak RSS (MB)",
              "notes"]
    return header, rows, targets, [a, b]
