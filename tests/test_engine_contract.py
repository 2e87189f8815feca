"""Behaviour every backend must share: the same results, the same error capture, the same progress."""

from __future__ import annotations

import itertools
import json
import pickle

import pytest

import batchkit as bk
from batchkit.engine.loop import Engine

from conftest import IN_PROCESS


def double(x):
    return x * 2


def fail_on_multiples_of(n):
    def fn(x):
        if x % n == 0:
            raise ValueError(f"bad item {x}")
        return x
    return fn


class Unpicklable(Exception):
    """An exception holding a lock: pickle refuses it."""

    def __init__(self, msg):
        import threading

        super().__init__(msg)
        self.lock = threading.Lock()


def raise_unpicklable(x):
    raise Unpicklable(f"cannot travel {x}")


def test_results_come_back_in_input_order(backend, workers):
    report = bk.run(double, range(500), backend=backend, workers=workers, progress=False)
    assert report.values() == [x * 2 for x in range(500)]
    assert [o.index for o in report.outcomes] == list(range(500))
    assert report.ok and report.succeeded == 500 and report.failed == 0


def test_imap_ordered_streams_in_input_order(backend, workers):
    out = list(bk.imap(double, range(300), backend=backend, workers=workers, chunk_size=7, progress=False))
    assert [o.item for o in out] == list(range(300))
    assert [o.value for o in out] == [2 * x for x in range(300)]


def test_imap_unordered_yields_every_item_once(backend, workers):
    out = list(bk.imap(double, range(300), backend=backend, workers=workers, chunk_size=5,
                       ordered=False, progress=False))
    assert sorted(o.index for o in out) == list(range(300))
    assert all(o.value == 2 * o.item for o in out)


def test_exception_is_captured_with_traceback_and_run_goes_on(backend, workers):
    report = bk.run(fail_on_multiples_of(10), range(1, 101), backend=backend, workers=workers,
                    chunk_size=8, progress=False)
    assert report.failed == 10 and report.succeeded == 90
    first = report.failures[0]
    assert first.item == 10 and first.index == 9 and not first.ok
    assert first.error.type == "ValueError"
    assert first.error.message == "bad item 10"
    assert first.error.kind == "exception"
    assert "raise ValueError" in first.error.traceback and "in fn" in first.error.traceback
    with pytest.raises(bk.BatchFailed) as exc_info:
        report.values()
    assert "10 of 100 items failed" in str(exc_info.value)
    assert len(exc_info.value.failures) == 10


def test_unpicklable_exception_still_comes_back_as_text(backend, workers):
    report = bk.run(raise_unpicklable, [1, 2, 3], backend=backend, workers=workers, progress=False)
    assert report.failed == 3
    err = report.failures[1].error
    assert err.type == "Unpicklable" and err.message == "cannot travel 2"
    pickle.dumps(err)  # the captured error itself always travels


def test_generator_of_unknown_length_is_consumed_lazily(backend, workers):
    pulled = []

    def gen():
        for i in itertools.count():
            if i == 2000:
                return
            pulled.append(i)
            yield i

    stream = bk.imap(double, gen(), backend=backend, workers=workers, chunk_size=10, progress=False)
    first = next(stream)
    # Only a bounded window of the input was read to produce the first outcome.
    assert first.value == 0
    assert len(pulled) < 2000
    rest = list(stream)
    assert len(rest) == 1999 and rest[-1].value == 3998


def test_lambdas_and_closures_work(backend, workers):
    offset = 5
    report = bk.run(lambda x: x + offset, range(20), backend=backend, workers=workers, progress=False)
    assert report.values() == [x + 5 for x in range(20)]


def test_empty_input_gives_an_empty_ok_report(backend, workers):
    report = bk.run(double, [], backend=backend, workers=workers, progress=False)
    assert report.ok and report.total == 0 and report.values() == []
    assert list(bk.imap(double, iter([]), backend=backend, workers=workers, progress=False)) == []


def test_single_item(backend, workers):
    report = bk.run(double, [21], backend=backend, workers=workers, progress=False)
    assert report.values() == [42]
    assert report.outcomes[0].duration >= 0


def test_max_failures_count_stops_dispatching_and_says_what_was_not_run(backend, workers):
    report = bk.run(fail_on_multiples_of(1), range(1000), backend=backend, workers=workers,
                    chunk_size=10, max_failures=5, progress=False)
    assert report.halted is not None and "max_failures=5" in report.halted
    assert 5 <= report.failed < 1000
    assert report.not_run == 1000 - report.total > 0
    assert f"{report.not_run} items not run" in report.halted
    assert not report.ok


def test_max_failures_fraction_of_known_total(backend, workers):
    # 10% allowed; every third item fails, so the run must stop early.
    report = bk.run(fail_on_multiples_of(3), range(1, 601), backend=backend, workers=workers,
                    chunk_size=10, max_failures=0.1, progress=False)
    assert report.halted is not None
    assert report.failed >= 60 and report.not_run > 0


def test_max_failures_not_reached_runs_everything(backend, workers):
    report = bk.run(fail_on_multiples_of(50), range(1, 101), backend=backend, workers=workers,
                    max_failures=10, progress=False)
    assert report.halted is None and report.total == 100 and report.failed == 2


def test_progress_counts_every_item_and_failure(backend, workers):
    from batchkit.engine import progress as progress_mod

    made = []
    original = progress_mod.LogProgress

    class Recording(original):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    progress_mod.LogProgress, saved = Recording, progress_mod.LogProgress
    try:
        engine = Engine(fail_on_multiples_of(4), range(1, 201), backend=backend, workers=workers,
                        chunk_size=9, progress="log", desc="contract")
        list(engine.chunks())
    finally:
        progress_mod.LogProgress = saved
    (prog,) = made
    assert prog._done == 200 and prog._failed == 50


def test_report_to_dict_is_json_serialisable(backend, workers):
    report = bk.run(fail_on_multiples_of(2), range(1, 11), backend=backend, workers=workers, progress=False)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["succeeded"] == 5 and data["failed"] == 5 and data["ok"] is False
    assert data["failures"][0]["type"] == "ValueError" and data["failures"][0]["kind"] == "exception"


def test_retry_reruns_failing_items_and_counts_attempts(backend, workers, tmp_path):
    # Fails the first two times for each item (state kept in files so it works across processes).
    def flaky(x, root=str(tmp_path)):
        import os

        path = os.path.join(root, f"{x}.count")
        n = int(open(path).read()) if os.path.exists(path) else 0
        with open(path, "w") as f:
            f.write(str(n + 1))
        if n < 2:
            raise ConnectionError(f"try again ({n})")
        return x

    report = bk.run(flaky, range(6), backend=backend, workers=workers, progress=False,
                    retry=bk.Retry(attempts=3, backoff=0.01))
    assert report.values() == list(range(6))
    assert all(o.attempts == 3 for o in report.outcomes)


def test_retry_does_not_rerun_unmatched_errors(backend, workers):
    report = bk.run(fail_on_multiples_of(1), range(3), backend=backend, workers=workers, progress=False,
                    retry=bk.Retry(attempts=5, backoff=0.01, on=(ConnectionError,)))
    assert report.failed == 3 and all(o.attempts == 1 for o in report.failures)


def lock_on_three(x):
    import threading

    return threading.Lock() if x == 3 else x


def test_value_that_cannot_be_sent_back_fails_only_its_item(backend, backend_kind, workers):
    report = bk.run(lock_on_three, range(10), backend=backend, workers=workers, chunk_size=4, progress=False)
    if backend_kind in IN_PROCESS:
        assert report.ok  # nothing travels between processes
    else:
        (bad,) = report.failures
        assert bad.item == 3 and "cannot be sent back" in bad.error.message
        assert [o.value for o in report.outcomes if o.ok] == [0, 1, 2, 4, 5, 6, 7, 8, 9]


def test_an_unpicklable_item_fails_alone_with_a_clear_message(backend, backend_kind, workers):
    import threading

    items = [1, 2, threading.Lock(), 4, 5]
    report = bk.run(str, items, backend=backend, workers=workers, chunk_size=5, progress=False)
    if backend_kind in IN_PROCESS:
        assert report.ok  # nothing travels between processes
        return
    (bad,) = report.failures
    assert bad.index == 2 and "cannot be sent to the worker processes" in bad.error.message
    assert [o.value for o in report.outcomes if o.ok] == ["1", "2", "4", "5"]


def test_a_chunk_whose_items_all_cannot_be_pickled_still_finishes(backend, backend_kind, workers):
    import threading

    items = [threading.Lock() for _ in range(6)]
    report = bk.run(str, items, backend=backend, workers=workers, chunk_size=2, progress=False)
    if backend_kind in IN_PROCESS:
        assert report.ok
        return
    assert report.failed == 6
    assert all("cannot be sent to the worker processes" in o.error.message for o in report.failures)


def test_an_unpicklable_function_is_a_clear_usage_error():
    import threading

    lock = threading.Lock()
    with pytest.raises(bk.UsageError, match="the function cannot be sent to the worker processes"):
        bk.run(lambda x: (lock, x), [1, 2], backend="process", workers=2, progress=False)
