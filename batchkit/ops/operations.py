"""What a run tells the outside world besides its own summary: :class:`Operations`.

It composes four small parts: the event log (:mod:`batchkit.ops.eventlog`), pings and webhook
notifications (:mod:`batchkit.ops.notify`), email alerts (:mod:`batchkit.ops.mail`) and the
Prometheus textfile (:mod:`batchkit.ops.metrics`). The command line builds one per run from
``--log-file``, ``--log-format``, ``--notify`` (http(s) URLs and ``mailto:`` addresses, one or
more), ``--notify-on``, ``--ping``, ``--metrics-file`` and ``--run-name`` and calls
:meth:`~Operations.started`, :meth:`~Operations.chunk_done` for each finished chunk, and
:meth:`~Operations.finished` on every exit path. From Python::

    ops = Operations("nightly", ping="https://hc-ping.com/UUID", metrics_file="/var/lib/prom/batchkit.prom",
                     notify=["mailto:ops@example.com"])   # BATCHKIT_SMTP=smtp.example.com:587
    ops.started(run_id, {"root": "/data"})
    ...
    ops.finished(summary, exit_code)

Monitoring must never break the job it monitors: a failing or hanging endpoint, or a metrics
file that cannot be written, becomes a one-line warning (stderr and the log), and the run waits
for pings, notifications and emails at most :data:`~batchkit.ops.notify.DEFAULT_TIMEOUT` seconds
in all. Everything that leaves batchkit goes through :func:`batchkit.secrets.redact`.

A run may have a name (``run_name``; by default ``$BATCHKIT_CRON_ENTRY``, which a cron entry
sets to its own name): it labels the run's metrics series and is said in notifications, so two
entries running one job can be told apart.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any, Callable, Sequence

from ..errors import UsageError
from ..outcome import MESSAGE_MAX, capped
from ..secrets import redact
from .eventlog import EventLog
from .mail import SmtpServer, is_mailto, parse_mailto
from .metrics import write_run_metrics
from .notify import DEFAULT_TIMEOUT, Courier, check_url

NOTIFY_ON = ("failure", "always")
from .lastrun import ENTRY_VARIABLE as CRON_ENTRY_ENV  # noqa: E402 - a cron entry's name, set by the entry

_STATE_WORDS = {"succeeded": "succeeded", "failed": "failed", "interrupted": "was interrupted",
                "error": "could not run"}
TEXT_FAILURES = 5  # failures listed in a notification's text (the JSON body has the summary's list)


def _stderr_warning(message: str) -> None:
    print(f"batchkit: warning: {message}", file=sys.stderr, flush=True)


def check_notify_target(target: str) -> str:
    """Return ``target`` if it is an http(s) URL or ``mailto:`` with valid addresses; raise
    :class:`~batchkit.UsageError` saying what is wrong otherwise. (Whether an SMTP server is
    configured is checked when :class:`Operations` is made.)"""
    if is_mailto(target):
        parse_mailto(target)
        return target
    return check_url(target, "--notify")


class Operations:
    """Everything a CLI run tells the outside world besides its own stdout/stderr summary."""

    def __init__(self, job: str, *, log_file: str | None = None, log_format: str = "text",
                 notify: str | Sequence[str] | None = None, notify_on: str = "failure",
                 ping: str | None = None, metrics_file: str | None = None, run_name: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, warn: Callable[[str], None] | None = None) -> None:
        """``notify``: one target or several (http(s) URLs, ``mailto:ADDRESS[,ADDRESS]``); mail
        needs ``BATCHKIT_SMTP`` (see :mod:`batchkit.ops.mail`). ``run_name`` defaults to
        ``$BATCHKIT_CRON_ENTRY``. Bad values raise :class:`~batchkit.UsageError` here, before the run."""
        if notify_on not in NOTIFY_ON:
            raise UsageError(f"--notify-on {notify_on!r} is not one of {', '.join(NOTIFY_ON)}")
        self.job = job
        if run_name is None:  # the cron entry this process runs for (the command took it from the environment)
            from .lastrun import current_entry

            run_name = current_entry() or os.environ.get(CRON_ENTRY_ENV, "")
        self.name = run_name.strip() or None
        targets = [notify] if isinstance(notify, str) else list(notify or ())
        self.notify = tuple(check_notify_target(t) for t in targets)
        self.mail_to = [parse_mailto(t) for t in self.notify if is_mailto(t)]
        # Read once, up front: a missing BATCHKIT_SMTP is a usage error now, not a warning after the run.
        self.smtp = SmtpServer.from_env() if self.mail_to else None
        self.notify_on = notify_on
        self.ping = check_url(ping, "--ping") if ping else None
        self.metrics_file = metrics_file
        self.warn = warn or _stderr_warning
        self.log = EventLog(log_file, job, log_format) if log_file else None
        self.courier = Courier(timeout, on_problem=self._problem)
        self.run_id: int | None = None
        self._started_at: float | None = None
        self._finished = False

    @property
    def enabled(self) -> bool:
        """Whether any of log, ping, notification or metrics is configured."""
        return bool(self.log or self.notify or self.ping or self.metrics_file)

    def _problem(self, message: str) -> None:
        message = redact(message)
        self.warn(message)
        if self.log is not None:
            try:
                self.log.emit("warning", level="warning", message=message)
            except OSError:
                pass

    def _guard(self, what: str, fn: Callable[[], Any]) -> None:
        # A disk-full log or an unwritable metrics file is a warning, never the run's failure.
        try:
            fn()
        except Exception as exc:
            self._problem(f"{what} failed: {exc}")

    def started(self, run_id: int | None, args: dict) -> None:
        """The run has its lock and journal and is about to run items."""
        self.run_id = run_id
        self._started_at = time.time()
        if self.log is not None:
            self.log.run_id = run_id
            self._guard("writing the log", lambda: self.log.emit("run start", args=args, pid=os.getpid(),
                                                                  host=socket.gethostname()))
        if self.ping:
            self.courier.ping(self.ping, "start")

    def chunk_done(self, chunk: Any) -> None:
        """Log a finished :class:`~batchkit.report.ChunkOutcomes`: ``chunk done`` and one
        ``item failed`` per error."""
        if self.log is None:
            return

        def emit() -> None:
            errors = chunk.errors
            self.log.emit("chunk done", chunk=chunk.seq, items=len(chunk), failed=len(errors))
            for pos in sorted(errors):
                err = errors[pos]
                key = chunk.key(pos)
                self.log.emit("item failed", level="error", index=chunk.index(pos),
                              item=str(key if key is not None else chunk.items[pos]),
                              type=err.type, kind=err.kind, message=capped(err.message, MESSAGE_MAX),
                              **({"step": err.step} if getattr(err, "step", None) else {}))

        self._guard("writing the log", emit)

    def finished(self, summary: dict, exit_code: int) -> None:
        """The run is over (``summary`` is the ``--json`` dict). Safe to call more than once:
        only the first call counts. Returns within the ping/notification time limit."""
        if self._finished:
            return
        self._finished = True
        ended = time.time()
        ok = exit_code == 0
        if self.log is not None:
            fields = {k: summary.get(k) for k in ("state", "total", "succeeded", "failed", "skipped",
                                                   "elapsed", "throughput")}
            self._guard("writing the log", lambda: self.log.emit(
                "run end", level="info" if ok else "error", exit_code=exit_code, **fields))
        if self.metrics_file:
            counts = {k: int(summary.get(k) or 0) for k in ("succeeded", "failed", "skipped")}
            self._guard(f"writing metrics to {self.metrics_file}", lambda: write_run_metrics(
                self.metrics_file, self.job, ended=ended, succeeded=ok, exit_code=exit_code,
                counts=counts, duration=float(summary.get("elapsed") or 0.0), name=self.name))
        text = self.describe(summary, exit_code)
        if self.ping:
            self.courier.ping(self.ping, "" if ok else "fail", body=text)
        if self.notify and (self.notify_on == "always" or not ok):
            payload = {"text": text, **summary, "job": self.job, "exit_code": exit_code,
                       "host": socket.gethostname(), **({"name": self.name} if self.name else {})}
            for url in (t for t in self.notify if not is_mailto(t)):
                self.courier.notify(url, payload)
            for recipients in self.mail_to:
                self._guard("preparing the email", lambda r=recipients: self.courier.mail(
                    self.smtp, r, self.subject(summary, exit_code), self.mail_body(summary, exit_code, text)))
        self.courier.wait()
        if self.log is not None:
            self.log.close()

    def describe(self, summary: dict, exit_code: int) -> str:
        """The human text of a notification: one headline and the first few failures."""
        state = summary.get("state") or ("succeeded" if exit_code == 0 else "failed")
        run = summary.get("run_id", self.run_id)
        named = f" ({self.name})" if self.name and self.name != self.job else ""
        head = (f"batchkit job `{self.job}`{named} {_STATE_WORDS.get(state, state)} on {socket.gethostname()}"
                f" (exit {exit_code}{f', run {run}' if run is not None else ''}): "
                f"{summary.get('succeeded', 0)} succeeded, {summary.get('failed', 0)} failed, "
                f"{summary.get('skipped', 0)} skipped in {float(summary.get('elapsed') or 0):.1f}s")
        lines = [head]
        failures = summary.get("failures") or []
        for f in failures[:TEXT_FAILURES]:
            what = f.get("key", f.get("item", f.get("index", "?")))
            lines.append(f"• {what}: {f.get('type', 'Error')}: {f.get('message', '')}".rstrip())
        more = int(summary.get("failed") or 0) - min(len(failures), TEXT_FAILURES)
        if more > 0:
            lines.append(f"… and {more} more: batchkit show {run}" if run is not None else f"… and {more} more")
        return redact("\n".join(lines))

    def subject(self, summary: dict, exit_code: int) -> str:
        """An email's subject: ``batchkit: nightly-sums failed on HOST (3 failed)`` (the run's name, else the job)."""
        state = summary.get("state") or ("succeeded" if exit_code == 0 else "failed")
        failed = int(summary.get("failed") or 0)
        detail = (f"{failed} failed" if failed else f"exit {exit_code}" if exit_code
                  else f"{int(summary.get('succeeded') or 0)} succeeded")
        return redact(f"batchkit: {self.name or self.job} {_STATE_WORDS.get(state, state)} "
                      f"on {socket.gethostname()} ({detail})")

    def mail_body(self, summary: dict, exit_code: int, text: str) -> str:
        """An email's body: the notification ``text``, then the run's counts and where to look."""
        run = summary.get("run_id", self.run_id)
        rows = [("job", self.job), ("name", self.name), ("host", socket.gethostname()), ("run", run),
                ("state", f"{summary.get('state') or '?'} (exit {exit_code})"),
                ("started", summary.get("started")),
                ("items", f"{summary.get('total', 0)} total: {summary.get('succeeded', 0)} succeeded, "
                          f"{summary.get('failed', 0)} failed, {summary.get('skipped', 0)} skipped"),
                ("elapsed", f"{float(summary.get('elapsed') or 0):.1f}s"),
                ("message", summary.get("message"))]
        lines = [text, ""] + [f"{k + ':':<9} {v}" for k, v in rows if v not in (None, "")]
        if run is not None and (summary.get("failed") or exit_code):
            lines += ["", f"Details: batchkit show {run} --tracebacks   (on {socket.gethostname()})"]
        return redact("\n".join(lines))
