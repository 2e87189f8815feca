"""GNU parallel habits in `batchkit exec`: ::: items, -0, --dry-run, -k, -j, -X/-m, --tag; compared
with GNU parallel itself where it is installed."""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import sqlite3
import subprocess
import time

import pytest
from click.testing import CliRunner

from batchkit.cli.main import cli
from batchkit.jobs.shellbatch import MAX_ARG_STRLEN, command_line_limit

from conftest import PY, python_env

PARALLEL = shutil.which("parallel")
needs_parallel = pytest.mark.skipif(PARALLEL is None, reason="GNU parallel is not installed (apt-get install parallel)")


def invoke(*args: str, input: str | bytes | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def parallel(*args: str, cwd=None, input: bytes | None = None) -> bytes:
    # --will-cite: no citation notice; -k wherever output order matters.
    out = subprocess.run([PARALLEL, "--will-cite", *args], cwd=cwd, input=input, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def runs(home) -> list[dict]:
    db = home / "batchkit.db"
    if not db.exists():
        return []
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    return [dict(r) for r in con.execute("SELECT * FROM runs")]


# -- ::: ---------------------------------------------------------------------------------------


def test_items_after_three_colons_are_literal_arguments_never_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("exec", "-k", "printf '%s\\0' {}", ":::", "a.log", "-q", "--workers", "b c", "$(x)")
    assert result.exit_code == 0, result.output
    assert result.stdout.split("\0")[:-1] == ["a.log", "-q", "--workers", "b c", "$(x)"]
    assert "exec: 5 succeeded" in result.stderr  # --workers and -q were items, not options


def test_three_colon_items_retry_like_any_other(tmp_path):
    done = tmp_path / "done"
    done.mkdir()
    cmd, items = f"touch {done}/{{}}; test {{}} != b", [":::", "a", "b", "c"]
    assert invoke("exec", cmd, *items).exit_code == 1
    for f in done.iterdir():
        f.unlink()
    result = invoke("exec", "--retry-failed", cmd, *items)  # options go before :::
    assert result.exit_code == 1 and sorted(p.name for p in done.iterdir()) == ["b"]


def test_the_resume_hint_puts_resume_before_the_items_and_works(tmp_path):
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    started, fast = tmp_path / "started", tmp_path / "fast"
    started.mkdir()
    cmd = f"touch {started}/{{}}; test -e {fast} || test {{}} != slow || sleep 30"
    proc = subprocess.Popen([PY, "-m", "batchkit", "exec", "-j", "2", cmd, ":::", "a", "slow", "b"], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while len(list(started.iterdir())) < 3:
        assert time.monotonic() < deadline, "commands did not start"
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    hint = shlex.split(err.split("Resume with: ", 1)[1].strip())
    assert hint[:2] == ["batchkit", "exec"] and hint[-5:] == ["--resume", ":::", "a", "slow", "b"]
    fast.touch()
    resumed = subprocess.run([PY, "-m", *hint], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    # `a` was recorded; `b`, finished but behind `slow` in input order, runs again with it.
    assert "exec: 3 succeeded, 0 failed (1 finished by an earlier attempt)" in resumed.stderr


@pytest.mark.parametrize("args,message", [
    ([":::", "a", ":::", "b"], "several ::: lists"),
    (["::::", "file"], ":::: is not supported"),
    ([":::"], "::: needs items"),
    (["--input", "f", ":::", "a"], "not both"),
    (["-0", ":::", "a"], "-0 reads --input"),
])
def test_three_colon_misuse_is_one_line_and_exit_2(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f").write_text("x\n")
    result = invoke("exec", "echo {}", *args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


# -- -0 ----------------------------------------------------------------------------------------


def test_null_separated_input_keeps_newlines_and_spaces_in_items(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    items = ["line\nbreak", " lead", "tail ", "plain", "quote'\""]
    (tmp_path / "items.bin").write_bytes(b"\0".join(i.encode() for i in items) + b"\0\0")  # an empty one too
    result = invoke("exec", "-k", "-0", "--input", "items.bin", "printf '%s\\0' {}")
    assert result.exit_code == 0, result.output
    assert result.stdout.split("\0")[:-1] == items
    # From stdin, with the last item not terminated (as GNU parallel takes it too).
    result = invoke("exec", "--keep-order", "--null", "--input", "-", "printf '%s\\0' {}", input=b"x y\0z\nw")
    assert result.stdout.split("\0")[:-1] == ["x y", "z\nw"]


@needs_parallel
def test_null_input_matches_gnu_parallel(tmp_path):
    data = b"a b\0c\nd\0e"
    ours = invoke("exec", "-k", "-0", "--input", "-", "printf '<%s>' {}", input=data).stdout_bytes
    assert ours == parallel("-k", "-0", "printf '<%s>' {}", input=data)


# -- --dry-run ---------------------------------------------------------------------------------


def test_dry_run_prints_each_command_runs_nothing_and_records_nothing(tmp_path):
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    out = subprocess.run([PY, "-m", "batchkit", "exec", "--dry-run", "touch {}.done", ":::", "a b", "c;d", "it's"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "touch 'a b'.done 'c;d'.done 'it'\"'\"'s'.done\n".replace(".done '", ".done\ntouch '")
    assert not list(tmp_path.glob("*.done"))  # nothing ran
    assert runs(tmp_path / "home") == []  # and no run was recorded
    # What it printed runs as what batchkit would have run.
    subprocess.run(["/bin/sh", "-c", out.stdout], cwd=tmp_path, check=True, timeout=10)
    assert sorted(p.name for p in tmp_path.glob("*.done")) == ["a b.done", "c;d.done", "it's.done"]


def test_dry_run_refuses_resume(tmp_path):
    result = invoke("exec", "--dry-run", "--resume", "echo {}", ":::", "a")
    assert result.exit_code == 2 and "--dry-run runs nothing" in result.stderr


@needs_parallel
def test_dry_run_matches_gnu_parallel_for_bare_placeholders(tmp_path):
    items = ["a b", "it's", "plain", "$(x)", "*", "x\\y"]
    ours = invoke("exec", "--dry-run", "gzip -9 {} && mv {}.gz out/", ":::", *items).stdout_bytes
    theirs = parallel("-k", "--dry-run", "gzip -9 {} && mv {}.gz out/", ":::", *items, cwd=tmp_path)
    assert ours == theirs


# -- --keep-order --------------------------------------------------------------------------------


def test_keep_order_prints_output_in_input_order(tmp_path):
    # The first items take longest, so they finish last.
    sleeps = ["0.8", "0.6", "0.4", "0.2", "0"]
    cmd = "sleep {}; echo out {}; echo err {} >&2"
    unordered = invoke("exec", "-j", "5", cmd, ":::", *sleeps)
    assert unordered.exit_code == 0
    assert unordered.stdout.splitlines() != [f"out {s}" for s in sleeps]  # not in order without -k
    ordered = invoke("exec", "-k", "-j", "5", cmd, ":::", *sleeps)
    assert ordered.exit_code == 0, ordered.output
    assert ordered.stdout.splitlines() == [f"out {s}" for s in sleeps]
    assert [line for line in ordered.stderr.splitlines() if line.startswith("err")] == [f"err {s}" for s in sleeps]


def test_keep_order_holds_back_no_more_than_the_in_flight_window(tmp_path):
    """While the first command waits, the others may finish, but only as many as the run's window
    holds: their output waits on disk, and the rest of the input is not even started."""
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    started, flag = tmp_path / "started", tmp_path / "flag"
    started.mkdir()
    cmd = f"touch {started}/{{}}; test {{}} != 0 || while [ ! -e {flag} ]; do sleep 0.05; done; echo item {{}}"
    items = [str(i) for i in range(40)]
    proc = subprocess.Popen([PY, "-m", "batchkit", "exec", "-k", "-j", "2", "--chunk-size", "1", cmd, ":::", *items],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        held, last, stable_since = [], None, time.monotonic()
        while time.monotonic() < deadline:
            held = [p for d in (tmp_path / "tmp").glob("batchkit-exec-*") for p in d.iterdir()]
            count = (len(held), len(list(started.iterdir())))
            if count != last:
                last, stable_since = count, time.monotonic()
            elif count[0] and time.monotonic() - stable_since > 1.0:
                break
            time.sleep(0.05)
        n_held, n_started = last
        # Two workers, four slices in flight, eight chunks open at most: item 0 and seven more.
        assert 1 <= n_held <= 8 and n_started <= 9, last
    finally:
        flag.touch()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.decode().splitlines() == [f"item {i}" for i in items]
    assert not list((tmp_path / "tmp").iterdir())  # the spool is removed


def test_keep_order_on_the_process_backend(tmp_path):
    result = invoke("exec", "-k", "--backend", "process", "-j", "2", "sleep 0.{}; echo {}", ":::", "3", "2", "1", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["3", "2", "1", "0"]


@pytest.mark.parametrize("args,message", [
    (["-k", "--keep-output", "d"], "--keep-order shapes printed output"),
    (["--tag", "--keep-output", "d"], "--tag shapes printed output"),
    (["-k", "--unordered"], "cannot go with --unordered"),
    (["-X", "-m"], "pick one"),
    (["-s", "100"], "--max-chars goes with -X or -m"),
])
def test_contradictory_options_are_one_line_and_exit_2(args, message):
    result = invoke("exec", *args, "echo {}", ":::", "a")
    assert result.exit_code == 2 and message in result.stderr, result.output


# -- -j ----------------------------------------------------------------------------------------


def test_j_is_workers(tmp_path):
    result = invoke("exec", "-j", "3", "true", ":::", "a")
    assert result.exit_code == 0
    (run,) = runs(tmp_path / "bkhome")
    assert json.loads(run["settings"])["workers"] == 3


# -- -X / -m -----------------------------------------------------------------------------------


def commands(result) -> list[str]:
    return result.stdout.splitlines()


@pytest.mark.parametrize("args,expected", [
    (["-j1", "-X", "-s", "13"], ["aaa bbb", "ccc ddd", "eee"]),  # "echo aaa bbb" is 12 characters, and a NUL
    (["-j1", "-X", "-s", "17"], ["aaa bbb ccc", "ddd eee"]),
    (["-j1", "-X"], ["aaa bbb ccc ddd eee"]),
    (["-j2", "-X"], ["aaa bbb ccc", "ddd eee"]),  # a short list spread over the workers
    (["-j5", "-X"], ["aaa", "bbb", "ccc", "ddd", "eee"]),
])
def test_many_items_per_command_as_many_as_fit(args, expected):
    result = invoke("exec", "-k", *args, "echo", ":::", "aaa", "bbb", "ccc", "ddd", "eee")
    assert result.exit_code == 0, result.output
    assert commands(result) == expected


def test_x_repeats_the_word_and_m_fills_the_placeholder():
    x = invoke("exec", "-j1", "-X", "echo pre-{}-post", ":::", "A", "B", "C")
    m = invoke("exec", "-j1", "-m", "echo pre-{}-post", ":::", "A", "B", "C")
    assert (x.stdout, m.stdout) == ("pre-A-post pre-B-post pre-C-post\n", "pre-A B C-post\n")


@needs_parallel
@pytest.mark.parametrize("args", [
    ["-j1", "-X", "-s", "30", "echo x-{}-y"], ["-j1", "-X", "-s", "20", "echo"], ["-j3", "-X", "echo"],
    ["-j5", "-X", "echo"], ["-j4", "-X", "echo {}"], ["-j1", "-m", "-s", "25", "echo pre-{}-post"],
    ["-j2", "-m", "echo {}"],
])
def test_grouping_matches_gnu_parallel(args, tmp_path):
    items = ["aaaa", "bbbb", "cccc", "dddd", "eeee", "ffff", "gggg", "hhhh"]
    ours = invoke("exec", "-k", *args, ":::", *items)
    assert ours.exit_code == 0, ours.output
    assert ours.stdout_bytes == parallel("-k", *args, ":::", *items, cwd=tmp_path)


def test_a_command_of_many_items_is_one_unit_of_work(tmp_path, monkeypatch):
    """Its exit status is all of its items'; --retry-failed runs exactly the failed command again."""
    monkeypatch.chdir(tmp_path)
    ran = tmp_path / "ran"
    ran.mkdir()
    items = [":::", *(str(i) for i in range(1, 7))]
    # "for i in 1 2; do touch ran/$i; done; ! echo 1 2 | grep -qw 4" is 60 characters: two items fit in 62.
    opts = ["-j1", "-X", "-s", "62", "for i in {}; do touch ran/$i; done; ! echo {} | grep -qw 4"]
    assert invoke("exec", "--dry-run", *opts, *items).stdout.count("\n") == 3  # three commands of two
    result = invoke("exec", "--json", *opts, *items)
    assert result.exit_code == 1
    summary = json.loads(result.stdout.splitlines()[-1])
    assert (summary["succeeded"], summary["failed"]) == (2, 1)
    (failure,) = summary["failures"]
    assert failure["key"].startswith("3 .. 4 (2 items, ") and failure["message"] == "exit code 1"
    assert sorted(p.name for p in ran.iterdir()) == ["1", "2", "3", "4", "5", "6"]
    for f in ran.iterdir():
        f.unlink()
    again = invoke("exec", "--retry-failed", *opts, *items)
    assert again.exit_code == 1
    assert sorted(p.name for p in ran.iterdir()) == ["3", "4"]


def test_default_limit_splits_a_long_list_into_commands_that_all_run(tmp_path):
    assert command_line_limit() <= MAX_ARG_STRLEN - 1
    items = tmp_path / "items.txt"
    names = [f"{i:05d}-" + "x" * 100 for i in range(3000)]  # ~320 KB: more than one command can take
    items.write_text("\n".join(names) + "\n")
    result = invoke("exec", "-X", "-k", "printf '%s\\n' {}", "--input", str(items), "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[:-1] == names
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["succeeded"] >= 3 and summary["failed"] == 0


# -- --tag -------------------------------------------------------------------------------------


def test_tag_prefixes_each_line_with_the_item():
    result = invoke("exec", "-k", "--tag", "printf 'x\\ny\\n'; printf 'e\\n' >&2; printf {}", ":::", "a", "b c")
    assert result.exit_code == 0, result.output
    # A last line without a newline stays so, and the next command's output follows it (as in GNU parallel).
    assert result.stdout == "a\tx\na\ty\na\tab c\tx\nb c\ty\nb c\tb c"
    assert [line for line in result.stderr.splitlines() if "\te" in line] == ["a\te", "b c\te"]


@needs_parallel
@pytest.mark.parametrize("args", [
    ["--tag", "printf 'x\\ny\\n'; printf {}"], ["--tag", "echo"], ["--tag", "-j1", "-X", "echo"],
])
def test_tag_matches_gnu_parallel(args, tmp_path):
    items = ["a", "b c", "d"]
    ours = invoke("exec", "-k", *args, ":::", *items)
    assert ours.stdout_bytes == parallel("-k", *args, ":::", *items, cwd=tmp_path)


# -- help ----------------------------------------------------------------------------------------


def test_help_states_the_rules():
    text = invoke("exec", "--help").stdout
    for phrase in ("never run as code", "$((...))", "./-name", "::: list", "-X", "--dry-run", "--tag", "-0",
                   "--keep-order", "-j, --workers", "one unit", "of work"):
        assert phrase in text, phrase


def test_the_spool_goes_with_the_run(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert invoke("exec", "-k", "echo {}", ":::", "a").stdout == "a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("batchkit-exec-")]
