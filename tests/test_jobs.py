"""@bk.job from Python: options from the signature, steps, hooks, and job.run over every backend."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

import batchkit as bk
from batchkit.jobs.job import Param


@bk.job
def shout(item: str, suffix: str = "!") -> str:
    """Upper-case each item.

    Args:
        suffix: Text appended to each item.
    """
    return item.upper() + suffix


def test_job_run_passes_options_and_returns_a_report(backend, workers):
    report = shout.run(["a", "b", "c"], suffix="?", backend=backend, workers=workers, progress=False)
    assert report.values() == ["A?", "B?", "C?"]


def test_job_called_on_one_item_runs_its_steps_here():
    assert shout("x") == "X!"
    assert shout("x", suffix="") == "X"


def test_options_come_from_types_defaults_and_the_args_section():
    @bk.job
    def fn(item, count: int = 2, ratio: float = 0.5, dry_run: bool = False, dest: Path = Path("."),
           mode: Literal["fast", "slow"] = "fast", tags: list[str] = ()) -> None:
        """Do it.

        Args:
            count: How many.
            dry_run: Only say what would happen.
        """

    params = {p.name: p for p in fn.params()}
    assert params["count"] == Param("count", int, 2, False, "How many.")
    assert params["ratio"].type is float and params["dry_run"].type is bool
    assert params["dry_run"].help == "Only say what would happen."
    assert params["dest"].type is Path
    assert params["mode"].choices == ("fast", "slow")
    assert params["tags"].multiple and params["tags"].type is str
    assert fn.help == "Do it." and "Args:" not in fn.description


def test_a_job_option_named_like_an_engine_option_is_refused_at_decoration():
    with pytest.raises(bk.UsageError, match="timeout.*rename"):
        @bk.job
        def fetchish(item, timeout: float = 3):
            return item


def test_unknown_and_missing_options_are_usage_errors():
    with pytest.raises(bk.UsageError, match="no option 'sufix'"):
        shout.run(["a"], sufix="?", backend="serial")

    @bk.job
    def needs(item, dest: str):
        return dest

    with pytest.raises(bk.UsageError, match="needs the option 'dest'"):
        needs.run(["a"], backend="serial")
    assert needs.run(["a"], dest="d", backend="serial").values() == ["d"]


@bk.job(name="pipeline")
def load(item: int, base: int = 0) -> int:
    """Three steps: load, check, double."""
    return item + base


@load.step
def check(value: int, item: int) -> int:
    if item == 3:
        raise ValueError(f"item {item} is bad")
    return value


@load.step(name="double")
def _double(value: int, factor: int = 2) -> int:
    return value * factor


def test_steps_run_in_sequence_and_a_failure_names_its_step(backend, workers):
    report = load.run(range(5), base=10, factor=3, backend=backend, workers=workers, progress=False)
    assert [o.value for o in report.outcomes if o.ok] == [30, 33, 36, 42]
    (bad,) = report.failures
    assert bad.item == 3
    # The original error is recorded (not the wrapper), with the step that raised it.
    assert bad.error.type == "ValueError" and bad.error.message == "item 3 is bad"
    assert bad.error.step == "check"
    assert "[check] ValueError" in bad.error.summary()


def test_retry_on_a_type_looks_through_the_failed_step():
    calls = []

    @bk.job
    def first(item):
        return item

    @first.step
    def flaky(value):
        calls.append(value)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return value

    report = first.run(["x"], backend="serial", retry=bk.Retry(attempts=3, backoff=0, on=ConnectionError))
    assert report.values() == ["x"] and report.outcomes[0].attempts == 3


def test_setup_teardown_and_finish_see_their_options(tmp_path):
    log = []

    @bk.job
    def j(item: int, factor: int = 1) -> int:
        return item * factor

    @j.setup
    def _setup(dest: Path = tmp_path) -> None:
        log.append(("setup", dest))

    @j.teardown
    def _teardown() -> None:
        log.append(("teardown",))

    @j.finish
    def _finish(outcomes, report, dest: Path = tmp_path) -> None:
        log.append(("finish", [o.value for o in outcomes], report.succeeded, dest))

    j.run([1, 2], factor=5, dest=tmp_path / "x", backend="thread", progress=False)
    assert log == [("setup", tmp_path / "x"), ("finish", [5, 10], 2, tmp_path / "x"), ("teardown",)]


def test_teardown_runs_when_the_run_raises():
    log = []

    @bk.job
    def j(item):
        return item

    @j.teardown
    def _teardown():
        log.append("teardown")

    with pytest.raises(bk.UsageError):
        j.run([1], backend="nope")
    assert log == ["teardown"]


def test_setup_can_refuse_options_before_any_item_runs():
    ran = []

    @bk.job
    def j(item, mode: str = "a"):
        ran.append(item)

    @j.setup
    def _check(mode: str = "a"):
        if mode not in ("a", "b"):
            raise bk.UsageError(f"unknown mode {mode!r}")

    with pytest.raises(bk.UsageError, match="unknown mode 'z'"):
        j.run([1, 2], mode="z", backend="serial")
    assert ran == []


def test_a_job_with_a_source_runs_without_items(tmp_path):
    (tmp_path / "a.txt").write_text("1")
    (tmp_path / "b.txt").write_text("22")

    @bk.job
    def size(path: Path) -> int:
        return path.stat().st_size

    @size.source
    def _files(root: Path):
        return bk.files(root)

    params = size.params()
    assert params[0].argument and params[0].name == "root"
    assert size.run(root=tmp_path, backend="thread", progress=False).values() == [1, 2]
    with pytest.raises(bk.UsageError, match="needs ROOT"):
        size.run(backend="thread")


def test_jobs_in_a_multi_step_pipeline_pickle_to_processes():
    # The Pipeline object (not a closure) is what travels to loky workers.
    report = load.run([1, 2], backend="process", workers=2, progress=False)
    assert report.values() == [2, 4]
