"""The exceptions batchkit raises, and the exit codes they mean on the command line.

Every error batchkit itself raises derives from :class:`BatchkitError` and carries its
``exit_code``, except :class:`Interrupted`, which is a ``KeyboardInterrupt`` so that a user's
``except Exception`` does not swallow a stop request. :class:`ExitCode` is the one table of
exit codes; the command line, the scheduler and the README all take them from here.
"""

from __future__ import annotations

import enum
import signal
from typing import Any


class ExitCode(enum.IntEnum):
    """What ``batchkit`` exits with (also in ``batchkit --help`` and the README)."""

    OK = 0  # every item succeeded
    FAILED = 1  # the run finished, one or more items failed
    USAGE = 2  # usage or input error: one clear line, no traceback
    CANNOT_RUN = 3  # the run could not be carried out (backend, journal, output)
    LOCKED = 75  # another run of the same job holds the lock (EX_TEMPFAIL: try later)
    SIGHUP = 129  # stopped by SIGHUP (a closed terminal) after a clean shutdown
    SIGINT = 130  # stopped by SIGINT (Ctrl-C) after a clean shutdown
    SIGPIPE = 141  # stopped because stdout was closed (`| head`); resumable like a signal
    SIGTERM = 143  # stopped by SIGTERM after a clean shutdown

    @classmethod
    def describe(cls) -> list[tuple[int, str]]:
        """``(code, meaning)`` rows for help texts."""
        return [
            (0, "every item succeeded"),
            (1, "the run finished, one or more items failed"),
            (2, "usage or input error (bad option, unknown job, missing root, bad job file)"),
            (3, "the run could not be carried out (backend could not start, journal or output unusable)"),
            (75, "another run of the same job holds the lock (try later)"),
            (129, "stopped by SIGHUP (terminal closed) after a clean shutdown (--resume continues it)"),
            (130, "stopped by SIGINT (Ctrl-C) after a clean shutdown (--resume continues it)"),
            (141, "stopped because the output pipe was closed (--resume continues it)"),
            (143, "stopped by SIGTERM after a clean shutdown (--resume continues it)"),
        ]


class BatchkitError(Exception):
    """Base class of the errors batchkit itself raises (all but :class:`Interrupted`).

    Messages say what is wrong and what to do about it, in one line. ``exit_code`` is what the
    command line exits with when this error ends a run.
    """

    exit_code: int = ExitCode.CANNOT_RUN


class UsageError(BatchkitError, ValueError):
    """A bad argument or bad input: the caller has to change something (exit code 2)."""

    exit_code = ExitCode.USAGE


class BackendError(BatchkitError):
    """The backend could not carry out the run (could not start, kept breaking; exit code 3)."""

    exit_code = ExitCode.CANNOT_RUN


class JournalError(BackendError):
    """The journal (the SQLite state file) cannot be opened, read or written (exit code 3).

    A run it stops is left resumable: once the journal is usable again, ``--resume`` continues it.
    """


class OutputError(BackendError):
    """``--output`` (or a job's own output) could not be written: disk full, closed pipe (exit code 3)."""


class BatchFailed(BatchkitError):
    """Raised by :meth:`Report.values` / :meth:`Report.raise_on_failure` when items failed.

    ``failures`` holds the failed :class:`~batchkit.Outcome` objects.
    """

    exit_code = ExitCode.FAILED

    def __init__(self, failures: list[Any], total: int) -> None:
        self.failures = failures
        self.total = total
        lines = [f"{len(failures)} of {total} items failed"]
        for outcome in failures[:5]:
            lines.append(f"  [{outcome.index}] {outcome.item!r:.60}: {outcome.error.summary()}")
        if len(failures) > 5:
            lines.append(f"  ... and {len(failures) - 5} more (see report.failures)")
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple:
        return (type(self), (self.failures, self.total))


class WorkerCrashed(BatchkitError):
    """Infrastructure fault: the worker running a chunk died (a segfault, SIGKILL, the OOM killer).

    Backends translate their own exceptions into this one; the engine turns it back into
    per-item outcomes and never lets it reach the user.
    """

    def __init__(self, message: str, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.exitcode = exitcode

    def __reduce__(self) -> tuple:
        return (type(self), (str(self), self.exitcode))


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (or a closed stdout) after a clean shutdown.

    A ``KeyboardInterrupt``, not a :class:`BatchkitError`, so that ``except Exception`` in user
    code does not swallow it. ``signum`` is the signal; ``exit_code`` is 128 + the signal number
    (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP, 141 for a closed pipe).
    """

    def __init__(self, signum: int, reason: str | None = None) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        try:
            self.signame = signal.Signals(signum).name
        except ValueError:
            self.signame = f"signal {signum}"
        self.reason = reason or f"stopped by {self.signame}"
        super().__init__(self.reason)

    def __reduce__(self) -> tuple:
        return (type(self), (self.signum, self.reason))


class ItemInterrupted(BatchkitError):
    """An item's own process was stopped by SIGINT, SIGTERM or SIGHUP (e.g. a shell command that
    got the terminal's Ctrl-C with batchkit). If the run itself is stopping, the item is not
    recorded and ``--resume`` runs it again; otherwise it is an ordinary failure."""


class Locked(BatchkitError):
    """Another run of the same job and arguments holds the lock (exit code 75)."""

    exit_code = ExitCode.LOCKED

    def __init__(self, message: str, pid: int | None = None, started: str | None = None) -> None:
        super().__init__(message)
        self.pid = pid
        self.started = started
