"""Retries through every entry point: ``bk.run`` on every backend, ``Job.run`` and ``batchkit run``.

What is retried is decided by one matcher (exception classes, their names, a predicate, a regular
expression on "Type: message"); a matcher that raises fails that item, never the run. Timed-out
and crashed items are re-run only when the policy says so (``on_timeout`` / ``on_crash``).
Attempts are counted from files the items write, so they hold across worker processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

import batchkit as bk

from conftest import PY, python_env

FIRST_ERRORS = {"zero": ZeroDivisionError, "missing": FileNotFoundError, "key": KeyError,
                "503": RuntimeError, "404": RuntimeError}


def fail_first_attempt(item):
    """``(directory, name)``: log the attempt; the first attempt of ``name`` raises what it names."""
    where, name = item
    with open(os.path.join(where, "attempts.log"), "a") as log:
        log.write(name + "\n")
    attempts = Counter(Path(where, "attempts.log").read_text().split())[name]
    if attempts == 1 and name in FIRST_ERRORS:
        detail = f"HTTP {name} from the server" if name.isdigit() else f"first attempt of {name}"
        raise FIRST_ERRORS[name](detail)
    return name


def broken_matcher(exc):
    """A retry predicate with a bug of its own."""
    raise RuntimeError("the matcher itself is broken")


def attempts_made(where: Path) -> Counter:
    return Counter((where / "attempts.log").read_text().split())


def run_items(tmp_path: Path, names: list[str], backend, workers, retry: bk.Retry, sub: str) -> tuple:
    where = tmp_path / sub
    where.mkdir()
    report = bk.run(fail_first_attempt, [(str(where), n) for n in names], backend=backend, workers=workers,
                    retry=retry, progress=False)
    return {o.item[1]: o for o in report.outcomes}, attempts_made(where), report


def test_retry_by_exception_names_and_a_broken_matcher_on_every_backend(backend, workers, tmp_path):
    names = ["ok", "zero", "key", "missing"]
    # Names as text, in a tuple: only ZeroDivisionError is retried.
    by, made, _ = run_items(tmp_path, names, backend, workers,
                            bk.Retry(attempts=2, backoff=0, on=("ZeroDivisionError",)), "tuple")
    assert by["zero"].ok and by["zero"].attempts == 2 and by["zero"].value == "zero"
    assert not by["key"].ok and by["key"].attempts == 1 and by["key"].error.type == "KeyError"
    assert not by["missing"].ok and by["missing"].error.type == "FileNotFoundError"
    assert made == {"ok": 1, "zero": 2, "key": 1, "missing": 1}

    # One name as a plain string matches its subclasses: FileNotFoundError is an OSError.
    by, made, _ = run_items(tmp_path, names, backend, workers, bk.Retry(attempts=2, backoff=0, on="OSError"), "str")
    assert by["missing"].ok and by["missing"].attempts == 2
    assert not by["zero"].ok and made == {"ok": 1, "zero": 1, "key": 1, "missing": 2}

    # A predicate that raises: the item fails with its own error, the other items and the run go on.
    by, made, report = run_items(tmp_path, names, backend, workers,
                                 bk.Retry(attempts=3, backoff=0, on=broken_matcher), "broken")
    assert by["ok"].ok and report.succeeded == 1 and report.failed == 3
    assert {o.error.type for o in report.failures} == {"ZeroDivisionError", "KeyError", "FileNotFoundError"}
    assert made == {"ok": 1, "zero": 1, "key": 1, "missing": 1}


def test_retry_match_retries_only_errors_whose_text_matches(tmp_path):
    by, made, _ = run_items(tmp_path, ["503", "404", "ok"], "process", 2,
                            bk.Retry(attempts=3, backoff=0, match=r"\b503\b"), "match")
    assert by["503"].ok and by["503"].attempts == 2
    assert not by["404"].ok and by["404"].error.message == "HTTP 404 from the server"
    assert made == {"503": 2, "404": 1, "ok": 1}


def test_a_misspelt_exception_name_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(bk.UsageError, match="OSErorr"):
        run_items(tmp_path, ["ok"], "serial", None, bk.Retry(on="OSErorr"), "typo")
    assert not (tmp_path / "typo" / "attempts.log").exists()


# -- the same policies from a job file: Job.run and the command line ---------------------------------

FLAKY_JOB = '''
import os, time
from collections import Counter
from pathlib import Path
import batchkit as bk

ERRORS = {"zero": ZeroDivisionError, "missing": FileNotFoundError, "503": RuntimeError, "404": RuntimeError}


@bk.job
def flaky(item: str, where: str = ".") -> str:
    """The first attempt of an item fails as its name says."""
    with open(os.path.join(where, "attempts.log"), "a") as log:
        log.write(item + "\\n")
    if Counter(Path(where, "attempts.log").read_text().split())[item] == 1 and item in ERRORS:
        raise ERRORS[item](f"HTTP {item} from the server" if item.isdigit() else f"first attempt of {item}")
    return item


@bk.job(retry=bk.Retry(attempts=2, backoff=0, on_timeout=True, on_crash=True))
def fragile(item: str, where: str = ".") -> str:
    """The first attempt of "hang" hangs, of "crash" kills its worker; the job retries both."""
    with open(os.path.join(where, "attempts.log"), "a") as log:
        log.write(f"{item} {os.getpid()}\\n")
    first = sum(line.split()[0] == item for line in Path(where, "attempts.log").read_text().splitlines()) == 1
    if first and item == "hang":
        time.sleep(60)
    if first and item == "crash":
        os._exit(3)
    return item
'''


@pytest.fixture
def job_file(tmp_path):
    path = tmp_path / "retryjobs.py"
    path.write_text(FLAKY_JOB)
    return path


def through(entry: str, job_file: Path, job: str, items: list[str], where: Path, cli_args: list[str],
            **run_kwargs) -> dict[str, dict]:
    """Run ``job`` from ``job_file`` over ``items`` from the command line or through
    ``bk.load_job(...).run``; return each item's outcome as ``{ok, attempts, kind}`` by item."""
    where.mkdir(exist_ok=True)
    if entry == "cli":
        listing = where / "items.txt"
        listing.write_text("".join(f"{i}\n" for i in items))
        out = where / "out.jsonl"
        proc = subprocess.run([PY, "-m", "batchkit", "run", f"{job_file}:{job}", "--input", str(listing),
                               "--where", str(where), "--output", str(out), "--no-journal", *cli_args],
                              capture_output=True, text=True, env=python_env(), cwd=where, timeout=90)
        assert proc.returncode in (0, 1), proc.stderr
        assert "Traceback" not in proc.stderr
        return {items[d["index"]]: {"ok": d["ok"], "attempts": d["attempts"],
                                    "kind": (d.get("error") or {}).get("kind")}
                for d in map(json.loads, out.read_text().splitlines())}
    report = bk.load_job(f"{job_file}:{job}").run(items, where=str(where), progress=False, **run_kwargs)
    return {o.item: {"ok": o.ok, "attempts": o.attempts, "kind": o.error.kind if o.error else None}
            for o in report.outcomes}


@pytest.mark.parametrize("entry", ["cli", "job.run"])
def test_retry_on_names_and_retry_if_from_a_job_file(entry, job_file, tmp_path):
    items = ["ok", "zero", "missing", "503", "404"]
    got = through(entry, job_file, "flaky", items, tmp_path / "names",
                  ["--backend", "process", "--retries", "1", "--retry-backoff", "0",
                   "--retry-on", "ZeroDivisionError,OSError"],
                  backend="process", retry=bk.Retry(attempts=2, backoff=0, on=("ZeroDivisionError", "OSError")))
    assert {k: (v["ok"], v["attempts"]) for k, v in got.items()} == {
        "ok": (True, 1), "zero": (True, 2), "missing": (True, 2), "503": (False, 1), "404": (False, 1)}

    got = through(entry, job_file, "flaky", items, tmp_path / "regex",
                  ["--backend", "thread", "--retries", "2", "--retry-backoff", "0", "--retry-if", "50[0-9]"],
                  backend="thread", retry=bk.Retry(attempts=3, backoff=0, match="50[0-9]"))
    assert {k: (v["ok"], v["attempts"]) for k, v in got.items()} == {
        "ok": (True, 1), "zero": (False, 1), "missing": (False, 1), "503": (True, 2), "404": (False, 1)}


@pytest.mark.parametrize("entry", ["cli", "job.run"])
def test_a_job_retrying_timeouts_and_crashes_reruns_them_on_the_process_backend(entry, job_file, tmp_path):
    # One worker: the crash is the only item running when the pool breaks, so it is the one blamed.
    where = tmp_path / "fragile"
    got = through(entry, job_file, "fragile", ["ok", "hang", "crash", "fine"], where,
                  ["--backend", "process", "--workers", "1", "--chunk-size", "2", "--timeout", "1"],
                  backend="process", workers=1, chunk_size=2, timeout=1)
    assert got == {"ok": {"ok": True, "attempts": 1, "kind": None},
                   "hang": {"ok": True, "attempts": 2, "kind": None},
                   "crash": {"ok": True, "attempts": 2, "kind": None},
                   "fine": {"ok": True, "attempts": 1, "kind": None}}
    # The hung attempt's worker process was killed, not left sleeping.
    hung_pid = next(int(line.split()[1]) for line in (where / "attempts.log").read_text().splitlines()
                    if line.startswith("hang "))
    deadline = time.monotonic() + 10
    while psutil.pid_exists(hung_pid) and psutil.Process(hung_pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"the worker running the hung item ({hung_pid}) is still alive"
        time.sleep(0.1)


def hang_first(item):
    """``(directory, name)``: the first attempt of "hang" sleeps past the timeout; "crash" dies."""
    where, name = item
    with open(os.path.join(where, "attempts.log"), "a") as log:
        log.write(name + "\n")
    first = Counter(Path(where, "attempts.log").read_text().split())[name] == 1
    if first and name == "hang":
        time.sleep(3)
    if first and name == "crash":
        os._exit(3)
    return name


def test_a_timed_out_item_is_rerun_by_the_thread_watchdog_only_when_asked(tmp_path):
    for sub, retry, expect in (("asked", bk.Retry(attempts=2, backoff=0, on_timeout=True), (True, 2)),
                               ("default", bk.Retry(attempts=2, backoff=0), (False, 1))):
        where = tmp_path / sub
        where.mkdir()
        report = bk.run(hang_first, [(str(where), n) for n in ("ok", "hang")], backend="thread", workers=2,
                        timeout=0.5, retry=retry, progress=False)
        hang = report.outcomes[1]
        assert (hang.ok, hang.attempts) == expect, hang
        if not hang.ok:
            assert hang.error.kind == "timeout"
        assert attempts_made(where)["hang"] == expect[1]


def test_a_crashed_item_is_never_rerun_by_default(tmp_path):
    where = tmp_path / "crash"
    where.mkdir()
    report = bk.run(hang_first, [(str(where), n) for n in ("ok", "crash", "fine", "more")], backend="process",
                    workers=2, chunk_size=4, retry=bk.Retry(attempts=3, backoff=0), progress=False)
    crash = report.outcomes[1]
    assert not crash.ok and crash.error.kind == "crash" and crash.attempts == 1
    assert report.succeeded == 3
    assert attempts_made(where)["crash"] == 1


def test_a_crashing_item_retried_with_on_crash_is_rerun_alone_and_fails_alone(tmp_path):
    # It crashes on every attempt: each re-run is its own task, so the items around it still finish.
    where = tmp_path / "always"
    where.mkdir()
    items = [(str(where), n) for n in ("a", "b", "crash", "c", "d", "e")]
    report = bk.run(always_crash, items, backend="process", workers=2, chunk_size=6,
                    retry=bk.Retry(attempts=3, backoff=0, on_crash=True), progress=False)
    crash = report.outcomes[2]
    assert not crash.ok and crash.error.kind == "crash" and crash.attempts == 3
    assert report.succeeded == 5 and all(o.attempts == 1 for o in report.outcomes if o.ok)
    made = attempts_made(where)
    assert made["crash"] == 3
    assert all(made[n] <= 2 for n in "abcde")  # the rest of the chunk re-ran at most once, after the first crash


def always_crash(item):
    where, name = item
    with open(os.path.join(where, "attempts.log"), "a") as log:
        log.write(name + "\n")
    if name == "crash":
        os._exit(3)
    return name


def test_cli_retry_options_are_checked_before_anything_runs(job_file, tmp_path):
    listing = tmp_path / "items.txt"
    listing.write_text("ok\n")
    for args, expect in ((["--retry-if", "50("], "not a valid regular expression"),
                         (["--retry-on", "OSErorr"], "OSErorr")):
        proc = subprocess.run([PY, "-m", "batchkit", "run", f"{job_file}:flaky", "--input", str(listing),
                               "--where", str(tmp_path), "--retries", "1", *args],
                              capture_output=True, text=True, env=python_env(), cwd=tmp_path, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert expect in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "attempts.log").exists()
