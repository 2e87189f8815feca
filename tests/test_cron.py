"""``batchkit cron``: real crontab files, read back with python-crontab, commands run with ``sh -c``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from crontab import CronTab

from batchkit.cli.main import cli
from batchkit.errors import UsageError
from batchkit.ops.cron import cron_quote, next_run, render_line, validate_schedule
from batchkit.ops.lastrun import record_result
from batchkit.state.journal import Journal

EXISTING = ("# m h  dom mon dow   command\n"
            "MAILTO=ops@example.org\n"
            "0  3 * * *   /usr/bin/backup   --all # nightly backup\n"
            "*/5 * * * * echo '%' >/dev/null\n"
            "\n"
            "   # an indented comment\n"
            "@reboot  /bin/true\n")

JOB = '''import batchkit as bk


@bk.job
def shout(item: str, suffix: str = "!") -> str:
    """Upper-case each item."""
    return item.upper() + suffix
'''


ITEMS = ("--input", "words.txt")  # the shout job needs items; the file may be made later


@pytest.fixture
def job(tmp_path):
    path = tmp_path / "project" / "jobs" / "shout.py"
    path.parent.mkdir(parents=True)
    path.write_text(JOB)
    return path


@pytest.fixture
def tab(tmp_path):
    path = tmp_path / "crontab"
    path.write_text(EXISTING)
    return path


def bk(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env)


def cron_command(line: str) -> str:
    """What cron hands to ``sh -c`` for a crontab line: Vixie cron's own ``%`` handling (an
    unescaped ``%`` ends the command, ``\\%`` is a literal ``%``), done here independently of
    python-crontab."""
    raw = line.split(None, 5)[5]
    out, escaped = [], False
    for ch in raw:
        if escaped:
            if ch == "%":
                out[-1] = "%"
            else:
                out.append(ch)
            escaped = False
            continue
        if ch == "%":
            break
        out.append(ch)
        escaped = ch == "\\"
    return "".join(out)


def our_items(path):
    return [item for item in CronTab(tabfile=str(path)) if (item.comment or "").startswith("batchkit:")]


# -- add ------------------------------------------------------------------------------------------

def test_add_writes_a_tagged_entry_that_python_crontab_reads_back(tab, job, tmp_path, monkeypatch):
    monkeypatch.chdir(job.parent.parent)
    result = bk("cron", "add", "--crontab", str(tab), "0 3 * * *", "shout", "--input", "words.txt")
    assert result.exit_code == 0, result.output
    assert "next run" in result.output
    [item] = our_items(tab)
    assert str(item.slices) == "0 3 * * *"
    assert item.comment == "batchkit:shout job=shout"
    words = item.command.split()
    assert f"'{sys.executable}'" in words or sys.executable in words
    assert str(job.resolve()) in item.command  # the job resolved to an absolute path at add time
    assert f"cd {job.parent.parent.resolve()} &&" in item.command
    assert "--quiet" in words and "PATH=" in item.command and f"BATCHKIT_HOME={os.environ['BATCHKIT_HOME']}" \
        in item.command
    assert "BATCHKIT_CRON_ENTRY=shout" in words  # the run records its result for `cron list`
    assert ">> " in item.command and item.command.endswith("shout.log 2>&1")


def test_lines_already_in_the_crontab_stay_byte_for_byte(tab, job):
    before = tab.read_bytes()
    assert bk("cron", "add", "--crontab", str(tab), "15 2 * * 1", str(job), *ITEMS).exit_code == 0
    after = tab.read_bytes()
    assert after.startswith(before) and after.count(b"\n") == before.count(b"\n") + 1
    assert bk("cron", "remove", "--crontab", str(tab), "shout").exit_code == 0
    assert tab.read_bytes() == before


def test_a_last_line_without_newline_is_kept_and_terminated(tmp_path, job):
    tab = tmp_path / "crontab"
    tab.write_bytes(b"0 1 * * * /bin/true  ")
    assert bk("cron", "add", "--crontab", str(tab), "@daily", str(job), *ITEMS).exit_code == 0
    assert tab.read_bytes().startswith(b"0 1 * * * /bin/true  \n@daily cd ")


def test_batchkit_crontab_variable_names_the_file(tmp_path, job):
    tab = tmp_path / "from-env"
    result = bk("cron", "add", "@hourly", str(job), *ITEMS, env={"BATCHKIT_CRONTAB": str(tab)})
    assert result.exit_code == 0, result.output
    assert len(our_items(tab)) == 1


@pytest.mark.parametrize("schedule, message", [
    ("0 0 31 2 *", "never runs"),
    ("0 0 30 2 *", "never runs"),
    ("61 * * * *", "invalid schedule"),
    ("* * * *", "invalid schedule"),
    ("0 0 L * *", "invalid schedule"),
    ("0", "quote the whole schedule"),
])
def test_bad_schedules_exit_2_with_one_line_and_leave_the_crontab_alone(tab, job, schedule, message):
    before = tab.read_bytes()
    result = bk("cron", "add", "--crontab", str(tab), schedule, str(job), *ITEMS)
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert tab.read_bytes() == before


def test_a_second_entry_with_the_same_name_is_refused_unless_replace(tab, job):
    assert bk("cron", "add", "--crontab", str(tab), "0 3 * * *", str(job), *ITEMS).exit_code == 0
    again = bk("cron", "add", "--crontab", str(tab), "0 4 * * *", str(job), *ITEMS)
    assert again.exit_code == 2 and "already has an entry named 'shout'" in again.output
    assert bk("cron", "add", "--replace", "--crontab", str(tab), "0 4 * * *", str(job), *ITEMS).exit_code == 0
    assert [str(i.slices) for i in our_items(tab)] == ["0 4 * * *"]


def test_unknown_job_file_is_refused(tab):
    result = bk("cron", "add", "--crontab", str(tab), "0 3 * * *", "nope/missing.py")
    assert result.exit_code == 2 and "not found" in result.output


def test_secret_arguments_never_reach_the_crontab(tab, job, monkeypatch):
    monkeypatch.setenv("MY_API_TOKEN", "tok-6f1b2c9d")
    for args in (["--header", "tok-6f1b2c9d"], ["--url", "https://bob:hunter22@example.org/x"],
                 ["--api-key", "abc123"]):
        result = bk("cron", "add", "--crontab", str(tab), "0 3 * * *", str(job), *args)
        assert result.exit_code == 2 and "carries a secret" in result.output
        assert "tok-6f1b2c9d" not in result.output and "hunter22" not in result.output
    assert tab.read_text() == EXISTING


# -- quoting ------------------------------------------------------------------------------------------

HOSTILE = ["a b", "x; touch pwned1", "$(touch pwned2)", "`touch pwned3`", "50%", "100%% done", "a\\%b",
           "it's", 'say "hi"', "a #b", "#c", "-n", "*", "\\", "~", "&& touch pwned4", "|cat", ">out"]


def test_every_argument_reaches_the_command_as_one_literal_word(tmp_path):
    command = "printf '<%s>\\n' " + " ".join(cron_quote(a) for a in HOSTILE)
    line = render_line("0 3 * * *", command, "t")
    [item] = CronTab(tab=line + "\n")  # python-crontab reads our line back as one entry
    assert item.comment == "batchkit:t"
    out = subprocess.run(["sh", "-c", cron_command(line)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=10)
    assert [w[1:-1] for w in out.stdout.splitlines()] == HOSTILE
    assert list(tmp_path.iterdir()) == []  # nothing was executed or redirected


def test_a_newline_in_an_argument_is_refused():
    with pytest.raises(UsageError, match="newline"):
        cron_quote("a\nb")


# -- list, remove, print ------------------------------------------------------------------------------

def test_list_shows_each_entrys_own_result_not_the_latest_run_of_its_job(tab, job):
    for name in ("loud", "quiet"):
        assert bk("cron", "add", "--crontab", str(tab), "--name", name, "30 4 * * *", str(job), *ITEMS).exit_code == 0
    record_result("loud", 75, time.time() - 1)  # as `batchkit run` records it for the entry "loud"
    with Journal() as journal:  # a later run of the same job, started some other way
        record = journal.begin("shout", {"input": "words.txt"})
        record.end("failed", skipped=0, elapsed=1.0)
    result = bk("cron", "list", "--crontab", str(tab))
    assert result.exit_code == 0, result.output
    header, loud, quiet = result.output.splitlines()
    assert header.split() == ["NAME", "SCHEDULE", "NEXT", "RUN", "LAST", "RESULT"]
    expected = next_run("30 4 * * *").strftime("%Y-%m-%d %H:%M")
    assert loud.startswith("loud") and "30 4 * * *" in loud and expected in loud
    assert loud.endswith(f"skipped: another run holds the lock (exit 75) {datetime.now():%Y-%m-%d %H:%M}")
    assert quiet.startswith("quiet") and quiet.endswith("never run")  # that run was not this entry's
    rows = [json.loads(line) for line in bk("cron", "list", "--json", "--crontab", str(tab)).output.splitlines()]
    assert [(r["name"], r["next_run"]) for r in rows] == [("loud", expected), ("quiet", expected)]
    assert rows[0]["last"]["exit_code"] == 75 and "run_id" not in rows[0]["last"] and rows[1]["last"] is None


def test_an_entry_added_before_results_were_recorded_says_so(tab):
    line = "0 3 * * * cd /srv && /usr/bin/python3 -m batchkit run shout --quiet # batchkit:old job=shout\n"
    tab.write_text(EXISTING + line)
    [row] = bk("cron", "list", "--crontab", str(tab)).output.splitlines()[1:]
    assert row.startswith("old") and "not recorded" in row and "--replace" in row


def test_list_of_a_crontab_without_our_entries(tab):
    result = bk("cron", "list", "--crontab", str(tab))
    assert result.exit_code == 0 and "no batchkit entries" in result.output


def test_remove_all_removes_only_our_entries(tab, job):
    for name in ("one", "two"):
        assert bk("cron", "add", "--crontab", str(tab), "--name", name, "@daily", str(job), *ITEMS).exit_code == 0
    result = bk("cron", "remove", "--all", "--crontab", str(tab))
    assert result.exit_code == 0 and "removed 2 entries" in result.output
    assert tab.read_text() == EXISTING
    missing = bk("cron", "remove", "--crontab", str(tab), "one")
    assert missing.exit_code == 2 and "no batchkit entry named 'one'" in missing.output


def test_print_shows_the_line_without_installing_it(tab, job):
    result = bk("cron", "add", "--print", "--crontab", str(tab), "0 3 * * *", str(job), "--suffix", "50%", *ITEMS)
    assert result.exit_code == 0
    line = result.output.strip()
    assert line.startswith("0 3 * * * cd ") and line.endswith("# batchkit:shout job=shout")
    assert "50\\%" in line  # cron would otherwise cut the command at the %
    assert tab.read_text() == EXISTING


def test_windows_elsewhere_prints_the_task_file_and_schtasks_command_and_installs_nothing(job, monkeypatch):
    monkeypatch.delenv("BATCHKIT_SCHTASKS", raising=False)
    result = bk("cron", "add", "--windows", "0 3 * * *", str(job), *ITEMS)
    assert result.exit_code == 0, result.output
    *script, command = result.output.strip().splitlines()
    home = os.environ["BATCHKIT_HOME"]
    assert script[0] == f"rem {home}/schtasks/shout.cmd" and script[1] == "@echo off"
    assert f'set "BATCHKIT_HOME={home}"' in script and 'set "BATCHKIT_CRON_ENTRY=shout"' in script
    assert command == f"schtasks /Create /TN batchkit\\shout /TR {home}/schtasks/shout.cmd /SC DAILY /ST 03:00 /F"
    assert not (Path(home) / "schtasks").exists()
    weekly = bk("cron", "add", "--windows", "30 2 * * MON-FRI", str(job), *ITEMS).output
    assert "/SC WEEKLY /D MON,TUE,WED,THU,FRI /ST 02:30" in weekly
    odd = bk("cron", "add", "--windows", "0 3 1 * MON", str(job), *ITEMS)
    assert odd.exit_code == 2 and "no simple Task Scheduler equivalent" in odd.output


def test_validate_schedule_accepts_names_and_normalises_spaces():
    assert validate_schedule(" 0  3 * * MON-FRI ") == "0 3 * * MON-FRI"
    assert validate_schedule("@reboot") == "@reboot"
    assert validate_schedule("*/5 * * * * */10", seconds=True) == "*/5 * * * * */10"
    with pytest.raises(UsageError):
        validate_schedule("* * * * * *")  # seconds are not cron


def test_tab_file_is_replaced_atomically_keeping_its_mode(tab, job):
    tab.chmod(0o640)
    assert bk("cron", "add", "--crontab", str(tab), "@daily", str(job), *ITEMS).exit_code == 0
    assert tab.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tab.parent.iterdir() if p.name.startswith(".crontab")) == []



# -- checked at add time, options anywhere -----------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["checksum", "data", "--bogus"], "No such option '--bogus'. (see 'batchkit run checksum --help')"),
    (["checksum", "missing-dir"], "Invalid value for 'ROOT': missing-dir: no such file or directory"),
    (["checksum"], "Missing argument 'ROOT'."),
    (["checksum", ""], "Invalid value for 'ROOT': '' is not a path"),
    (["checksum", "data", "--workers", "0"], "Invalid value for '--workers'"),
    (["checksum", "data", "--manifest", ""], "Invalid value for '--manifest': '' is not a path"),
    (["cleanup", "data", "--dry-run=maybe"], "Option '--dry-run' does not take a value."),
    (["shout"], "job 'shout' needs items: --input FILE or --files ROOT"),
    (["shout", "--input", "-"], "--input - reads stdin, and a scheduled run has none"),
    (["nope-no-such-job"], "unknown job 'nope-no-such-job'"),
])
def test_add_checks_the_job_and_its_arguments_as_run_would_and_installs_nothing(tab, job, args, message,
                                                                                 monkeypatch):
    monkeypatch.chdir(job.parent.parent)
    (job.parent.parent / "data").mkdir()
    before = tab.read_bytes()
    result = bk("cron", "add", "--crontab", str(tab), "0 3 * * *", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output
    assert tab.read_bytes() == before
    assert not (Path(os.environ["BATCHKIT_HOME"]) / "logs").exists()


def test_own_options_after_the_job_arguments_are_cron_adds(tab, job, tmp_path, monkeypatch):
    monkeypatch.chdir(job.parent.parent)
    before = tab.read_bytes()
    printed = bk("cron", "add", "0 3 * * *", "shout", "--input", "words.txt", "--print", "--crontab", str(tab))
    assert printed.exit_code == 0, printed.output
    assert printed.output.startswith("0 3 * * * cd ") and "--print" not in printed.output
    assert tab.read_bytes() == before  # printed, not installed
    log = tmp_path / "n.log"
    added = bk("cron", "add", "0 3 * * *", "shout", "--input", "words.txt", "--name", "night", "--log", str(log),
               "--crontab", str(tab))
    assert added.exit_code == 0, added.output
    [item] = our_items(tab)
    assert item.comment == "batchkit:night job=shout" and f">> {log} 2>&1" in item.command
    assert "--name" not in item.command and "--crontab" not in item.command
    again = bk("cron", "add", "0 4 * * *", "shout", "--input", "words.txt", "--name=night", "--replace",
               "--crontab", str(tab))
    assert again.exit_code == 0, again.output
    assert [str(i.slices) for i in our_items(tab)] == ["0 4 * * *"]


def test_an_option_the_job_itself_has_stays_the_jobs(tab, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = bk("cron", "add", "--log", str(tmp_path / "cron.log"), "--crontab", str(tab), "@hourly",
                "system_status", "--log", "status.jsonl")
    assert result.exit_code == 0, result.output
    [item] = our_items(tab)
    assert " run system_status --quiet --log status.jsonl >> " in item.command
    assert item.command.endswith(f"{tmp_path / 'cron.log'} 2>&1")


# -- what cron does: sh -c from elsewhere with almost no environment ------------------------------------

NAP = '''import time
import batchkit as bk


@bk.job(backend="serial")
def nap(item: str, seconds: float = 0.2) -> str:
    """Sleep a while per item."""
    time.sleep(seconds)
    return item
'''


def run_entry(tab, name, cwd, wait=True):
    """Run an entry's command as cron does: `sh -c`, another directory, a bare environment.
    PYTHONPATH stands for installing this checkout (the venv's own install may be another one)."""
    line = next(raw for raw in tab.read_text().splitlines() if f"# batchkit:{name} " in raw)
    env = {"HOME": str(cwd), "LOGNAME": "nobody", "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen(["sh", "-c", cron_command(line)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if wait:
        proc.communicate(timeout=60)
    return proc


def listed(tab):
    result = bk("cron", "list", "--json", "--crontab", str(tab))
    assert result.exit_code == 0, result.output
    return {row["name"]: row for row in map(json.loads, result.output.splitlines())}


def test_each_entry_shows_its_own_last_exit_code_even_runs_that_never_reach_the_journal(tmp_path, monkeypatch):
    project, elsewhere, tab = tmp_path / "project", tmp_path / "elsewhere", tmp_path / "crontab"
    (project / "jobs").mkdir(parents=True)
    (project / "data" / "sub").mkdir(parents=True)
    (project / "gone").mkdir()
    elsewhere.mkdir()
    (project / "jobs" / "nap.py").write_text(NAP)
    (project / "items.txt").write_text("a\nb\nc\nd\n")
    (project / "data" / "sub" / "f.txt").write_text("hello\n")
    monkeypatch.chdir(project)
    for name, args in (("nap", ["nap", "--input", "items.txt", "--seconds", "0.5"]),
                       ("sums", ["checksum", "data", "--manifest", "sums.sha256"]),
                       ("sums-gone", ["checksum", "gone", "--manifest", "gone.sha256"]),
                       ("never", ["checksum", "data"])):
        added = bk("cron", "add", "--crontab", str(tab), "--name", name, "*/5 * * * *", *args)
        assert added.exit_code == 0, added.output
    home = Path(os.environ["BATCHKIT_HOME"])

    first = run_entry(tab, "nap", elsewhere, wait=False)
    deadline = time.monotonic() + 30
    while not list((home / "locks").glob("*.holder")):  # the first run holds the lock
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.05)
    second = run_entry(tab, "nap", elsewhere)
    assert second.returncode == 75
    rows = listed(tab)
    assert rows["nap"]["last_result"].startswith("skipped: another run holds the lock (exit 75) ")
    assert first.wait(timeout=60) == 0
    nap = listed(tab)["nap"]
    assert nap["last_result"].startswith("succeeded (exit 0) ") and nap["last"]["succeeded"] == 4
    assert nap["last_result"].endswith(f", run {nap['last']['run_id']}")

    assert run_entry(tab, "sums", elsewhere).returncode == 0
    assert (project / "sums.sha256").read_text().endswith("  data/sub/f.txt\n")
    (project / "gone").rmdir()  # its ROOT vanished after the entry was added
    assert run_entry(tab, "sums-gone", elsewhere).returncode == 2
    rows = listed(tab)
    assert rows["sums"]["last_result"].startswith("succeeded (exit 0) ")
    assert rows["sums-gone"]["last_result"].startswith("usage error (exit 2) ")
    assert rows["sums-gone"]["last"].get("run_id") is None
    assert "'ROOT': gone: no such file or directory" in (home / "logs" / "sums-gone.log").read_text()
    assert rows["never"]["last_result"] == "never run"
    table = bk("cron", "list", "--crontab", str(tab)).output
    assert [line.split()[0] for line in table.splitlines()] == ["NAME", "nap", "sums", "sums-gone", "never"]


def test_the_batchkit_command_records_the_entrys_exit_and_keeps_the_variable_from_its_children(tmp_path,
                                                                                               monkeypatch):
    from batchkit.cli.main import main
    from batchkit.ops.lastrun import current_entry, read_result

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BATCHKIT_CRON_ENTRY", "nightly")
    monkeypatch.setattr("batchkit.ops.lastrun._current", None)  # restored after the test
    with pytest.raises(SystemExit) as stopped:
        main(["run", "checksum", "no-such-root"])
    assert stopped.value.code == 2
    assert "BATCHKIT_CRON_ENTRY" not in os.environ and current_entry() == "nightly"
    result = read_result("nightly")
    assert result["exit_code"] == 2 and result["ended"] >= result["started"] and "run_id" not in result
