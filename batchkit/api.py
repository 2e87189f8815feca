"""The public entry points: :func:`run` and :func:`imap`."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Iterator

from .engine.loop import Engine, MaxFailures
from .outcome import Outcome
from .report import ChunkOutcomes, Report
from .retry import Retry
from .sources.files import FileWalk
from .state.journal import Journal, RunRecord, item_key


def _job_name(fn: Callable[..., Any], desc: str | None) -> str:
    if desc:
        return desc
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}.{getattr(fn, '__qualname__', type(fn).__name__)}"


class _Session:
    """An engine plus, when asked for, the journal run it writes to."""

    def __init__(self, fn: Callable[[Any], Any], items: Iterable[Any], *, journal: Any, resume: bool | str,
                 key: Callable[[Any], Any] | None, desc: str | None, ordered: bool, **options: Any) -> None:
        self.items = items
        self.record: RunRecord | None = None
        self._own_journal: Journal | None = None
        if isinstance(journal, RunRecord):
            self.record = journal
        elif journal is not None and journal is not False:
            j = journal if isinstance(journal, Journal) else Journal(None if journal is True else journal)
            if j is not journal:
                self._own_journal = j
            try:
                total = len(items)  # type: ignore[arg-type]
            except TypeError:
                total = None
            # A run is "the same" when its name and, for a file walk, its root and filters match.
            args = {"files": repr(items)} if isinstance(items, FileWalk) else {}
            self.record = j.begin(_job_name(fn, desc), args, resume=bool(resume) and resume != "failed",
                                  retry_failed=resume == "failed", total=total)
        keyfn = None
        skip = None
        on_chunk = None
        if self.record is not None:
            keyfn = item_key if key is None else key
            skip = self.record.is_done if self.record.done else None
            on_chunk = self.record.record
        elif key is not None:
            keyfn = key
        self.engine = Engine(fn, items, desc=desc, ordered=ordered, key=keyfn, skip=skip,
                             on_chunk=on_chunk, **options)

    def finish(self, state: str, message: str | None = None) -> None:
        try:
            if self.record is not None:
                self.record.end(state, skipped=self.engine.skipped, elapsed=self.engine.elapsed,
                                message=message, total=self.engine.seen or None)
        finally:
            if self._own_journal is not None:
                self._own_journal.close()
                self._own_journal = None

    def chunks(self) -> Iterator[ChunkOutcomes]:
        try:
            yield from self.engine.chunks()
        except KeyboardInterrupt:
            self.finish("interrupted", "stopped by SIGINT")
            raise
        except GeneratorExit:
            self.finish("interrupted", "stopped by the caller")
            raise
        except BaseException as exc:
            self.finish(getattr(exc, "run_state", "failed"), f"{type(exc).__name__}: {exc}")
            raise

    def report(self, chunks: list[ChunkOutcomes]) -> Report:
        e = self.engine
        report = Report(chunks, elapsed=e.elapsed, skipped=e.skipped, halted=e.halted, not_run=e.not_run,
                        input_errors=getattr(self.items, "errors", None), desc=e.desc,
                        run_id=self.record.id if self.record else None)
        return report


class Outcomes:
    """What :func:`imap` returns: an iterator of :class:`Outcome`, plus what the run found out
    (``skipped``, ``halted``, ``not_run``) once it is exhausted."""

    def __init__(self, engine: Engine, chunks: Iterator[ChunkOutcomes]) -> None:
        self._engine = engine
        self._gen = (outcome for chunk in chunks for outcome in chunk.outcomes())

    def __iter__(self) -> Outcomes:
        return self

    def __next__(self) -> Outcome:
        return next(self._gen)

    def close(self) -> None:
        """Stop the run early: in-flight work is cancelled and workers released."""
        self._gen.close()

    @property
    def skipped(self) -> int:
        """Items skipped because an earlier run finished them."""
        return self._engine.skipped

    @property
    def halted(self) -> str | None:
        """Why dispatching stopped early, or ``None``."""
        return self._engine.halted

    @property
    def not_run(self) -> int | None:
        """Items never started because of ``max_failures``."""
        return self._engine.not_run


def run(fn: Callable[[Any], Any], items: Iterable[Any], *, backend: Any = "process", workers: int | None = None,
        chunk_size: int | str = "auto", ordered: bool = True, retry: Retry | int | None = None,
        timeout: float | None = None, progress: bool | str | None = None, journal: Any = None,
        resume: bool | str = False, key: Callable[[Any], Any] | None = None,
        max_failures: MaxFailures = None, desc: str | None = None) -> Report:
    """Run ``fn`` on every item and return a :class:`Report`; one item's error never stops the run.

    ``items``: any iterable, consumed lazily (a generator of unknown length is fine), or
    :func:`batchkit.files`. ``backend``: ``"serial"``, ``"thread"``, ``"process"`` (default),
    ``"dask"``, or a backend instance. ``workers``: defaults to the CPU count.
    ``chunk_size``: items per task, or ``"auto"`` (chunks grow until each takes ~0.2-2 s).
    ``retry``: a :class:`Retry` or a number of retries. ``timeout``: seconds per item; on the
    process backend an overrunning item's worker is killed. ``progress``: ``None`` picks a bar,
    a notebook widget or log lines; ``False`` is silent. ``journal``: ``True`` or a path to
    record the run in SQLite; with ``resume=True`` the latest unfinished run of the same job is
    continued (finished items skipped), with ``resume="failed"`` only the failures are re-run.
    "The same job" is the same ``desc`` (default: the function's qualified name) and, for
    :func:`batchkit.files` input, the same root and filters: give different inputs different
    ``desc`` values.
    ``key``: the item's identity for the journal (default: path, short string, or digest).
    ``max_failures``: stop dispatching after this many failures (or this fraction of items).

    >>> report = bk.run(lambda x: 1 / x, [1, 2, 0], backend="thread")
    >>> report.failed, report.failures[0].error.type
    (1, 'ZeroDivisionError')
    """
    session = _Session(fn, items, journal=journal, resume=resume, key=key, desc=desc, ordered=False,
                       backend=backend, workers=workers, chunk_size=chunk_size, retry=retry,
                       timeout=timeout, progress=progress, max_failures=max_failures)
    chunks = list(session.chunks())
    report = session.report(chunks)
    session.finish("succeeded" if report.ok else "failed", report.halted)
    return report


def imap(fn: Callable[[Any], Any], items: Iterable[Any], *, backend: Any = "process", workers: int | None = None,
         chunk_size: int | str = "auto", ordered: bool = True, retry: Retry | int | None = None,
         timeout: float | None = None, progress: bool | str | None = None, journal: Any = None,
         resume: bool | str = False, key: Callable[[Any], Any] | None = None,
         max_failures: MaxFailures = None, desc: str | None = None) -> Outcomes:
    """Like :func:`run`, but stream :class:`Outcome` objects as chunks finish.

    With ``ordered=True`` (default) outcomes come in input order; with ``ordered=False`` as
    soon as their chunk is done. Memory stays flat however long the input: at most a few
    chunks per worker are held. Breaking out of the loop stops the run.

    >>> for outcome in bk.imap(fetch, urls, backend="thread", ordered=False):
    ...     print(outcome.item, outcome.ok)
    """
    session = _Session(fn, items, journal=journal, resume=resume, key=key, desc=desc, ordered=ordered,
                       backend=backend, workers=workers, chunk_size=chunk_size, retry=retry,
                       timeout=timeout, progress=progress, max_failures=max_failures)

    def chunks() -> Iterator[ChunkOutcomes]:
        failed = False
        for chunk in session.chunks():
            failed = failed or bool(chunk.errors)
            yield chunk
        e = session.engine
        session.finish("failed" if failed or e.halted else "succeeded", e.halted)

    return Outcomes(session.engine, chunks())


def cpu_count() -> int:
    """CPUs this process may use (respects affinity / cgroup limits where Python exposes them)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
