"""`batchkit run`: jobs by path, name and module:attr, item sources, engine options, output, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchkit.cli.main import cli
from batchkit.jobs.job import RESERVED

from conftest import PY, python_env

JOB = '''
import batchkit as bk

@bk.job(backend="thread")
def judge(item: int, bad: int = -1, scale: float = 1.0) -> float:
    """Scale numbers; the one equal to --bad fails."""
    if item == bad:
        raise ValueError(f"{item} is bad")
    return item * scale
'''


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


@pytest.fixture
def job_file(tmp_path):
    path = tmp_path / "judge.py"
    path.write_text(JOB)
    return path


@pytest.fixture
def numbers(tmp_path):
    path = tmp_path / "numbers.txt"
    path.write_text("".join(f"{i}\n" for i in range(10)))
    return path


def test_shout_by_name_writes_values_to_output(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("a\nb\n\nc\n")
    out = tmp_path / "out.jsonl"
    result = invoke("run", "shout", "--input", str(words), "--suffix", "?", "--output", str(out))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(d["key"], d["ok"], d["value"], d["attempts"]) for d in lines] == [
        ("a", True, "A?", 1), ("b", True, "B?", 1), ("c", True, "C?", 1)]
    assert "shout: 3 succeeded, 0 failed" in result.stdout


def test_items_from_stdin_and_output_to_stdout_keeps_the_summary_off_stdout():
    result = invoke("run", "shout", "--input", "-", "--output", "-", input="x\ny\n")
    assert result.exit_code == 0, result.output
    values = [json.loads(line)["value"] for line in result.stdout.splitlines()]
    assert values == ["X!", "Y!"]
    assert "2 succeeded" in result.stderr


def test_a_failed_item_finishes_the_run_with_exit_1_and_names_the_item(job_file, numbers):
    result = invoke("run", str(job_file), "--input", str(numbers), "--bad", "4")
    assert result.exit_code == 1, result.output
    assert "judge: 9 succeeded, 1 failed" in result.stdout
    assert "FAILED 4: ValueError: 4 is bad" in result.stdout
    assert "Traceback" not in result.output
    shown = invoke("run", str(job_file), "--input", str(numbers), "--bad", "4", "--show-failures")
    assert 'raise ValueError(f"{item} is bad")' in shown.stdout


def test_json_summary_counts_and_lists_failures(job_file, numbers):
    result = invoke("run", str(job_file), "--input", str(numbers), "--bad", "7", "--json", "--backend", "serial")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert {k: summary[k] for k in ("job", "state", "exit_code", "total", "succeeded", "failed", "skipped")} == {
        "job": "judge", "state": "failed", "exit_code": 1, "total": 10, "succeeded": 9, "failed": 1, "skipped": 0}
    assert summary["failures"] == [{"index": 7, "key": "7", "type": "ValueError", "message": "7 is bad",
                                    "kind": "exception"}]
    assert summary["run_id"] >= 1 and summary["elapsed"] >= 0 and "started" in summary


def test_input_lines_are_converted_to_the_items_annotated_type(job_file, numbers, tmp_path):
    out = tmp_path / "o.jsonl"
    result = invoke("run", str(job_file), "--input", str(numbers), "--scale", "0.5", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["value"] for line in out.read_text().splitlines()] == [i * 0.5 for i in range(10)]


def test_files_source_with_include_and_exclude(tmp_path):
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    for name in ("a.log", "b.txt", "sub/c.log", "sub/skip.log"):
        (root / name).write_text(name)
    out = tmp_path / "o.jsonl"
    result = invoke("run", "shout", "--files", str(root), "--include", "*.log", "--exclude", "skip*",
                    "--output", str(out), "--suffix", "")
    assert result.exit_code == 0, result.output
    keys = [json.loads(line)["key"] for line in out.read_text().splitlines()]
    assert keys == [str(root / "a.log"), str(root / "sub" / "c.log")]


def test_max_failures_stops_dispatching_and_exits_1(tmp_path):
    job = tmp_path / "allbad.py"
    job.write_text("import batchkit as bk\n\n@bk.job\ndef allbad(item):\n    raise OSError(item)\n")
    items = tmp_path / "items.txt"
    items.write_text("".join(f"{i}\n" for i in range(200)))
    result = invoke("run", str(job), "--input", str(items), "--max-failures", "5", "--backend", "serial",
                    "--chunk-size", "1", "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert 5 <= summary["failed"] < 200 and summary["halted"]


def test_retries_from_the_command_line_match_by_exception_name(tmp_path):
    job = tmp_path / "flaky.py"
    job.write_text(textwrap.dedent(f'''
        import batchkit as bk
        from pathlib import Path

        @bk.job
        def flaky(item: str) -> str:
            marker = Path({str(tmp_path)!r}) / ("tries-" + item)
            tries = int(marker.read_text()) + 1 if marker.exists() else 1
            marker.write_text(str(tries))
            if item == "never":
                raise KeyError(item)
            if tries < 3:
                raise ConnectionResetError("flaky " + item)
            return item
    '''))
    items = tmp_path / "items.txt"
    items.write_text("a\nnever\n")
    out = tmp_path / "o.jsonl"
    result = invoke("run", str(job), "--input", str(items), "--backend", "serial", "--retries", "3",
                    "--retry-backoff", "0", "--retry-on", "OSError", "--output", str(out))
    assert result.exit_code == 1
    lines = {d["key"]: d for d in map(json.loads, out.read_text().splitlines())}
    # ConnectionResetError is an OSError: retried until it worked; KeyError is not: failed at once.
    assert lines["a"]["ok"] and lines["a"]["attempts"] == 3
    assert not lines["never"]["ok"] and lines["never"]["attempts"] == 1


def test_timeout_kills_a_hung_item_on_the_process_backend(tmp_path):
    job = tmp_path / "hang.py"
    job.write_text("import time\nimport batchkit as bk\n\n@bk.job\ndef hang(item: str) -> str:\n"
                   "    if item == 'hang':\n        time.sleep(60)\n    return item\n")
    items = tmp_path / "items.txt"
    items.write_text("a\nhang\nb\n")
    result = invoke("run", str(job), "--input", str(items), "--backend", "process", "--workers", "2",
                    "--timeout", "1", "--json")
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert summary["succeeded"] == 2
    assert [(f["key"], f["kind"]) for f in summary["failures"]] == [("hang", "timeout")]


def test_job_found_by_module_attr_jobs_dir_and_jobs_path(tmp_path, monkeypatch, numbers):
    pkg = tmp_path / "pkgroot"
    pkg.mkdir()
    (pkg / "mymod.py").write_text(JOB)
    monkeypatch.syspath_prepend(str(pkg))
    assert invoke("run", "mymod:judge", "--input", str(numbers)).exit_code == 0

    work = tmp_path / "work"
    (work / "jobs").mkdir(parents=True)
    (work / "jobs" / "localjob.py").write_text(JOB)
    monkeypatch.chdir(work)
    result = invoke("run", "localjob", "--input", str(numbers), "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["job"] == "judge"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "farjob.py").write_text(JOB)
    monkeypatch.setenv("BATCHKIT_JOBS_PATH", f"{tmp_path / 'missing'}{os.pathsep}{elsewhere}")
    assert invoke("run", "farjob", "--input", str(numbers)).exit_code == 0
    listing = invoke("jobs").stdout
    assert "localjob" in listing and "farjob" in listing and "checksum" in listing
    assert "Scale numbers; the one equal to --bad fails." in listing


def test_job_from_an_entry_point_of_an_installed_distribution(tmp_path, numbers):
    site = tmp_path / "site"
    (site / "extjobs-1.0.dist-info").mkdir(parents=True)
    (site / "extjobs-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: extjobs\nVersion: 1.0\n")
    (site / "extjobs-1.0.dist-info" / "entry_points.txt").write_text("[batchkit.jobs]\nextjudge = extjobs:judge\n")
    (site / "extjobs.py").write_text(JOB)
    env = python_env()
    env["PYTHONPATH"] = f"{site}{os.pathsep}{env['PYTHONPATH']}"
    run = subprocess.run([PY, "-m", "batchkit", "run", "extjudge", "--input", str(numbers), "--json"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["succeeded"] == 10
    listing = subprocess.run([PY, "-m", "batchkit", "jobs"], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=60)
    assert "extjudge" in listing.stdout


BAD_JOB_FILES = {
    "syntax.py": "import batchkit as bk\n\ndef broken(:\n",
    "raises.py": "import batchkit as bk\n\nraise RuntimeError('no database here')\n",
    "several.py": "import batchkit as bk\n\n@bk.job\ndef a(x):\n    return x\n\n@bk.job\ndef b(x):\n    return x\n",
}


@pytest.mark.parametrize("args, expect", [
    (["run", "no-such-job", "--input", "{numbers}"], "unknown job 'no-such-job'"),
    (["run", "{tmp}/syntax.py", "--input", "{numbers}"], "syntax.py, line 3: syntax error"),
    (["run", "{tmp}/raises.py", "--input", "{numbers}"], "raises.py, line 3: importing it raised RuntimeError"),
    (["run", "{tmp}/several.py", "--input", "{numbers}"], "defines several jobs (a, b)"),
    (["run", "{tmp}/missing.py"], "job file {tmp}/missing.py does not exist"),
    (["run", "checksum", "{tmp}/no-such-root"], "no-such-root: no such file or directory"),
    (["run", "shout", "--input", "{tmp}/no-such-file"], "No such file or directory"),
    (["run", "shout", "--input", "{tmp}"], "is a directory"),
    (["run", "shout", "--files", "{tmp}/no-such-root"], "no-such-root: no such file or directory"),
    (["run", "shout", "--input", "{numbers}", "--backend", "gpu"], "'serial', 'thread', 'process', 'dask'"),
    (["run", "shout", "--input", "{numbers}", "--workers", "0"], "'--workers': 0 is not in the range x>=1"),
    (["run", "shout", "--input", "{numbers}", "--workers", "-3"], "'--workers': -3 is not in the range"),
    (["run", "shout", "--input", "{numbers}", "--chunk-size", "0"], "'--chunk-size'"),
    (["run", "shout", "--input", "{numbers}", "--max-failures", "lots"], "'--max-failures': 'lots'"),
    (["run", "shout", "--input", "{numbers}", "--max-failures", "150%"], "'--max-failures': '150%'"),
    (["run", "shout", "--input", "{numbers}", "--frobnicate"], "No such option '--frobnicate'"),
    (["run", "{job}", "--input", "{numbers}", "--bad", "seven"], "'--bad': 'seven' is not a valid integer"),
    (["run", "checksum", "{tmp}", "--algorithm", "crc7"], "unknown --algorithm 'crc7': choose one of"),
    (["run", "shout"], "needs items: --input FILE|- or --files ROOT"),
    (["run", "shout", "--input", "{numbers}", "--files", "{tmp}"], "--input or --files, not both"),
    (["run", "shout", "--input", "{numbers}", "--resume", "--no-journal"], "need the journal"),
    (["run", "checksum", "{tmp}", "--json"], "--json would mix with it"),
    (["run", "shout", "--input", "{numbers}", "--retry-on", "OSError"], "--retry-on and --retry-if need --retries"),
    (["run", "shout", "--input", "{numbers}", "--timeout", "soon"], "cannot read 'soon' as a duration"),
    (["run", "shout", "--input", "{numbers}", "--scheduler", "tcp://127.0.0.1:1", "--backend", "thread"],
     "cannot go with --backend thread"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(args, expect, tmp_path, job_file, numbers):
    for name, text in BAD_JOB_FILES.items():
        (tmp_path / name).write_text(text)
    subst = {"{tmp}": str(tmp_path), "{numbers}": str(numbers), "{job}": str(job_file)}
    args = [_subst(a, subst) for a in args]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("batchkit: error: ")
    assert _subst(expect, subst) in lines[0]
    assert result.stdout == "" and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def _subst(text: str, subst: dict) -> str:
    for k, v in subst.items():
        text = text.replace(k, v)
    return text


def test_bad_input_through_the_real_console_script_has_no_traceback(tmp_path):
    run = subprocess.run([PY, "-m", "batchkit", "run", "shout", "--workers", "0", "--input", "x"],
                         capture_output=True, text=True, env=python_env(), cwd=tmp_path, timeout=60)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr


def test_every_command_line_option_name_is_reserved_for_jobs(job_file):
    # A job option may not shadow one of batchkit's own: the list in jobs.py must know them all.
    from batchkit.cli.options import engine_params, ops_params

    names = {p.name for p in engine_params() + ops_params()}
    names = {"input" if n == "input_file" else "files" if n == "files_root" else
             "json" if n == "json_summary" else n for n in names}
    assert names <= RESERVED, names - RESERVED


def test_run_without_a_job_shows_the_jobs_it_can_find():
    result = invoke("run")
    assert result.exit_code in (0, 2)
    assert "checksum" in result.output and "shout" in result.output


def test_job_in_a_file_travels_by_value_to_process_workers(tmp_path, numbers):
    # The workers cannot import a job file by name: its module is sent by value.
    other = tmp_path / "deep" / "dir"
    other.mkdir(parents=True)
    job = other / "helperjob.py"
    job.write_text("import batchkit as bk\n\ndef helper(x):\n    return x * 2\n\n"
                   "@bk.job\ndef twice(item: int) -> int:\n    return helper(item)\n")
    run = subprocess.run([PY, "-m", "batchkit", "run", str(job), "--input", str(numbers), "--backend", "process",
                          "--workers", "2", "--json"], capture_output=True, text=True, env=python_env(),
                         cwd=tmp_path, timeout=90)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["succeeded"] == 10


def test_python_dash_m_batchkit_is_the_same_command(tmp_path):
    run = subprocess.run([PY, "-m", "batchkit", "run", "shout", "--input", "-", "--output", "-"], input="q\n",
                         capture_output=True, text=True, env=python_env(), cwd=tmp_path, timeout=60)
    assert run.returncode == 0 and json.loads(run.stdout)["value"] == "Q!"
    assert sys.executable
    assert Path(PY).exists()


def test_quiet_is_silent_on_success_and_speaks_on_failure(job_file, numbers):
    ok = invoke("run", str(job_file), "--input", str(numbers), "--quiet")
    assert ok.exit_code == 0 and ok.stdout == "" and ok.stderr == ""
    bad = invoke("run", str(job_file), "--input", str(numbers), "--quiet", "--bad", "2")
    assert bad.exit_code == 1
    assert "judge: 9 succeeded, 1 failed" in bad.stdout and "FAILED 2: ValueError: 2 is bad" in bad.stdout
