"""Issue 11, item 3: no secret in any byte batchkit writes.

Every file under ``$BATCHKIT_HOME`` (journal, its WAL, locks, scheduler state), the ``--output``
file (except the values the job itself returned: those are the user's data, written exactly),
``--log-file``, ``--metrics-file``, and every line printed (the FAILED lines, the resume hint,
``history``/``show``/``status``, ``batchkit schedule``), searched for each secret: an environment
secret inside item values, passwords in item keys (one containing ``@``), and secret job options.
Keys stay exact for resume: a resumed run skips the finished secret-bearing items.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import batchkit as bk

from conftest import PY
from faults_support import (
    communicate,
    env_with,
    make_project,
    query,
    recorded_keys,
    run,
    start,
    wait_until,
)

TOKEN = "supersecret123"
SECRETS = [TOKEN, "s3cretpw", "Hunter2pw", "Zq@9xK!v", "9xK!v", "tok_live_abcdef123456", "Pa55word"]
OPTIONS = ["--api-token", "tok_live_abcdef123456", "--url", "https://admin:Pa55word@h/x"]
ITEMS = ["a", "b", "https://alice:s3cretpw@db.example.com/x", "https://bob:Zq@9xK!v@svc/x",
         "https://carol:Hunter2pw@ok.example/y", "slow", "z"]

SECRET_JOB = '''
import os, time
import batchkit as bk

@bk.job(backend="thread")
def fetch(item: str, api_token: str = "", url: str = "", slow_file: str = "") -> str:
    """Pretend to fetch ITEM with the API token; the hosts db.example.com and svc are down."""
    deadline = time.monotonic() + 30
    while slow_file and item in open(slow_file).read().split() and time.monotonic() < deadline:
        time.sleep(0.01)
    if "db.example.com" in item or "@svc" in item:
        raise ConnectionError(f"cannot reach {item} with token {os.environ['API_TOKEN']}")
    return f"ok {item} used {os.environ['API_TOKEN']}"
'''


def leaks(blobs: dict[str, bytes]) -> list[tuple[str, str]]:
    """(where, secret) for every secret found in any of ``blobs``."""
    return [(where, s) for where, data in blobs.items() for s in SECRETS if s.encode() in data]


def every_file(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def output_without_values(path: Path) -> dict[str, bytes]:
    """The --output file less the ``value`` fields (the job's own return values, written exactly)."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        line.pop("value", None)
    return {str(path): json.dumps(lines).encode()}


def project(tmp_path: Path) -> tuple[Path, Path, dict]:
    _, _, env = make_project(tmp_path, 1)
    job = tmp_path / "fetch.py"
    job.write_text(SECRET_JOB)
    items = tmp_path / "items.txt"
    items.write_text("".join(f"{i}\n" for i in ITEMS))
    return job, items, env_with(env, API_TOKEN=TOKEN)


def test_no_secret_in_the_journal_output_logs_metrics_or_anything_printed_and_resume_skips_secret_keys(tmp_path):
    job, items, env = project(tmp_path)
    home, db = tmp_path / "home", tmp_path / "home" / "batchkit.db"
    slow = tmp_path / "slow.txt"
    slow.write_text("slow\n")
    out, log, prom = tmp_path / "out.jsonl", tmp_path / "run.log", tmp_path / "metrics.prom"
    args = ["run", str(job), "--input", str(items), *OPTIONS, "--slow-file", str(slow), "--workers", "1",
            "--chunk-size", "1", "--output", str(out), "--log-file", str(log), "--log-format", "json",
            "--metrics-file", str(prom), "--no-progress"]
    proc = start(args, env, tmp_path)
    wait_until(lambda: len(recorded_keys(db)) >= 5, what="the items before 'slow'")
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    slow.write_text("")
    stdout1, stderr1 = communicate(proc)
    assert proc.returncode == 143, stderr1
    # What was printed is there, masked: the FAILED lines and the resume hint with its options.
    assert "FAILED https://***@db.example.com/x: ConnectionError: cannot reach https://***@db.example.com/x" in stdout1
    assert "FAILED https://***@svc/x" in stdout1
    assert "Resume with: batchkit run" in stderr1 and "--api-token '***'" in stderr1
    assert "'https://***@h/x'" in stderr1
    before = len(recorded_keys(db))

    again = run([*args, "--resume", "--json"], env, tmp_path)
    summary = json.loads(again.stdout)
    # Keys stay exact for resume: what finished (secret-bearing keys included) is skipped, not re-run.
    assert summary["resumed"] and summary["skipped"] == before and summary["ran"] == len(ITEMS) - before
    assert again.returncode == 1 and (summary["succeeded"], summary["failed"]) == (5, 2)
    assert len(recorded_keys(db)) == len(ITEMS)
    stored = dict(query(db, "SELECT key, value FROM items"))
    assert "https://***@ok.example/y #" in " ".join(stored)  # the redacted key and its digest
    assert all("***" in v for v in stored.values() if v and "used" in v)  # value summaries redacted

    run_id = str(summary["run_id"])
    printed = {name: run(cmd, env, tmp_path).stdout.encode() for name, cmd in {
        "history": ["history"], "history --json": ["history", "--json"], "status": ["status"],
        "show": ["show", run_id, "--tracebacks", "--all"], "show --json": ["show", run_id, "--json", "--tracebacks"],
    }.items()}
    assert b"https://***@db.example.com/x" in printed["show"]
    written = {**every_file(home), **output_without_values(out), str(log): log.read_bytes(),
               str(prom): prom.read_bytes(), "stdout 1": stdout1.encode(), "stderr 1": stderr1.encode(),
               "stdout 2": again.stdout.encode(), "stderr 2": again.stderr.encode(), **printed}
    assert leaks(written) == []
    assert any(p.endswith("batchkit.db") for p in written) and log.stat().st_size and prom.stat().st_size
    # --output: keys and errors masked; the values are exactly what the job returned.
    lines = {line["index"]: line for line in map(json.loads, out.read_text().splitlines())}
    assert sorted(lines) == list(range(len(ITEMS)))
    assert lines[4]["key"].startswith("https://***@ok.example/y") and lines[4]["value"] == f"ok {ITEMS[4]} used {TOKEN}"
    assert "***" in lines[2]["error"]["message"] and lines[2]["key"] == "https://***@db.example.com/x"


def test_batchkit_schedule_prints_no_secret_of_its_jobs_options_or_their_resume_hints(tmp_path):
    job, items, env = project(tmp_path)
    slow = tmp_path / "slow.txt"
    slow.write_text("slow\n")
    import subprocess

    proc = subprocess.Popen([PY, "-m", "batchkit", "schedule", "--every", "1h", str(job), "--input", str(items),
                             *OPTIONS, "--slow-file", str(slow), "--workers", "1", "--chunk-size", "1",
                             "--no-progress"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_until(lambda: len(recorded_keys(tmp_path / "home" / "batchkit.db")) >= 5, what="the scheduled run")
    proc.send_signal(signal.SIGTERM)  # passed on to the job, which stops and prints how to resume
    time.sleep(0.3)
    slow.write_text("")
    stdout, stderr = communicate(proc)
    assert proc.returncode == 0, stderr
    assert "Resume with: batchkit run" in stderr and "--api-token '***'" in stderr
    assert leaks({"stdout": stdout.encode(), "stderr": stderr.encode(), **every_file(tmp_path / "home")}) == []


def test_values_holding_a_secret_are_never_stored_and_a_resume_runs_them_again_for_exact_values(
        tmp_path, monkeypatch):
    monkeypatch.setenv("API_TOKEN", TOKEN)
    home = tmp_path / "bkhome"  # conftest's BATCHKIT_HOME
    runs, down = [], ["f"]

    def fetch(item):
        runs.append(item)
        if item in down:
            down.remove(item)
            raise ConnectionError("try again later")
        if item == "b":
            return {"url": "https://bob:Zq@9xK!v@svc/x", "n": 2}
        return f"{item} used {os.environ['API_TOKEN']}" if item in ("a", "c") else item.upper()

    items = ["a", "b", "c", "d", "e", "f"]
    first = bk.run(fetch, items, backend="serial", chunk_size=1, journal=True, progress=False)
    assert first.failed == 1 and leaks(every_file(home)) == []
    runs.clear()
    again = bk.run(fetch, items, backend="serial", chunk_size=1, journal=True, resume="failed", progress=False)
    # Exact values for every item: the failed one and those whose value held a secret ran again.
    assert again.values() == ["a used " + TOKEN, {"url": "https://bob:Zq@9xK!v@svc/x", "n": 2}, "c used " + TOKEN,
                              "D", "E", "F"]
    assert sorted(runs) == ["a", "b", "c", "f"] and again.skipped == 2
    assert leaks(every_file(home)) == []


def test_a_run_stopped_in_imap_then_resumed_with_bk_run_gives_exact_values(tmp_path):
    items = [f"i{n}" for n in range(6)]
    stream = bk.imap(str.upper, items, backend="serial", chunk_size=1, journal=True, progress=False)
    got = [next(stream) for _ in range(3)]
    stream.close()  # the caller stops: the run is interrupted; imap streamed its values, stored none
    assert [o.value for o in got] == ["I0", "I1", "I2"]
    report = bk.run(str.upper, items, backend="serial", chunk_size=1, journal=True, resume=True, progress=False)
    assert report.values() == [i.upper() for i in items] and report.run_id == 1


def test_three_10_mb_error_messages_do_not_make_a_big_journal(tmp_path):
    def fail(item):
        if item.startswith("boom"):
            raise ValueError(f"upstream said ({item}): " + "A" * 10_000_000)
        return item

    report = bk.run(fail, ["a", "boom1", "boom2", "boom3"], backend="serial", journal=True, progress=False)
    assert report.failed == 3 and len(report.failures[0].error.message) > 10_000_000  # in memory, whole
    home = tmp_path / "bkhome"
    assert sum(p.stat().st_size for p in home.rglob("*") if p.is_file()) < 1_000_000
    messages = query(home / "batchkit.db", "SELECT message FROM failures")
    assert len(messages) == 3 and all(len(m) < 10_000 for (m,) in messages)
    assert all("characters cut" in m for (m,) in messages)


def test_a_10_mb_error_message_is_capped_in_the_summary_output_and_log(tmp_path):
    import subprocess

    from conftest import PY, python_env

    (tmp_path / "big.py").write_text(
        "import batchkit as bk\n\n@bk.job\ndef big(item: str) -> str:\n"
        "    '''Fail loudly.'''\n    raise ValueError('upstream said: ' + 'A' * 10_000_000)\n")
    (tmp_path / "one.txt").write_text("x\n")
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    run = subprocess.run([PY, "-m", "batchkit", "run", "big.py", "--input", "one.txt", "--output", "out.jsonl",
                          "--log-file", "run.log", "--backend", "serial"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert len(run.stdout) + len(run.stderr) < 5_000  # the FAILED line says how long it was
    assert "characters" in run.stdout
    assert (tmp_path / "out.jsonl").stat().st_size < 20_000 and (tmp_path / "run.log").stat().st_size < 20_000
