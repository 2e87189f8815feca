"""Short runs from a fresh interpreter: what every cron entry and quick CLI call pays (issue 14, item 1).

Each contender is a new process, timed from exec to exit, so interpreter start-up, imports, starting
the workers, the run and shutting down are all counted, as the user waits for them:

- ``bk.run(abs, range(10)).values()`` on the default (process) backend, against the same ten items
  through ``multiprocessing.Pool(2).map`` (fork, Linux's default) and ``joblib.Parallel(n_jobs=2)``;
- ``batchkit run checksum DIR`` over a directory of 10 small files (journal on, fresh ``$BATCHKIT_HOME``
  each round), against a 12-line ``Pool(2).map`` script that writes the same manifest, and
  ``find | xargs sha256sum`` for context.

Rounds are interleaved and their order reversed every other round, as in the checksum scenario.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Callable

from .checksum import batchkit_exe, bench_dir, cli_ready, make_tree
from .measure import Target, Timing, cost_ratio, time_command, time_round

BK_RUN = "import batchkit as bk\nassert bk.run(abs, range(10)).values() == list(range(10))\n"
POOL_RUN = """import multiprocessing
if __name__ == "__main__":
    with multiprocessing.Pool(2) as pool:
        assert pool.map(abs, range(10)) == list(range(10))
"""
JOBLIB_RUN = """from joblib import Parallel, delayed
assert Parallel(n_jobs=2)(delayed(abs)(i) for i in range(10)) == list(range(10))
"""
# What `batchkit run checksum ROOT > OUT` does, written as a plain script: walk, hash on 2 workers, manifest.
POOL_CHECKSUM = """import hashlib, multiprocessing, os, sys
def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
if __name__ == "__main__":
    root, out = sys.argv[1], sys.argv[2]
    paths = [os.path.join(d, f) for d, dirs, files in os.walk(root) for f in sorted(files)]
    with multiprocessing.Pool(2) as pool:
        digests = pool.map(digest, paths)
    with open(out, "w") as f:
        f.writelines(f"{h}  {p}\\n" for h, p in zip(digests, paths))
"""
PAIRED = "median of the per-round ratios (fresh processes, rounds interleaved, order reversed every other round)"


def _script(name: str, text: str) -> str:
    path = bench_dir() / name
    path.write_text(text)
    return str(path)


def _lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def run(rounds: int, log: Callable[[str], None]) -> tuple[list[Timing], list[Target], list[str]]:
    """Time the short runs and the 10-file checksum, rounds interleaved."""
    py = sys.executable
    notes: list[str] = []
    tree = make_tree(10)
    out = bench_dir() / "cold-manifest.out"
    home = bench_dir() / "cold-home"
    env = dict(os.environ, BATCHKIT_HOME=str(home))
    q = shlex.quote

    def fresh_home() -> None:
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir()

    def ten_lines() -> None:
        if _lines(out) != 10:
            raise AssertionError(f"{out}: {_lines(out)} lines, expected 10")

    why = cli_ready()
    exe = batchkit_exe() or "batchkit"
    # (name, command, note, ours, before, check)
    plan: list[tuple[str, str | None, str, bool, Callable[[], None] | None, Callable[[], None] | None]] = [
        ("multiprocessing.Pool(2).map, 10 items", f"{q(py)} {q(_script('cold_pool.py', POOL_RUN))}",
         "fork (Linux's default start method)", False, None, None),
        ("joblib.Parallel(n_jobs=2), 10 items", f"{q(py)} {q(_script('cold_joblib.py', JOBLIB_RUN))}",
         "loky workers, as joblib starts them", False, None, None),
        ("bk.run(abs, range(10)), default backend", f"{q(py)} {q(_script('cold_bk.py', BK_RUN))}",
         "process backend, progress default", True, None, None),
        ("Pool(2) checksum script, 10 files", f"{q(py)} {q(_script('cold_pool_checksum.py', POOL_CHECKSUM))} "
         f"{q(str(tree))} {q(str(out))}", "os.walk + Pool.map(sha256) + manifest", False, None, ten_lines),
        ("find | xargs sha256sum, 10 files",
         f"find {q(str(tree))} -type f -print0 | xargs -0 sha256sum > {q(str(out))}",
         "coreutils", False, None, ten_lines),
        ("batchkit run checksum, 10 files", None if why else f"{q(exe)} run checksum {q(str(tree))} > {q(str(out))}",
         "journal on (the default), fresh $BATCHKIT_HOME each round", True, fresh_home, ten_lines),
    ]
    if why:
        notes.append(f"the CLI row is skipped: {why}.")
    timings = [Timing(name, 10, note=note, ours=ours, skipped=None if cmd else why)
               for name, cmd, note, ours, _, _ in plan]
    log(f"  {len(plan)} commands x {rounds} rounds, fresh processes, interleaved (after one untimed round)")
    for (_, cmd, _, _, before, _), t in zip(plan, timings):  # bytecode compiled and cached, page cache warm
        if cmd is not None and not t.skipped:
            time_command(cmd, 1, shell=True, env=env, before=before)
    for r in range(rounds):
        order = list(zip(plan, timings))
        for (_, cmd, _, _, before, check), t in (order if r % 2 == 0 else order[::-1]):
            if cmd is None or t.skipped:
                continue
            time_round(t, cmd, shell=True, env=env, before=before, check=check)
    shutil.rmtree(home, ignore_errors=True)
    out.unlink(missing_ok=True)
    pool, _, bk, pool_sum, _, cli = timings
    targets = [
        Target("a short run from a fresh interpreter, `bk.run(abs, range(10))`: wall ≤ 2 × the fork Pool's",
               cost_ratio(bk, pool, paired=True), 2.0, "<=", note=PAIRED),
        Target("`batchkit run checksum` of 10 small files: wall ≤ 3 × the fork Pool script's",
               cost_ratio(cli, pool_sum, paired=True), 3.0, "<=", note=PAIRED),
    ]
    return timings, targets, notes
