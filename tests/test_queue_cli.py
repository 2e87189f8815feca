"""``batchkit queue put|stats|result|retry-failed|list|purge`` end to end: real processes, a real
queue file, a consumer running between the commands."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from click.testing import CliRunner

import batchkit as bk
from batchkit.cli.main import cli
from batchkit.engine.loop import Engine
from batchkit.sources.queue import QueueSink, QueueSource
from batchkit.state.queue import default_path

from conftest import PY, python_env


def batchkit(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "batchkit", *args], input=input, env=python_env(), capture_output=True,
                          text=True, timeout=60)


def bk_cli(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input, prog_name="batchkit")


def shout(word: str) -> str:
    if word == "boom":
        raise RuntimeError("cannot shout boom")
    return word.upper() + "!"


def drain(name: str) -> None:
    """One consumer run over the queue, as `batchkit run JOB --queue NAME` does it."""
    source = QueueSource(bk.Queue(name))
    sink = QueueSink(source)
    try:
        for _ in Engine(shout, source, backend="thread", on_chunk=sink.chunk, progress=False).chunks():
            pass
    finally:
        sink.close("succeeded")


def test_put_stats_and_result_from_the_shell(tmp_path):
    put = batchkit("queue", "put", "words", "hello", "boom", "a b c")
    assert put.returncode == 0, put.stderr
    ids = [int(line) for line in put.stdout.split()]
    assert len(ids) == 3 and ids == sorted(ids)
    listing = tmp_path / "more.txt"
    listing.write_text("x\n\ny\n")
    more = batchkit("queue", "put", "words", "--input", str(listing), "--json")
    assert json.loads(more.stdout) == {"queue": "words", "ids": [ids[-1] + 1, ids[-1] + 2]}

    stats = batchkit("queue", "stats", "words")
    assert stats.stdout == "words: 5 pending, 0 running, 0 done, 0 failed (5 total)\n"
    waiting = batchkit("queue", "result", "words", str(ids[0]))
    assert waiting.returncode == 75 and waiting.stdout == ""
    assert "is pending, not done yet" in waiting.stderr and "--wait" in waiting.stderr

    drain("words")
    done = batchkit("queue", "result", "words", str(ids[0]))
    assert (done.returncode, done.stdout, done.stderr) == (0, "HELLO!\n", "")
    spaced = batchkit("queue", "result", "words", str(ids[2]), "--json")
    body = json.loads(spaced.stdout)
    assert body["value"] == "A B C!" and body["status"] == "done" and body["id"] == ids[2]
    failed = batchkit("queue", "result", "words", str(ids[1]))
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr == f"batchkit: item {ids[1]} of queue 'words' failed: RuntimeError: cannot shout boom\n"
    as_json = json.loads(batchkit("queue", "result", "words", str(ids[1]), "--json").stdout)
    assert as_json["ok"] is False and as_json["error"]["type"] == "RuntimeError"
    assert "cannot shout boom" in as_json["error"]["traceback"]
    stats = json.loads(batchkit("queue", "stats", "words", "--json").stdout)
    assert stats == {"queue": "words", "pending": 0, "running": 0, "done": 4, "failed": 1, "total": 5}

    unknown = batchkit("queue", "result", "words", "999")
    assert unknown.returncode == 2 and unknown.stderr.startswith("batchkit: error: queue 'words' has no item 999")
    assert "Traceback" not in unknown.stderr

    retry = batchkit("queue", "retry-failed", "words")
    assert retry.stdout == "words: 1 failed item pending again\n"
    assert bk.Queue("words").stats()["pending"] == 1


def test_put_from_stdin_stores_lines_as_they_arrive():
    proc = subprocess.Popen([PY, "-m", "batchkit", "queue", "put", "stream", "--input", "-"], env=python_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write("first\n")
        proc.stdin.flush()
        first_id = int(proc.stdout.readline())  # printed while stdin is still open
        assert bk.Queue("stream").status(first_id) == "pending"
        proc.stdin.write("second\n\nthird\n")
        proc.stdin.close()
        rest = [int(line) for line in proc.stdout.read().split()]
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rest == [first_id + 1, first_id + 2]
    assert [item for _, item in bk.Queue("stream").claim(10, lease=30)] == ["first", "second", "third"]


def test_result_waits_for_a_consumer_with_wait():
    [id_] = bk.Queue("later").put_many(["late"])
    waiter = subprocess.Popen([PY, "-m", "batchkit", "queue", "result", "later", str(id_), "--wait", "30"],
                              env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    assert waiter.poll() is None  # still waiting
    drain("later")
    out, err = waiter.communicate(timeout=30)
    assert (waiter.returncode, out) == (0, "LATE!\n"), err


def test_list_and_purge():
    assert bk_cli("queue", "list").output == "no queues (batchkit queue put NAME ITEM... makes one)\n"
    bk_cli("queue", "put", "b", "x", "y")
    bk_cli("queue", "put", "a", "z")
    drain("b")
    lines = bk_cli("queue", "list").output.splitlines()
    assert [line.split() for line in lines] == [["QUEUE", "PENDING", "RUNNING", "DONE", "FAILED", "TOTAL"],
                                                ["a", "1", "0", "0", "0", "1"], ["b", "0", "0", "2", "0", "2"]]
    assert json.loads(bk_cli("queue", "list", "--json").output)["b"]["done"] == 2
    assert bk_cli("queue", "purge", "b", "--older-than", "1h").output == "b: deleted 0 items\n"
    assert bk_cli("queue", "purge", "b").output == "b: deleted 2 items\n"
    assert bk.Queue("b").stats()["total"] == 0


def test_reading_commands_never_create_the_queue_file():
    for args in (["stats", "nothing"], ["list"], ["retry-failed", "nothing"], ["purge", "nothing"]):
        result = bk_cli("queue", *args)
        assert result.exit_code == 0, result.output
    assert bk_cli("queue", "stats", "nothing").output == "nothing: 0 pending, 0 running, 0 done, 0 failed (0 total)\n"
    missing = bk_cli("queue", "result", "nothing", "1")
    assert missing.exit_code == 2 and "nothing was ever queued" in missing.output
    assert not default_path().exists()


@pytest.mark.parametrize("args, message", [
    (["put", "q"], "no items to put: give them as arguments (batchkit queue put q ITEM...) or with --input"),
    (["put", "q", "a", "--input", "-"], "give the items as arguments or with --input FILE|-, not both"),
    (["put", "q", "--input", "/no/such/file"], "--input /no/such/file: No such file or directory"),
    (["put", " ", "a"], "queue name ' ': use a non-empty string"),
    (["result", "q", "x"], "Invalid value for 'ID': 'x' is not a valid integer. (see 'batchkit queue result --help')"),
    (["result", "q", "1", "--wait", "soon"], "cannot read 'soon' as a duration"),
    (["stats"], "Missing argument 'NAME'. (see 'batchkit queue stats --help')"),
    (["pop", "q"], "No such command 'pop'. (see 'batchkit queue --help')"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = batchkit("queue", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("batchkit: error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_an_unusable_queue_file_is_exit_3_in_one_line():
    os.makedirs(default_path().parent, exist_ok=True)
    default_path().write_bytes(b"garbage" * 1000)
    result = batchkit("queue", "stats", "q")
    assert result.returncode == 3
    assert result.stderr.startswith("batchkit: error: the queue database ") and "unusable" in result.stderr
    assert len(result.stderr.splitlines()) == 1
