"""Operations: pings, notifications, the event log and metrics, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from test_ops_support import start_recorder, stop_recorder

from batchkit.cli.ops_options import ops_options
from batchkit.engine.loop import Engine
from batchkit.errors import UsageError
from batchkit.ops.metrics import parse
from batchkit.ops.notify import ping_url
from batchkit.ops.operations import Operations

from conftest import PY, python_env


@pytest.fixture
def server():
    srv = start_recorder()
    yield srv
    stop_recorder(srv)


def summary(state="succeeded", succeeded=3, failed=0, skipped=0, failures=(), run_id=7, elapsed=1.5):
    return {"job": "nightly", "run_id": run_id, "state": state, "exit_code": 0 if state == "succeeded" else 1,
            "total": succeeded + failed + skipped, "succeeded": succeeded, "failed": failed, "skipped": skipped,
            "elapsed": elapsed, "throughput": 2.0, "started": "2024-05-01T03:00:00+00:00",
            "failures": list(failures)}


def wait_for(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def halve(x):
    if x == 3:
        raise ValueError("three is odd")
    return x / 2


# -- pings ------------------------------------------------------------------------------------

def test_ping_sends_start_then_success_url(server):
    ops = Operations("nightly", ping=server.url + "/check")
    ops.started(7, {"root": "/data"})
    ops.finished(summary(), 0)
    assert server.paths() == ["/check/start", "/check"]
    assert b"succeeded" in server.requests[1][2]


def test_ping_sends_fail_url_with_the_failures_in_the_body(server):
    ops = Operations("nightly", ping=server.url + "/check/")
    ops.started(7, {})
    fails = [{"key": "b.txt", "type": "ValueError", "message": "bad header", "kind": "exception"}]
    ops.finished(summary("failed", 2, 1, failures=fails), 1)
    assert server.paths() == ["/check/start", "/check/fail"]
    assert b"b.txt: ValueError: bad header" in server.requests[1][2]


def test_interrupted_run_pings_fail(server):
    ops = Operations("nightly", ping=server.url + "/c")
    ops.started(1, {})
    ops.finished(summary("interrupted", 1), 143)
    assert server.paths()[-1] == "/c/fail"


def test_ping_suffix_goes_before_the_query_string():
    assert ping_url("https://hc.example/abc?create=1", "start") == "https://hc.example/abc/start?create=1"
    assert ping_url("https://hc.example/abc", "") == "https://hc.example/abc"


# -- notifications -----------------------------------------------------------------------------

def test_notify_on_failure_posts_slack_compatible_json_only_when_the_run_failed(server):
    ok = Operations("nightly", notify=server.url + "/hook")
    ok.started(1, {})
    ok.finished(summary(), 0)
    assert server.requests == []

    bad = Operations("nightly", notify=server.url + "/hook")
    bad.started(2, {})
    fails = [{"key": "x", "type": "OSError", "message": "disk full", "kind": "exception"}]
    bad.finished(summary("failed", 4, 1, failures=fails, run_id=2), 1)
    [(method, path, body, headers)] = server.requests
    assert (method, path) == ("POST", "/hook")
    assert headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert "`nightly` failed" in payload["text"] and "x: OSError: disk full" in payload["text"]
    assert (payload["job"], payload["failed"], payload["exit_code"], payload["run_id"]) == ("nightly", 1, 1, 2)
    assert payload["failures"] == fails  # an item's "key" is not masked as if it were a credential


def test_notify_on_always_posts_successes_too(server):
    ops = Operations("nightly", notify=server.url + "/hook", notify_on="always")
    ops.started(1, {})
    ops.finished(summary(), 0)
    payload = json.loads(server.requests[0][2])
    assert payload["state"] == "succeeded" and "`nightly` succeeded" in payload["text"]


def test_hanging_endpoints_delay_the_run_end_at_most_two_seconds(server):
    warnings = []
    ops = Operations("nightly", ping=server.url + "/hang", notify=server.url + "/hang-hook",
                     warn=warnings.append)
    ops.started(1, {})
    wait_for(server.arrived.is_set)
    t0 = time.monotonic()
    ops.finished(summary("failed", 1, 1), 1)
    waited = time.monotonic() - t0
    # The cap is the feature: 2 s for everything in flight, plus scheduling slack.
    assert waited < 3.0
    assert any("unanswered after the 2s limit" in w for w in warnings)


def test_failing_endpoints_become_warnings_not_errors(server):
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/ping"
    warnings = []
    ops = Operations("nightly", ping=dead, notify=server.url + "/boom", warn=warnings.append)
    ops.started(1, {})
    ops.finished(summary("failed", 0, 1), 1)
    assert any("notification to" in w and "HTTP 500" in w for w in warnings)
    assert any("ping to" in w and "/ping" in w for w in warnings)


def test_bad_urls_are_refused_up_front():
    with pytest.raises(UsageError, match="not an http"):
        Operations("nightly", ping="ftp://example.org/x")
    with pytest.raises(UsageError, match="notify-on"):
        Operations("nightly", notify_on="sometimes")


def test_finished_twice_sends_once(server):
    ops = Operations("nightly", ping=server.url + "/c")
    ops.started(1, {})
    ops.finished(summary(), 0)
    ops.finished(summary(), 0)
    assert server.paths() == ["/c/start", "/c"]


# -- event log ----------------------------------------------------------------------------------

def test_json_log_has_one_record_per_event(tmp_path):
    log = tmp_path / "logs" / "run.jsonl"
    ops = Operations("halve", log_file=str(log), log_format="json")
    ops.started(5, {"input": "numbers.txt"})
    engine = Engine(halve, [1, 2, 3, 4, 5], backend="serial", chunk_size=2, progress=False,
                    on_chunk=ops.chunk_done)
    chunks = list(engine.chunks())
    ops.finished(summary("failed", 4, 1, run_id=5), 1)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    events = [r["event"] for r in records]
    assert events[0] == "run start" and events[-1] == "run end"
    assert events.count("chunk done") == len(chunks) == 3
    [failed] = [r for r in records if r["event"] == "item failed"]
    assert (failed["index"], failed["item"], failed["type"], failed["message"], failed["kind"]) == \
        (2, "3", "ValueError", "three is odd", "exception")
    assert all(r["job"] == "halve" and r["run_id"] == 5 and r["time"] for r in records)
    assert records[0]["args"] == {"input": "numbers.txt"}
    assert (records[-1]["exit_code"], records[-1]["failed"], records[-1]["level"]) == (1, 1, "error")


def test_text_log_appends_readable_lines(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("earlier line\n")
    ops = Operations("halve", log_file=str(log))
    ops.started(9, {})
    ops.finished(summary(), 0)
    lines = log.read_text().splitlines()
    assert lines[0] == "earlier line"
    assert " halve[9] run start " in lines[1]
    assert " halve[9] run end " in lines[2] and "exit_code=0" in lines[2] and "state=succeeded" in lines[2]


def test_unwritable_log_file_is_a_usage_error(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(UsageError, match="cannot open log file"):
        Operations("x", log_file=str(tmp_path / "dir"))


# -- metrics ------------------------------------------------------------------------------------

def metric(path, family, job, **labels):
    samples = parse(path.read_text())
    key = tuple(sorted({"job": job, **labels}.items()))
    return samples[family][key]


def test_metrics_file_has_the_issue_metric_names(tmp_path):
    prom = tmp_path / "textfile" / "batchkit.prom"
    before = time.time()
    Operations("nightly", metrics_file=str(prom)).finished(summary("succeeded", 3, 0, 2, elapsed=4.25), 0)
    assert before - 1 <= float(metric(prom, "batchkit_last_run_timestamp_seconds", "nightly")) <= time.time() + 1
    assert metric(prom, "batchkit_last_success_timestamp_seconds", "nightly") == \
        metric(prom, "batchkit_last_run_timestamp_seconds", "nightly")
    assert metric(prom, "batchkit_items_total", "nightly", result="succeeded") == "3"
    assert metric(prom, "batchkit_items_total", "nightly", result="failed") == "0"
    assert metric(prom, "batchkit_items_total", "nightly", result="skipped") == "2"
    assert metric(prom, "batchkit_run_duration_seconds", "nightly") == "4.25"
    text = prom.read_text()
    assert text.count("# TYPE batchkit_items_total gauge") == 1
    assert sorted(p.name for p in prom.parent.iterdir()) == ["batchkit.prom"]  # no temp file left


def test_failed_run_carries_the_last_success_timestamp_over(tmp_path):
    prom = tmp_path / "batchkit.prom"
    Operations("nightly", metrics_file=str(prom)).finished(summary(), 0)
    success = metric(prom, "batchkit_last_success_timestamp_seconds", "nightly")
    time.sleep(0.01)
    Operations("nightly", metrics_file=str(prom)).finished(summary("failed", 1, 2), 1)
    assert metric(prom, "batchkit_last_success_timestamp_seconds", "nightly") == success
    assert float(metric(prom, "batchkit_last_run_timestamp_seconds", "nightly")) > float(success)
    assert metric(prom, "batchkit_items_total", "nightly", result="failed") == "2"
    assert metric(prom, "batchkit_last_run_exit_code", "nightly") == "1"


def test_job_that_never_succeeded_reports_success_time_zero(tmp_path):
    prom = tmp_path / "batchkit.prom"
    Operations("new", metrics_file=str(prom)).finished(summary("failed", 0, 1), 1)
    assert metric(prom, "batchkit_last_success_timestamp_seconds", "new") == "0"


def test_several_jobs_share_one_metrics_file_even_when_finishing_together(tmp_path):
    prom = tmp_path / "textfile" / "batchkit.prom"
    prom.parent.mkdir()
    prom.write_text('other_exporter_metric{x="1"} 42\n')
    jobs = [f"job{i}" for i in range(8)]
    threads = [threading.Thread(target=lambda j=j: Operations(j, metrics_file=str(prom)).finished(summary(), 0))
               for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for j in jobs:
        assert metric(prom, "batchkit_items_total", j, result="succeeded") == "3"
    assert parse(prom.read_text())["other_exporter_metric"] == {(("x", "1"),): "42"}
    Operations("job3", metrics_file=str(prom)).finished(summary("failed", 0, 5), 1)
    assert metric(prom, "batchkit_items_total", "job3", result="failed") == "5"
    assert metric(prom, "batchkit_items_total", "job4", result="failed") == "0"
    assert [p.name for p in prom.parent.iterdir()] == ["batchkit.prom"]


def test_unwritable_metrics_file_is_a_warning(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    warnings = []
    Operations("x", metrics_file=str(blocker / "m.prom"), warn=warnings.append).finished(summary(), 0)
    assert len(warnings) == 1 and "writing metrics" in warnings[0]


def alerting(path, now, max_age=86400):
    """The series the usual alert fires for: ``time() - batchkit_last_success_timestamp_seconds > max_age``."""
    samples = parse(path.read_text())["batchkit_last_success_timestamp_seconds"]
    return {dict(labels).get("name", dict(labels)["job"]) for labels, value in samples.items()
            if now - float(value) > max_age}


def test_named_runs_of_one_job_keep_a_series_each(tmp_path):
    prom = tmp_path / "batchkit.prom"
    Operations("checksum", metrics_file=str(prom), run_name="sums-data").finished(summary("succeeded", 9), 0)
    Operations("checksum", metrics_file=str(prom), run_name="sums-home").finished(summary("failed", 1, 4), 1)
    assert metric(prom, "batchkit_items_total", "checksum", name="sums-data", result="succeeded") == "9"
    assert metric(prom, "batchkit_items_total", "checksum", name="sums-home", result="failed") == "4"
    assert metric(prom, "batchkit_last_run_exit_code", "checksum", name="sums-data") == "0"
    assert metric(prom, "batchkit_last_run_exit_code", "checksum", name="sums-home") == "1"
    # The usual alert still works, per series: the entry that never succeeded fires, the other does not.
    assert alerting(prom, time.time()) == {"sums-home"}
    # A later failure of sums-data keeps its own last success; sums-home is untouched.
    success = metric(prom, "batchkit_last_success_timestamp_seconds", "checksum", name="sums-data")
    Operations("checksum", metrics_file=str(prom), run_name="sums-data").finished(summary("failed", 0, 1), 1)
    assert metric(prom, "batchkit_last_success_timestamp_seconds", "checksum", name="sums-data") == success
    assert metric(prom, "batchkit_items_total", "checksum", name="sums-home", result="failed") == "4"
    assert alerting(prom, float(success) + 86401) == {"sums-data", "sums-home"}
    assert prom.read_text().count("# TYPE batchkit_items_total gauge") == 1


def test_cron_entry_name_from_the_environment_labels_the_series(tmp_path, monkeypatch):
    prom = tmp_path / "batchkit.prom"
    monkeypatch.setenv("BATCHKIT_CRON_ENTRY", "nightly-sums")
    Operations("checksum", metrics_file=str(prom)).finished(summary(), 0)
    assert 'batchkit_last_run_exit_code{job="checksum",name="nightly-sums"} 0' in prom.read_text()
    # An explicit name wins; an empty one means no name label at all.
    Operations("checksum", metrics_file=str(prom), run_name="manual").finished(summary(), 0)
    Operations("checksum", metrics_file=str(prom), run_name="").finished(summary(), 0)
    names = {dict(labels).get("name") for labels in parse(prom.read_text())["batchkit_last_run_exit_code"]}
    assert names == {"nightly-sums", "manual", None}


def test_unnamed_runs_keep_the_old_labels_and_leave_named_series_alone(tmp_path):
    prom = tmp_path / "batchkit.prom"
    # A file written before names existed: job label only.
    prom.write_text('batchkit_last_success_timestamp_seconds{job="checksum"} 1700000000\n'
                    'batchkit_last_run_exit_code{job="checksum"} 0\n')
    Operations("checksum", metrics_file=str(prom), run_name="sums-home").finished(summary("failed", 0, 1), 1)
    Operations("checksum", metrics_file=str(prom)).finished(summary("failed", 0, 2), 1)
    text = prom.read_text()
    assert 'batchkit_last_success_timestamp_seconds{job="checksum"} 1700000000' in text  # carried over
    assert 'batchkit_items_total{job="checksum",result="failed"} 2' in text
    assert 'batchkit_items_total{job="checksum",name="sums-home",result="failed"} 1' in text
    assert metric(prom, "batchkit_last_success_timestamp_seconds", "checksum", name="sums-home") == "0"


def test_batchkit_run_labels_metrics_with_the_run_name_or_cron_entry(tmp_path, monkeypatch):
    from batchkit.cli.main import cli

    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "halve.py").write_text("import batchkit as bk\n\n\n@bk.job(backend='serial')\n"
                                                "def halve(item: str) -> float:\n    return int(item) / 2\n")
    (tmp_path / "a.txt").write_text("2\n4\n")
    (tmp_path / "b.txt").write_text("6\n")
    monkeypatch.chdir(tmp_path)
    prom = tmp_path / "batchkit.prom"
    runner = CliRunner()
    first = runner.invoke(cli, ["run", "halve", "--input", "a.txt", "--metrics-file", str(prom), "--run-name", "a"])
    monkeypatch.setenv("BATCHKIT_CRON_ENTRY", "halve-b")
    second = runner.invoke(cli, ["run", "halve", "--input", "b.txt", "--metrics-file", str(prom)])
    assert (first.exit_code, second.exit_code) == (0, 0), first.output + second.output
    assert metric(prom, "batchkit_items_total", "halve", name="a", result="succeeded") == "2"
    assert metric(prom, "batchkit_items_total", "halve", name="halve-b", result="succeeded") == "1"


WRITER = """
import sys, time
from batchkit.ops.metrics import write_run_metrics
path, job = sys.argv[1], sys.argv[2]
for i in range(20):
    write_run_metrics(path, job, ended=time.time(), succeeded=True, exit_code=0,
                      counts={"succeeded": i}, duration=0.1, name=f"entry-{i % 2}")
"""


def test_processes_writing_one_metrics_file_at_once_lose_no_update(tmp_path):
    prom = tmp_path / "textfile" / "batchkit.prom"
    prom.parent.mkdir()
    procs = [subprocess.Popen([PY, "-c", WRITER, str(prom), f"job{i}"], env=python_env()) for i in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    for i in range(4):
        assert metric(prom, "batchkit_items_total", f"job{i}", name="entry-1", result="succeeded") == "19"
        assert metric(prom, "batchkit_items_total", f"job{i}", name="entry-0", result="succeeded") == "18"
    assert [p.name for p in prom.parent.iterdir()] == ["batchkit.prom"]
    assert (Path(python_env()["BATCHKIT_HOME"]) / "locks").is_dir()  # the lock lives beside the journal


def test_metrics_are_written_where_fcntl_does_not_exist(tmp_path):
    """Windows has no fcntl: the metrics writer must not need it (filelock picks msvcrt there)."""
    code = ("import sys; sys.modules['fcntl'] = None\n"  # makes `import fcntl` raise ImportError
            "import warnings; warnings.simplefilter('ignore')\n" + WRITER)
    prom = tmp_path / "batchkit.prom"
    result = subprocess.run([PY, "-c", code, str(prom), "win"], env=python_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert metric(prom, "batchkit_items_total", "win", name="entry-1", result="succeeded") == "19"


# -- the click decorator --------------------------------------------------------------------------

@click.command()
@ops_options
def fake_run(**kwargs):
    click.echo(json.dumps(kwargs, sort_keys=True))


def test_ops_options_hand_the_values_to_the_command():
    result = CliRunner().invoke(fake_run, ["--log-file", "x.log", "--log-format", "json", "--notify",
                                           "https://hooks.example/T", "--notify", "mailto:ops@example.com",
                                           "--notify-on", "always", "--ping", "https://hc.example/u",
                                           "--metrics-file", "m.prom", "--run-name", "nightly-data"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"log_file": "x.log", "log_format": "json",
                                         "notify": ["https://hooks.example/T", "mailto:ops@example.com"],
                                         "notify_on": "always", "ping": "https://hc.example/u",
                                         "metrics_file": "m.prom", "run_name": "nightly-data"}
    defaults = json.loads(CliRunner().invoke(fake_run, []).output)
    assert defaults == {"log_file": None, "log_format": "text", "notify": [], "notify_on": "failure",
                        "ping": None, "metrics_file": None, "run_name": None}


def test_ops_options_reject_a_non_http_url_with_exit_2():
    result = CliRunner().invoke(fake_run, ["--ping", "hc-ping.com/uuid"])
    assert result.exit_code == 2
    assert "is not an http:// or https:// URL" in result.output
