"""Windows Task Scheduler tasks that run batchkit jobs, through ``schtasks.exe``: :class:`Schtasks`.

A task is ``\\batchkit\\NAME``. What it runs is a small batch file, ``$BATCHKIT_HOME/schtasks/NAME.cmd``
(:func:`wrapper_script`), doing what a crontab entry's command does: it sets PATH, BATCHKIT_HOME and
BATCHKIT_CRON_ENTRY (so ``cron list --windows`` shows the entry's last result), changes to the
directory the task was added from, runs ``python -m batchkit run JOB --quiet ARGS`` and appends
its output to a log file. A file rather than the command itself because ``schtasks /TR`` holds at
most 261 characters (one venv path and a PATH are more), and because a file needs only cmd.exe's
quoting, not cmd.exe's inside schtasks'. The file also keeps the cron schedule it was made from.

Which ``schtasks`` runs (:func:`program`): on Windows, the one on PATH; on any system, the
program named by ``$BATCHKIT_SCHTASKS`` (the tests use a stand-in that records its arguments).
Elsewhere, without that variable, ``cron add --windows`` only prints what it would do.
"""

from __future__ import annotations

import csv
import io
import locale
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import BackendError, UsageError
from .cron import check_no_secrets, explicit_path
from .lastrun import ENTRY_VARIABLE, check_entry_name

FOLDER = "batchkit"
WINDOWS = sys.platform == "win32"  # a module constant, so a test can stand in for Windows
_SCHEDULE_MARK = "rem batchkit-schedule: "
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
            "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}


def schtasks_schedule(schedule: str) -> list[str]:
    """The ``/SC ...`` options of ``schtasks /Create`` for a cron schedule, when there is one."""
    from croniter import croniter

    text = _ALIASES.get(schedule.strip().lower(), schedule.strip())
    if text == "@reboot":
        return ["/SC", "ONSTART"]
    fields = text.split()
    (minute, hour, dom, month, dow), _ = croniter.expand(text)
    star = [f == "*" for f in fields]
    single_time = len(minute) == 1 and len(hour) == 1 and minute != ["*"] and hour != ["*"]
    at = f"{hour[0]:02d}:{minute[0]:02d}" if single_time else None
    if star[1:] == [True] * 4 and fields[0].startswith(("*/", "*")):
        step = fields[0][2:] if fields[0].startswith("*/") else "1"
        return ["/SC", "MINUTE", "/MO", step]
    if star[1:] == [True] * 4 and len(minute) == 1:
        return ["/SC", "HOURLY", "/ST", f"00:{minute[0]:02d}"]
    if fields[1].startswith("*/") and star[2:] == [True] * 3 and len(minute) == 1:
        return ["/SC", "HOURLY", "/MO", fields[1][2:], "/ST", f"00:{minute[0]:02d}"]
    if at and star[2:] == [True] * 3:
        return ["/SC", "DAILY", "/ST", at]
    if at and star[2:4] == [True, True]:
        return ["/SC", "WEEKLY", "/D", ",".join(_DAYS[d % 7] for d in dow), "/ST", at]
    if at and star[4] and not star[2] and "L" not in fields[2]:
        months = [] if star[3] else ["/M", ",".join(_MONTHS[m - 1] for m in month)]
        return ["/SC", "MONTHLY", *months, "/D", ",".join(str(d) for d in dom), "/ST", at]
    raise UsageError(f"schedule {schedule!r} has no simple Task Scheduler equivalent; "
                     "create the task in the Task Scheduler UI, or use a daily/weekly/monthly schedule")


# -- the batch file a task runs ------------------------------------------------------------------

def cmd_word(word: str) -> str:
    """``word`` as one argument on a cmd.exe line in a batch file (Python's argv rules).

    Quoted when it holds a space or a character cmd.exe acts on; backslashes before the closing
    quote are doubled (the C runtime would read ``\\"`` as a literal quote); ``%`` is doubled
    (batch files expand ``%NAME%``). A double quote or a newline cannot be passed safely: refused.
    """
    if any(c in word for c in '"\n\r'):
        raise UsageError(f"argument {word!r} holds a double quote or a newline, which cannot be passed "
                         "safely through cmd.exe; write a wrapper .cmd file for such arguments")
    word = word.replace("%", "%%")
    if word and not any(c in word for c in " \t&|<>^(),;="):
        return word
    return '"' + word + "\\" * (len(word) - len(word.rstrip("\\"))) + '"'


def _set(name: str, value: str) -> str:
    cmd_word(value)  # the same refusals
    return f'set "{name}={value.replace("%", "%%")}"'


def wrapper_script(name: str, schedule: str, job: str, args: Sequence[str], *, log: str | os.PathLike,
                   cwd: str | os.PathLike | None = None, home: str | os.PathLike | None = None,
                   python: str | None = None, path: str | None = None) -> str:
    """The batch file a task runs: the same pinned environment and command as a crontab entry."""
    from ..state.journal import default_home

    check_no_secrets(list(args))
    check_entry_name(name)
    cwd = os.path.abspath(cwd or os.getcwd())
    run = [python or sys.executable, "-m", "batchkit", "run", job, "--quiet", *args]
    lines = [
        "@echo off",
        f"rem batchkit:{name}: made by `batchkit cron add --windows`; `batchkit cron remove --windows {name}`",
        _SCHEDULE_MARK + schedule.replace("%", "%%"),
        "setlocal",
        _set("PATH", path or explicit_path()),
        _set("BATCHKIT_HOME", os.path.abspath(home or default_home())),
        _set(ENTRY_VARIABLE, name),
        f"cd /d {cmd_word(cwd)} || exit /b 3",
        " ".join(cmd_word(w) for w in run) + f" >> {cmd_word(os.path.abspath(log))} 2>&1",
        "exit /b %ERRORLEVEL%",
    ]
    return "\r\n".join(lines) + "\r\n"


def wrapper_path(name: str, home: str | os.PathLike | None = None) -> Path:
    """Where the task ``name``'s batch file lives: ``$BATCHKIT_HOME/schtasks/NAME.cmd``."""
    from ..state.journal import default_home

    return Path(home or default_home()) / "schtasks" / f"{check_entry_name(name)}.cmd"


def create_args(name: str, schedule: str, script: str | os.PathLike, *, replace: bool = True) -> list[str]:
    """``schtasks`` arguments creating the task ``name`` that runs the batch file ``script``."""
    script = str(script)
    run = f'"{script}"' if " " in script else script  # schtasks keeps the quotes, cmd needs them
    return ["/Create", "/TN", f"{FOLDER}\\{name}", "/TR", run, *schtasks_schedule(schedule),
            *(["/F"] if replace else [])]


def command_line(args: Sequence[str]) -> str:
    """``schtasks ARGS`` as one line to paste into cmd.exe."""
    return subprocess.list2cmdline(["schtasks", *args])


# -- running schtasks --------------------------------------------------------------------------------

def program() -> str | None:
    """The schtasks to run: ``$BATCHKIT_SCHTASKS``, else on Windows ``schtasks`` on PATH, else None."""
    chosen = os.environ.get("BATCHKIT_SCHTASKS")
    if chosen:
        return chosen
    return shutil.which("schtasks") if WINDOWS else None


@dataclass
class Task:
    """One of our tasks as ``schtasks /Query`` reports it, with what its batch file says."""

    name: str
    next_run: str
    status: str
    command: str
    schedule: str | None = None  # the cron schedule it was made from, if its batch file is there
    home: str | None = None  # the BATCHKIT_HOME its batch file sets

    @property
    def script(self) -> Path | None:
        """The batch file the task runs, if it is one of ours."""
        text = self.command.strip().strip('"')
        return Path(text) if text.lower().endswith(".cmd") else None


class Schtasks:
    """``schtasks /Create``, ``/Query`` and ``/Delete`` for our tasks (``\\batchkit\\NAME``)."""

    def __init__(self, exe: str | None = None) -> None:
        exe = exe or program()
        if exe is None:
            raise UsageError("schtasks is the Windows Task Scheduler: run this on Windows "
                             "(or set BATCHKIT_SCHTASKS to a schtasks program)")
        self.exe = exe

    def _run(self, args: list[str]) -> str:
        try:
            proc = subprocess.run([self.exe, *args], capture_output=True, timeout=60)
        except OSError as exc:
            raise BackendError(f"cannot run {self.exe}: {exc.strerror or exc}") from None
        except subprocess.TimeoutExpired:
            raise BackendError(f"schtasks {args[0]} did not answer in 60 s") from None
        encoding = locale.getpreferredencoding(False)  # schtasks writes in the console's code page
        out, err = (b.decode(encoding, "replace") for b in (proc.stdout, proc.stderr))
        if proc.returncode != 0:
            reason = (err.strip() or out.strip() or f"exit {proc.returncode}").splitlines()[0]
            raise BackendError(f"schtasks {args[0]} failed: {reason}")
        return out

    def create(self, name: str, schedule: str, script_text: str, *, replace: bool = False,
               home: str | os.PathLike | None = None) -> Path:
        """Write the batch file and create the task; refuses an existing task unless ``replace``."""
        if not replace and any(t.name == name for t in self.query()):
            raise UsageError(f"the Task Scheduler already has a task {FOLDER}\\{name}: remove it first "
                             f"(batchkit cron remove --windows {name}), pass --replace, or choose another --name")
        from ..atomic import write_atomic

        script = wrapper_path(name, home)
        args = create_args(name, schedule, script)  # checks the schedule before anything is written
        write_atomic(script, script_text)
        try:
            self._run(args)  # /F: replacing is decided above, schtasks would otherwise ask on the console
        except BaseException:
            script.unlink(missing_ok=True)
            raise
        return script

    def query(self) -> list[Task]:
        """Our tasks (those in the ``\\batchkit\\`` folder), in the order schtasks lists them."""
        tasks = []
        # /V /NH: every column, no header; read by position (headers are translated, positions not).
        for row in csv.reader(io.StringIO(self._run(["/Query", "/FO", "CSV", "/V", "/NH"]))):
            if len(row) < 9 or not row[1].lower().startswith(f"\\{FOLDER}\\".lower()):
                continue
            task = Task(name=row[1][len(FOLDER) + 2:], next_run=row[2], status=row[3], command=row[8])
            task.schedule, task.home = _read_script(task.script)
            tasks.append(task)
        return tasks

    def delete(self, task: Task) -> None:
        """Delete the task and its batch file."""
        self._run(["/Delete", "/TN", f"{FOLDER}\\{task.name}", "/F"])
        script = task.script
        if script is not None and _read_script(script)[0] is not None:
            script.unlink(missing_ok=True)


def _read_script(path: Path | None) -> tuple[str | None, str | None]:
    """``(schedule, BATCHKIT_HOME)`` from one of our batch files (``(None, None)`` otherwise)."""
    schedule = home = None
    try:
        text = path.read_text(errors="replace") if path is not None else ""
    except OSError:
        return None, None
    for line in text.splitlines():
        if line.startswith(_SCHEDULE_MARK):
            schedule = line[len(_SCHEDULE_MARK):].replace("%%", "%")
        elif line.startswith('set "BATCHKIT_HOME='):
            home = line[len('set "BATCHKIT_HOME='):].rstrip('"').replace("%%", "%")
    return schedule, home if schedule is not None else None
