"""Issue 11, items 6 and 11: ``--output`` holds exactly the run's results after kill -9 and ``--resume``,
and ``--json --quiet`` prints one JSON document on stdout whatever the job prints.

kill -9 of the whole process group at random points (seeded, so a failure can be replayed), then
``--resume``; the final file is compared with an uninterrupted run's: byte for byte when ordered
(each line's measured ``duration`` aside), as a set of lines when unordered.
"""

from __future__ import annotations

import json
import random
import re
import signal
import time

import pytest

from faults_support import (
    communicate,
    env_with,
    hold_write_lock,
    make_project,
    recorded_keys,
    run,
    start,
    wait_until,
)

N = 60
DURATION = re.compile(rb'"duration": [0-9.e+-]+')


def normalized(data: bytes) -> bytes:
    """The --output bytes with each item's run time (which differs between runs) set to 0."""
    return DURATION.sub(b'"duration": 0', data)


@pytest.fixture
def project(tmp_path):
    job, items, env = make_project(tmp_path, N)
    return tmp_path, job, items, env


def output_args(job, items, out, *, ordered: bool, chunk_size: int, backend: str = "thread") -> list[str]:
    return ["run", f"{job}:slow", "--input", str(items), "--output", str(out), "--backend", backend,
            "--workers", "2", "--chunk-size", str(chunk_size), "--delay", "0.01", "--no-progress", "--quiet",
            *([] if ordered else ["--unordered"])]


def kill_then_resume(tmp_path, env, args, at_least: int, extra: float, busy: bool) -> bytes:
    """Start the run; once ``at_least`` items are journaled and ``extra`` seconds more have passed,
    kill -9 its process group (with ``busy``: while another connection holds the journal's write
    lock, so --output runs ahead of the journal); resume; return the final --output."""
    db = tmp_path / "home" / "batchkit.db"
    proc = start(args, env, tmp_path)
    # Another writer can only hold a journal that exists: a busy kill comes after its first row.
    need = max(at_least, 1) if busy else at_least
    wait_until(lambda: len(recorded_keys(db)) >= need or proc.poll() is not None, what="the kill point")
    holder = hold_write_lock(db) if busy else None
    time.sleep(extra)
    os_kill_group(proc)
    communicate(proc)
    if holder is not None:
        holder.execute("ROLLBACK")
        holder.close()
    assert proc.returncode == -signal.SIGKILL and len(recorded_keys(db)) < N  # killed mid-run
    again = run([*args, "--resume"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert sorted(recorded_keys(db)) == [f"item{i:04d}" for i in range(N)]
    return (tmp_path / args[args.index("--output") + 1]).read_bytes()


def os_kill_group(proc) -> None:
    import os

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_ordered_output_is_complete_after_kill_9_while_the_first_item_is_slow(project):
    """The attack: ordered output holds back the chunks after a slow first item; kill -9 then; resume."""
    tmp_path, job, items, env = project
    baseline = tmp_path / "baseline.jsonl"
    assert run(output_args(job, items, baseline, ordered=True, chunk_size=1), env_with(
        env, BATCHKIT_HOME=str(tmp_path / "h0")), tmp_path).returncode == 0
    slow = tmp_path / "slow.txt"
    slow.write_text("item0000\n")
    out = tmp_path / "out.jsonl"
    args = [*output_args(job, items, out, ordered=True, chunk_size=1), "--slow-file", str(slow)]
    log = tmp_path / "ran.log"
    args += ["--log", str(log)]
    db = tmp_path / "home" / "batchkit.db"
    proc = start(args, env, tmp_path)
    # Later items finish while the first is still running; none of them may be journaled yet.
    wait_until(lambda: log.exists() and len(log.read_text().split()) >= 6, what="items after the slow one")
    time.sleep(0.1)  # they finish (0.01 s each) while the first still runs
    os_kill_group(proc)
    communicate(proc)
    assert recorded_keys(db) == []
    slow.write_text("")
    again = run([*args, "--resume"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert normalized(out.read_bytes()) == normalized(baseline.read_bytes())


def test_output_after_random_kill_9_and_resume_equals_an_uninterrupted_run(project):
    tmp_path, job, items, env = project
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    baselines = {}
    for ordered in (True, False):
        path = tmp_path / f"baseline-{ordered}.jsonl"
        home = env_with(env, BATCHKIT_HOME=str(tmp_path / f"home-baseline-{ordered}"))
        assert run(output_args(job, items, path, ordered=ordered, chunk_size=3), home, tmp_path).returncode == 0
        baselines[ordered] = normalized(path.read_bytes())
    for trial in range(8):
        ordered = trial % 2 == 0
        chunk_size = rng.choice((1, 3, 7))
        backend = "process" if trial == 5 else "thread"
        busy = trial % 4 >= 2  # half the kills come while the journal is held by another writer
        at_least, extra = rng.randrange(0, N - 25), rng.uniform(0.05, 0.15) if busy else rng.uniform(0, 0.03)
        where = tmp_path / f"trial{trial}"
        where.mkdir()
        out = where / "out.jsonl"
        args = output_args(job, items, out, ordered=ordered, chunk_size=chunk_size, backend=backend)
        final = kill_then_resume(where, env_with(env, BATCHKIT_HOME=str(where / "home")), args, at_least, extra, busy)
        what = f"seed {seed}, trial {trial}: ordered={ordered} chunk_size={chunk_size} {backend} kill at " \
               f"{at_least}+{extra:.3f}s busy={busy}"
        if ordered:
            # Chunk sizes differ from the baseline's; the file does not depend on them.
            assert normalized(final) == baselines[True], what
        else:
            lines = normalized(final).splitlines()
            assert len(lines) == N and set(lines) == set(baselines[False].splitlines()), what


@pytest.mark.parametrize("backend", ["serial", "thread", "process"])
def test_json_quiet_stdout_is_one_json_document_even_when_the_job_prints(tmp_path, backend):
    job = tmp_path / "chatty.py"
    job.write_text('''
import sys
import batchkit as bk

@bk.job
def chatty(item: str) -> str:
    """Prints as it goes, also from its set-up, finishing step and tear-down."""
    print("item says", item)
    sys.stdout.write("no newline")
    return item

@chatty.setup
def hello():
    print("set-up says hello")

@chatty.finish
def bye(outcomes):
    print("finish says bye")

@chatty.teardown
def down():
    print("tear-down says bye")
''')
    _, items, env = make_project(tmp_path, 3)
    result = run(["run", str(job), "--input", str(items), "--backend", backend, "--workers", "2", "--json",
                  "--quiet"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # one document, nothing around it
    assert summary["succeeded"] == 3
    for said in ("item says", "item0002", "set-up says hello", "finish says bye", "tear-down says bye"):
        assert said in result.stderr
