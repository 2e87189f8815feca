"""The last result of each scheduled entry (a crontab entry, a Windows task): :func:`record_result`.

An entry's command sets ``BATCHKIT_CRON_ENTRY=NAME``; the ``batchkit`` command then records,
however it ends (a normal exit, an error, an exception), its exit code and end time and, when
the run reached the journal, the run's id and counts, in ``$BATCHKIT_HOME/cron/NAME.json``
(written atomically). ``batchkit cron list`` shows it as the entry's LAST RESULT. This is per
entry, not per job: two entries of one job each show their own, and runs that never reach the
journal show too (refused with 75 because another run held the lock, or with 2 for a bad
argument).
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from ..atomic import write_atomic
from ..errors import UsageError

ENTRY_VARIABLE = "BATCHKIT_CRON_ENTRY"  # set by an entry's command: the entry's name
_NAME = re.compile(r"^[\w.@+-]+$")
_current: str | None = None


def current_entry() -> str | None:
    """The entry this process runs for (``batchkit`` takes it out of the environment so the
    commands a run starts do not inherit it), e.g. to label a run's metrics; else ``None``."""
    return _current


def set_current_entry(name: str | None) -> None:
    """Remember the entry this process runs for (the ``batchkit`` command does, at start)."""
    global _current
    _current = name


def check_entry_name(name: str) -> str:
    """``name`` if it can name an entry (a crontab tag, a Windows task, a file name); else UsageError."""
    if not _NAME.match(name or "") or name.startswith("."):
        raise UsageError(f"entry name {name!r}: use letters, digits and . _ - @ + (e.g. --name nightly-sums)")
    return name


def result_path(name: str, home: str | os.PathLike | None = None) -> Path:
    """Where the entry ``name`` keeps its last result: ``$BATCHKIT_HOME/cron/NAME.json``."""
    from ..state.journal import default_home

    return Path(home or default_home()) / "cron" / f"{check_entry_name(name)}.json"


def record_result(name: str, code: int, started: float, ended: float | None = None, *,
                  error: str | None = None) -> None:
    """Record that a run of the entry ``name`` (this process) ended with ``code``.

    Called by the ``batchkit`` command when ``$BATCHKIT_CRON_ENTRY`` is set, however it ended.
    The run's id and counts come from the journal (the run this process recorded), when there is
    one: a run refused with 75 or 2 never reached it. Never raises: a cron run's exit code must
    be the run's own, whatever happens here.
    """
    try:
        record: dict[str, Any] = {"entry": name, "exit_code": code, "started": started,
                                  "ended": ended if ended is not None else time.time(), "pid": os.getpid()}
        if error:
            record["error"] = error  # the type of an uncaught exception (the name only: no secrets)
        record.update(_this_process_run(started))
        write_atomic(result_path(name), json.dumps(record) + "\n")
    except Exception:  # never raise: see the docstring
        pass


def _this_process_run(since: float) -> dict[str, Any]:
    """``{"run_id", "state", "succeeded", "failed"}`` of the run this process journaled since ``since``."""
    from ..state.journal import Journal, default_path

    if not default_path().exists():
        return {}
    with Journal(default_path()) as journal:
        for run in journal.runs(limit=50):
            if run.get("pid") == os.getpid() and (run.get("updated") or run["started"]) >= since - 1:
                return {"run_id": run["id"], "state": run["state"], "succeeded": run["succeeded"],
                        "failed": run["failed"]}
    return {}


def read_result(name: str, home: str | os.PathLike | None = None) -> dict | None:
    """The last result :func:`record_result` left for the entry ``name``, if any."""
    try:
        return json.loads(result_path(name, home).read_text())
    except (OSError, ValueError, UsageError):
        return None


# What `batchkit run` exit codes mean (see `batchkit --help`), for logs and listings.
_EXITS = {0: "succeeded", 1: "finished with failed items", 2: "usage error", 3: "could not run",
          75: "skipped: another run holds the lock", 130: "interrupted by SIGINT (resumable)",
          143: "interrupted by SIGTERM (resumable)"}


def describe_exit(code: int) -> str:
    """A run's exit code in words: ``"succeeded (exit 0)"``, ``"killed by SIGKILL"`` (a negative
    code, as :mod:`subprocess` reports a signal), ``"exited with code 9"``."""
    if code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code in _EXITS:
        return f"{_EXITS[code]} (exit {code})"
    return f"exited with code {code}"


def describe_result(result: dict | None) -> str:
    """One line for ``cron list``: ``"succeeded (exit 0) 2024-05-01 03:00, run 12"``."""
    if not result:
        return "never run"
    code = int(result.get("exit_code", -1))
    what = describe_exit(code)
    if result.get("error"):
        what = f"crashed: {result['error']} (exit {code})"
    elif code == 1 and result.get("failed"):
        what = f"{result['failed']} failed (exit 1)"
    when = datetime.fromtimestamp(result.get("ended") or result.get("started") or 0).strftime("%Y-%m-%d %H:%M")
    run = f", run {result['run_id']}" if result.get("run_id") is not None else ""
    return f"{what} {when}{run}"
