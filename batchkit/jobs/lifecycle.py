"""One run from start to end, however it was started: :class:`Run`.

``batchkit run``, ``batchkit exec``, ``bk.run``, ``bk.imap``, ``Job.run``, the scheduler's
children and watching or queue-consuming runs all go through this one object::

    options checked -> lock (if asked) -> set-up -> journal record opened or resumed
      -> engine -> sinks per chunk (--output, journal, operations, others)
      -> finish (with every outcome, earlier attempts included, exact values)
      -> record closed with the true end state -> tear-down -> operations (log, ping, notify, metrics)

Whatever ends the run — success, failed items, ``max_failures``, a signal, a closed pipe, a
journal or disk that fails, a bad job — it ends with a state (succeeded, failed, halted,
interrupted, error), an exit code and a summary in a :class:`~batchkit.jobs.plan.RunResult`
(:mod:`batchkit.jobs.summary` words it). A stop (signal, closed pipe, the caller closing
``imap``) is never recorded as a failure of any item: what it cut short runs again on ``--resume``.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Iterable, Iterator

from ..engine.chunk import ChunkOutcomes
from ..engine.loop import Engine
from ..errors import BackendError, BatchkitError, ExitCode, Interrupted, JournalError, UsageError
from ..outcome import ItemError, Outcome
from ..report import Report
from ..retry import unknown_retry_names
from ..secrets import redact
from .plan import RunPlan, RunResult
from .sinks import OutputSink, stdout_to_stderr
from .spool import OutcomeSpool
from .summary import KEPT_FAILURES, backend_name, end_message, exit_code_for, resume_command, run_summary, shown


class Run:
    """One run of a :class:`~batchkit.jobs.plan.RunPlan`: :meth:`execute` it, or iterate :meth:`chunks` (``imap``)."""

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan
        self.result: RunResult | None = None
        self.engine: Engine | None = None
        self.record: Any = None
        self._journal: Any = None
        self._lock: Any = None
        self._output: OutputSink | None = None
        self._chunks: list[ChunkOutcomes] = []
        self._spool: OutcomeSpool | None = None
        self._failures: list[tuple[int, Any, ItemError]] = []
        self._counts = [0, 0]  # succeeded, failed: delivered to every sink
        self._setup_done = False
        self._started_wall = datetime.now().astimezone()
        self._started = time.monotonic()
        self._stop = None

    # -- the two ways to drive it ------------------------------------------------------------

    def execute(self) -> RunResult:
        """Run to the end; never raises for the run's own end (see :attr:`RunResult.error`)."""
        try:
            for _ in self.chunks():
                pass
        except (BatchkitError, KeyboardInterrupt):
            pass  # recorded in self.result
        assert self.result is not None
        return self.result

    def chunks(self) -> Iterator[ChunkOutcomes]:
        """Run, yielding each chunk after every sink has it; the end is recorded in :attr:`result`
        (and the exception that ended the run, if any, re-raised)."""
        from ..interrupt import current

        self._stop = current()
        state, error = "error", None
        engine_gen = None
        try:
            self._begin()
            engine_gen = self.engine.chunks()
            with stdout_to_stderr(self.plan.redirect_stdout):
                for chunk in engine_gen:
                    self._deliver(chunk)
                    yield chunk
            engine_gen = None
            state = self._completed()
        except GeneratorExit:
            state, error = "interrupted", Interrupted(2, "stopped by the caller")
            raise
        except Interrupted as exc:
            state, error = "interrupted", exc
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C outside graceful(): the user's own KeyboardInterrupt
            state, error = "interrupted", exc
            raise
        except BrokenPipeError:
            from .sinks import closed_pipe

            state, error = "interrupted", closed_pipe()
            raise error from None
        except BatchkitError as exc:
            state, error = "error", exc
            raise
        except Exception as exc:  # a job hook failed: the run could not be completed
            state = "error"
            error = BackendError(f"{self.plan.name}: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            raise error from exc
        finally:
            if engine_gen is not None:
                engine_gen.close()  # stops the workers of a run that ended early
            self._end(state, error)

    # -- phases --------------------------------------------------------------------------------

    def _begin(self) -> None:
        plan = self.plan
        unknown = unknown_retry_names(plan.options.retry, plan.fn)
        if unknown:
            raise UsageError(f"retry on {unknown[0]!r}: no exception of that name is built in or defined by "
                             f"the job; check the spelling (e.g. OSError, TimeoutError)")
        self._check_stop()
        if plan.lock:
            self._take_lock()
        if plan.job is not None:
            self._setup()
        journal = plan.options.journal
        # Exact values are kept when this run's report needs them, or a later resume from Python
        # would (bk.imap streams its outcomes, but a bk.run resuming it must not redo them).
        if not plan.keep_outcomes and plan.job is not None and plan.job.job.has_finish:
            self._spool = OutcomeSpool()  # the finishing step's outcomes, kept on disk
        keep = plan.keep_outcomes or self._spool is not None
        needs_values = keep if plan.store_values is None else plan.store_values
        if journal:
            self._open_journal(journal, needs_values)
        if plan.output is not None:
            rec = self.record
            self._output = OutputSink(plan.output, resume_at=rec.output_end if rec is not None else None,
                                      resumed=bool(rec is not None and rec.resumed),
                                      forget=rec.forgotten if rec is not None else None)
            self._output.open()
            if self._output.note:
                self._note(self._output.note)
        for sink in plan.sinks:
            sink.open(self)
        if plan.operations is not None:
            plan.operations.started(self.record.id if self.record is not None else None, redact(plan.args))
        rec = self.record
        skip = rec.is_done if rec is not None and rec.done else None
        self.engine = Engine(plan.fn, plan.items, plan.options, skip=skip, keyed=rec is not None,
                             keep_skipped=skip is not None and keep)
        self._check_stop()

    def _check_stop(self) -> None:
        if self._stop is not None:
            self._stop.check()

    def _take_lock(self) -> None:
        from ..state.journal import fingerprint
        from ..state.lock import RunLock

        lock = RunLock(fingerprint(self.plan.name, redact(self.plan.args)))
        try:
            if self._stop is not None:
                with self._stop.interruptible():
                    lock.acquire(wait=self.plan.wait_lock)
            else:
                lock.acquire(wait=self.plan.wait_lock)
        except OSError as exc:
            if not self.plan.options.journal:  # nothing to write: a read-only home does not stop it
                self._note(f"cannot take the run lock {lock.path} ({exc.strerror or exc}); running without it")
                return
            raise JournalError(f"cannot take the run lock {lock.path}: {exc.strerror or exc}; "
                               "set BATCHKIT_HOME to a writable directory") from None
        self._lock = lock

    def _setup(self) -> None:
        try:
            with stdout_to_stderr(self.plan.redirect_stdout):  # its prints must not mix with the data
                self.plan.job.setup()
        except BatchkitError:
            raise
        except Exception as exc:
            raise BackendError(f"job {self.plan.name!r}: its set-up failed: {type(exc).__name__}: {exc}") from None
        self._setup_done = True

    def _open_journal(self, journal: Any, needs_values: bool) -> None:
        from ..state.journal import Journal

        plan, opts = self.plan, self.plan.options
        self._journal = journal if isinstance(journal, Journal) else Journal(None if journal is True else journal)
        settings = {"backend": backend_name(opts.backend), "workers": opts.workers,
                    "chunk_size": opts.chunk_size, "timeout": opts.timeout, "ordered": opts.ordered,
                    "retries": (opts.retry.attempts - 1) if opts.retry else 0, "max_failures": opts.max_failures}
        self.record = self._journal.begin(
            plan.name, plan.args, resume=bool(opts.resume) and opts.resume != "failed",
            retry_failed=opts.resume == "failed" or plan.retry_failed, total=_length(plan.items),
            needs_values=needs_values, settings=settings, command=resume_command(self.plan.command))
        if opts.resume or plan.retry_failed:
            retrying = opts.resume == "failed" or plan.retry_failed
            if self.record.resumed and retrying:
                failed = len(self.record.forgotten)
                self._note(f"re-running the {failed} items that failed in run {self.record.id}" if failed
                           else f"run {self.record.id} has no failed items: nothing to re-run")
            elif self.record.resumed:
                self._note(f"resuming run {self.record.id}: {len(self.record.done)} items finished earlier "
                           "are skipped")
            elif not getattr(plan.items, "endless", False):
                self._note("no unfinished run of this job with these arguments: starting a new run")

    def _deliver(self, chunk: ChunkOutcomes) -> None:
        """Hand a finished chunk to every sink, in order; count it once all have it."""
        if self._output is not None:
            self._output.chunk(chunk)
        if self.record is not None:
            self.record.record(chunk, self._output.position() if self._output is not None else None)
        if self.plan.operations is not None:
            self.plan.operations.chunk_done(chunk)
        for sink in self.plan.sinks:
            sink.chunk(chunk)
        errors = chunk.errors
        self._counts[0] += len(chunk) - len(errors)
        self._counts[1] += len(errors)
        for pos in sorted(errors):
            if len(self._failures) < KEPT_FAILURES:
                self._failures.append((chunk.index(pos), shown(chunk.key(pos), chunk.items[pos]), errors[pos]))
        if self._spool is not None:
            self._spool.add(chunk)
        if self.plan.keep_outcomes or errors:  # without outcomes kept, failures still are
            self._chunks.append(chunk)

    def _completed(self) -> str:
        """The engine finished: build the report, run the finishing step; the end state."""
        e = self.engine
        report = self._report()
        self._report_obj = report
        if self.plan.job is not None and self.plan.job.job.has_finish:
            self._check_stop()
            outcomes = report.outcomes if self._spool is None else self._spooled()
            with stdout_to_stderr(self.plan.redirect_stdout):  # its prints must not mix with the data
                note = self.plan.job.finish(outcomes, report)
            if isinstance(note, str) and note:
                self._note(note)
        if e.halted:
            return "halted"
        # A resumed run whose earlier attempts recorded failures: the journal, which holds every
        # attempt's counts, makes it "failed" when the record closes (see _end).
        return "succeeded" if report.ok else "failed"

    def _spooled(self) -> OutcomeSpool:
        """The spool of this run's outcomes, with those of earlier attempts merged in."""
        assert self._spool is not None
        if self.record is not None and self.engine.skipped_items:
            self._spool.set_earlier(self._earlier(self.engine.skipped_items))
        return self._spool

    def _report(self) -> Report:
        e = self.engine
        earlier = None
        if self.plan.keep_outcomes and self.record is not None and e.skipped_items:
            earlier = self._earlier(e.skipped_items)
        return Report(self._chunks, elapsed=e.elapsed, skipped=e.skipped, halted=e.halted, not_run=e.not_run,
                      input_errors=getattr(self.plan.items, "errors", None), desc=self.plan.options.desc,
                      run_id=self.record.id if self.record is not None else None, earlier=earlier,
                      counts=None if self.plan.keep_outcomes else (self._counts[0], self._counts[1]))

    def _earlier(self, skipped: list[tuple[int, Any, str]]) -> list[Outcome]:
        """Outcomes of the items an earlier attempt finished, with their exact values."""
        from ..state.keys import stored_key

        self.record.flush()
        recorded = self._journal.earlier(self.record.id)
        out = []
        for index, item, key in skipped:
            got = recorded.get(key) or recorded.get(stored_key(key))
            if got is None:
                continue
            ok, value, error, attempts, duration = got
            out.append(Outcome(index, item, ok, value, error, attempts, duration))
        return out

    # -- the end ----------------------------------------------------------------------------

    def _end(self, state: str, error: BaseException | None) -> None:
        e = self.engine
        if state == "error" and isinstance(error, UsageError) and self.record is None:
            state = "refused"
        code = exit_code_for(state, error)
        message = end_message(state, error, e)
        if self._output is not None:
            self._output.close(state)
        if self._spool is not None:
            self._spool.close()
        for sink in self.plan.sinks:
            try:
                sink.close(state)
            except Exception as exc:  # a sink's clean-up must not hide how the run ended
                self._note(f"warning: {type(exc).__name__}: {exc}")
        row = self._close_record(state, message, code)
        if self._setup_done:
            self._teardown()
        if row is not None and row.get("state") == "error" and state != "error":
            state, code, message = "error", ExitCode.CANNOT_RUN, row.get("message")
        elif row is not None and row.get("state") == "failed" and state == "succeeded":
            state, code = "failed", ExitCode.FAILED  # resumed: an earlier attempt's items failed
        result = RunResult(state if state != "refused" else "error", code, message, error,
                           getattr(self, "_report_obj", None), self.record.id if self.record else None,
                           bool(self.record and self.record.resumed), failures=self._failures,
                           notes=getattr(self, "_notes", []))
        result.started = e is not None
        if state in ("interrupted", "error") and self.record is not None:
            result.resume_hint = resume_command(self.plan.command)
        result.summary = run_summary(self.plan, result, row, engine=e, counts=self._counts, failures=self._failures,
                                     started=self._started, started_wall=self._started_wall)
        self.result = result
        self._operations(result)
        self._release()

    def _close_record(self, state: str, message: str | None, code: int) -> dict | None:
        if self.record is None:
            return None
        e = self.engine
        try:
            return self.record.end("interrupted" if state == "refused" else state,
                                   skipped=e.skipped if e else 0, elapsed=e.elapsed if e else 0.0,
                                   message=message, total=e.seen if e and e.total is None else None,
                                   exit_code=int(code))
        except JournalError as exc:
            self._note(f"error: {exc}")
            return {"state": "error", "message": str(exc)}

    def _teardown(self) -> None:
        try:
            with stdout_to_stderr(self.plan.redirect_stdout):  # its prints must not mix with the data
                self.plan.job.teardown()
        except Exception as exc:
            self._note(f"warning: the job's tear-down failed: {type(exc).__name__}: {exc}")

    def _operations(self, result: RunResult) -> None:
        ops = self.plan.operations
        if ops is None:
            return
        try:
            if self._stop is not None and self._stop.requested is None:
                with self._stop.interruptible():
                    ops.finished(result.summary, int(result.exit_code))
            else:
                ops.finished(result.summary, int(result.exit_code))
        except KeyboardInterrupt as exc:
            # A signal while pings wait: the run's state stays as recorded; the exit code says it.
            if result.state not in ("interrupted",):
                result.exit_code = getattr(exc, "exit_code", ExitCode.SIGINT)
                result.summary["exit_code"] = int(result.exit_code)

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        journal, self._journal = self._journal, None
        if journal is not None and journal is not self.plan.options.journal:
            journal.close()

    # -- words -------------------------------------------------------------------------------

    def _note(self, text: str) -> None:
        if not hasattr(self, "_notes"):
            self._notes: list[str] = []
        self._notes.append(text)


def _length(items: Iterable[Any]) -> int | None:
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None
