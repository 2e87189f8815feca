"""The exceptions batchkit raises. Every one derives from :class:`BatchkitError`."""

from __future__ import annotations

from typing import Any


class BatchkitError(Exception):
    """Base class of every error batchkit itself raises.

    Messages say what is wrong and what to do about it, in one line.
    """


class UsageError(BatchkitError, ValueError):
    """A bad argument or bad input: the caller has to change something (CLI exit code 2)."""


class BackendError(BatchkitError):
    """The backend could not carry out the run (could not start, kept breaking; CLI exit code 3)."""


class BatchFailed(BatchkitError):
    """Raised by :meth:`Report.values` / :meth:`Report.raise_on_failure` when items failed.

    ``failures`` holds the failed :class:`~batchkit.Outcome` objects.
    """

    def __init__(self, failures: list[Any], total: int) -> None:
        self.failures = failures
        self.total = total
        lines = [f"{len(failures)} of {total} items failed"]
        for outcome in failures[:5]:
            lines.append(f"  [{outcome.index}] {outcome.item!r:.60}: {outcome.error.summary()}")
        if len(failures) > 5:
            lines.append(f"  ... and {len(failures) - 5} more (see report.failures)")
        super().__init__("\n".join(lines))


class WorkerCrashed(BatchkitError):
    """Infrastructure fault: the worker running a chunk died (a segfault, SIGKILL, the OOM killer).

    Backends translate their own exceptions into this one; the engine turns it back into
    per-item outcomes and never lets it reach the user.
    """

    def __init__(self, message: str, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.exitcode = exitcode


class Interrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT or SIGTERM after a clean shutdown (see :mod:`batchkit.interrupt`).

    A ``KeyboardInterrupt`` so that ``except Exception`` in user code does not swallow it.
    ``signum`` is the signal; ``exit_code`` is 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = signum
        self.exit_code = 128 + signum
        self.signame = signal.Signals(signum).name
        super().__init__(f"stopped by {self.signame}")


class Locked(BatchkitError):
    """Another run of the same job and arguments holds the lock (CLI exit code 75)."""

    def __init__(self, message: str, pid: int | None = None, started: str | None = None) -> None:
        super().__init__(message)
        self.pid = pid
        self.started = started
