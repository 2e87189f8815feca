"""The ready-made cleanup, compress, fetch and system_status jobs, end to end through the CLI.

fetch runs against a real HTTP server on 127.0.0.1 (http.server in a thread) that answers 500
before 200, answers slowly once, and answers 404."""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchkit.cli.main import cli

DAY = 86400


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def age(path: Path, days: float) -> Path:
    t = time.time() - days * DAY
    os.utime(path, (t, t), follow_symlinks=False)
    return path


def write(path: Path, text: str = "x", days: float = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return age(path, days)


# -- cleanup ---------------------------------------------------------------------------------


@pytest.fixture
def trash(tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    old = [write(root / "temp_a", days=10), write(root / "sub" / "temp_b", days=30)]
    keep = [write(root / "temp_new", days=1), write(root / "other_old", days=30)]
    victims = [write(outside / "temp_victim", days=30), write(outside / "deep" / "temp_victim2", days=30)]
    (root / "link_dir").symlink_to(outside, target_is_directory=True)  # a way out of ROOT
    (root / "temp_link").symlink_to(outside / "temp_victim")
    age(root / "temp_link", 30)
    return root, old, keep, victims


def test_cleanup_deletes_old_matching_files_and_never_leaves_root(trash, tmp_path):
    root, old, keep, victims = trash
    result = invoke("run", "cleanup", str(root), "--pattern", "temp_*", "--older-than", "7d", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["succeeded"] == 2 and summary["failed"] == 0
    assert not any(p.exists() for p in old)
    assert all(p.exists() for p in keep + victims)
    assert (root / "temp_link").is_symlink() and (root / "link_dir").is_symlink()


def test_cleanup_dry_run_lists_and_deletes_nothing(trash):
    root, old, keep, victims = trash
    result = invoke("run", "cleanup", str(root), "--older-than", "7d", "--dry-run")
    assert result.exit_code == 0, result.output
    assert sorted(result.stdout.splitlines()) == sorted(str(p) for p in old)
    assert all(p.exists() for p in old + keep + victims)
    assert "would free 2 bytes in 2 files" in result.stderr


def test_cleanup_refuses_a_file_whose_directory_now_resolves_outside_root(tmp_path):
    from batchkit.jobs.find import find_job

    cleanup = find_job("cleanup")
    root, outside = tmp_path / "root", tmp_path / "outside"
    victim = write(outside / "temp_x", days=30)
    root.mkdir()
    (root / "sub").symlink_to(outside, target_is_directory=True)  # as if swapped after the walk
    with pytest.raises(Exception, match="outside"):
        cleanup(root / "sub" / "temp_x", root=root)
    assert victim.exists()


def test_cleanup_refuses_a_malformed_age_before_touching_anything(trash):
    root, old, _, _ = trash
    result = invoke("run", "cleanup", str(root), "--older-than", "a week")
    assert result.exit_code == 2 and "cannot read 'a week' as a duration" in result.stderr
    assert all(p.exists() for p in old)


# -- compress --------------------------------------------------------------------------------


def test_compress_gzips_old_logs_atomically_and_removes_originals_once_verified(tmp_path):
    root = tmp_path / "logs"
    logs = {write(root / f"app{i}.log", f"line {i}\n" * (1000 * (i + 1)), days=3): f"line {i}\n" * (1000 * (i + 1))
            for i in range(5)}
    fresh = write(root / "today.log", "fresh", days=0)
    other = write(root / "notes.txt", "text", days=3)
    clash = write(root / "clash.log", "original", days=3)
    write(root / "clash.log.gz", "already here", days=3)
    mtime = next(iter(logs)).stat().st_mtime

    result = invoke("run", "compress", str(root), "--pattern", "*.log", "--older-than", "1d", "--workers", "2",
                    "--json")
    assert result.exit_code == 1, result.output  # the clash fails; everything else succeeds
    summary = json.loads(result.stdout)
    assert summary["succeeded"] == 5
    assert [(f["key"], f["type"]) for f in summary["failures"]] == [(str(clash), "FileExistsError")]
    for path, text in logs.items():
        assert not path.exists()
        gz = path.with_name(path.name + ".gz")
        assert gzip.decompress(gz.read_bytes()).decode() == text
        assert abs(gz.stat().st_mtime - mtime) < 2  # times kept, as gzip does
    assert fresh.exists() and other.exists() and clash.read_text() == "original"
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]


def test_compress_rejects_a_bad_level(tmp_path):
    (tmp_path / "x.log").write_text("x")
    result = invoke("run", "compress", str(tmp_path), "--level", "12")
    assert result.exit_code == 2 and "--level 12" in result.stderr


# -- fetch -----------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    hits: Counter = Counter()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        n = self.hits[self.path] = self.hits[self.path] + 1
        if self.path.startswith("/flaky/") and n == 1:
            return self._send(500, b"try later")
        if self.path.startswith("/slow/") and n == 1:
            time.sleep(2)  # longer than --request-timeout: the client gives up and retries
        if self.path.startswith("/missing"):
            return self._send(404, b"no")
        return self._send(200, f"body of {self.path}\n".encode())

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    Handler.hits = Counter()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_retries_5xx_and_timeouts_and_fails_4xx_at_once(server, tmp_path):
    urls = tmp_path / "urls.txt"
    urls.write_text(f"# comment\n{server}/ok/a.txt\n\n{server}/flaky/b.txt\n{server}/slow/c.txt\n"
                    f"{server}/missing/d.txt\n{server}/x/same.txt\n{server}/y/same.txt\n")
    dest, out = tmp_path / "dest", tmp_path / "out.jsonl"
    result = invoke("run", "fetch", str(urls), "--dest", str(dest), "--request-timeout", "0.5", "--output", str(out),
                    "--workers", "4")
    assert result.exit_code == 1, result.output
    lines = {d["key"].rsplit("/", 2)[-2]: d for d in map(json.loads, out.read_text().splitlines())}
    assert lines["ok"]["ok"] and lines["ok"]["attempts"] == 1
    assert lines["flaky"]["ok"] and lines["flaky"]["attempts"] == 2
    assert lines["slow"]["ok"] and lines["slow"]["attempts"] == 2
    assert not lines["missing"]["ok"] and lines["missing"]["attempts"] == 1
    assert lines["missing"]["error"]["type"] == "HTTPError" and "404" in lines["missing"]["error"]["message"]
    assert (dest / "a.txt").read_text() == "body of /ok/a.txt\n"
    assert (dest / "b.txt").read_text() == "body of /flaky/b.txt\n"
    assert (dest / "c.txt").read_text() == "body of /slow/c.txt\n"
    # Two URLs with one file name: neither overwrites the other.
    same = sorted(p.read_text() for p in dest.glob("*-same.txt"))
    assert same == ["body of /x/same.txt\n", "body of /y/same.txt\n"]
    assert not (dest / "d.txt").exists() and not list(dest.glob(".*part"))
    assert Handler.hits["/flaky/b.txt"] == 2 and Handler.hits["/missing/d.txt"] == 1


def test_fetch_gives_up_on_a_server_that_stays_slow(server, tmp_path):
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{server}/slow/once.txt\n")
    # --retries 0 overrides the job's own retry policy: the first, slow answer is the last.
    result = invoke("run", "fetch", str(urls), "--dest", str(tmp_path / "d"), "--request-timeout", "0.3",
                    "--retries", "0", "--json")
    assert result.exit_code == 1
    (failure,) = json.loads(result.stdout)["failures"]
    assert "timed out" in failure["message"]


def test_fetch_refuses_a_urls_file_with_a_non_http_line(tmp_path):
    urls = tmp_path / "urls.txt"
    urls.write_text("file:///etc/passwd\n")
    result = invoke("run", "fetch", str(urls), "--dest", str(tmp_path / "d"))
    assert result.exit_code == 2 and "is not an http:// or https:// URL" in result.stderr


# -- system_status ---------------------------------------------------------------------------


def test_system_status_appends_json_lines_and_passes_under_thresholds(tmp_path):
    log = tmp_path / "status.jsonl"
    for _ in range(2):
        result = invoke("run", "system_status", "--max-disk", "100", "--max-memory", "100", "--mount", "/",
                        "--log", str(log))
        assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["check"] for r in records] == ["cpu", "memory", "disk:/"] * 2
    assert all(0 <= r["percent"] <= 100 and r["ok"] for r in records)
    assert records[2]["total"] > 0 and records[2]["mount"] == "/"


def test_system_status_fails_the_item_that_crosses_its_threshold(tmp_path):
    log = tmp_path / "status.jsonl"
    result = invoke("run", "system_status", "--max-disk", "0", "--mount", "/", "--log", str(log), "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    (failure,) = summary["failures"]
    assert failure["key"] == "disk:/" and failure["type"] == "ThresholdCrossed"
    assert "disk usage of / is" in failure["message"] and "threshold of 0%" in failure["message"]
    disk = [json.loads(line) for line in log.read_text().splitlines()][-1]
    assert disk["check"] == "disk:/" and disk["ok"] is False  # logged even though it failed


def test_system_status_without_log_prints_lines_and_keeps_the_summary_on_stderr():
    result = invoke("run", "system_status", "--max-disk", "100", "--mount", "/")
    assert result.exit_code == 0
    assert [json.loads(line)["check"] for line in result.stdout.splitlines()] == ["cpu", "memory", "disk:/"]
    assert "system_status: 3 succeeded" in result.stderr
