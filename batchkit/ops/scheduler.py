"""An in-process scheduler for hosts and containers without cron: :class:`Scheduler`.

It reads a small table of ``SCHEDULE JOB [ARGS]`` lines (:func:`parse_table`) or takes one
``--every`` entry, and runs each job when it is due as a child process
``python -m batchkit run JOB ARGS``, so every run takes the usual lock and is recorded in
history like any other. Rules:

- never two overlapping runs of one entry: a run that comes due while the previous one is still
  going is skipped (and logged);
- a run missed while the scheduler was down runs once at start-up, if it was due no longer than
  ``grace`` seconds ago (the last start of each entry is kept in ``$BATCHKIT_HOME/scheduler/``);
- SIGTERM (a service manager's stop), SIGHUP (a closed terminal) or SIGINT (Ctrl-C) stops it
  cleanly: no new runs, the signal is passed on to running jobs (which record what they finished
  and exit 143 / 130, resumable), and after ``stop_timeout`` seconds any job still running is
  killed. The scheduler then exits 0 after SIGTERM or SIGHUP (a normal stop for a service) and
  130 after SIGINT (as interactive programs do, so a script that started it sees the Ctrl-C).

A line's schedule is five cron fields, always: ``*/15 * * * * cleanup /tmp/spool`` runs
``cleanup`` every 15 minutes, whatever the sixth word is. Other forms are explicit:
``@daily``-style names, ``@every DURATION`` (``@every 10m``: at start-up, then every 10
minutes), or the schedule quoted as one word, which may then have croniter's sixth field for
seconds (``'*/5 * * * * */2' JOB``: every 2 seconds of every 5th minute). A line whose sixth
word looks like a seconds field (``* * * * * * JOB``) is refused with that hint rather than
guessed at.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

from ..atomic import write_atomic
from ..errors import UsageError
from ..units import parse_duration
from .cron import validate_schedule
from .lastrun import describe_exit

TICK = 0.2  # how often the loop wakes to reap children and check the clock
# What a seconds field looks like (no names, unlike the month and weekday fields): used only to
# explain a refused line, never to read one.
_SECONDS_FIELD = re.compile(r"^[\d*/,\-]+$")


@dataclass
class Entry:
    """One scheduled job: ``schedule`` (cron text or ``@every D``) and the ``run`` arguments."""

    schedule: str
    argv: list[str]
    name: str = ""
    every: float | None = None  # seconds, for @every
    proc: subprocess.Popen | None = field(default=None, repr=False)
    started: float = 0.0
    signalled: bool = False

    def __post_init__(self) -> None:
        if not self.argv:
            raise UsageError(f"schedule {self.schedule!r} has no job to run")
        if self.schedule.startswith("@every"):
            text = self.schedule[len("@every"):].strip()
            self.every = parse_duration(text)
            if self.every <= 0:
                raise UsageError(f"@every {text}: the interval must be more than 0 seconds")
            self.schedule = f"@every {text}"
        else:
            self.schedule = validate_schedule(self.schedule, seconds=True)
        self.name = self.name or Path(self.argv[0].split(":")[0]).stem or self.argv[0]

    @property
    def key(self) -> str:
        """Identifies the entry across restarts (its schedule and arguments)."""
        text = json.dumps([self.schedule, self.argv])
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()

    def next_after(self, t: float, first: bool = False) -> float:
        """When this entry is next due after time ``t`` (``first``: at start-up, when @every runs at once)."""
        if self.every is not None:
            return t if first else t + self.every
        from croniter import croniter

        return croniter(self.schedule, datetime.fromtimestamp(t)).get_next(datetime).timestamp()

    def previous(self, t: float) -> float | None:
        """When a cron entry was last due at or before ``t`` (``None`` for @every)."""
        if self.every is not None:
            return None
        from croniter import croniter

        return croniter(self.schedule, datetime.fromtimestamp(t)).get_prev(datetime).timestamp()


def parse_line(line: str, where: str = "") -> Entry | None:
    """An :class:`Entry` from ``SCHEDULE JOB [ARGS]`` (``None`` for blank and ``#`` lines).

    SCHEDULE is five cron fields, ``@name``, ``@every DURATION``, or one quoted word (five
    fields, or six with croniter's seconds field last); see the module docstring.
    """
    try:
        words = shlex.split(line, comments=True)
    except ValueError as exc:
        raise UsageError(f"{where}{exc}") from None
    if not words:
        return None
    if words[0] == "@every":
        schedule, rest = " ".join(words[:2]), words[2:]
    elif words[0].startswith("@") or len(words[0].split()) > 1:
        schedule, rest = words[0], words[1:]  # a name, or the whole schedule quoted as one word
    else:
        schedule, rest = " ".join(words[:5]), words[5:]
        if len(words) > 6 and _SECONDS_FIELD.match(words[5]):
            raise UsageError(f"{where}{words[5]!r} after five cron fields would be the job; for a seconds "
                             f"field, quote the six-field schedule: '{' '.join(words[:6])}' {shlex.join(words[6:])}")
    try:
        return Entry(schedule, rest)
    except UsageError as exc:
        raise UsageError(f"{where}{exc}") from None


def parse_table(path: str | os.PathLike) -> list[Entry]:
    """Every entry of a schedule file; errors name the file and line."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read schedule file {path}: {exc.strerror or exc}") from None
    entries = [e for n, line in enumerate(lines, 1) if (e := parse_line(line, f"{path}, line {n}: "))]
    if not entries:
        raise UsageError(f"schedule file {path} has no entries: write lines like '0 3 * * * JOB ARGS'")
    names = [e.name for e in entries]
    for i, e in enumerate(entries):  # two entries of one job: tell them apart in the log
        if names.count(e.name) > 1:
            e.name = f"{e.name}#{i + 1}"
    return entries


def default_command(entry: Entry) -> list[str]:
    """The child process of a run: this interpreter running ``batchkit run``."""
    return [sys.executable, "-m", "batchkit", "run", *entry.argv]


class Scheduler:
    """Runs ``entries`` on their schedules until :meth:`stop` (or SIGTERM / SIGINT in :meth:`run`)."""

    def __init__(self, entries: Sequence[Entry], *, grace: float = 3600.0, state_dir: str | os.PathLike | None = None,
                 stop_timeout: float = 30.0, log: Callable[[str], None] | None = None,
                 command: Callable[[Entry], list[str]] = default_command) -> None:
        from ..state.journal import default_home

        self.entries = list(entries)
        self.grace = grace
        self.stop_timeout = stop_timeout
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.command = command
        # One small file per entry (named by its key): editing the table keeps the others' state.
        self.state_dir = Path(state_dir or default_home() / "scheduler")
        self.stopped = False
        self.signum: int | None = None  # the signal that stopped us, if one did
        self.runs = 0

    def _say(self, text: str) -> None:
        self.log(f"{datetime.now():%Y-%m-%d %H:%M:%S} schedule: {text}")

    def _load(self) -> dict[str, float]:
        """The last start time of each entry that has one."""
        state = {}
        for e in self.entries:
            try:
                state[e.key] = float((self.state_dir / e.key).read_text())
            except (OSError, ValueError):
                pass
        return state

    def _save(self, state: dict[str, float]) -> None:
        for key, when in state.items():
            write_atomic(self.state_dir / key, repr(when))

    def stop(self, signum: int | None = None) -> None:
        """Ask the loop to stop: no new runs; running jobs get SIGINT after a SIGINT, else SIGTERM."""
        if not self.stopped:
            self.stopped, self.signum = True, signum
            self._pass_on()

    def _pass_on(self) -> None:
        # SIGHUP is passed on as SIGTERM: the jobs' clean stop is defined for SIGINT and SIGTERM.
        signum = signal.SIGINT if self.signum == signal.SIGINT else signal.SIGTERM
        for e in self.entries:
            # Once only: a second SIGINT would make a job stop at once instead of cleanly.
            if e.proc is not None and not e.signalled and e.proc.poll() is None:
                e.signalled = True
                _signal_job(e.proc, signum)

    def run(self) -> int:
        """Loop until stopped; returns 130 after SIGINT, else 0 (SIGTERM, SIGHUP, :meth:`stop`)."""
        handlers = {}
        try:
            for s in STOP_SIGNALS:
                handlers[s] = signal.signal(s, lambda signum, frame: self.stop(signum))
        except ValueError:
            pass  # not the main thread: rely on stop()
        try:
            self._loop()
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
        # A service manager's stop (SIGTERM) is the normal end of a scheduler: exit 0, or systemd
        # and docker would report every stop as a failure. Ctrl-C reads as an interruption.
        return 130 if self.signum == signal.SIGINT else 0

    def _loop(self) -> None:
        state = self._load()
        now = time.time()
        due: dict[str, float] = {}
        for e in self.entries:
            last = state.get(e.key)
            prev = e.previous(now)
            if last is not None and prev is not None and prev > last and now - prev <= self.grace:
                self._say(f"{e.name}: missed the run due {datetime.fromtimestamp(prev):%Y-%m-%d %H:%M:%S}; "
                          "running it now")
                due[e.key] = now
            else:
                due[e.key] = e.next_after(now, first=True)
            self._say(f"{e.name}: {e.schedule}, next run {datetime.fromtimestamp(due[e.key]):%Y-%m-%d %H:%M:%S}")
        while not self.stopped:
            now = time.time()
            for e in self.entries:
                self._reap(e)
                if now < due[e.key]:
                    continue
                if e.proc is not None:
                    self._say(f"{e.name}: skipped the run due now: the previous one (pid {e.proc.pid}) "
                              "is still running")
                else:
                    self._start(e, now)
                    self._save({e.key: now})
                due[e.key] = e.next_after(now)
            time.sleep(max(0.0, min(TICK, min(due.values()) - time.time())))
        self._shutdown()

    def _start(self, e: Entry, now: float) -> None:
        try:
            # Own process group: a Ctrl-C in the terminal reaches the job once, through us.
            e.proc = subprocess.Popen(self.command(e), **_OWN_GROUP)
        except OSError as exc:
            self._say(f"{e.name}: could not start: {exc}")
            return
        e.started = now
        e.signalled = False
        self.runs += 1
        self._say(f"{e.name}: started (pid {e.proc.pid})")

    def _reap(self, e: Entry) -> None:
        if e.proc is None or e.proc.poll() is None:
            return
        self._say(f"{e.name}: {describe_exit(e.proc.returncode)} after {time.time() - e.started:.1f}s")
        e.proc = None

    def _shutdown(self) -> None:
        self._pass_on()  # a job started while the signal arrived
        running = [e for e in self.entries if e.proc is not None and e.proc.poll() is None]
        name = _signal_name(self.signum) if self.signum else "stop"
        self._say(f"{name}: stopping" + (f"; waiting for {len(running)} running job(s)" if running else ""))
        deadline = time.monotonic() + self.stop_timeout
        for e in running:
            try:
                e.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._say(f"{e.name}: still running after {self.stop_timeout:g}s; killing it")
                _kill_job(e.proc)
                e.proc.wait()
        for e in self.entries:
            self._reap(e)


# The signals that stop the scheduler; SIGHUP does not exist on Windows.
STOP_SIGNALS = tuple(s for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)) if s is not None)

def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


if hasattr(os, "killpg"):
    _OWN_GROUP: dict = {"start_new_session": True}

    def _signal_job(proc: subprocess.Popen, signum: int) -> None:
        try:
            os.killpg(proc.pid, signum)  # the job and its workers
        except ProcessLookupError:
            pass

    def _kill_job(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
else:  # Windows: no process groups to signal; a console process group receives CTRL_BREAK instead
    _OWN_GROUP = {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}

    def _signal_job(proc: subprocess.Popen, signum: int) -> None:
        try:
            proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        except OSError:
            pass

    def _kill_job(proc: subprocess.Popen) -> None:
        proc.kill()
