"""Backends as users meet them: a plain script on Dask without a main guard, a Dask cluster whose
workers die on every task, and two runs at once in one process on the process backend, one of
them stopped while the other goes on."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import threading
import time

import pytest

import batchkit as bk

from conftest import PY, python_env
from faults_support import items_recorded as recorded

pytestmark = pytest.mark.timeout(120)


def run_script(script, cwd, timeout: float = 90) -> subprocess.CompletedProcess:
    """Run a Python script in its own session; on a timeout, stop it with its cluster's processes."""
    proc = subprocess.Popen([PY, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=python_env(), cwd=cwd, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


NO_GUARD_SCRIPT = textwrap.dedent('''
    import os
    import batchkit as bk

    OFFSET = 1000  # a module global the function needs on the workers

    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "executions.log"), "a") as log:
        log.write(f"{os.getpid()}\\n")  # each time this file runs

    def shift(x):
        return x + OFFSET, os.getpid()

    report = bk.run(shift, range(40), backend="dask", workers=2, chunk_size=5, progress=False)
    print(sum(v for v, _ in report.values()), len({pid for _, pid in report.values()} - {os.getpid()}))
''')


def test_a_script_without_a_main_guard_runs_on_a_real_local_dask_cluster(tmp_path):
    pytest.importorskip("distributed")
    script = tmp_path / "no_guard.py"
    script.write_text(NO_GUARD_SCRIPT)
    proc = run_script(script, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Nanny failed to start" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    total, worker_pids = map(int, proc.stdout.split())
    assert total == sum(range(40)) + 40 * 1000
    assert worker_pids >= 1  # the items ran in the cluster's worker processes, not in the script
    # The workers never ran the script again: it ran once, in the interpreter we started.
    assert len((tmp_path / "executions.log").read_text().split()) == 1


DYING_CLUSTER = textwrap.dedent('''
    import logging, os, sys, time
    import distributed
    import batchkit as bk

    def die(x):
        os._exit(1)

    if __name__ == "__main__":
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", silence_logs=logging.CRITICAL)
        client = distributed.Client(cluster)
        try:
            report = bk.run(die, range(20), backend=bk.DaskBackend(client=client), progress=False)
            print("finished", report.failed)
        except bk.BackendError as exc:
            print("BackendError", str(exc).splitlines()[0][:200])
        finally:
            # The run hands the cluster back with its workers restarted (closing a nanny in the
            # middle of a restart fails inside distributed: "can only join a started process").
            print("workers", len(client.nthreads()))
            client.close()
            cluster.close()
''')


def test_a_dask_cluster_whose_workers_die_on_every_task_fails_fast(tmp_path):
    pytest.importorskip("distributed")
    script = tmp_path / "dying.py"
    script.write_text(DYING_CLUSTER)
    # Bounded: without the engine giving up, the nanny would restart workers for every chunk for minutes.
    proc = run_script(script, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("BackendError"), proc.stdout + proc.stderr
    assert "died" in proc.stdout and "without finishing any item" in proc.stdout
    assert "workers 2" in proc.stdout


# -- two runs at once in one process --------------------------------------------------------------

def steady(item):
    """``(go_file, x)``: the last items wait for ``go_file``, so this run outlasts the others."""
    go, x = item
    if x >= 150:
        deadline = time.monotonic() + 60
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.02)
    time.sleep(0.005)
    return os.getpid()


def hang_on_three(x):
    if x == 3:
        time.sleep(60)
    time.sleep(0.01)
    return x


def test_two_runs_at_once_one_stopped_early_one_timing_out_leave_the_other_unharmed(tmp_path):
    go = tmp_path / "go"
    results: dict[str, object] = {}
    errors: list[BaseException] = []

    def guarded(name, fn):
        def target():
            try:
                results[name] = fn()
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                errors.append(exc)
        return threading.Thread(target=target, name=name)

    def long_run():
        return bk.run(steady, [(str(go), x) for x in range(160)], backend="process", workers=2, chunk_size=4,
                      journal=tmp_path / "j.db", name="long", progress=False)

    def closed_early():
        seen = 0
        with bk.imap(hang_on_three, range(4, 10_000), backend="process", workers=1, chunk_size=2,
                      progress=False) as outcomes:
            for _ in outcomes:
                seen += 1
                if seen == 20:
                    break  # leaving the block stops this run and its worker
        return seen

    def timing_out():
        return bk.run(hang_on_three, range(12), backend="process", workers=1, chunk_size=2, timeout=0.5,
                      progress=False)

    first = guarded("long", long_run)
    first.start()
    deadline = time.monotonic() + 60
    while recorded(tmp_path / "j.db") < 20:  # the long run's workers are busy
        assert time.monotonic() < deadline and first.is_alive(), errors
        time.sleep(0.02)
    others = [guarded("imap", closed_early), guarded("timeout", timing_out)]
    for t in others:
        t.start()
    for t in others:
        t.join(60)
    assert first.is_alive(), "the long run must still be going while the others stop"
    go.write_text("go")
    first.join(60)
    assert not errors, errors

    assert results["imap"] == 20
    timed = results["timeout"]
    assert [(o.item, o.error.kind) for o in timed.failures] == [(3, "timeout")] and timed.succeeded == 11
    long = results["long"]
    assert long.ok and long.succeeded == 160 and all(o.attempts == 1 for o in long.outcomes)
    assert len(set(long.values())) <= 2, "the long run's workers were replaced: something killed them"
    from batchkit.state.journal import Journal

    with Journal(tmp_path / "j.db") as journal:
        events = journal.timeline(long.run_id)["events"]
    assert not [e for e in events if e["kind"] in ("crash", "timeout")], events



def read_relative(name):
    with open(name) as f:
        return f.read()


def test_a_run_after_changing_directory_reads_relative_paths_from_the_new_one(tmp_path, monkeypatch):
    # A notebook user: a run in one directory, os.chdir, another run. The warm pool's workers were
    # started in the first directory; the second run's items must see the second.
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "data.txt").write_text(name)
    monkeypatch.chdir(tmp_path / "first")
    assert bk.run(read_relative, ["data.txt"] * 4, backend="process", workers=2, progress=False).values() == \
        ["first"] * 4
    monkeypatch.chdir(tmp_path / "second")
    assert bk.run(read_relative, ["data.txt"] * 4, backend="process", workers=2, progress=False).values() == \
        ["second"] * 4
