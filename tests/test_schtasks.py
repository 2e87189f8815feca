"""``batchkit cron add|list|remove --windows``: against a stand-in ``schtasks`` program.

The stand-in is a real executable that records its argv and keeps the tasks it was given in a
JSON file, answering ``/Query /FO CSV /V /NH`` with rows laid out as Windows' schtasks lays
them out (a foreign task included), so the whole path runs: batchkit -> subprocess -> schtasks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchkit.cli.main import cli
from batchkit.errors import UsageError
from batchkit.ops import schtasks
from batchkit.ops.lastrun import record_result

from conftest import PY, python_env

FAKE = '''#!{python}
"""A stand-in for schtasks.exe: records argv, keeps tasks in a JSON file."""
import csv, json, os, sys

here = os.path.dirname(os.path.abspath(__file__))
state_file = os.path.join(here, "tasks.json")
with open(os.path.join(here, "argv.jsonl"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if os.path.exists(os.path.join(here, "deny")):
    print("ERROR: Access is denied.", file=sys.stderr)
    sys.exit(1)
tasks = json.load(open(state_file)) if os.path.exists(state_file) else {{
    "\\\\Microsoft\\\\Windows\\\\Defrag\\\\ScheduledDefrag": "%windir%\\\\system32\\\\defrag.exe -c"}}
args = sys.argv[1:]
opt = lambda name: args[args.index(name) + 1]
if args[0] == "/Create":
    tasks["\\\\" + opt("/TN")] = opt("/TR")
elif args[0] == "/Delete":
    del tasks["\\\\" + opt("/TN")]
elif args[0] == "/Query":
    out = csv.writer(sys.stdout, lineterminator="\\n")
    for name, run in tasks.items():
        out.writerow(["HOST", name, "12/1/2026 3:00:00 AM", "Ready", "Interactive only", "N/A", "1",
                      "me", run, "N/A", "N/A", "Enabled"] + ["N/A"] * 16)
json.dump(tasks, open(state_file, "w"))
'''


@pytest.fixture
def fake(tmp_path):
    """The stand-in schtasks, as ``bin/schtasks``; returns its directory."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "schtasks"
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(0o755)
    return bin_dir


def calls(bin_dir: Path) -> list[list[str]]:
    path = bin_dir / "argv.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def tasks(bin_dir: Path) -> dict:
    return json.loads((bin_dir / "tasks.json").read_text())


def batchkit(*args, env, cwd):
    return subprocess.run([PY, "-m", "batchkit", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "data" / "f.txt").write_text("x\n")
    return root


def test_add_list_remove_windows_run_schtasks_create_query_delete(fake, project):
    env = {**python_env(), "BATCHKIT_SCHTASKS": str(fake / "schtasks")}
    home = Path(env["BATCHKIT_HOME"])
    added = batchkit("cron", "add", "--windows", "--name", "nightly", "0 3 * * *", "checksum", "data",
                     "--manifest", "sums 50%.sha256", env=env, cwd=project)
    assert added.returncode == 0, added.stderr
    script = home / "schtasks" / "nightly.cmd"
    assert calls(fake) == [["/Query", "/FO", "CSV", "/V", "/NH"],
                           ["/Create", "/TN", "batchkit\\nightly", "/TR", str(script), "/SC", "DAILY", "/ST", "03:00",
                            "/F"]]
    assert "added task batchkit\\nightly" in added.stdout
    # The task runs a batch file that pins what a crontab entry pins.
    lines = script.read_bytes().decode().split("\r\n")  # a batch file: CRLF lines
    assert lines[0] == "@echo off"
    assert 'set "PATH=' in script.read_text() and f'set "BATCHKIT_HOME={home}"' in lines
    assert 'set "BATCHKIT_CRON_ENTRY=nightly"' in lines and f"cd /d {project} || exit /b 3" in lines
    log = home / "logs" / "nightly.log"
    assert f'{sys.executable} -m batchkit run checksum --quiet data --manifest "sums 50%%.sha256" >> {log} 2>&1' \
        in lines

    again = batchkit("cron", "add", "--windows", "--name", "nightly", "@hourly", "checksum", "data", env=env,
                     cwd=project)
    assert again.returncode == 2 and "already has a task batchkit\\nightly" in again.stderr
    assert again.stderr.count("\n") == 1 and calls(fake)[-1][0] == "/Query"
    replaced = batchkit("cron", "add", "--windows", "--replace", "--name", "nightly", "@hourly", "checksum",
                        "data", env=env, cwd=project)
    assert replaced.returncode == 0, replaced.stderr
    assert calls(fake)[-1][-5:] == ["/SC", "HOURLY", "/ST", "00:00", "/F"]

    listing = batchkit("cron", "list", "--windows", env=env, cwd=project)
    assert listing.returncode == 0, listing.stderr
    header, row = listing.stdout.splitlines()  # the Microsoft task is not ours
    assert row.split()[:2] == ["nightly", "@hourly"] and "12/1/2026 3:00:00 AM" in row and row.endswith("never run")
    record_result_in(home, "nightly", 1)
    [entry] = map(json.loads, batchkit("cron", "list", "--windows", "--json", env=env, cwd=project)
                  .stdout.splitlines())
    assert entry["last_result"].startswith("finished with failed items (exit 1) ")

    removed = batchkit("cron", "remove", "--windows", "nightly", env=env, cwd=project)
    assert removed.returncode == 0, removed.stderr
    assert calls(fake)[-1] == ["/Delete", "/TN", "batchkit\\nightly", "/F"]
    assert not script.exists() and list(tasks(fake)) == ["\\Microsoft\\Windows\\Defrag\\ScheduledDefrag"]
    assert "no batchkit entries in the Task Scheduler" in batchkit("cron", "list", "--windows", env=env,
                                                                   cwd=project).stdout


def record_result_in(home: Path, name: str, code: int) -> None:
    old = os.environ["BATCHKIT_HOME"]
    os.environ["BATCHKIT_HOME"] = str(home)
    try:
        record_result(name, code, 0.0)
    finally:
        os.environ["BATCHKIT_HOME"] = old


def test_on_windows_the_schtasks_on_path_runs(fake, project, monkeypatch):
    monkeypatch.setattr(schtasks, "WINDOWS", True)  # the one thing that differs on Windows
    monkeypatch.delenv("BATCHKIT_SCHTASKS", raising=False)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(project)
    result = CliRunner().invoke(cli, ["cron", "add", "--windows", "@daily", "checksum", "data"])
    assert result.exit_code == 0, result.output
    assert [c[0] for c in calls(fake)] == ["/Query", "/Create"]
    assert "\\batchkit\\checksum" in tasks(fake)


def test_elsewhere_list_and_remove_windows_need_a_schtasks(monkeypatch):
    monkeypatch.delenv("BATCHKIT_SCHTASKS", raising=False)
    for args in (["list", "--windows"], ["remove", "--windows", "x"]):
        result = CliRunner().invoke(cli, ["cron", *args])
        assert result.exit_code == 2 and "set BATCHKIT_SCHTASKS" in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_a_schtasks_failure_is_one_line_exit_3_and_leaves_no_batch_file(fake, project):
    env = {**python_env(), "BATCHKIT_SCHTASKS": str(fake / "schtasks")}
    (fake / "deny").touch()
    result = batchkit("cron", "add", "--windows", "@daily", "checksum", "data", env=env, cwd=project)
    assert result.returncode == 3
    assert result.stderr == "batchkit: error: schtasks /Query failed: ERROR: Access is denied.\n"
    assert not (Path(env["BATCHKIT_HOME"]) / "schtasks" / "checksum.cmd").exists()


@pytest.mark.parametrize("word, quoted", [
    ("plain", "plain"),
    ("two words", '"two words"'),
    ("50%", "50%%"),
    ("a&b", '"a&b"'),
    ("C:\\dir with space\\", '"C:\\dir with space\\\\"'),  # \" would be a literal quote
    ("", '""'),
])
def test_cmd_words_reach_python_as_one_literal_argument(word, quoted):
    assert schtasks.cmd_word(word) == quoted


def test_a_double_quote_cannot_be_passed_through_cmd():
    with pytest.raises(UsageError, match="double quote"):
        schtasks.cmd_word('say "hi"')
