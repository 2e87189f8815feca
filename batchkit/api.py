"""The public entry points: :func:`run` and :func:`imap`.

Both build a :class:`~batchkit.options.RunOptions` and go through the one run lifecycle
(:class:`batchkit.jobs.lifecycle.Run`), as ``batchkit run`` and ``Job.run`` do.
"""

from __future__ import annotations

import sys
from itertools import chain
from typing import Any, Callable, Iterable, Iterator

from .engine.chunk import ChunkOutcomes
from .errors import BatchkitError
from .jobs.lifecycle import Run
from .jobs.plan import RunPlan, RunResult
from .options import MaxFailures, RunOptions, cpu_count
from .outcome import Outcome
from .report import Report
from .retry import Retry
from .sources.files import FileWalk

__all__ = ["Outcomes", "cpu_count", "default_name", "imap", "run"]


def default_name(fn: Callable[..., Any]) -> str:
    """A function's identity for the journal: its module and qualified name."""
    fn = getattr(fn, "func", fn)  # a functools.partial is its function's run
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def identity_args(items: Iterable[Any]) -> dict:
    """What tells runs of one function apart: for a file walk, its root and filters."""
    return {"files": repr(items)} if isinstance(items, FileWalk) else {}


def _plan(fn: Callable[[Any], Any], items: Iterable[Any], name: str | None, keep_outcomes: bool,
          options: dict) -> RunPlan:
    if not callable(fn):
        from .errors import UsageError

        raise UsageError(f"fn must be callable, got {type(fn).__name__}")
    opts = RunOptions.build(**options)
    return RunPlan(fn, items, opts, name=name or default_name(fn), args=identity_args(items),
                   keep_outcomes=keep_outcomes)


def raise_for(result: RunResult) -> None:
    """Raise the exception that ended a run (a stop or batchkit's own error), if one did."""
    error = result.error
    if error is None:
        return
    hint_resume(result)
    raise error


def hint_resume(result: RunResult | None) -> None:
    """Tell a Python user how to continue a journaled run that a stop ended."""
    if result is not None and isinstance(result.error, KeyboardInterrupt) and result.run_id is not None:
        print(f"batchkit: run {result.run_id} {result.message}; what finished is recorded: "
              "run it again with resume=True to continue", file=sys.stderr, flush=True)


def run(fn: Callable[[Any], Any], items: Iterable[Any], *, backend: Any = "process", workers: int | None = None,
        chunk_size: int | str = "auto", retry: Retry | int | None = None, timeout: float | str | None = None,
        progress: bool | str | None = None, journal: Any = None, resume: bool | str = False,
        key: Callable[[Any], Any] | None = None, max_failures: MaxFailures = None, desc: str | None = None,
        name: str | None = None, initializer: Callable[..., Any] | None = None, initargs: tuple = ()) -> Report:
    """Run ``fn`` on every item and return a :class:`Report`; one item's error never stops the run.

    ``items``: any iterable, consumed lazily (a generator of unknown length is fine), or
    :func:`batchkit.files`. ``backend``: ``"serial"``, ``"thread"``, ``"process"`` (default),
    ``"dask"``, a backend instance, or any ``concurrent.futures.Executor``. ``workers``: defaults
    to the CPUs this process may use. ``chunk_size``: items per task, or ``"auto"`` (chunks grow
    until each takes ~0.2-2 s). ``retry``: a :class:`Retry` or a number of retries.
    ``timeout``: per item, in seconds or as text (``"30s"``); on the process backend an
    overrunning item's worker is killed. ``progress``: ``None`` picks a bar, a notebook widget
    or log lines; ``False`` is silent. ``journal``: ``True`` or a path to record the run in
    SQLite; with ``resume=True`` the latest unfinished run of the same name is continued (the
    report then covers every item, with the exact values earlier attempts recorded), with
    ``resume="failed"`` only the failures are re-run. ``name``: the run's identity for resume
    (default: the function's qualified name, plus a file walk's root and filters); ``desc``: the
    label progress shows. ``key``: the item's identity in the journal (default: path, short
    string, or digest). ``max_failures``: stop dispatching after this many failures (or this
    fraction of items). ``initializer(*initargs)`` runs once in each worker before its first item.

    >>> report = bk.run(lambda x: 1 / x, [1, 2, 0], backend="thread")
    >>> report.failed, report.failures[0].error.type
    (1, 'ZeroDivisionError')
    """
    plan = _plan(fn, items, name, True, dict(
        backend=backend, workers=workers, chunk_size=chunk_size, ordered=False, retry=retry, timeout=timeout,
        progress=progress, journal=journal, resume=resume, key=key, max_failures=max_failures, desc=desc,
        name=name, initializer=initializer, initargs=initargs))
    result = Run(plan).execute()
    raise_for(result)
    assert result.report is not None
    return result.report


class Outcomes:
    """What :func:`imap` returns: an iterator of :class:`Outcome` (in input order, or as they
    finish), a context manager that stops the run on exit, and, once exhausted, the run's
    :attr:`report` (counts, failures, timing; the outcomes themselves were yours to keep).

    >>> with bk.imap(fetch, urls, backend="thread") as outcomes:
    ...     for o in outcomes:
    ...         if not o.ok: break          # leaving the block stops the run
    """

    def __init__(self, run: Run) -> None:
        self._run = run
        self._chunks = run.chunks()
        self._gen = self._guarded()
        # Chained in C: a `for` loop over imap runs no Python code per item but the Outcome's own.
        self._it: Iterator[Outcome] = chain.from_iterable(map(ChunkOutcomes.outcomes, self._gen))

    def _guarded(self) -> Iterator[ChunkOutcomes]:
        try:
            yield from self._chunks
        except KeyboardInterrupt:
            hint_resume(self._run.result)
            raise

    def __iter__(self) -> Iterator[Outcome]:
        return self._it

    def __next__(self) -> Outcome:
        return next(self._it)

    def __enter__(self) -> Outcomes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the run early: in-flight work is cancelled, workers released, the run recorded
        as interrupted (``resume=True`` continues it)."""
        self._gen.close()
        self._chunks.close()

    @property
    def report(self) -> Report:
        """The run's :class:`Report` once the iteration is over (counts and failures)."""
        result = self._run.result
        if result is None:
            raise BatchkitError("the run is still going: iterate to the end (or close()) first")
        if result.report is None:
            raise BatchkitError(f"the run ended without a report: {result.message or result.state}")
        return result.report

    @property
    def skipped(self) -> int:
        """Items skipped because an earlier attempt finished them."""
        engine = self._run.engine
        return engine.skipped if engine is not None else 0

    @property
    def halted(self) -> str | None:
        """Why dispatching stopped early, or ``None``."""
        engine = self._run.engine
        return engine.halted if engine is not None else None

    @property
    def not_run(self) -> int | None:
        """Items never started because of ``max_failures``."""
        engine = self._run.engine
        return engine.not_run if engine is not None else 0


def imap(fn: Callable[[Any], Any], items: Iterable[Any], *, backend: Any = "process", workers: int | None = None,
         chunk_size: int | str = "auto", ordered: bool = True, retry: Retry | int | None = None,
         timeout: float | str | None = None, progress: bool | str | None = None, journal: Any = None,
         resume: bool | str = False, key: Callable[[Any], Any] | None = None, max_failures: MaxFailures = None,
         desc: str | None = None, name: str | None = None, initializer: Callable[..., Any] | None = None,
         initargs: tuple = ()) -> Outcomes:
    """Like :func:`run`, but stream :class:`Outcome` objects as chunks finish.

    With ``ordered=True`` (default) outcomes come in input order; with ``ordered=False`` as
    soon as their chunk is done. Memory stays flat however long the input: at most a few
    chunks per worker are held. Breaking out of the loop (or leaving a ``with`` block) stops
    the run. A resumed run yields the items this attempt runs; ``report.skipped`` counts the
    others.

    >>> for outcome in bk.imap(fetch, urls, backend="thread", ordered=False):
    ...     print(outcome.item, outcome.ok)
    """
    plan = _plan(fn, items, name, False, dict(
        backend=backend, workers=workers, chunk_size=chunk_size, ordered=ordered, retry=retry, timeout=timeout,
        progress=progress, journal=journal, resume=resume, key=key, max_failures=max_failures, desc=desc,
        name=name, initializer=initializer, initargs=initargs))
    plan.store_values = True  # a stream keeps no outcomes, but whoever resumes it may want its values
    return Outcomes(Run(plan))


# Kept for older imports: the CPU count now lives with the options.
cpu_count = cpu_count
