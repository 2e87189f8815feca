"""``batchkit schedule``: a real scheduler process running real ``batchkit run`` children."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchkit.cli.main import cli
from batchkit.errors import UsageError
from batchkit.ops.lastrun import describe_exit
from batchkit.ops.scheduler import Entry, Scheduler, parse_line, parse_table
from batchkit.state.journal import Journal

from conftest import PY, python_env

SHOUT = str(Path(__file__).resolve().parent.parent / "jobs" / "shout.py")

SLOW_JOB = '''import time
import batchkit as bk


@bk.job(backend="serial")
def slow(item: str, seconds: float = 1.0) -> str:
    """Sleep, then echo the item."""
    time.sleep(seconds)
    return item
'''


def runs(job=None):
    path = Path(os.environ["BATCHKIT_HOME"]) / "batchkit.db"
    if not path.exists():
        return []
    with Journal(path) as journal:
        return list(reversed(journal.runs(job=job, limit=1000)))


def wait_for(predicate, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def words(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("a\nb\n")
    return path


def start(args, cwd):
    return subprocess.Popen([PY, "-m", "batchkit", "schedule", *args], cwd=cwd, env=python_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_every_second_schedule_runs_the_job_until_sigterm_then_stops_cleanly(tmp_path, words):
    table = tmp_path / "jobs.cron"
    table.write_text(f"# every second (croniter's sixth field, quoted)\n'* * * * * *' {SHOUT} --input {words}\n")
    proc = start([str(table)], tmp_path)
    try:
        wait_for(lambda: len([r for r in runs("shout") if r["state"] == "succeeded"]) >= 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err  # a service manager's stop is a normal end
    assert "SIGTERM: stopping" in err and "shout: started" in err and "shout: succeeded (exit 0)" in err
    recorded = runs("shout")
    assert len(recorded) >= 2
    # Each child ran as `batchkit run`: recorded in history with its items, one second apart at most.
    assert all(r["state"] in ("succeeded", "interrupted") and r["total"] == 2 for r in recorded)
    assert all(r["args"]["input"] == str(words) for r in recorded)


def test_runs_of_one_entry_never_overlap_and_sigterm_reaches_the_running_job(tmp_path):
    job = tmp_path / "slow.py"
    job.write_text(SLOW_JOB)
    items = tmp_path / "items.txt"
    items.write_text("x\ny\nz\n")
    proc = start(["--every", "1s", str(job), "--input", str(items), "--seconds", "0.7", "--workers", "1"],
                 tmp_path)
    try:
        wait_for(lambda: len(runs("slow")) >= 2)  # the second run has started
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "is still running" in err  # a due run was skipped instead of overlapping
    recorded = runs("slow")
    for earlier, later in zip(recorded, recorded[1:]):
        assert later["started"] >= earlier["ended"]
    # The run in flight got the SIGTERM, stopped cleanly and is resumable.
    assert recorded[-1]["state"] == "interrupted"
    assert "slow: interrupted by SIGTERM (resumable) (exit 143)" in err


def run_in_thread(scheduler):
    codes = []
    thread = threading.Thread(target=lambda: codes.append(scheduler.run()), daemon=True)
    thread.start()
    return thread, codes


def test_a_run_missed_while_down_runs_once_at_start_up(tmp_path, words):
    entry = Entry("0 * * * *", [SHOUT, "--input", str(words)])
    lines = []
    scheduler = Scheduler([entry], grace=2 * 3600, log=lines.append, state_dir=tmp_path / "state")
    scheduler._save({entry.key: time.time() - 3 * 3600})  # last started three hours ago
    thread, codes = run_in_thread(scheduler)
    try:
        wait_for(lambda: any("shout: succeeded" in line for line in lines))
        time.sleep(1.5)  # long enough for a second run, if there were going to be one
    finally:
        scheduler.stop()
        thread.join(20)
    assert codes == [0]
    assert any("missed the run due" in line for line in lines)
    assert len(runs("shout")) == 1
    assert scheduler._load()[entry.key] > time.time() - 60  # the catch-up run counts as the last start


def test_a_run_missed_longer_ago_than_grace_waits_for_its_next_time(tmp_path, words):
    entry = Entry("0 0 1 1 *", [SHOUT, "--input", str(words)])  # once a year
    lines = []
    scheduler = Scheduler([entry], grace=60, log=lines.append, state_dir=tmp_path / "state")
    scheduler._save({entry.key: time.time() - 400 * 86400})
    thread, codes = run_in_thread(scheduler)
    time.sleep(1.0)
    scheduler.stop()
    thread.join(20)
    assert codes == [0] and runs() == []
    assert not any("missed" in line for line in lines)
    assert any("next run" in line and "-01-01 00:00:00" in line for line in lines)


def test_schedule_lines_parse_cron_seconds_and_every():
    assert parse_line("0 3 * * * jobs/x.py --input a.txt").argv == ["jobs/x.py", "--input", "a.txt"]
    sec = parse_line("'*/5 * * * * */2' shout 'two words'")
    assert (sec.schedule, sec.argv) == ("*/5 * * * * */2", ["shout", "two words"])
    assert parse_line('"0  3 * * *" shout').schedule == "0 3 * * *"
    every = parse_line("@every 10m cleanup /tmp --older-than 1d")
    assert (every.every, every.argv) == (600.0, ["cleanup", "/tmp", "--older-than", "1d"])
    assert parse_line("@daily shout").schedule == "@daily"
    assert parse_line("   # a comment") is None and parse_line("") is None


def test_a_bad_schedule_file_exits_2_naming_the_line(tmp_path):
    table = tmp_path / "jobs.cron"
    table.write_text("0 3 * * * shout\n0 0 31 2 * shout\n")
    with pytest.raises(UsageError, match=r"jobs.cron, line 2: schedule .* never runs"):
        parse_table(table)
    result = CliRunner().invoke(cli, ["schedule", str(table)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "line 2" in result.output
    missing = CliRunner().invoke(cli, ["schedule", str(tmp_path / "nope.cron")])
    assert missing.exit_code == 2 and "cannot read schedule file" in missing.output
    bad_every = CliRunner().invoke(cli, ["schedule", "--every", "soon", "shout"])
    assert bad_every.exit_code == 2 and "cannot read 'soon' as a duration" in bad_every.output


def test_two_entries_of_one_job_get_distinct_names(tmp_path):
    table = tmp_path / "t.cron"
    table.write_text("@hourly shout --suffix ?\n@daily shout\n")
    assert [e.name for e in parse_table(table)] == ["shout#1", "shout#2"]


def help_examples() -> list[str]:
    """The example lines of a jobs.cron file, exactly as `batchkit schedule --help` prints them."""
    text = CliRunner().invoke(cli, ["schedule", "--help"]).output
    block = text.split("A jobs.cron file:\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines()]


def test_every_example_of_the_help_parses_as_five_fields_and_its_job_arguments():
    lines = help_examples()
    assert len(lines) == 4
    parsed = [parse_line(line) for line in lines]
    assert [(e.schedule, e.argv) for e in parsed] == [
        ("0 3 * * *", ["jobs/nightly.py", "--input", "/srv/list.txt"]),
        ("*/15 * * * *", ["cleanup", "/tmp/spool", "--older-than", "1d"]),
        ("@every 30s", ["system_status", "--log", "status.jsonl"]),
        ("*/5 * * * * */10", ["shout", "--input", "words.txt"]),
    ]


@pytest.mark.parametrize("line", [
    "*/15 * * * * cleanup /tmp/spool --older-than 1d",
    "30 2 * * MON-FRI checksum /data --manifest /srv/SHA256SUMS",
])
def test_a_sixth_word_is_the_job_never_a_seconds_field(line):
    entry = parse_line(line)
    assert len(entry.schedule.split()) == 5 and entry.argv[0] == line.split()[5]


def test_an_unquoted_six_field_line_is_refused_with_the_quoting_hint(tmp_path):
    table = tmp_path / "jobs.cron"
    table.write_text("* * * * * */2 shout --input words.txt\n")
    result = CliRunner().invoke(cli, ["schedule", str(table)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "line 1: '*/2' after five cron fields would be the job" in result.output
    assert "quote the six-field schedule: '* * * * * */2' shout --input words.txt" in result.output


def test_the_help_examples_run_from_a_file_and_sigterm_stops_the_idle_scheduler_with_exit_0(tmp_path):
    table = tmp_path / "jobs.cron"
    table.write_text("\n".join(help_examples()) + "\n")
    proc = start([str(table)], tmp_path)
    try:
        # @every runs at start-up: the ready-made system_status job appends to ./status.jsonl.
        wait_for(lambda: runs("system_status") and runs("system_status")[-1]["state"] != "running", 60)
        wait_for(lambda: (tmp_path / "status.jsonl").exists())
        time.sleep(0.5)  # its exit is reaped and logged
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    # The next run times the schedules give, whatever the time of day the test runs at.
    for name, when in (("nightly", r" 03:00:00$"), ("cleanup", r" \d\d:(00|15|30|45):00$"),
                       ("shout", r" \d\d:\d\d:\d0$")):
        assert any(f"schedule: {name}: " in line and "next run" in line and re.search(when, line)
                   for line in err.splitlines()), (name, err)
    assert "system_status: succeeded (exit 0)" in err or "system_status: finished with failed items" in err
    assert "SIGTERM: stopping" in err and "exit 143 (exit 143)" not in err
    assert "Traceback" not in err


def test_sigint_stops_an_idle_scheduler_with_130_and_sighup_with_0(tmp_path, words):
    for signum, code in ((signal.SIGINT, 130), (signal.SIGHUP, 0)):
        proc = start(["--every", "1h", SHOUT, "--input", str(words)], tmp_path)
        try:
            wait_for(lambda: any(r["state"] == "succeeded" for r in runs("shout")))
            time.sleep(0.5)
        finally:
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=30)
        assert proc.returncode == code, err
        assert f"{signal.Signals(signum).name}: stopping" in err


def test_exit_codes_read_as_words_in_the_log():
    assert describe_exit(0) == "succeeded (exit 0)"
    assert describe_exit(143) == "interrupted by SIGTERM (resumable) (exit 143)"
    assert describe_exit(75) == "skipped: another run holds the lock (exit 75)"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(9) == "exited with code 9"
