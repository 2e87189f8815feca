"""A finishing step on the command line reads its outcomes from a spool on disk (flat memory),
and sees exactly what the in-memory list gave it: every outcome, in input order, as often as it
iterates, earlier attempts included."""

from __future__ import annotations

import json
import subprocess
import threading
from array import array

import pytest

import batchkit as bk
from batchkit.engine.chunk import ChunkOutcomes
from batchkit.engine.worker import ChunkResult
from batchkit.jobs import spool as spool_module
from batchkit.jobs.spool import OutcomeSpool, successes
from batchkit.outcome import ItemError, Outcome

from conftest import PY, python_env


def chunk(seq: int, start: int, items: list, *, fail: int | None = None) -> ChunkOutcomes:
    c = ChunkOutcomes(seq, start, items)
    values = [f"v{x}" for x in items]
    errors = {}
    if fail is not None:
        values[fail] = None
        errors[fail] = ItemError("ValueError", f"bad {items[fail]}", "Traceback ...")
    c.merge(0, ChunkResult(values, errors, {}, array("d", [0.5] * len(items)), 1.0, "w1", 0.0, []))
    return c


@pytest.fixture(params=[0, 3, 10**6], ids=["all-on-disk", "first-chunk-in-memory", "all-in-memory"])
def memory_items(request, monkeypatch):
    monkeypatch.setattr(spool_module, "MEMORY_ITEMS", request.param)
    return request.param


def test_the_spool_gives_every_outcome_in_input_order_however_chunks_arrived(memory_items):
    spool = OutcomeSpool()
    spool.add(chunk(2, 6, [6, 7, 8]))
    spool.add(chunk(0, 0, [0, 1, 2], fail=1))
    spool.add(chunk(1, 3, [3, 4, 5]))
    assert len(spool) == 9
    first = [(o.index, o.item, o.ok, o.value) for o in spool]
    assert first == [(i, i, i != 1, None if i == 1 else f"v{i}") for i in range(9)]
    assert [(o.index, o.ok) for o in spool] == [(i, i != 1) for i in range(9)]  # again, as a list would
    assert spool[1].error.message == "bad 1" and spool[-1].value == "v8"
    spool.close()


def test_a_resumed_runs_earlier_outcomes_are_merged_in_by_index(memory_items):
    spool = OutcomeSpool()
    spool.add(chunk(0, 2, [2, 3]))
    spool.add(chunk(1, 6, [6]))
    earlier = [Outcome(i, i, True, f"old{i}", None, 1, 0.1) for i in (5, 0, 1, 4)]
    spool.set_earlier(earlier)
    assert len(spool) == 7
    assert [(o.index, o.value) for o in spool] == [
        (0, "old0"), (1, "old1"), (2, "v2"), (3, "v3"), (4, "old4"), (5, "old5"), (6, "v6")]


def _successes_from_outcomes(spool: OutcomeSpool) -> tuple[list, list]:
    ok = [o for o in spool if o.ok]
    return [o.item for o in ok], [o.value for o in ok]


def _joined(pieces) -> tuple[list, list]:
    items, values = [], []
    for its, vals in pieces:
        assert len(its) == len(vals)
        items += its
        values += vals
    return items, values


@pytest.mark.parametrize("earlier", [False, True], ids=["one-attempt", "resumed"])
def test_successes_are_the_successful_outcomes_items_and_values_in_input_order(memory_items, earlier):
    spool = OutcomeSpool()
    spool.add(chunk(2, 7, [7, 8, 9], fail=0))
    spool.add(chunk(0, 0, [0, 1, 2], fail=1))
    spool.add(chunk(1, 4, [4, 5, 6]))
    if earlier:
        spool.set_earlier([Outcome(3, 3, True, "old3", None, 1, 0.1),
                           Outcome(10, 10, False, None, ItemError("OSError", "gone", ""), 1, 0.1)])
    want = _successes_from_outcomes(spool)
    assert want[0] == ([0, 2, 3, 4, 5, 6, 8, 9] if earlier else [0, 2, 4, 5, 6, 8, 9])
    assert _joined(spool.successes()) == want
    assert _joined(spool.successes(piece=2)) == want  # as often as asked, in pieces of any size
    assert _joined(successes(list(spool), 2)) == want  # and the same from a plain list of outcomes
    assert _joined(successes(spool)) == want
    spool.close()


def test_a_chunk_that_cannot_be_pickled_stays_in_memory_and_is_not_lost(monkeypatch):
    monkeypatch.setattr(spool_module, "MEMORY_ITEMS", 0)
    spool = OutcomeSpool()
    locks = [threading.Lock(), threading.Lock()]
    spool.add(chunk(0, 0, [0, 1]))
    spool.add(chunk(1, 2, locks))  # a lock cannot be pickled
    got = list(spool)
    assert [o.index for o in got] == [0, 1, 2, 3]
    assert got[2].item is locks[0] and got[3].item is locks[1]


def test_when_the_temporary_directory_refuses_writes_outcomes_stay_in_memory(monkeypatch, tmp_path):
    monkeypatch.setattr(spool_module, "MEMORY_ITEMS", 0)
    monkeypatch.setattr(spool_module.tempfile, "tempdir", str(tmp_path / "no-such-directory"))
    spool = OutcomeSpool()
    spool.add(chunk(1, 3, [3, 4]))
    spool.add(chunk(0, 0, [0, 1, 2], fail=2))
    assert [(o.index, o.ok) for o in spool] == [(0, True), (1, True), (2, False), (3, True), (4, True)]
    assert spool._file is None  # it never had a file: every chunk was kept


SPOOL_JOB = '''
import json
import batchkit as bk
import batchkit.jobs.spool

batchkit.jobs.spool.MEMORY_ITEMS = 10  # past the first 10 items, outcomes go to disk


@bk.job(backend="process")
def double(item) -> int:
    if item == 7:
        raise ValueError("seven")
    return item * 2


@double.source
def _items(count: int = 50):
    return list(range(count))


@double.finish
def _finish(outcomes, seen: str = ""):
    first = [[o.index, o.ok, o.value] for o in outcomes]
    second = [[o.index, o.ok, o.value] for o in outcomes]
    with open(seen, "w") as f:
        json.dump({"kind": type(outcomes).__name__, "len": len(outcomes), "first": first,
                   "same_again": first == second, "last": outcomes[-1].value}, f)
'''


def test_a_cli_finish_reads_every_outcome_from_disk_as_often_as_it_iterates(tmp_path):
    (tmp_path / "spooljob.py").write_text(SPOOL_JOB)
    seen = tmp_path / "seen.json"
    done = subprocess.run([PY, "-m", "batchkit", "run", "spooljob.py", "--count", "50", "--seen", str(seen),
                           "--chunk-size", "4", "--workers", "2"],
                          cwd=tmp_path, env=python_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr  # item 7 failed
    got = json.loads(seen.read_text())
    assert got["kind"] == "OutcomeSpool"  # not a list in memory: the driver's memory stays flat
    assert got["len"] == 50 and got["same_again"] and got["last"] == 98
    assert got["first"] == [[n, n != 7, None if n == 7 else n * 2] for n in range(50)]


def test_job_run_from_python_still_hands_finish_the_report_outcomes(tmp_path):
    (tmp_path / "spooljob.py").write_text(SPOOL_JOB)
    seen = tmp_path / "seen.json"
    report = bk.load_job(str(tmp_path / "spooljob.py")).run(count=10, seen=str(seen), progress=False)
    got = json.loads(seen.read_text())
    assert got["kind"] == "list" and got["len"] == 10 and len(report.outcomes) == 10


RETRY_JOB = '''
import json, os
import batchkit as bk
import batchkit.jobs.spool

batchkit.jobs.spool.MEMORY_ITEMS = 8  # most outcomes go to disk


@bk.job(backend="process")
def square(item: str, fail_file: str = "") -> int:
    n = int(item)
    if fail_file and os.path.exists(fail_file) and item in open(fail_file).read().split():
        raise ValueError(f"told to fail {item}")
    return n * n


@square.finish
def _finish(outcomes, seen: str = ""):
    with open(seen, "w") as f:
        json.dump([[o.index, o.ok, o.value] for o in outcomes], f)
'''


def test_retry_failed_hands_finish_every_outcome_in_order_with_the_rerun_ones(tmp_path):
    (tmp_path / "retryjob.py").write_text(RETRY_JOB)
    (tmp_path / "items.txt").write_text("".join(f"{n}\n" for n in range(60)))
    fail_file, seen = tmp_path / "fail.txt", tmp_path / "seen.json"
    fail_file.write_text("7 33\n")
    args = [PY, "-m", "batchkit", "run", "retryjob.py", "--input", "items.txt", "--fail-file", str(fail_file),
            "--seen", str(seen), "--chunk-size", "5", "--workers", "2"]
    first = subprocess.run(args, cwd=tmp_path, env=python_env(), capture_output=True, text=True, timeout=60)
    assert first.returncode == 1, first.stderr
    assert json.loads(seen.read_text()) == [[n, n not in (7, 33), None if n in (7, 33) else n * n]
                                            for n in range(60)]
    fail_file.write_text("")
    again = subprocess.run([*args, "--retry-failed"], cwd=tmp_path, env=python_env(), capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert json.loads(seen.read_text()) == [[n, True, n * n] for n in range(60)]


def test_spooled_values_keep_their_sharing_and_cycles(monkeypatch):
    # On disk as in memory: a value shared by several items stays one object, a value that contains
    # itself comes back, and text of any kind comes back exact.
    monkeypatch.setattr(spool_module, "MEMORY_ITEMS", 0)
    shared = {"config": list(range(3))}
    cyclic: list = []
    cyclic.append(cyclic)
    plain = ChunkOutcomes(0, 0, ["a", "b", "c\n\0é"])
    plain.merge(0, ChunkResult(["x", 2**70, None], {}, {}, array("d", [0.5] * 3), 1.0, "w1", 0.0, []))
    mixed = ChunkOutcomes(1, 3, ["d", "e", "f"])
    mixed.merge(0, ChunkResult([shared, shared, cyclic], {}, {}, array("d", [0.5] * 3), 1.0, "w1", 0.0, []))
    spool = OutcomeSpool()
    spool.add(plain)
    spool.add(mixed)
    assert spool._entries[0][1] is not None and spool._entries[1][1] is not None  # both went to disk
    got = list(spool)
    assert [(o.item, o.value) for o in got[:3]] == [("a", "x"), ("b", 2**70), ("c\n\0é", None)]
    assert got[3].value == shared and got[3].value is got[4].value
    assert got[5].value[0] is got[5].value
    spool.close()
