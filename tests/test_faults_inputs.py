"""Issue 11, items 7 and 12: every input exactly once (duplicate lines, items whose pickle depends on
the hash seed) across kill -9 and --resume, and API misuse that stays per item or is a clear UsageError.

Real processes killed with SIGKILL, a resume under a different ``PYTHONHASHSEED``, real worker
processes that cannot send a value back.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import textwrap
import threading

import pytest

import batchkit as bk

from conftest import PY, python_env
from faults_support import communicate, executions, make_project, query, recorded_keys, run, start, wait_until


def test_a_duplicate_input_line_runs_again_on_resume_after_kill_9(tmp_path):
    job, _, env = make_project(tmp_path, 1)
    items = tmp_path / "dups.txt"
    items.write_text("x\nslow\nx\n")
    slow, log = tmp_path / "slow.txt", tmp_path / "ran.log"
    slow.write_text("slow\n")
    db = tmp_path / "home" / "batchkit.db"
    args = ["run", f"{job}:slow", "--input", str(items), "--workers", "1", "--chunk-size", "1", "--delay", "0",
            "--slow-file", str(slow), "--log", str(log), "--no-progress", "--json"]
    proc = start(args, env, tmp_path)
    wait_until(lambda: "slow" in executions(log) and recorded_keys(db) == ["x"], what="the first x, then slow")
    os.killpg(proc.pid, signal.SIGKILL)
    communicate(proc)
    slow.write_text("")
    again = run([*args, "--resume"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["total"], summary["succeeded"], summary["skipped"], summary["ran"]) == (3, 3, 1, 2)
    assert executions(log).count("x") == 2  # the first x once, the second x once (on resume)
    assert len(recorded_keys(db)) == 3


HASH_SEED_SCRIPT = textwrap.dedent('''
    import sys, time
    import batchkit as bk

    def work(item):
        time.sleep(0.004)
        return item["id"]

    if __name__ == "__main__":
        # A dict holding a set of strings: its plain pickle follows the set's order, which follows the
        # process's hash seed; the default key must not.
        items = [{"id": i, "tags": {f"tag{i}", f"other{i}", "common", "x" * (i % 7)}} for i in range(200)]
        report = bk.run(work, items, backend="process", workers=2, chunk_size=5, journal=True,
                        resume=sys.argv[1] == "resume", progress=False)
        print(report.skipped, report.succeeded, report.failed)
''')


def test_items_whose_pickle_depends_on_the_hash_seed_resume_under_another_seed(tmp_path):
    script = tmp_path / "seeded.py"
    script.write_text(HASH_SEED_SCRIPT)
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    db = tmp_path / "home" / "batchkit.db"
    proc = subprocess.Popen([PY, str(script), "first"], env={**env, "PYTHONHASHSEED": "1"}, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_until(lambda: len(recorded_keys(db)) >= 40 or proc.poll() is not None, what="40 journaled items")
    os.killpg(proc.pid, signal.SIGKILL)
    communicate(proc)
    before = len(recorded_keys(db))
    assert 40 <= before < 200
    again = subprocess.run([PY, str(script), "resume"], env={**env, "PYTHONHASHSEED": "2"}, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    skipped, succeeded, failed = map(int, again.stdout.split())
    assert (skipped, succeeded, failed) == (before, 200, 0)
    assert query(db, "SELECT COUNT(*), COUNT(DISTINCT key) FROM items") == [(200, 200)]  # not 300 rows


KEY_SHAPES = textwrap.dedent('''
    from batchkit.state.keys import item_key

    class Tags(set):
        pass

    shapes = [{"tags": {"a", "b", "c", "d"}}, frozenset({"x", "y", frozenset({"p", "q", "r"})}),
              [Tags({"m", "n", "o"}), {"k": {("t", 1), ("u", 2)}}], ("plain", 1, 2.5, None)]
    print(" ".join(item_key(s) for s in shapes))
''')


def test_default_keys_of_items_holding_sets_are_the_same_under_every_hash_seed():
    keys = {subprocess.run([PY, "-c", KEY_SHAPES], env={**python_env(), "PYTHONHASHSEED": seed},
                           capture_output=True, text=True, timeout=30, check=True).stdout for seed in "123"}
    assert len(keys) == 1, keys


class Halt(BaseException):
    """A user's own BaseException (not an Exception)."""


def raises_base_exceptions(x):
    if x == 2:
        raise GeneratorExit("closed early")
    if x == 5:
        raise Halt("the user's own BaseException")
    return x * 10


def test_generator_exit_and_a_custom_base_exception_fail_only_their_item(backend, workers):
    report = bk.run(raises_base_exceptions, range(8), backend=backend, workers=workers, chunk_size=3,
                    progress=False)
    assert [(o.item, o.error.type, o.error.message) for o in report.failures] == [
        (2, "GeneratorExit", "closed early"), (5, "Halt", "the user's own BaseException")]
    assert [o.value for o in report.outcomes if o.ok] == [x * 10 for x in range(8) if x not in (2, 5)]


def test_one_unpicklable_item_fails_alone_in_a_process_run():
    report = bk.run(str, [1, 2, threading.Lock(), 4, 5], backend="process", workers=2, chunk_size=5,
                    progress=False)
    (bad,) = report.failures
    assert bad.index == 2 and "cannot be sent to the worker processes" in bad.error.message
    assert "\n" not in bad.error.message
    assert [o.value for o in report.outcomes if o.ok] == ["1", "2", "4", "5"]


def _refuse_in_the_parent(pid: int) -> object:
    if os.getpid() == pid:
        raise RuntimeError("this value cannot be rebuilt here")
    return "rebuilt"


class OnlyInTheWorker:
    """Pickles fine in the worker; unpickling it in the parent raises."""

    def __init__(self, parent: int) -> None:
        self.parent = parent

    def __reduce__(self):
        return (_refuse_in_the_parent, (self.parent,))


def value_the_parent_cannot_unpickle(x, parent):
    return OnlyInTheWorker(parent) if x == 3 else x


@pytest.mark.parametrize("workers, chunk_size", [(1, 4), (2, 1)])
def test_a_value_that_fails_to_unpickle_in_the_parent_fails_only_its_item(workers, chunk_size):
    # It breaks loky's pool, so every slice in flight gets the same error: none but its own may fail.
    fn = functools.partial(value_the_parent_cannot_unpickle, parent=os.getpid())
    report = bk.run(fn, range(16), backend="process", workers=workers, chunk_size=chunk_size, progress=False)
    assert [o.index for o in report.failures] == [3]
    (bad,) = report.failures
    assert "value could not be sent back" in bad.error.message and "\n" not in bad.error.message
    assert [o.value for o in report.outcomes if o.ok] == [x for x in range(16) if x != 3]


def test_a_value_that_fails_to_unpickle_in_the_parent_says_why():
    fn = functools.partial(value_the_parent_cannot_unpickle, parent=os.getpid())
    (bad,) = bk.run(fn, range(4), backend="process", workers=2, chunk_size=4, progress=False).failures
    assert "cannot be rebuilt here" in bad.error.message
    assert "could not send the function or items" not in bad.error.message


@pytest.mark.parametrize("bad, expect", [
    ({"timeout": float("inf")}, "timeout=inf"),
    ({"timeout": float("nan")}, "timeout=nan"),
    ({"key": 5}, "key=5"),
    ({"journal": 123}, "journal=123"),
    ({"retry": -1}, "retry=-1"),
])
def test_a_bad_argument_is_a_usage_error_before_anything_runs(bad, expect):
    ran = []
    with pytest.raises(bk.UsageError, match=expect):
        bk.run(ran.append, [1, 2], backend="serial", progress=False, **bad)
    assert ran == []


@pytest.mark.parametrize("on", [5, "NotAnException", [ValueError, 5]])
def test_retry_on_something_that_is_no_exception_is_a_usage_error(on):
    if on == "NotAnException":  # a name is looked up when the run starts (it may be the job's own)
        with pytest.raises(bk.UsageError, match="NotAnException"):
            bk.run(str, [1], backend="serial", retry=bk.Retry(on=on), progress=False)
        return
    with pytest.raises(bk.UsageError, match="on="):
        bk.Retry(on=on)


def test_retry_on_an_unknown_exception_name_exits_2_with_one_line(tmp_path):
    job, items, env = make_project(tmp_path, 3)
    result = run(["run", f"{job}:slow", "--input", str(items), "--retries", "1", "--retry-on", "NotAnException"],
                 env, tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "NotAnException" in result.stderr and "Traceback" not in result.stderr
    assert query(tmp_path / "home" / "batchkit.db", "SELECT id FROM runs") == []
