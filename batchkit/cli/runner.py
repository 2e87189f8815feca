"""Carrying out one command-line run: items, lock, journal, signals, hooks, summary, exit code.

``batchkit run`` and ``batchkit exec`` both end here, and both call :func:`batchkit.run`: there
is one engine. The order matters: everything that can be refused as bad input is checked
before the lock is taken (exit 2), the lock comes before the journal (a second run never
creates a run row, exit 75), and once the run has started every exit path — success, failed
items, a broken backend, SIGINT/SIGTERM — prints a summary and tells :class:`Operations`.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import click

from .. import api
from ..errors import BackendError, Interrupted, Locked, UsageError
from ..jobs.job import BoundJob, MatchError, step_aware
from ..retry import Retry
from ..secrets import redact
from ..state.journal import Journal, RunRecord, fingerprint
from .record import KEPT_FAILURES, Recorder, earlier_outcomes, jsonable, open_output

SHOWN_FAILURES = 5  # failures printed without --show-failures


class LineItems:
    """Items read lazily from a file (or stdin), one per line; empty lines are skipped."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name != "-":
            path = Path(name)
            if path.is_dir():
                raise UsageError(f"--input {name}: is a directory; give a file with one item per line")
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise UsageError(f"--input {name}: {exc.strerror or exc}") from None

    def __iter__(self) -> Iterator[str]:
        stream = sys.stdin if self.name == "-" else open(self.name, encoding="utf-8", errors="surrogateescape")
        try:
            for line in stream:
                line = line.rstrip("\r\n")
                if line:
                    yield line
        finally:
            if stream is not sys.stdin:
                stream.close()


def item_source(bound: BoundJob, opts: dict) -> tuple[Iterable[Any], dict]:
    """The run's items (``--input``, ``--files`` or the job's own source), and what identifies
    them in the journal's arguments."""
    input_file, root = opts.get("input_file"), opts.get("files_root")
    include, exclude = tuple(opts.get("include") or ()), tuple(opts.get("exclude") or ())
    if input_file and root:
        raise UsageError("give --input or --files, not both")
    if (include or exclude) and not root:
        raise UsageError("--include and --exclude go with --files ROOT")
    has_source = bound.job.has_source
    if has_source and (input_file or root):
        raise UsageError(f"job {bound.job.name!r} reads its own items; drop --input/--files")
    if input_file:
        import os

        where = "-" if input_file == "-" else os.path.abspath(input_file)
        return LineItems(input_file), {"input": where}
    if root:
        from ..sources.files import files

        walk = files(root, include=include or "*", exclude=exclude)
        return walk, {"files": str(Path(root).absolute()), "include": list(include), "exclude": list(exclude)}
    if not has_source:
        raise UsageError(f"job {bound.job.name!r} needs items: --input FILE|- or --files ROOT")
    return bound.items(), {}


def make_retry(opts: dict) -> Retry | None:
    """``--retries N --retry-backoff S --retry-on NAMES`` as a :class:`bk.Retry`."""
    n = opts.get("retries") or 0
    names = [s.strip() for s in (opts.get("retry_on") or "").split(",") if s.strip()]
    if names and not n:
        raise UsageError("--retry-on needs --retries N (N >= 1)")
    if not n:
        return None
    on = MatchError(tuple(names) if names else (Exception,))
    return Retry(attempts=n + 1, backoff=opts.get("retry_backoff") or 0.0, on=on)


def make_backend(opts: dict, default: str) -> Any:
    """The backend name, or a Dask backend for ``--scheduler``."""
    name = opts.get("backend")
    if opts.get("scheduler"):
        if name not in (None, "dask"):
            raise UsageError(f"--scheduler runs on Dask; it cannot go with --backend {name}")
        from ..backends.dask import DaskBackend

        return DaskBackend(address=opts["scheduler"])
    return name or default


def resume_command(argv: list[str]) -> str:
    """The command line that resumes this run."""
    args = [a for a in argv if a not in ("--resume", "--retry-failed")]
    return shlex.join(["batchkit", *args, "--resume"])


def execute(bound: BoundJob, opts: dict, ops_kwargs: dict, argv: list[str], *,
            default_backend: str = "process", items: Iterable[Any] | None = None,
            fn: Any = None, extra_args: dict | None = None, json_after_data: bool = False,
            on_interrupt: Callable[[], Any] | None = None) -> int:
    """Carry out the run and return its exit code (see ``batchkit --help``).

    ``json_after_data``: the items' own output shares stdout and ``--json`` is printed after
    it (``exec``). ``on_interrupt`` is called when SIGINT/SIGTERM stopped the run.
    """
    from ..interrupt import graceful
    from ..ops.operations import Operations
    from ..state.lock import RunLock

    job = bound.job
    quiet, as_json = bool(opts.get("quiet")), bool(opts.get("json_summary"))
    resume, retry_failed, no_journal = opts.get("resume"), opts.get("retry_failed"), opts.get("no_journal")
    if resume and retry_failed:
        raise UsageError("--resume and --retry-failed: pick one")
    if (resume or retry_failed) and no_journal:
        raise UsageError("--resume and --retry-failed need the journal; drop --no-journal")
    data_on_stdout = bound.writes_stdout() or opts.get("output") == "-"
    if as_json and data_on_stdout and not json_after_data:
        raise UsageError(f"job {job.name!r} writes its data to stdout with these options; "
                         "--json would mix with it (send the data to a file)")
    if opts.get("output") == "-" and bound.writes_stdout():
        raise UsageError(f"job {job.name!r} already writes its data to stdout; give --output a FILE")
    if items is None:
        items, source_args = item_source(bound, opts)
    else:
        source_args = {}
    args = {**bound.args, **source_args, **(extra_args or {})}
    # --retries N (even 0) overrides the job's own default retry policy.
    given = make_retry(opts)
    retry = step_aware(given if opts.get("retries") is not None else job.retry)
    backend = make_backend(opts, job.backend or default_backend)
    progress = False if quiet else opts.get("progress")
    ops = Operations(job.name, **ops_kwargs)
    output = open_output(opts.get("output"), append=bool(resume or retry_failed))
    say = _Say(quiet, to_stderr=data_on_stdout or as_json)

    try:
        bound.setup()
    except (UsageError, BackendError):
        raise
    except Exception as exc:
        raise BackendError(f"job {job.name!r}: its set-up failed: {type(exc).__name__}: {exc}") from None
    lock = RunLock(fingerprint(job.name, redact(args)))
    journal = record = None
    recorder: Recorder | None = None
    started_wall, started = datetime.now().astimezone(), time.monotonic()
    code, state, message, report = 3, "error", None, None
    try:
        with graceful():
            try:
                lock.acquire(wait=opts.get("wait_lock") or 0.0)
            except Interrupted as exc:
                say.note(f"stopped by {exc.signame} while waiting for the lock")
                return exc.exit_code
            except OSError as exc:
                say.error(f"cannot take the run lock {lock.path}: {exc.strerror or exc}; "
                          "set BATCHKIT_HOME to a writable directory")
                return 3
            try:
                if not no_journal:
                    journal = Journal()
                    record = journal.begin(job.name, args, resume=bool(resume), retry_failed=bool(retry_failed))
                    _note_resume(say, record, resume or retry_failed)
                recorder = Recorder(record, job.name, ops, output, bool(opts.get("ordered", True)))
                ops.started(record.id if record else None, redact(args))
                report = api.run(fn or bound.fn, items, backend=backend, workers=opts.get("workers"),
                                 chunk_size=opts.get("chunk_size") or "auto", ordered=False, retry=retry,
                                 timeout=opts.get("timeout"), progress=progress, journal=recorder,
                                 key=job.key, max_failures=opts.get("max_failures"), desc=job.name)
                if job.has_finish:  # only a finishing step needs every outcome built
                    outcomes = report.outcomes
                    if report.skipped and journal is not None and record is not None:
                        outcomes = sorted(outcomes + earlier_outcomes(journal, record), key=lambda o: o.index)
                    bound.finish(outcomes, report)
                code, state = (0, "succeeded") if report.ok else (1, "failed")
            except Interrupted as exc:
                code, state, message = exc.exit_code, "interrupted", f"stopped by {exc.signame}"
                if on_interrupt is not None:
                    on_interrupt()
            except UsageError as exc:
                code, message = 2, str(exc)
            except BackendError as exc:
                code, message = 3, str(exc)
            except Exception as exc:  # a job hook or the output file failed: the run could not complete
                code, message = 3, f"{type(exc).__name__}: {exc}"
            if recorder is not None:
                try:  # the finishing step has run: how the run ended is known
                    # A run whose finishing step failed could not be completed: "failed" in the journal.
                    ended = ("failed" if state == "error" else state) if report is not None else None
                    recorder.close_run(ended, message)
                except BackendError as exc:
                    code, state, message = 3, "error", str(exc)
            summary = _summary(job.name, record, journal, recorder, report, state, code, message,
                               time.monotonic() - started, started_wall)
            _print(say, summary, recorder, report, as_json, bool(opts.get("show_failures")), argv, bool(record))
            ops.finished(summary, code)
            return code
    except Locked as exc:
        say.error(str(exc))
        return 75
    finally:
        try:
            if recorder is not None:
                recorder.close_run()  # if something unforeseen skipped it above
        finally:
            lock.release()
            if journal is not None:
                journal.close()
        if output is not None:
            output.close()
        bound.teardown()


def _note_resume(say: _Say, record: RunRecord, asked: Any) -> None:
    if not asked:
        return
    if record.resumed:
        say.note(f"resuming run {record.id}: {len(record.done)} items finished earlier are skipped")
    else:
        say.note("no earlier run of this job with these arguments to continue: starting a new run")


class _Say:
    """Where the run's own words go: the summary to stdout (stderr when stdout carries data)."""

    def __init__(self, quiet: bool, to_stderr: bool) -> None:
        self.quiet = quiet
        self.to_stderr = to_stderr

    def note(self, text: str) -> None:
        if not self.quiet:
            click.echo(f"batchkit: {text}", err=True)

    def error(self, text: str) -> None:
        click.echo(f"batchkit: error: {text}", err=True)

    def out(self, text: str) -> None:
        click.echo(text, err=self.to_stderr)


def _summary(job: str, record: RunRecord | None, journal: Journal | None, recorder: Recorder | None,
             report: Any, state: str, code: int, message: str | None, elapsed: float,
             started: datetime) -> dict[str, Any]:
    succeeded = recorder.succeeded if recorder else 0
    failed = recorder.failed if recorder else 0
    skipped = report.skipped if report is not None else 0
    if report is None and journal is not None and record is not None:
        row = journal.run(record.id) or {}
        skipped = row.get("skipped") or 0
    failures = sorted(recorder.failures, key=lambda f: f[0]) if recorder else []
    summary: dict[str, Any] = {
        "job": job,
        "run_id": record.id if record else None,
        "state": state,
        "exit_code": code,
        "total": succeeded + failed + skipped,
        "succeeded": succeeded,
        "failed": failed,
        "skipped": skipped,
        "elapsed": round(elapsed, 3),
        "throughput": round((succeeded + failed) / elapsed, 3) if elapsed > 0 else 0.0,
        "started": started.isoformat(timespec="seconds"),
        "resumed": bool(record and record.resumed),
        "failures": [{"index": i, "key": k, "type": e.type, "message": redact(e.message), "kind": e.kind,
                      **({"step": e.step} if e.step else {})} for i, k, e in failures],
    }
    if report is not None:
        summary["halted"] = report.halted
        summary["not_run"] = report.not_run
        summary["input_errors"] = [{"path": p, "message": m} for p, m in report.input_errors]
    if message:
        summary["message"] = redact(message)
    return summary


def _print(say: _Say, summary: dict, recorder: Recorder | None, report: Any, as_json: bool,
           show_failures: bool, argv: list[str], journaled: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, default=jsonable))
    elif say.quiet and summary["exit_code"] == 0:
        pass  # --quiet, as cron wants it: silent unless something failed
    elif recorder is not None:  # the run started: counts (even if nothing ran) say how far it got
        s = summary
        line = (f"{s['job']}: {s['succeeded']} succeeded, {s['failed']} failed"
                + (f", {s['skipped']} skipped (finished earlier)" if s["skipped"] else "")
                + f" in {s['elapsed']:.2f}s ({s['throughput']:,.1f} items/s)"
                + (f", run {s['run_id']}" if s["run_id"] is not None else ""))
        say.out(line)
        kept = recorder.failures if recorder else []
        for _, key, err in sorted(kept, key=lambda f: f[0])[: KEPT_FAILURES if show_failures else SHOWN_FAILURES]:
            say.out(f"  FAILED {key}: {redact(err.summary())}")
            if show_failures and err.traceback:
                say.out("    " + redact(err.traceback).rstrip().replace("\n", "\n    "))
        shown = len(kept) if show_failures else min(len(kept), SHOWN_FAILURES)
        if s["failed"] > shown:
            more = f"  ... {s['failed'] - shown} more"
            say.out(more + (f": batchkit show {s['run_id']}" if s["run_id"] is not None else ""))
        elif kept and not show_failures:
            say.out("  (--show-failures prints their tracebacks)")
        if report is not None:
            if report.halted:
                say.out(f"  halted: {report.halted}")
            for path, msg in report.input_errors[:SHOWN_FAILURES]:
                say.out(f"  UNREADABLE {path}: {msg}")
    if summary["state"] == "interrupted":
        if journaled:
            say.error(f"{summary['message']}; what finished is recorded. Resume with: {resume_command(argv)}")
        else:
            say.error(f"{summary['message']} (no journal: run it again to redo it)")
    elif summary["state"] == "error":
        say.error(summary.get("message") or "the run could not be carried out")
