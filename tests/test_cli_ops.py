"""`batchkit run` tells the outside world: event log, healthchecks-style pings, notifications and
metrics, on success, on failure and when stopped by SIGTERM. A real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from batchkit.cli.main import cli

from conftest import PY, python_env

JOB = '''
import time
import batchkit as bk

@bk.job(backend="thread")
def judge(item: str, bad: str = "", delay: float = 0) -> str:
    """Fail the item equal to --bad."""
    time.sleep(delay)
    if item == bad:
        raise ValueError(item + " is bad")
    return item
'''


class Recorder(BaseHTTPRequestHandler):
    requests: list = []
    delay = 0.0

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.requests.append((self.command, self.path, body))
        time.sleep(self.delay)
        try:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")
        except OSError:
            pass

    do_GET = do_POST = do_HEAD = _handle  # noqa: N815 - http.server's names

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    Recorder.requests = []
    Recorder.delay = 0.0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def job(tmp_path):
    path = tmp_path / "judge.py"
    path.write_text(JOB)
    items = tmp_path / "items.txt"
    items.write_text("a\nb\nc\n")
    return path, items


def paths(kind: str = "") -> list[str]:
    return [p for _, p, _ in Recorder.requests if p.startswith(kind)]


def test_failed_run_logs_pings_fail_notifies_and_writes_metrics(server, job, tmp_path):
    path, items = job
    log, metrics = tmp_path / "run.log", tmp_path / "batchkit.prom"
    result = CliRunner().invoke(cli, ["run", str(path), "--input", str(items), "--bad", "b",
                                      "--ping", f"{server}/check", "--notify", f"{server}/hook",
                                      "--log-file", str(log), "--log-format", "json",
                                      "--metrics-file", str(metrics)])
    assert result.exit_code == 1, result.output
    assert paths("/check") == ["/check/start", "/check/fail"]
    (hook,) = [body for _, p, body in Recorder.requests if p == "/hook"]
    payload = json.loads(hook)
    assert payload["failed"] == 1 and payload["exit_code"] == 1 and payload["job"] == "judge"
    assert "b: ValueError: b is bad" in payload["text"]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "run start" and names[-1] == "run end" and "chunk done" in names
    (failed,) = [e for e in events if e["event"] == "item failed"]
    # (the event's "key" field is masked by secrets.redact, which treats any field named *key* as a secret)
    assert failed["index"] == 1 and failed["type"] == "ValueError" and failed["message"] == "b is bad"
    assert events[-1]["exit_code"] == 1 and events[-1]["failed"] == 1 and events[0]["run_id"] is not None
    text = metrics.read_text()
    assert 'batchkit_last_run_exit_code{job="judge"} 1' in text
    assert 'batchkit_items_total{job="judge",result="succeeded"} 2' in text


def test_successful_run_pings_success_and_does_not_notify(server, job):
    path, items = job
    result = CliRunner().invoke(cli, ["run", str(path), "--input", str(items), "--ping", f"{server}/check",
                                      "--notify", f"{server}/hook"])
    assert result.exit_code == 0, result.output
    assert paths("/check") == ["/check/start", "/check"] and paths("/hook") == []


def test_a_hanging_monitoring_endpoint_does_not_hold_the_job(server, job):
    path, items = job
    Recorder.delay = 20  # never answers in time
    t0 = time.monotonic()
    result = CliRunner().invoke(cli, ["run", str(path), "--input", str(items), "--ping", f"{server}/check",
                                      "--notify-on", "always", "--notify", f"{server}/hook"])
    assert result.exit_code == 0, result.output
    assert time.monotonic() - t0 < 10  # capped at ~2 s by Operations, far below the 20 s hang


def test_sigterm_reports_143_to_the_log_and_pings_fail(server, job, tmp_path):
    path, items = job
    items.write_text("".join(f"i{i}\n" for i in range(400)))
    log = tmp_path / "run.log"
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen([PY, "-m", "batchkit", "run", str(path), "--input", str(items), "--delay", "0.02",
                             "--workers", "2", "--chunk-size", "4", "--ping", f"{server}/check",
                             "--log-file", str(log), "--log-format", "json"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while not (log.exists() and "chunk done" in log.read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    end = json.loads(log.read_text().splitlines()[-1])
    assert end["event"] == "run end" and end["exit_code"] == 143 and end["state"] == "interrupted"
    assert paths("/check") == ["/check/start", "/check/fail"]
