"""What ``batchkit run`` and ``batchkit exec`` share: options -> one :class:`~batchkit.jobs.lifecycle.Run`
-> the printed summary and the exit code.

Everything that happens to the run (lock, journal, resume, sinks, finishing step, operations,
signals) is the lifecycle's business; this module only turns command-line options into a run
plan and prints what the run returns.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import click

from ..errors import ExitCode, Interrupted, UsageError
from ..jobs.bound import BoundJob
from ..jobs.lifecycle import Run
from ..jobs.plan import RunResult
from ..jobs.sinks import jsonable
from ..retry import Retry
from ..secrets import redact

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


def queue_source(bound: BoundJob, opts: dict) -> Any:
    """The items of ``--queue NAME`` (``--follow``: until stopped), or ``None``."""
    name = opts.get("queue")
    if name is None:
        if opts.get("follow"):
            raise UsageError("--follow goes with --queue NAME")
        return None
    if opts.get("input_file") or opts.get("files_root") or bound.job.has_source:
        raise UsageError("--queue is the run's input: drop --input/--files (and use a job without its own items)")
    from ..sources.queue import QueueSource
    from ..state.queue import Queue

    queue = Queue(name)
    if opts.get("retry_failed"):
        queue.retry_failed()  # failed items become pending again; this run takes them
    return QueueSource(queue, follow=bool(opts.get("follow")), lease=opts.get("lease") or 60.0)


def item_source(bound: BoundJob, opts: dict) -> tuple[Iterable[Any] | None, dict]:
    """The run's items (``--input``, ``--files``, or ``None``: the job's own source), and what
    identifies them in the journal's arguments."""
    input_file, root = opts.get("input_file"), opts.get("files_root")
    include, exclude = tuple(opts.get("include") or ()), tuple(opts.get("exclude") or ())
    if input_file and root:
        raise UsageError("give --input or --files, not both")
    if input_file == "" or root == "":
        raise UsageError("--input and --files need a path, not an empty string")
    if (include or exclude) and not root:
        raise UsageError("--include and --exclude go with --files ROOT")
    watch = bool(opts.get("watch"))
    if watch and not root:
        raise UsageError("--watch goes with --files ROOT: the directory to watch")
    if not watch and (opts.get("poll") or opts.get("settle") not in (None, 2.0)):
        raise UsageError("--settle and --poll go with --watch")
    if bound.job.has_source and (input_file or root):
        raise UsageError(f"job {bound.job.name!r} reads its own items; drop --input/--files")
    if input_file:
        where = "-" if input_file == "-" else os.path.abspath(input_file)
        return LineItems(input_file), {"input": where}
    if root:
        from ..sources.files import files

        identity = {"files": str(Path(root).absolute()), "include": list(include), "exclude": list(exclude)}
        if watch:
            watching = files(root, include=include or "*", exclude=exclude, watch=True,
                             settle=opts.get("settle") or 2.0, poll=bool(opts.get("poll")))
            return watching, {**identity, "watch": True}
        return files(root, include=include or "*", exclude=exclude), identity
    if not bound.job.has_source:
        raise UsageError(f"job {bound.job.name!r} needs items: --input FILE|- or --files ROOT")
    return None, {}


def make_retry(opts: dict) -> Retry | None:
    """``--retries N --retry-backoff S --retry-on NAMES --retry-if REGEX`` as a :class:`bk.Retry`."""
    n = opts.get("retries") or 0
    names = [s.strip() for s in (opts.get("retry_on") or "").split(",") if s.strip()]
    pattern = opts.get("retry_if")
    if (names or pattern) and not n:
        raise UsageError("--retry-on and --retry-if need --retries N (N >= 1)")
    if not n:
        return None
    return Retry(attempts=n + 1, backoff=opts.get("retry_backoff") or 0.0, on=tuple(names) or (Exception,),
                 match=pattern)


def make_backend(opts: dict, default: str) -> Any:
    """The backend name, or a Dask backend for ``--scheduler``."""
    name = opts.get("backend")
    if opts.get("scheduler"):
        if name not in (None, "dask"):
            raise UsageError(f"--scheduler runs on Dask; it cannot go with --backend {name}")
        from ..backends.dask import DaskBackend

        return DaskBackend(address=opts["scheduler"])
    return name or default


def run_job(bound: BoundJob, opts: dict, ops_kwargs: dict, argv: list[str], *,
            default_backend: str = "process", items: Iterable[Any] | None = None,
            source_args: dict | None = None, json_after_data: bool = False, sinks: list | None = None) -> int:
    """Carry out a command-line run and print its outcome; return the exit code.

    ``json_after_data``: the items' own output is the data on stdout and ``--json`` is printed
    after it (``exec``). ``sinks``: more sinks for the run's chunks (``exec --keep-order``).
    """
    from ..interrupt import graceful
    from ..ops.operations import Operations

    job = bound.job
    quiet, as_json = bool(opts.get("quiet")), bool(opts.get("json_summary"))
    resume, retry_failed, no_journal = opts.get("resume"), opts.get("retry_failed"), opts.get("no_journal")
    if resume and retry_failed:
        raise UsageError("--resume and --retry-failed: pick one")
    if (resume or retry_failed) and no_journal:
        raise UsageError("--resume and --retry-failed need the journal; drop --no-journal")
    output = opts.get("output")
    if output == "":
        raise UsageError("--output needs a FILE or -, not an empty string")
    data_on_stdout = bound.writes_stdout() or output == "-"
    if as_json and data_on_stdout and not json_after_data:
        raise UsageError(f"job {job.name!r} writes its data to stdout with these options; "
                         "--json would mix with it (send the data to a file)")
    if output == "-" and bound.writes_stdout():
        raise UsageError(f"job {job.name!r} already writes its data to stdout; give --output a FILE")
    sinks: list = list(sinks or [])
    lock, ordered = True, bool(opts.get("ordered", True))
    queue = queue_source(bound, opts) if items is None else None
    if queue is not None:
        from ..sources.queue import QueueSink

        # The queue keeps what is done and what is not: the journal records the run's history
        # only; consumers run side by side (no lock), each outcome stored as its chunk finishes.
        items, source_args = queue, {"queue": opts["queue"]}
        sinks.append(QueueSink(queue))
        lock, ordered, resume, retry_failed = False, False, False, False
    if items is None:
        items, source_args = item_source(bound, opts)
    if getattr(items, "endless", False) and not no_journal and queue is None:
        resume = True  # a watching run always continues its own record
    retry = make_retry(opts)  # checked even when --retries is not given (--retry-on alone is an error)
    # --retries N (even 0) overrides the job's own retry policy; without it the job's applies.
    engine_options = {"retry": retry} if opts.get("retries") is not None else {}
    operations = Operations(job.name, **ops_kwargs)
    plan = bound.plan(  # no outcomes kept in memory: a finishing step reads them from a spool on disk
        items, keep_outcomes=False, source_args=source_args or {}, lock=lock,
        wait_lock=opts.get("wait_lock") or 0.0, output=output, retry_failed=bool(retry_failed), command=argv,
        # stdout reserved for --json or --output -: what items print goes to stderr. (A job that
        # writes its own data to stdout owns it: nothing is redirected.)
        redirect_stdout=(as_json or output == "-") and not json_after_data, operations=operations, sinks=sinks,
        backend=make_backend(opts, job.backend or default_backend), workers=opts.get("workers"),
        chunk_size=opts.get("chunk_size") or "auto", ordered=ordered,
        timeout=opts.get("timeout"), progress=False if quiet else opts.get("progress"),
        journal=not no_journal, resume=bool(resume), max_failures=opts.get("max_failures"), **engine_options)
    with graceful():
        result = Run(plan).execute()
    Printer(quiet, as_json, to_stderr=data_on_stdout or as_json).result(result, bool(opts.get("show_failures")))
    return int(result.exit_code)


class Printer:
    """The run's own words: the summary to stdout (stderr when stdout carries data), notes and
    errors to stderr. With ``--quiet`` (cron) nothing unless something failed, and those lines
    carry the time, since they end up in a log file."""

    def __init__(self, quiet: bool, as_json: bool, to_stderr: bool) -> None:
        self.quiet = quiet
        self.as_json = as_json
        self.to_stderr = to_stderr
        self._stdout_ok = True

    def _stamp(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S ") if self.quiet else ""

    def note(self, text: str) -> None:
        if not self.quiet:
            click.echo(f"batchkit: {redact(text)}", err=True)

    def error(self, text: str) -> None:
        click.echo(f"batchkit: {self._stamp()}error: {redact(text)}", err=True)

    def out(self, text: str, stdout: bool = False) -> None:
        to_stderr = self.to_stderr and not stdout
        if not to_stderr and not self._stdout_ok:
            return
        try:
            click.echo(text, err=to_stderr)
        except BrokenPipeError:
            from ..jobs.sinks import closed_pipe

            closed_pipe()
            self._stdout_ok = False

    def result(self, result: RunResult, show_failures: bool) -> None:
        closed = isinstance(result.error, Interrupted) and result.error.exit_code == ExitCode.SIGPIPE
        if closed:
            self._stdout_ok = False
        for note in result.notes:
            if note.startswith(("error:", "warning:")):
                click.echo(f"batchkit: {self._stamp()}{redact(note)}", err=True)
            else:
                self.note(note)
        s = result.summary
        if self.as_json and not closed:
            self.out(json.dumps(s, default=jsonable), stdout=True)
        elif result.started and not (self.quiet and result.exit_code == 0):
            self._counts(result, show_failures)
        self._ending(result)

    def _counts(self, result: RunResult, show_failures: bool) -> None:
        s = result.summary
        earlier = f" ({s['skipped']} finished by an earlier attempt)" if s["skipped"] else ""
        line = (f"{self._stamp()}{s['job']}: {s['succeeded']} succeeded, {s['failed']} failed{earlier} "
                f"in {s['elapsed']:.2f}s ({s['throughput']:,.1f} items/s)"
                + (f", run {s['run_id']}" if s["run_id"] is not None else ""))
        self.out(line)
        kept = result.failures
        limit = len(kept) if show_failures else SHOWN_FAILURES
        for _, key, err in kept[:limit]:
            self.out(f"  FAILED {redact(str(key))}: {redact(err.summary())}")
            if show_failures and err.traceback:
                self.out("    " + redact(err.traceback).rstrip().replace("\n", "\n    "))
        shown = min(len(kept), limit)
        if s["failed"] > shown:
            show = f": batchkit show {s['run_id']}" if s["run_id"] is not None else ""
            if shown:
                self.out(f"  ... {s['failed'] - shown} more{show}")
            else:  # they failed in an earlier attempt of this resumed run
                self.out(f"  {s['failed']} failed in an earlier attempt{show}")
        elif kept and not show_failures:
            self.out("  (--show-failures prints their tracebacks)")
        if s.get("halted"):
            self.out(f"  halted: {s['halted']}")
        for err in s.get("input_errors", [])[:SHOWN_FAILURES]:
            self.out(f"  UNREADABLE {err['path']}: {err['message']}")
        if s.get("output"):
            self.out(f"  output: {s['output']}")

    def _ending(self, result: RunResult) -> None:
        s = result.summary
        if result.state == "interrupted":
            if isinstance(result.error, Interrupted) and result.error.exit_code == ExitCode.SIGPIPE:
                return  # the reader went away: nothing to tell it; the run is recorded as interrupted
            if result.resume_hint:
                self.error(f"{s.get('message')}; what finished is recorded. Resume with: {result.resume_hint}")
            else:
                self.error(f"{s.get('message')} (no journal: run it again to redo it)")
        elif result.state == "error":
            message = s.get("message") or "the run could not be carried out"
            if result.resume_hint and result.summary.get("run_id") is not None and result.exit_code != 2:
                message += f". Resume with: {result.resume_hint}"
            self.error(message)
