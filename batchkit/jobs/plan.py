"""What a run is asked to do and how it ended: :class:`RunPlan` and :class:`RunResult`.

:class:`~batchkit.jobs.lifecycle.Run` executes a :class:`RunPlan` (built by the command line,
``Job.run``, ``bk.run`` or ``bk.imap``) and ends with a :class:`RunResult`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable

from ..options import RunOptions
from ..report import Report
from .sinks import Sink


@dataclasses.dataclass
class RunPlan:
    """What to run and how: built by the CLI, ``Job.run`` or ``bk.run``.

    ``name`` and ``args`` are the run's identity (journal, resume, lock). ``job`` is the bound
    job whose set-up, finish and tear-down run around the engine (``None`` for a plain
    function). ``keep_outcomes``: build every :class:`Outcome` for the report (the Python API
    always does). Without it, a job's finishing step still gets every outcome, from a spool on
    disk (:mod:`batchkit.jobs.spool`: the command line's memory stays flat).
    """

    fn: Callable[[Any], Any]
    items: Iterable[Any]
    options: RunOptions
    name: str
    args: dict = dataclasses.field(default_factory=dict)
    job: Any = None
    lock: bool = False
    wait_lock: float = 0.0
    retry_failed: bool = False
    output: str | None = None
    operations: Any = None
    sinks: list[Sink] = dataclasses.field(default_factory=list)
    keep_outcomes: bool = True
    store_values: bool | None = None  # keep exact values in the journal (default: keep_outcomes)
    command: list[str] | None = None  # the command line, for the "resume with" hint
    redirect_stdout: bool = False  # item output goes to stderr (stdout carries data or JSON)


@dataclasses.dataclass
class RunResult:
    """How a run ended: ``state`` (succeeded, failed, halted, interrupted, error), ``exit_code``,
    ``message`` (why it stopped), ``error`` (the exception that ended it, if any), the
    :class:`~batchkit.Report` (``None`` if the run never started), and ``summary`` (the dict
    ``--json`` prints)."""

    state: str
    exit_code: int
    message: str | None = None
    error: BaseException | None = None
    report: Report | None = None
    run_id: int | None = None
    resumed: bool = False
    summary: dict = dataclasses.field(default_factory=dict)
    failures: list = dataclasses.field(default_factory=list)  # (index, shown key, ItemError), first 20
    notes: list = dataclasses.field(default_factory=list)
    resume_hint: str | None = None
    started: bool = False  # items began to run (so counts mean something)
