"""Operations end to end: a cron entry run by ``sh -c`` as cron would, and no secret in anything
batchkit wrote (journal, logs, crontab, metrics, pings and notifications)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from crontab import CronTab
from test_cron import cron_command
from test_ops_support import start_recorder, stop_recorder

from batchkit.cli.main import cli
from batchkit.state.journal import Journal

JOB = '''import batchkit as bk


@bk.job(backend="serial")
def grade(item: str, token: str = "", pass_mark: int = 5) -> int:
    """Fail items below the pass mark, quoting whatever the caller gave us."""
    if int(item) < pass_mark:
        env = __import__("os").environ.get("MY_API_TOKEN")
        raise ValueError(f"{item} is below {pass_mark} (auth {token}, env {env})")
    return int(item)
'''


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    (root / "jobs").mkdir(parents=True)
    (root / "jobs" / "grade.py").write_text(JOB)
    (root / "marks.txt").write_text("7\n9\n6\n")
    (root / "mixed.txt").write_text("7\n3\n9\n")
    return root


def cron_env(home: Path) -> dict:
    """The environment cron gives a job: almost nothing (the entry brings PATH and BATCHKIT_HOME).
    PYTHONPATH stands for installing this checkout (the venv's own install may be another one)."""
    return {"HOME": str(home), "LOGNAME": "root", "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


def run_entry(tab: Path, name: str, cwd: Path) -> subprocess.CompletedProcess:
    [item] = [i for i in CronTab(tabfile=str(tab)) if (i.comment or "").startswith(f"batchkit:{name} ")]
    line = [raw for raw in tab.read_text().splitlines() if raw.endswith(item.comment)][0]
    return subprocess.run(["sh", "-c", cron_command(line)], cwd=cwd, env=cron_env(cwd), capture_output=True,
                          text=True, timeout=60)


def test_cron_entry_runs_with_sh_from_another_directory_quietly_and_is_listed(project, tmp_path, monkeypatch):
    tab, elsewhere = tmp_path / "crontab", tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(project)  # relative job name and --input, resolved by the entry itself
    for name, items in (("good", "marks.txt"), ("mixed", "mixed.txt")):
        result = CliRunner().invoke(cli, ["cron", "add", "--crontab", str(tab), "--name", name, "*/10 * * * *",
                                          "grade", "--input", items])
        assert result.exit_code == 0, result.output

    good = run_entry(tab, "good", elsewhere)
    assert (good.returncode, good.stdout, good.stderr) == (0, "", "")  # all output goes to the log
    home = Path(os.environ["BATCHKIT_HOME"])
    assert (home / "logs" / "good.log").read_text() == ""  # --quiet: nothing at all when all went well

    mixed = run_entry(tab, "mixed", elsewhere)
    assert mixed.returncode == 1  # the job's exit code comes through sh
    log = (home / "logs" / "mixed.log").read_text()
    assert "3 is below 5" in log  # failures are reported, into the entry's log

    with Journal(home / "batchkit.db") as journal:
        runs = {Path(r["args"]["input"]).name: r for r in journal.runs(job="grade")}
    assert (runs["marks.txt"]["state"], runs["marks.txt"]["succeeded"]) == ("succeeded", 3)
    assert (runs["mixed.txt"]["state"], runs["mixed.txt"]["failed"]) == ("failed", 1)
    listed = [json.loads(x) for x in CliRunner().invoke(cli, ["cron", "list", "--json", "--crontab", str(tab)])
              .output.splitlines()]
    # Each entry's own last run, not the latest run of the job.
    assert [(e["name"], e["last_result"].split()[0]) for e in listed] == [("good", "succeeded"), ("mixed", "1")]
    assert listed[1]["last_result"].startswith("1 failed (exit 1) ")


def test_quiet_run_that_succeeds_writes_nothing_at_all(project):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run([sys.executable, "-m", "batchkit", "run", "grade", "--input", "marks.txt", "--quiet"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert (proc.stdout, proc.stderr) == ("", "")


SECRET = "tok-8d1e5a0f77"
PASSWORD = "s3cr3t-pass-91"


def test_no_secret_reaches_anything_batchkit_writes(project, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_API_TOKEN", SECRET)
    monkeypatch.chdir(project)
    server = start_recorder()
    try:
        hook = server.url.replace("http://", f"http://alice:{PASSWORD}@") + "/hook"
        ping = server.url.replace("http://", f"http://bob:{PASSWORD}@") + "/check"
        out = tmp_path / "out"
        out.mkdir()
        args = [sys.executable, "-m", "batchkit", "run", "grade", "--input", "mixed.txt", "--token", SECRET,
                "--log-file", str(out / "run.log"), "--log-format", "json", "--ping", ping, "--notify", hook,
                "--metrics-file", str(out / "batchkit.prom"), "--output", str(out / "items.jsonl"), "--json"]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        proc = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, proc.stderr
        refused = CliRunner().invoke(cli, ["cron", "add", "--crontab", str(out / "crontab"), "@daily", "grade",
                                           "--token", SECRET])
        assert refused.exit_code == 2
        CliRunner().invoke(cli, ["cron", "add", "--crontab", str(out / "crontab"), "@daily", "grade"])
        received = [(method, path, body) for method, path, body, _ in server.requests]
    finally:
        stop_recorder(server)

    assert [path for _, path, _ in received if path.startswith("/check")] == ["/check/start", "/check/fail"]
    notification = json.loads([body for _, path, body in received if path == "/hook"][0])
    assert "3 is below 5" in notification["text"]
    assert "auth ***" in notification["text"]  # the message is there, the secret is not

    events = [json.loads(line) for line in (out / "run.log").read_text().splitlines()]
    assert [e["event"] for e in events if e["event"] != "chunk done"] == ["run start", "item failed", "run end"]
    assert [e["item"] for e in events if e["event"] == "item failed"] == ["3"]

    written = {"stdout": proc.stdout.encode(), "stderr": proc.stderr.encode()}
    for root in (Path(os.environ["BATCHKIT_HOME"]), out):
        for path in root.rglob("*"):
            if path.is_file():
                written[str(path)] = path.read_bytes()
    for method, path, body in received:
        written[f"{method} {path}"] = path.encode() + body
    assert any(name.endswith("batchkit.db") for name in written)  # the journal is among them
    assert any(name.endswith("run.log") for name in written) and any(n.endswith(".prom") for n in written)
    assert any(name.endswith("items.jsonl") for name in written)
    for name, data in written.items():
        assert SECRET.encode() not in data, f"the token leaked into {name}"
        assert PASSWORD.encode() not in data, f"the URL password leaked into {name}"
