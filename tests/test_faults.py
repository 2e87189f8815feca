"""Fault injection: dead workers, segfaults, hung items. One bad item never takes its neighbours down."""

from __future__ import annotations

import os
import signal
import time

import pytest

import batchkit as bk


def exit_on(bad, how):
    def fn(x):
        if x == bad:
            if how == "exit":
                os._exit(3)
            if how == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            if how == "segfault":
                import ctypes

                ctypes.string_at(0)  # reads address 0: a real SIGSEGV
        time.sleep(0.002)
        return x * 10
    return fn


@pytest.mark.parametrize("how, expect", [
    ("exit", "exited with code 3"),
    ("sigkill", "SIGKILL"),
    ("segfault", "SIGSEGV"),
])
def test_crashed_worker_fails_only_its_item(how, expect):
    report = bk.run(exit_on(37, how), range(100), backend="process", workers=2, chunk_size=10, progress=False)
    assert report.failed == 1, report.failures
    (bad,) = report.failures
    assert bad.item == 37 and bad.error.kind == "crash"
    assert expect in bad.error.message
    # Every other item, including the dead worker's chunk-mates, completed exactly once.
    assert [o.value for o in report.outcomes if o.ok] == [x * 10 for x in range(100) if x != 37]
    assert [o.index for o in report.outcomes] == list(range(100))


def test_two_crashing_items_in_different_chunks_are_both_pinned():
    def fn(x):
        if x in (5, 55):
            os._exit(9)
        time.sleep(0.001)
        return x

    report = bk.run(fn, range(80), backend="process", workers=2, chunk_size=8, progress=False)
    assert sorted(o.item for o in report.failures) == [5, 55]
    assert all(o.error.kind == "crash" for o in report.failures)
    assert report.succeeded == 78


def test_pool_is_usable_after_a_crash():
    bk.run(exit_on(3, "exit"), range(10), backend="process", workers=2, chunk_size=2, progress=False)
    report = bk.run(lambda x: x + 1, range(50), backend="process", workers=2, progress=False)
    assert report.values() == list(range(1, 51))


def hang_on(bad):
    def fn(x):
        if x == bad:
            time.sleep(60)
        return x
    return fn


def test_hung_item_on_process_backend_is_killed_and_recorded_as_timeout():
    start = time.monotonic()
    report = bk.run(hang_on(7), range(30), backend="process", workers=2, chunk_size=10, timeout=1.0,
                    progress=False)
    assert time.monotonic() - start < 30  # the 60 s sleep was really stopped
    (bad,) = report.failures
    assert bad.item == 7 and bad.error.kind == "timeout" and bad.error.type == "TimeoutError"
    assert "killed" in bad.error.message
    assert report.succeeded == 29  # its chunk-mates still ran


@pytest.mark.parametrize("backend", ["serial", "thread"])
def test_hung_item_on_in_process_backends_is_recorded_as_timeout(backend):
    def fn(x):
        if x == 3:
            time.sleep(3)
        return x

    report = bk.run(fn, range(8), backend=backend, workers=2, chunk_size=4, timeout=0.5, progress=False)
    (bad,) = report.failures
    assert bad.item == 3 and bad.error.kind == "timeout"
    assert "may keep running" in bad.error.message
    assert report.succeeded == 7


def test_timeout_on_dask_is_recorded(dask_client):
    def fn(x):
        if x == 2:
            time.sleep(4)
        return x

    report = bk.run(fn, range(6), backend=bk.DaskBackend(client=dask_client), timeout=0.5, progress=False)
    (bad,) = report.failures
    assert bad.item == 2 and bad.error.kind == "timeout"
    assert report.succeeded == 5


def test_dask_worker_killed_mid_run_loses_no_item(dask_client, tmp_path):
    import psutil

    marker = tmp_path / "started"

    def slow(x, marker=str(marker)):
        open(marker, "a").close()
        time.sleep(0.05)
        return x * 3

    pids = list(dask_client.run(os.getpid).values())
    stream = bk.imap(slow, range(120), backend=bk.DaskBackend(client=dask_client), chunk_size=4,
                     ordered=False, progress=False)
    got = []
    for outcome in stream:
        got.append(outcome)
        if len(got) == 8:
            os.kill(pids[0], signal.SIGKILL)  # a real worker process dies mid-run
    assert sorted(o.item for o in got) == list(range(120))
    assert all(o.ok and o.value == o.item * 3 for o in got)
    assert not psutil.pid_exists(pids[0]) or psutil.Process(pids[0]).status() == psutil.STATUS_ZOMBIE
    # The nanny brings the worker back.
    dask_client.wait_for_workers(2, timeout=30)


LOST_WORKER = "distributed.deploy.lost-worker-timeout"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("workers, n, killer, chunk_size, lost_worker_timeout", [
    (2, 8, 5, 4, None),
    # One worker: every task queued on it dies with it, so halving the chunk down to the killer
    # (16 -> 8 -> 4 -> 2 -> 1, then alone) loses every sibling slice each time. Those restarts
    # narrow the search; they must not count as a cluster that dies on everything.
    (1, 16, 0, 16, None),
    # A LocalCluster closes a nanny for good when its worker is still gone lost-worker-timeout
    # after it left (15 s; here 0.2 s, as if the halving took long under load). Unless batchkit
    # holds it off during the run, the nannies restarting the killed workers are closed, no
    # worker is left, and the run never ends.
    (2, 64, 37, 32, "0.2s"),
], ids=["two-workers", "one-worker-loses-its-queue", "lost-worker-timeout-shorter-than-the-halving"])
def test_dask_item_that_keeps_killing_workers_is_isolated_as_crash(workers, n, killer, chunk_size,
                                                                   lost_worker_timeout):
    distributed = pytest.importorskip("distributed")
    import logging

    import dask

    settings = {"distributed.scheduler.allowed-failures": 0}
    if lost_worker_timeout is not None:
        settings[LOST_WORKER] = lost_worker_timeout
    with dask.config.set(settings):
        before = dask.config.get(LOST_WORKER)
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0",
                                      silence_logs=logging.CRITICAL) as cluster, distributed.Client(cluster) as client:
            def fn(x):
                if x == killer:
                    os._exit(1)
                return x

            seen = []

            def items():
                for i in range(n):
                    seen.append(dask.config.get(LOST_WORKER))
                    yield i

            report = bk.run(fn, items(), backend=bk.DaskBackend(client=client), chunk_size=chunk_size, progress=False)
            # Handed back as it was: its workers restarted, the user's setting back.
            assert len(client.nthreads()) == workers and len(cluster.workers) == workers
            assert dask.config.get(LOST_WORKER) == before
    assert set(seen) == {"30 days"}  # held while the run was on
    (bad,) = report.failures
    assert bad.item == killer and bad.error.kind == "crash"
    assert [o.value for o in report.outcomes if o.ok] == [x for x in range(n) if x != killer]


def test_starting_a_local_cluster_leaves_the_environment_as_it_was():
    before = dict(os.environ)
    bk.run(abs, [-1, -2], backend="dask", workers=1, progress=False)
    assert dict(os.environ) == before


def test_beacon_of_a_parent_killed_with_9_is_removed_by_the_next_run(tmp_path):
    import subprocess
    import sys
    import textwrap

    from batchkit.engine.beacon import PREFIX

    where = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    if where is None:
        pytest.skip("no writable /dev/shm")
    script = textwrap.dedent("""
        import time, batchkit as bk
        bk.run(time.sleep, [0.05] * 2000, backend="process", workers=2, chunk_size=5, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    mine = f"{PREFIX}{proc.pid}-"
    deadline = time.monotonic() + 30
    while not any(n.startswith(mine) for n in os.listdir(where)):
        assert time.monotonic() < deadline, "the run never made its beacon"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert any(n.startswith(mine) for n in os.listdir(where))  # left behind: nobody could remove it
    bk.run(abs, [1, -2], backend="process", workers=2, progress=False)  # the next run sweeps it
    assert not any(n.startswith(mine) for n in os.listdir(where))


@pytest.mark.timeout(90)
def test_dask_run_whose_cluster_has_no_worker_left_ends_with_a_clear_error_instead_of_waiting_forever():
    pytest.importorskip("distributed")
    import dask

    backend = bk.DaskBackend(workers=1)
    # The cluster batchkit starts fails tasks that wait 60 s without any worker; the user's own
    # setting wins (1 s here, to keep the test short).
    with dask.config.set({"distributed.scheduler.no-workers-timeout": "1s"}):
        with backend:
            assert backend.client.cluster.scheduler.no_workers_timeout == 1

            def items():
                for i in range(40):
                    if i == 10:  # every worker goes away, for good, in the middle of the run
                        backend.client.cluster.scale(0)
                    yield i

            with pytest.raises(bk.BackendError, match="no worker for 1 s"):
                bk.run(abs, items(), backend=backend, chunk_size=2, progress=False)
    with bk.DaskBackend(workers=1) as own:
        assert own.client.cluster.scheduler.no_workers_timeout == 60
