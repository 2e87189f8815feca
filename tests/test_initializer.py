"""Per-worker set-up: ``bk.run(..., initializer=f, initargs=(...))`` and a job's ``@job.initializer``.

Counted the way users rely on it: each initializer run appends ``pid thread`` to a real file, so
the tests see how often it ran in each worker, and the function returns what the initializer
stored in a module-level global (the typical use: a model loaded once per worker).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import threading

import pytest

import batchkit as bk

from conftest import PY, python_env
from faults_support import error_lines

# A script run by a real interpreter: its functions live in __main__, so they travel to the
# workers by value (cloudpickle), each chunk with its own copy of the module's globals.
SCRIPT = '''
import json, os, sys, threading, time
import batchkit as bk

MODEL = None


def load(name, log):
    global MODEL
    MODEL = name.upper()
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {threading.get_ident()} {time.time()}\\n")


def use(x):
    if x == int(os.environ.get("CRASH_ON", "-1")):
        with open(os.environ["CRASH_LOG"], "a") as f:
            f.write(f"{os.getpid()} {time.time()}\\n")
        os.kill(os.getpid(), 9)
    return [MODEL, os.getpid(), threading.get_ident()]


if __name__ == "__main__":
    backend, workers, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    report = bk.run(use, range(40), backend=backend, workers=workers, chunk_size=2, progress=False,
                    initializer=load, initargs=("bert", log))
    print(json.dumps({"pid": os.getpid(), "thread": threading.get_ident(),
                      "outcomes": [[o.item, o.ok, o.value, o.error and o.error.kind] for o in report.outcomes]}))
'''


def run_script(tmp_path, backend: str, workers: int, **env: str) -> tuple[dict, collections.Counter]:
    script = tmp_path / "load_once.py"
    script.write_text(SCRIPT)
    log = tmp_path / "init.log"
    run = subprocess.run([PY, str(script), backend, str(workers), str(log)], capture_output=True, text=True,
                         env={**python_env(), **env}, cwd=tmp_path, timeout=90)
    assert run.returncode == 0, run.stderr
    runs = collections.Counter(tuple(map(int, line.split()[:2])) for line in log.read_text().splitlines())
    return json.loads(run.stdout), runs


def test_initializer_runs_once_per_worker_process_and_the_function_sees_its_global(tmp_path):
    out, runs = run_script(tmp_path, "process", 2)
    values = [value for _, ok, value, _ in out["outcomes"]]
    assert all(ok for _, ok, _, _ in out["outcomes"])
    assert {model for model, _, _ in values} == {"BERT"}  # every chunk, not only each worker's first
    pids = collections.Counter(pid for pid, _ in runs)
    assert set(pids.values()) == {1} and 1 <= len(pids) <= 2  # once in each worker process
    assert {pid for _, pid, _ in values} <= set(pids)
    assert out["pid"] not in pids


def test_a_worker_that_replaces_a_crashed_one_runs_the_initializer_again(tmp_path):
    crashes = tmp_path / "crash.log"
    out, runs = run_script(tmp_path, "process", 2, CRASH_ON="13", CRASH_LOG=str(crashes))
    by_item = {item: (ok, value, kind) for item, ok, value, kind in out["outcomes"]}
    assert by_item[13] == (False, None, "crash")
    assert all(ok and value[0] == "BERT" for item, (ok, value, _) in by_item.items() if item != 13)
    pids = collections.Counter(pid for pid, _ in runs)
    assert set(pids.values()) == {1}  # once in each process, however many there were
    inits = [line.split() for line in (tmp_path / "init.log").read_text().splitlines()]
    first_crash = min(float(line.split()[1]) for line in crashes.read_text().splitlines())
    killed = {int(line.split()[0]) for line in crashes.read_text().splitlines()}
    replacements = {int(pid) for pid, _, when in inits if float(when) > first_crash}
    assert killed <= set(pids) and replacements and not replacements & killed
    served = {value[1] for ok, value, _ in by_item.values() if ok}
    assert served & replacements  # items after the crash ran in workers that set up again


def test_initializer_runs_once_per_thread_on_the_thread_backend(tmp_path):
    out, runs = run_script(tmp_path, "thread", 3)
    values = [value for _, ok, value, _ in out["outcomes"] if ok]
    assert len(values) == 40 and {model for model, _, _ in values} == {"BERT"}
    assert {pid for pid, _ in runs} == {out["pid"]}
    assert set(runs.values()) == {1}  # each thread once
    assert {thread for _, _, thread in values} <= {thread for _, thread in runs}
    assert out["thread"] not in {thread for _, thread in runs}


def test_initializer_runs_once_in_the_calling_thread_on_the_serial_backend(tmp_path):
    out, runs = run_script(tmp_path, "serial", 1)
    assert runs == collections.Counter({(out["pid"], out["thread"]): 1})
    assert {tuple(value) for _, _, value, _ in out["outcomes"]} == {("BERT", out["pid"], out["thread"])}


# In-process tests: functions of this module travel by reference.
LOADED: list = []


def record_setup(log: str, tag: str = "x") -> None:
    LOADED.append(tag)
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {threading.get_ident()}\n")


def worker_of(x: int) -> tuple:
    return LOADED[-1] if LOADED else None, os.getpid()


def test_initializer_runs_once_per_dask_worker(dask_client, tmp_path):
    log = tmp_path / "init.log"
    report = bk.run(worker_of, range(30), backend=bk.DaskBackend(client=dask_client), chunk_size=2,
                    progress=False, initializer=record_setup, initargs=(str(log), "dask"))
    assert report.ok and {tag for tag, _ in report.values()} == {"dask"}
    runs = collections.Counter(int(line.split()[0]) for line in log.read_text().splitlines())
    workers = set(dask_client.run(os.getpid).values())
    assert set(runs.values()) == {1} and set(runs) <= workers
    assert {pid for _, pid in report.values()} <= set(runs)
    # A second run is a new run: each worker sets up again, once.
    bk.run(worker_of, range(30), backend=bk.DaskBackend(client=dask_client), chunk_size=2, progress=False,
           initializer=record_setup, initargs=(str(log), "again"))
    again = collections.Counter(int(line.split()[0]) for line in log.read_text().splitlines())
    assert set((again - runs).values()) == {1}


calls = {"n": 0}


def fails_first_time(log: str) -> None:
    calls["n"] += 1
    if calls["n"] == 1:
        raise ConnectionError("database not up yet")


def test_an_initializer_that_raises_fails_its_chunk_with_step_initializer_and_the_next_chunk_tries_again():
    calls["n"] = 0
    report = bk.run(abs, range(6), backend="serial", chunk_size=2, progress=False,
                    initializer=fails_first_time, initargs=("",))
    assert [o.ok for o in report.outcomes] == [False, False, True, True, True, True]
    error = report.failures[0].error
    assert (error.type, error.step, error.kind) == ("ConnectionError", "initializer", "exception")
    assert "initializer failed: database not up yet" in error.message
    assert "fails_first_time" in error.traceback
    assert calls["n"] == 2  # it succeeded on the second chunk and was not run again


def always_fails() -> None:
    raise RuntimeError("no model here")


def test_an_initializer_failing_in_every_worker_fails_every_item_and_the_run_ends(tmp_path):
    report = bk.run(abs, range(8), backend="process", workers=2, chunk_size=2, progress=False,
                    initializer=always_fails)
    assert report.failed == 8 and {o.error.step for o in report.failures} == {"initializer"}


def test_an_initializer_that_cannot_be_sent_to_workers_is_a_clear_usage_error():
    lock = threading.Lock()
    with pytest.raises(bk.UsageError, match="the initializer cannot be sent to the worker processes"):
        bk.run(abs, range(8), backend="process", workers=2, progress=False,
               initializer=lambda: lock.acquire(False))


def test_initializer_must_be_callable_and_initargs_a_tuple():
    with pytest.raises(bk.UsageError, match="initializer=.*give a function"):
        bk.run(abs, [1], backend="serial", initializer="load")
    with pytest.raises(bk.UsageError, match="initargs=.*tuple"):
        bk.run(abs, [1], backend="serial", initializer=print, initargs="ab")


# -- a job's own initializer ---------------------------------------------------------------------

JOB = '''
import os, threading
import batchkit as bk

MODEL = None


@bk.job(backend="process")
def tag(item: str, suffix: str = "") -> str:
    """Tag each item with the model this worker loaded."""
    return f"{item}:{MODEL}{suffix}:{os.getpid()}"


@tag.initializer
def load(model: str = "small", log: str = "") -> None:
    """Load the model once in each worker.

    Args:
        model: which model each worker loads
    """
    global MODEL
    MODEL = model.upper()
    if log:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {threading.get_ident()}\\n")
'''


@pytest.fixture
def job_file(tmp_path):
    path = tmp_path / "tagger.py"
    path.write_text(JOB)
    return path


def test_job_initializer_runs_once_per_worker_process_from_the_command_line(tmp_path, job_file):
    items = tmp_path / "items.txt"
    items.write_text("".join(f"w{i}\n" for i in range(30)))
    log, out = tmp_path / "init.log", tmp_path / "out.jsonl"
    run = subprocess.run([PY, "-m", "batchkit", "run", str(job_file), "--input", str(items), "--workers", "2",
                          "--chunk-size", "2", "--model", "large", "--log", str(log), "--suffix", "!",
                          "--output", str(out), "--quiet"],
                         capture_output=True, text=True, env=python_env(), cwd=tmp_path, timeout=90)
    assert run.returncode == 0, run.stderr
    values = [json.loads(line)["value"] for line in out.read_text().splitlines()]
    assert len(values) == 30 and {v.split(":")[1] for v in values} == {"LARGE!"}
    runs = collections.Counter(int(line.split()[0]) for line in log.read_text().splitlines())
    assert set(runs.values()) == {1} and 1 <= len(runs) <= 2
    assert {int(v.split(":")[2]) for v in values} <= set(runs)


def test_job_initializer_options_show_in_the_jobs_help(job_file):
    run = subprocess.run([PY, "-m", "batchkit", "run", str(job_file), "--help"], capture_output=True, text=True,
                         env=python_env(), timeout=60)
    assert run.returncode == 0 and "--model" in run.stdout and "which model each worker loads" in run.stdout


def test_job_initializer_from_python_per_thread_then_the_callers_own(tmp_path, job_file):
    job = bk.load_job(str(job_file))
    log = tmp_path / "init.log"
    report = job.run([f"w{i}" for i in range(20)], model="tiny", log=str(log), backend="thread", workers=2,
                     chunk_size=2, progress=False, initializer=record_setup, initargs=(str(tmp_path / "own.log"),))
    assert {v.split(":")[1] for v in report.values()} == {"TINY"}
    runs = collections.Counter(tuple(map(int, line.split())) for line in log.read_text().splitlines())
    own = collections.Counter(tuple(map(int, line.split())) for line in (tmp_path / "own.log").read_text().splitlines())
    assert set(runs.values()) == {1} and runs == own  # both, once in each thread


def test_job_initializer_defaults_fill_its_parameters(job_file):
    job = bk.load_job(str(job_file))
    report = job.run(["a"], backend="serial", progress=False)
    assert report.values()[0].startswith("a:SMALL:")


def test_job_without_an_initializer_has_none():
    @bk.job
    def plain(item: str) -> str:
        return item

    assert plain.bind().initializer() is None
    assert plain.run(["a"], backend="serial", progress=False).values() == ["a"]


DYING_JOB = '''
import os
import batchkit as bk


@bk.job(backend="process")
def double(item: str) -> str:
    """Double each item."""
    return item * 2


@double.initializer
def load() -> None:
    """A worker environment that cannot start: the process dies before its first item."""
    os._exit(1)
'''


def test_workers_that_die_before_any_item_end_the_command_with_exit_3_and_one_line(tmp_path):
    job = tmp_path / "dying.py"
    job.write_text(DYING_JOB)
    items = tmp_path / "items.txt"
    items.write_text("".join(f"w{i}\n" for i in range(50)))
    run = subprocess.run([PY, "-m", "batchkit", "run", str(job), "--input", str(items), "--workers", "2", "--quiet"],
                         capture_output=True, text=True, env=python_env(), cwd=tmp_path, timeout=90)
    assert run.returncode == 3, run.stderr
    (line,) = error_lines(run.stderr)
    assert "died 5 times in a row without finishing any item" in line
    assert "Traceback" not in run.stderr
