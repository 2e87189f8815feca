"""A README example is a promise: every command and every Python example in README.md runs, in order,
in a directory laid out as the examples assume (data/, logs/, words.txt, inbox/, jobs/shout.py)."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PY, python_env

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def commands() -> list[str]:
    """Every command line of the README's shell blocks but the install commands, comments cut."""
    out = []
    for block in blocks("sh"):
        for line in block.splitlines():
            line = re.sub(r"\s{2,}#.*$", "", line).strip()
            if line and not line.startswith("pip install"):
                out.append(line)
    return out


@pytest.fixture
def workdir(tmp_path):
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "a.csv").write_text("x,y\n1,2\n")
    (work / "data" / "b.csv").write_text("x,y\n3,4\n5,6\n")
    (work / "data" / "notes.txt").write_text("notes\n")
    old = time.time() - 60
    for p in (work / "data").iterdir():
        os.utime(p, (old, old))
    (work / "logs").mkdir()
    for name in ("app.log", "db.log"):
        (work / "logs" / name).write_text(f"{name}\n" * 100)
    (work / "words.txt").write_text("hello\nworld\n")
    (work / "inbox").mkdir()
    (work / "jobs").mkdir()
    (job,) = [b for b in blocks("python") if b.startswith("# jobs/shout.py")]
    (work / "jobs" / "shout.py").write_text(job)
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    env["BATCHKIT_CRONTAB"] = str(tmp_path / "crontab")
    return work, env


def test_the_first_command_runs_a_real_job_whose_manifest_checks(tmp_path):
    (first,) = [line for line in blocks("sh")[0].splitlines() if line.strip()]
    assert first == "pip install -e . && batchkit run checksum batchkit --manifest /tmp/batchkit.sha256"
    manifest = tmp_path / "batchkit.sha256"
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    run = subprocess.run([PY, "-m", "batchkit", "run", "checksum", "batchkit", "--manifest", str(manifest)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    check = subprocess.run(["sha256sum", "-c", "--quiet", str(manifest)], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


def test_the_test_command_is_the_one_ci_runs():
    assert "pip install -e '.[dev]' && python3 -m pytest -q" in blocks("sh")[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install --quiet -e '.[dev]'" in ci and ci.rstrip().endswith("python3 -m pytest -q")


def test_every_python_example_runs_and_says_what_the_readme_says(workdir):
    work, env = workdir
    examples = [b for b in blocks("python") if not b.startswith("# jobs/")]
    assert len(examples) >= 2
    outputs = []
    for code in examples:
        run = subprocess.run([PY, "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, f"{code}\n{run.stderr}"
        outputs.append(run.stdout)
    first, files = outputs[0], outputs[1]
    assert "<Report FAILED: 3 succeeded, 1 failed" in first and "ZeroDivisionError" in first
    assert "0 A\n" in first and "\n3\n" in first and "[5, 4, 3, 2, 1, 0, 1, 2, 3, 4]" in first
    assert (work / "run.html").read_text().startswith("<!DOCTYPE html>")
    assert files.startswith("2 []") and "'pending': 3" in files
    # The job from Python, as the README's prose shows it.
    code = ('import batchkit as bk; r = bk.load_job("checksum").run(root="data", manifest="data.sha256", '
            'journal=True, resume=True, progress=False); print(r.succeeded)')
    run = subprocess.run([PY, "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "3", run.stderr
    assert len((work / "data.sha256").read_text().splitlines()) == 3


def test_every_command_line_example_runs_in_order(workdir, cluster):
    work, env = workdir
    address, _ = cluster
    bk = f"{sys.executable} -m batchkit"
    lines = commands()
    assert any("--watch" in line for line in lines) and any("cron add" in line for line in lines)
    for line in lines:
        shell = re.sub(r"(^|\| )batchkit ", lambda m: f"{m.group(1)}{bk} ", line)
        shell = shell.replace("tcp://10.0.0.5:8786", address)
        if "--watch" in line or "--follow" in line:  # runs until stopped
            proc = subprocess.Popen(["bash", "-c", f"exec {shell}"], cwd=work, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, start_new_session=True)
            (work / "inbox" / "arrived.txt").write_text("new\n")
            time.sleep(4)
            os.killpg(proc.pid, signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 143, f"{line}\n{err}"
            continue
        run = subprocess.run(["bash", "-o", "pipefail", "-c", shell], cwd=work, env=env, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, f"{line}\n{run.stdout}\n{run.stderr}"
    assert (work / "run1.html").exists() and (work / "history.html").exists()
    assert (work / "out.jsonl").read_text().count('"value": "HELLO?"') == 1
    assert list((work / "logs").glob("*.gz")) and not list((work / "logs").glob("*.log"))
    # The journal query the README shows (it has no failures here: the rows come back empty).
    sql = re.search(r'"(SELECT key, message FROM items JOIN failures USING \(run_id, key\))"', README).group(1)
    with sqlite3.connect(Path(env["BATCHKIT_HOME"]) / "batchkit.db") as db:
        assert db.execute(sql).fetchall() == []
