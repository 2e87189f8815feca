"""One run lifecycle, whichever way a user starts it: ``batchkit run`` and ``bk.load_job(spec).run``
behave alike (kill -9 then resume gives the finishing step and ``report.values()`` every item's
exact value in input order; the lock refuses a second run; operations are done); the Python API's
options (no ``ordered`` on ``run``, identity ``name=`` apart from the label ``desc=``, ``imap`` as
a context manager); and a bare ``batchkit run``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import batchkit as bk

from conftest import PY, python_env
from faults_support import items_recorded as recorded

sys.path.insert(0, os.path.dirname(__file__))
from test_ops_support import start_recorder, stop_recorder  # noqa: E402

EXACT_JOB = '''
import json, os, time
import batchkit as bk
import batchkit.jobs.spool

batchkit.jobs.spool.MEMORY_ITEMS = 20  # the CLI's finish reads most outcomes back from disk


class Point:
    """A value of the job's own class: it must come back as a Point, not as its repr."""

    def __init__(self, x, y):
        self.x, self.y = x, y


def describe(value):
    if isinstance(value, Point):
        return ["Point", value.x, value.y]
    return [type(value).__name__, value]


@bk.job
def shape(item: str, delay: float = 0.0, seen: str = "", gate: str = "") -> object:
    """A string longer than 200 characters, a dict, or a Point, by the item's number."""
    n = int(item)
    waited = time.monotonic() + 20
    while gate and not os.path.exists(gate) and time.monotonic() < waited:
        time.sleep(0.02)
    time.sleep(delay)
    if n % 3 == 0:
        return f"{n}:" + "x" * (250 + n)
    if n % 3 == 1:
        return {"n": n, "nested": {"list": [n, str(n)], "long": "y" * 300}}
    return Point(n, -n)


@shape.finish
def write_what_finish_saw(outcomes, report, seen: str = ""):
    if seen:
        with open(seen, "w") as f:
            json.dump([[o.index, o.item, describe(o.value)] for o in outcomes], f)
'''

DRIVER = '''
import json, sys
import batchkit as bk

spec, items_file, seen, resume = sys.argv[1:5]
job = bk.load_job(spec)
report = job.run(open(items_file).read().split(), backend="process", workers=2, chunk_size=5, journal=True,
                 resume=resume == "resume", delay=0.01, seen=seen, progress=False)
print(json.dumps({"skipped": report.skipped,
                  "values": [["Point", v.x, v.y] if type(v).__name__ == "Point" else [type(v).__name__, v]
                             for v in report.values()]}))
'''

N = 150


def expected(n: int) -> list:
    if n % 3 == 0:
        return ["str", f"{n}:" + "x" * (250 + n)]
    if n % 3 == 1:
        return ["dict", {"n": n, "nested": {"list": [n, str(n)], "long": "y" * 300}}]
    return ["Point", n, -n]


@pytest.fixture
def project(tmp_path):
    (tmp_path / "exactjob.py").write_text(EXACT_JOB)
    (tmp_path / "driver.py").write_text(DRIVER)
    (tmp_path / "items.txt").write_text("".join(f"{i}\n" for i in range(N)))
    return tmp_path


def command(entry: str, project: Path, resume: bool) -> list[str]:
    seen = str(project / "seen.json")
    if entry == "cli":
        return [PY, "-m", "batchkit", "run", "exactjob.py", "--input", "items.txt", "--backend", "process",
                "--workers", "2", "--chunk-size", "5", "--delay", "0.01", "--seen", seen,
                *(["--resume", "--json"] if resume else [])]
    return [PY, "driver.py", "exactjob.py", "items.txt", seen, "resume" if resume else "new"]


@pytest.mark.parametrize("entry", ["cli", "job.run"])
def test_kill_9_then_resume_gives_finish_and_values_every_exact_value_in_input_order(entry, project):
    db = Path(os.environ["BATCHKIT_HOME"]) / "batchkit.db"
    first = subprocess.Popen(command(entry, project, False), cwd=project, env=python_env(), start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while recorded(db) < 30:
        assert time.monotonic() < deadline and first.poll() is None, first.stderr and first.stderr.read()
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)  # the whole group: the run and its workers
    first.communicate(timeout=30)
    before = recorded(db)
    assert 30 <= before < N and not (project / "seen.json").exists()

    again = subprocess.run(command(entry, project, True), cwd=project, env=python_env(), capture_output=True,
                           text=True, timeout=90)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["skipped"] == before
    want = [expected(n) for n in range(N)]
    seen = json.loads((project / "seen.json").read_text())
    assert [s[0] for s in seen] == list(range(N)) and [s[1] for s in seen] == [str(n) for n in range(N)]
    assert [s[2] for s in seen] == want  # finish saw every value exactly, earlier attempt included
    if entry == "job.run":
        assert result["values"] == want


@pytest.mark.parametrize("entry", ["cli", "job.run"])
def test_a_second_run_of_a_locked_job_is_refused_while_the_first_runs(entry, project):
    gate = project / "gate"
    cli = [PY, "-m", "batchkit", "run", "exactjob.py", "--input", "items.txt", "--gate", str(gate),
           "--backend", "thread", "--no-journal"]
    by_job = [PY, "-c", "import batchkit as bk; bk.load_job('exactjob.py').run(['1', '2'], backend='thread', "
                        f"lock=True, gate={str(gate)!r}, progress=False)"]
    holder = subprocess.Popen(cli if entry == "cli" else by_job, cwd=project, env=python_env(),
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock_dir = Path(os.environ["BATCHKIT_HOME"]) / "locks"
        deadline = time.monotonic() + 30
        while not (lock_dir.exists() and any(lock_dir.iterdir())):
            assert time.monotonic() < deadline and holder.poll() is None, "the first run took no lock"
            time.sleep(0.02)
        time.sleep(0.2)
        if entry == "cli":
            proc = subprocess.run(cli, cwd=project, env=python_env(), capture_output=True, text=True, timeout=60)
            assert proc.returncode == 75, proc.stderr
            assert "another run of this job is in progress" in proc.stderr
        else:
            job = bk.load_job(str(project / "exactjob.py"))
            with pytest.raises(bk.Locked, match="another run of this job is in progress") as info:
                job.run(["3"], backend="thread", lock=True, gate=str(gate), progress=False)
            assert info.value.exit_code == 75
    finally:
        gate.write_text("go")
        assert holder.wait(timeout=60) == 0


def test_job_run_does_its_operations_log_file_and_pings(project):
    server = start_recorder()
    try:
        log = project / "run.log"
        job = bk.load_job(str(project / "exactjob.py"))
        report = job.run(["1", "2", "x"], backend="thread", log_file=str(log), log_format="json",
                         ping=server.url + "/check", progress=False)
        assert report.failed == 1  # int("x")
        deadline = time.monotonic() + 10
        while len(server.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.paths() == ["/check/start", "/check/fail"]
        events = [json.loads(line) for line in log.read_text().splitlines()]
        assert [e["event"] for e in events if e["event"] in ("run start", "run end")] == ["run start", "run end"]
        end = events[-1]
        assert (end["event"], end["job"], end["failed"], end["succeeded"], end["exit_code"]) == (
            "run end", "shape", 1, 2, 1)
    finally:
        stop_recorder(server)


# -- the Python API's options ---------------------------------------------------------------------

def tally(item):
    where, x = item
    with open(os.path.join(where, "ran.log"), "a") as f:
        f.write(f"{x}\n")
    time.sleep(0.01)
    return x


def test_run_does_not_accept_ordered_but_imap_does():
    with pytest.raises(TypeError, match="ordered"):
        bk.run(abs, [1], backend="serial", ordered=False)
    assert [o.value for o in bk.imap(abs, [-1, -2], backend="serial", ordered=False)] == [1, 2]


def test_name_is_the_identity_for_resume_and_desc_only_a_label(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BATCHKIT_PROGRESS_INTERVAL", "0")
    items = [(str(tmp_path), x) for x in range(40)]
    with bk.imap(tally, items, backend="thread", workers=2, chunk_size=5, journal=True, name="nightly",
                 desc="first label", progress=False) as outcomes:
        for o in outcomes:
            if o.index == 19:
                break
    # Another label, the same name: the same run continues.
    report = bk.run(tally, items, backend="thread", workers=2, chunk_size=5, journal=True, resume=True,
                    name="nightly", desc="second label", progress="log")
    assert report.skipped == 20 and report.succeeded == 40 and report.desc == "second label"
    assert capsys.readouterr().err.splitlines()[-1].startswith("second label: 20/20 (100%)")
    run = bk.Journal().run(report.run_id)
    assert run["job"] == "nightly" and run["state"] == "succeeded" and run["resumes"] == 1
    # Another name: a different run, nothing to continue.
    other = bk.run(tally, items, backend="thread", workers=2, journal=True, resume=True, name="weekly",
                   desc="second label", progress=False)
    assert other.skipped == 0 and other.run_id != report.run_id
    # No name: the function's qualified name, whatever the label.
    plain = bk.run(tally, items[:3], backend="serial", journal=True, desc="a label", progress=False)
    assert bk.Journal().run(plain.run_id)["job"] == f"{__name__}.tally"


def test_imap_as_a_context_manager_stops_the_run_on_exit_and_reports_when_exhausted(tmp_path):
    items = [(str(tmp_path), x) for x in range(2000)]
    with bk.imap(tally, items, backend="process", workers=2, chunk_size=5, journal=True, name="streamed",
                 progress=False) as outcomes:
        for o in outcomes:
            if o.index == 30:
                break
    ran = (tmp_path / "ran.log").read_text().split()
    time.sleep(0.5)
    assert (tmp_path / "ran.log").read_text().split() == ran, "items kept running after the block"
    assert len(ran) < 200
    with pytest.raises(bk.BatchkitError, match="stopped by the caller"):
        _ = outcomes.report
    assert bk.Journal().runs()[0]["state"] == "interrupted"

    with bk.imap(tally, [(str(tmp_path), x) for x in range(-5, 5)], backend="thread", progress=False) as outcomes:
        with pytest.raises(bk.BatchkitError, match="still going"):
            _ = outcomes.report
        values = [o.value for o in outcomes]
    assert values == list(range(-5, 5))
    assert (outcomes.report.succeeded, outcomes.report.failed, outcomes.report.ok) == (10, 0, True)


# -- a bare `batchkit run` ------------------------------------------------------------------------

def test_batchkit_run_without_a_job_prints_a_short_list_of_jobs_and_where_help_is(tmp_path):
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "tidy.py").write_text(textwrap.dedent('''
        import batchkit as bk

        @bk.job
        def tidy(item: str) -> str:
            """Tidy one thing up."""
            return item
    '''))
    proc = subprocess.run([PY, "-m", "batchkit", "run"], cwd=tmp_path, env=python_env(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) <= 24, proc.stderr  # one screen
    assert "error:" not in proc.stderr and "Options:" not in proc.stderr and "Exit codes" not in proc.stderr
    assert lines[0].startswith("Usage: batchkit run JOB")
    assert any(line.split()[:2] == ["tidy", "Tidy"] for line in lines), proc.stderr
    assert any(line.split()[:1] == ["checksum"] for line in lines)
    assert "batchkit run JOB --help" in proc.stderr
