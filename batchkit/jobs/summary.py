"""The words a run ends with: its exit code, its message, the summary dict ``--json`` prints,
and the command that resumes it.

:class:`~batchkit.jobs.lifecycle.Run` calls these once, when the run ends; everything a user reads
about a finished run (the summary line, ``--json``, the operations log, the "resume with" hint)
is built from what they return.
"""

from __future__ import annotations

import os
import shlex
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import BatchkitError, ExitCode, Interrupted
from ..secrets import redact, redact_argv
from .plan import RunPlan, RunResult

if TYPE_CHECKING:
    from ..engine.loop import Engine

KEPT_FAILURES = 20  # failures kept for the summary (the journal has all of them)


def resume_command(argv: list[str] | None) -> str | None:
    """The command that resumes a run started by ``argv`` (``None`` if not started from the CLI)."""
    if not argv:
        return None
    # Options go before an `exec ... ::: ITEMS` list: what follows ::: is items, kept as given.
    end = argv.index(":::") if ":::" in argv else len(argv)
    args = [a for a in argv[:end] if a not in ("--resume", "--retry-failed")]
    return shlex.join(["batchkit", *redact_argv([*args, "--resume", *argv[end:]])])


def run_summary(plan: RunPlan, result: RunResult, row: dict | None, *, engine: Engine | None,
                counts: list[int], failures: list, started: float, started_wall: datetime) -> dict[str, Any]:
    """The summary dict of a run that ended (``--json``, the operations log): ``row`` is its
    journal record's closing row (every attempt's counts), ``counts`` this attempt's
    (succeeded, failed), ``started`` its ``time.monotonic()`` start."""
    e = engine
    elapsed = time.monotonic() - started
    ran = counts[0] + counts[1]
    succeeded, failed = counts
    skipped = e.skipped if e is not None else 0
    if row and "succeeded" in row:  # every attempt of the run, from the journal
        succeeded, failed = row["succeeded"], row["failed"]
    elif result.report is not None and result.report.skipped:
        succeeded, failed = result.report.succeeded, result.report.failed
    summary: dict[str, Any] = {
        "job": plan.name,
        "run_id": result.run_id,
        "state": result.state,
        "exit_code": int(result.exit_code),
        "total": succeeded + failed,
        "succeeded": succeeded,
        "failed": failed,
        "skipped": skipped,
        "ran": ran,
        "elapsed": round(elapsed, 3),
        "throughput": round(ran / elapsed, 3) if elapsed > 0 else 0.0,
        "started": started_wall.isoformat(timespec="seconds"),
        "resumed": result.resumed,
        "failures": [{"index": i, "key": k, "type": err.type, "message": redact(err.message), "kind": err.kind,
                      **({"step": err.step} if err.step else {})} for i, k, err in failures],
    }
    if e is not None:
        summary["halted"] = e.halted
        summary["not_run"] = e.not_run
    errors = getattr(plan.items, "errors", None)
    if errors:
        summary["input_errors"] = [{"path": p, "message": m} for p, m in errors]
    if plan.output not in (None, "-"):
        summary["output"] = os.path.abspath(plan.output)
    if result.message:
        summary["message"] = redact(result.message)
    if result.resume_hint:
        summary["resume"] = result.resume_hint
    if result.notes:
        summary["notes"] = [redact(n) for n in result.notes]
    return summary


def exit_code_for(state: str, error: BaseException | None) -> int:
    """The exit code of a run that ended in ``state``, ``error`` (if any) having ended it."""
    if isinstance(error, Interrupted):
        return error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.SIGINT
    if isinstance(error, BatchkitError):
        return error.exit_code
    return {"succeeded": ExitCode.OK, "failed": ExitCode.FAILED, "halted": ExitCode.FAILED}.get(
        state, ExitCode.CANNOT_RUN)


def end_message(state: str, error: BaseException | None, engine: Engine | None) -> str | None:
    """Why the run stopped, in one line (``None`` if it simply finished)."""
    if isinstance(error, Interrupted):
        return error.reason
    if isinstance(error, KeyboardInterrupt):
        return "stopped by SIGINT"
    if error is not None:
        return str(error)
    if state == "halted" and engine is not None:
        return engine.halted
    return None


def shown(key: Any, item: Any) -> Any:
    """How a failed item is named in the summary: its key, else the item; secrets redacted."""
    if key is None:
        key = os.fspath(item) if isinstance(item, os.PathLike) else item
    return redact(key) if isinstance(key, str) else key


def backend_name(backend: Any) -> str:
    """The backend's name for the journal's settings, given a name or a backend object."""
    return backend if isinstance(backend, str) else getattr(backend, "name", type(backend).__name__)
