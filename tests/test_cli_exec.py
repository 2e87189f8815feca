"""`batchkit exec`: one shell command per item, hostile names kept literal, failures, timeouts, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from click.testing import CliRunner

from batchkit.cli.main import cli
from batchkit.jobs.shell import render

from conftest import PY, python_env

HOSTILE = ["with space", "quote'single", 'quote"double', "semi;colon; touch PWNED", "$(touch PWNED)",
           "`touch PWNED`", "star*", "new\nline", "-rf", "back\\slash", "amp & touch PWNED", "tilde~",
           "dollar$HOME", "pipe|touch PWNED", "redirect>PWNED", "{}", "{name}"]


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def nul_list(path) -> list[str]:
    return [os.fsdecode(b) for b in path.read_bytes().split(b"\0")[:-1]]


def test_hostile_file_names_are_one_literal_argument_and_never_executed(tmp_path, monkeypatch):
    root = tmp_path / "files"
    root.mkdir()
    for name in HOSTILE:
        (root / name).write_text(name)
    monkeypatch.chdir(tmp_path)
    out, names = tmp_path / "args.bin", tmp_path / "names.bin"
    # printf prints each argument NUL-terminated: a name split in two would show up as two.
    result = invoke("exec", f"printf '%s\\0' {{}} >> {out}; printf '%s\\0' {{name}} >> {names}",
                    "--files", "files", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert sorted(nul_list(out)) == sorted(f"files/{n}" for n in HOSTILE)
    assert sorted(nul_list(names)) == sorted(HOSTILE)
    assert not list(tmp_path.rglob("PWNED")) and not (tmp_path / "PWNED").exists()


def test_hostile_input_lines_are_literal_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = ["$(touch PWNED)", "; touch PWNED", "`touch PWNED`", "a b  c", "*", "-n", "'", '"', "\\", "$((1+1))"]
    out = tmp_path / "args.bin"
    result = invoke("exec", f"printf '%s\\0' {{}} >> {out}", "--input", "-", "--backend", "serial",
                    input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    assert nul_list(out) == lines
    assert not (tmp_path / "PWNED").exists()


def test_placeholders_and_appending_without_one():
    from pathlib import Path

    assert render("gzip -9 {}", Path("logs/a b.log")) == "gzip -9 'logs/a b.log'"
    assert render("cp {} out/{stem}.bak # {parent}", Path("d/x.tar")) == "cp d/x.tar out/x.bak # d"
    assert render("wc -l", "file;rm -rf /") == "wc -l 'file;rm -rf /'"
    assert render("awk '{print $1}' {}", "f") == "awk '{print $1}' f"
    assert render("ls {}", Path("-rf")) == "ls ./-rf"


def test_nonzero_exit_and_signal_fail_the_item_with_code_and_stderr_tail(tmp_path):
    items = tmp_path / "items.txt"
    items.write_text("ok\nfail\nsignal\n")
    cmd = ('case {} in fail) echo "disk on fire" >&2; exit 7;; signal) kill -9 $$;; *) echo fine;; esac')
    result = invoke("exec", cmd, "--input", str(items), "--json", "--backend", "serial")
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("fine\n")  # the command's own output comes first, whole
    summary = json.loads(result.stdout.splitlines()[-1])
    failures = {f["key"]: f["message"] for f in summary["failures"]}
    assert failures == {"fail": "exit code 7; stderr: disk on fire", "signal": "killed by SIGKILL"}
    assert summary["succeeded"] == 1


def test_timeout_kills_the_whole_process_group_of_the_command(tmp_path):
    pidfile = tmp_path / "child.pid"
    items = tmp_path / "items.txt"
    items.write_text("x\n")
    t0 = time.monotonic()
    result = invoke("exec", f"sleep 30 & echo $! > {pidfile}; wait", "--input", str(items), "--timeout", "0.5",
                    "--json")
    assert result.exit_code == 1
    assert time.monotonic() - t0 < 15
    (failure,) = json.loads(result.stdout.splitlines()[-1])["failures"]
    assert failure["type"] == "CommandTimedOut" and "still running after 0.5s" in failure["message"]
    child = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        for _ in range(50):  # the group was SIGKILLed; give the kernel a moment to reap it
            os.kill(child, 0)
            time.sleep(0.05)


def test_keep_output_saves_each_items_stdout_and_stderr(tmp_path):
    items = tmp_path / "items.txt"
    items.write_text("a/b\nc\n")
    keep = tmp_path / "kept"
    result = invoke("exec", "echo out {}; echo err {} >&2", "--input", str(items), "--keep-output", str(keep))
    assert result.exit_code == 0, result.output
    assert "out a/b" not in result.stdout  # saved, not printed
    assert (keep / "a%2Fb.out").read_text() == "out a/b\n"
    assert (keep / "a%2Fb.err").read_text() == "err a/b\n"
    assert (keep / "c.out").read_text() == "out c\n"


def test_engine_options_apply_to_exec(tmp_path):
    items = tmp_path / "items.txt"
    items.write_text("".join(f"{i}\n" for i in range(20)))
    out = tmp_path / "o.jsonl"
    result = invoke("exec", "test {} -ne 13", "--input", str(items), "--workers", "3", "--chunk-size", "2",
                    "--output", str(out), "--backend", "process")
    assert result.exit_code == 1
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["key"] for d in lines] == [str(i) for i in range(20)]
    assert [d["key"] for d in lines if not d["ok"]] == ["13"]
    assert "exec: 19 succeeded, 1 failed" in result.stderr


def test_sigterm_stops_running_commands_and_resume_finishes(tmp_path):
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    items = tmp_path / "items.txt"
    items.write_text("0.1\n0.2\n0.3\n0.4\n30\n31\n")
    pids, fast = tmp_path / "pids", tmp_path / "fast"
    pids.mkdir()
    # Each command records its pid, then sleeps as long as the item says (unless told to hurry).
    cmd = f"echo $$ > {pids}/$$; test -e {fast} || sleep {{}}"
    args = ["exec", cmd, "--input", str(items), "--workers", "2", "--chunk-size", "1"]
    proc = subprocess.Popen([PY, "-m", "batchkit", *args], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 30
    while len(list(pids.iterdir())) < 6:  # the two long sleeps have started
        assert time.monotonic() < deadline, "commands did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "Resume with: batchkit exec" in err
    for pidfile in pids.iterdir():  # no command outlives the run
        pid = int(pidfile.name)
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"command {pid} still running")
    fast.touch()
    resumed = subprocess.run([PY, "-m", "batchkit", *args, "--resume", "--json"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=90)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout.splitlines()[-1])
    assert (summary["skipped"], summary["ran"], summary["succeeded"], summary["total"]) == (4, 2, 6, 6)
