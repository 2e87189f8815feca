"""``batchkit cron``: real crontab files, read back with python-crontab, commands run with ``sh -c``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime

import pytest
from click.testing import CliRunner
from crontab import CronTab

from batchkit.cli.main import cli
from batchkit.errors import UsageError
from batchkit.ops.cron import cron_quote, next_run, render_line, validate_schedule
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
    assert ">> " in item.command and item.command.endswith("shout.log 2>&1")


def test_lines_already_in_the_crontab_stay_byte_for_byte(tab, job):
    before = tab.read_bytes()
    assert bk("cron", "add", "--crontab", str(tab), "15 2 * * 1", str(job)).exit_code == 0
    after = tab.read_bytes()
    assert after.startswith(before) and after.count(b"\n") == before.count(b"\n") + 1
    assert bk("cron", "remove", "--crontab", str(tab), "shout").exit_code == 0
    assert tab.read_bytes() == before


def test_a_last_line_without_newline_is_kept_and_terminated(tmp_path, job):
    tab = tmp_path / "crontab"
    tab.write_bytes(b"0 1 * * * /bin/true  ")
    assert bk("cron", "add", "--crontab", str(tab), "@daily", str(job)).exit_code == 0
    assert tab.read_bytes().startswith(b"0 1 * * * /bin/true  \n@daily cd ")


def test_batchkit_crontab_variable_names_the_file(tmp_path, job):
    tab = tmp_path / "from-env"
    result = bk("cron", "add", "@hourly", str(job), env={"BATCHKIT_CRONTAB": str(tab)})
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
    result = bk("cron", "add", "--crontab", str(tab), schedule, str(job))
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert tab.read_bytes() == before


def test_a_second_entry_with_the_same_name_is_refused_unless_replace(tab, job):
    assert bk("cron", "add", "--crontab", str(tab), "0 3 * * *", str(job)).exit_code == 0
    again = bk("cron", "add", "--crontab", str(tab), "0 4 * * *", str(job))
    assert again.exit_code == 2 and "already has an entry named 'shout'" in again.output
    assert bk("cron", "add", "--replace", "--crontab", str(tab), "0 4 * * *", str(job)).exit_code == 0
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

def test_list_shows_name_schedule_next_run_and_last_result(tab, job):
    assert bk("cron", "add", "--crontab", str(tab), "--name", "loud", "30 4 * * *", str(job)).exit_code == 0
    with Journal() as journal:
        record = journal.begin("shout", {"input": "words.txt"})
        record.end("failed", skipped=0, elapsed=1.0)
    result = bk("cron", "list", "--crontab", str(tab))
    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()
    assert header.split()[:2] == ["NAME", "SCHEDULE"]
    expected = next_run("30 4 * * *").strftime("%Y-%m-%d %H:%M")
    assert row.startswith("loud") and "30 4 * * *" in row and expected in row
    assert f"failed {datetime.now():%Y-%m-%d}" in row
    [entry] = [json.loads(line) for line in bk("cron", "list", "--json", "--crontab", str(tab)).output.splitlines()]
    assert (entry["name"], entry["next_run"], entry["last_result"].split()[0]) == ("loud", expected, "failed")


def test_list_of_a_crontab_without_our_entries(tab):
    result = bk("cron", "list", "--crontab", str(tab))
    assert result.exit_code == 0 and "no batchkit entries" in result.output


def test_remove_all_removes_only_our_entries(tab, job):
    for name in ("one", "two"):
        assert bk("cron", "add", "--crontab", str(tab), "--name", name, "@daily", str(job)).exit_code == 0
    result = bk("cron", "remove", "--all", "--crontab", str(tab))
    assert result.exit_code == 0 and "removed 2 entries" in result.output
    assert tab.read_text() == EXISTING
    missing = bk("cron", "remove", "--crontab", str(tab), "one")
    assert missing.exit_code == 2 and "no batchkit entry named 'one'" in missing.output


def test_print_shows_the_line_without_installing_it(tab, job):
    result = bk("cron", "add", "--print", "--crontab", str(tab), "0 3 * * *", str(job), "--suffix", "50%")
    assert result.exit_code == 0
    line = result.output.strip()
    assert line.startswith("0 3 * * * cd ") and line.endswith("# batchkit:shout job=shout")
    assert "50\\%" in line  # cron would otherwise cut the command at the %
    assert tab.read_text() == EXISTING


def test_windows_prints_an_equivalent_schtasks_command(job):
    result = bk("cron", "add", "--windows", "0 3 * * *", str(job))
    assert result.exit_code == 0
    out = result.output.strip()
    assert out.startswith("schtasks /Create /TN batchkit\\shout /TR ") and out.endswith("/SC DAILY /ST 03:00 /F")
    weekly = bk("cron", "add", "--windows", "30 2 * * MON-FRI", str(job)).output
    assert "/SC WEEKLY /D MON,TUE,WED,THU,FRI /ST 02:30" in weekly
    odd = bk("cron", "add", "--windows", "0 3 1 * MON", str(job))
    assert odd.exit_code == 2 and "no simple Task Scheduler equivalent" in odd.output


def test_validate_schedule_accepts_names_and_normalises_spaces():
    assert validate_schedule(" 0  3 * * MON-FRI ") == "0 3 * * MON-FRI"
    assert validate_schedule("@reboot") == "@reboot"
    assert validate_schedule("*/5 * * * * */10", seconds=True) == "*/5 * * * * */10"
    with pytest.raises(UsageError):
        validate_schedule("* * * * * *")  # seconds are not cron


def test_tab_file_is_replaced_atomically_keeping_its_mode(tab, job):
    tab.chmod(0o640)
    assert bk("cron", "add", "--crontab", str(tab), "@daily", str(job)).exit_code == 0
    assert tab.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tab.parent.iterdir() if p.name.startswith(".crontab")) == []

