"""What a run tells the outside world besides its own summary: :class:`Operations`.

It composes three small parts: the event log (:mod:`batchkit.eventlog`), pings and
notifications (:mod:`batchkit.notify`) and the Prometheus textfile (:mod:`batchkit.metrics`).
The command line builds one per run from ``--log-file``, ``--log-format``, ``--notify``,
``--notify-on``, ``--ping`` and ``--metrics-file`` and calls :meth:`~Operations.started`,
:meth:`~Operations.chunk_done` for each finished chunk, and :meth:`~Operations.finished` on
every exit path. From Python::

    ops = Operations("nightly", ping="https://hc-ping.com/UUID", metrics_file="/var/lib/prom/batchkit.prom")
    ops.started(run_id, {"root": "/data"})
    ...
    ops.finished(summary, exit_code)

Monitoring must never break the job it monitors: a failing or hanging endpoint, or a metrics
file that cannot be written, becomes a one-line warning (stderr and the log), and the run waits
for pings and notifications at most :data:`~batchkit.notify.DEFAULT_TIMEOUT` seconds in all.
Everything that leaves batchkit goes through :func:`batchkit.secrets.redact`.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any, Callable

from ..errors import UsageError
from ..secrets import redact
from .eventlog import EventLog
from .metrics import write_run_metrics
from .notify import DEFAULT_TIMEOUT, Courier, check_url

NOTIFY_ON = ("failure", "always")
_STATE_WORDS = {"succeeded": "succeeded", "failed": "failed", "interrupted": "was interrupted",
                "error": "could not run"}
TEXT_FAILURES = 5  # failures listed in a notification's text (the JSON body has the summary's list)


def _stderr_warning(message: str) -> None:
    print(f"batchkit: warning: {message}", file=sys.stderr, flush=True)


class Operations:
    """Everything a CLI run tells the outside world besides its own stdout/stderr summary."""

    def __init__(self, job: str, *, log_file: str | None = None, log_format: str = "text",
                 notify: str | None = None, notify_on: str = "failure",
                 ping: str | None = None, metrics_file: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, warn: Callable[[str], None] | None = None) -> None:
        if notify_on not in NOTIFY_ON:
            raise UsageError(f"--notify-on {notify_on!r} is not one of {', '.join(NOTIFY_ON)}")
        self.job = job
        self.notify = check_url(notify, "--notify") if notify else None
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
                              type=err.type, kind=err.kind, message=err.message,
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
                counts=counts, duration=float(summary.get("elapsed") or 0.0)))
        text = self.describe(summary, exit_code)
        if self.ping:
            self.courier.ping(self.ping, "" if ok else "fail", body=text)
        if self.notify and (self.notify_on == "always" or not ok):
            payload = {"text": text, **summary, "job": self.job, "exit_code": exit_code,
                       "host": socket.gethostname()}
            self.courier.notify(self.notify, payload)
        self.courier.wait()
        if self.log is not None:
            self.log.close()

    def describe(self, summary: dict, exit_code: int) -> str:
        """The human text of a notification: one headline and the first few failures."""
        state = summary.get("state") or ("succeeded" if exit_code == 0 else "failed")
        run = summary.get("run_id", self.run_id)
        head = (f"batchkit job `{self.job}` {_STATE_WORDS.get(state, state)} on {socket.gethostname()}"
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
