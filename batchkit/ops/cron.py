"""Tagged crontab entries that run batchkit jobs: :class:`Crontab`, :func:`build_command`.

An entry is one ordinary crontab line ending in ``# batchkit:NAME``::

    0 3 * * * cd /srv/app && PATH=/opt/venv/bin:/usr/bin:/bin BATCHKIT_HOME=/var/lib/batchkit \
      BATCHKIT_CRON_ENTRY=nightly /opt/venv/bin/python -m batchkit run /srv/app/jobs/nightly.py --quiet \
      >> /var/log/nightly.log 2>&1 # batchkit:nightly job=nightly

(one line in the crontab; wrapped here).
Everything cron does differently from a login shell is pinned down when the entry is added:
the working directory, PATH, the journal's home, the interpreter and the job file are absolute.
``BATCHKIT_CRON_ENTRY`` makes the run leave its exit code in ``$BATCHKIT_HOME/cron/NAME.json``
(:func:`record_result`, called by the ``batchkit`` command however it ends), which is what
``batchkit cron list`` shows as the entry's last result: also the runs that never reach the
journal (refused with 75 because another run held the lock, or with 2 for a bad argument).
Each argument is shell-quoted, so no argument can run a command; ``%`` (which cron turns into a
newline) is escaped. Only our lines are ever added or removed: every other line of the crontab
is kept byte for byte, which is why the file is edited as text and python-crontab is used to
render and recognise our lines rather than to rewrite the whole file (it normalises spacing and
misreads some lines it did not write).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..atomic import write_atomic
from ..errors import UsageError
from ..secrets import is_secret_name, redact
from .lastrun import ENTRY_VARIABLE, check_entry_name, describe_result, read_result

if TYPE_CHECKING:
    from ..jobs.job import Job

TAG = "batchkit:"
SPECIALS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


# -- schedules --------------------------------------------------------------------------------

def validate_schedule(expr: str, *, seconds: bool = False) -> str:
    """Return ``expr`` normalised (single spaces) or raise :class:`~batchkit.UsageError`.

    Five-field cron expressions and ``@daily``-style names; ``@reboot`` too for crontabs. With
    ``seconds`` (the in-process scheduler), a sixth field for seconds is allowed, as croniter
    reads it. Impossible dates such as ``0 0 31 2 *`` are refused: they would never run.
    """
    from croniter import CroniterBadDateError, croniter

    text = " ".join(str(expr).split())
    if text == "@reboot" and not seconds:
        return text
    fields = text.split(" ")
    allowed = (5, 6) if seconds else (5,)
    if not (text.lower() in SPECIALS or len(fields) in allowed) or not croniter.is_valid(text):
        raise UsageError(f"invalid schedule {expr!r}: use five cron fields such as '0 3 * * *' "
                         f"(minute hour day-of-month month day-of-week) or @daily / @hourly")
    if not seconds:
        from crontab import CronTab

        try:  # what cron itself accepts is narrower than croniter (no L, W, #, seconds)
            CronTab(tab="").new(command="true").setall(text)
        except (ValueError, KeyError) as exc:
            raise UsageError(f"invalid schedule {expr!r} for cron: {exc}") from None
    try:
        croniter(text, datetime.now()).get_next(datetime)
    except CroniterBadDateError:
        raise UsageError(f"schedule {expr!r} never runs: no such date (e.g. 31 February); "
                         "check the day-of-month and month fields") from None
    return text


def next_run(expr: str, after: datetime | None = None) -> datetime | None:
    """The next time ``expr`` fires after ``after`` (local time), or ``None`` for ``@reboot``."""
    from croniter import croniter

    if expr.strip() == "@reboot":
        return None
    return croniter(expr, after or datetime.now()).get_next(datetime)


# -- the command of an entry --------------------------------------------------------------------

def cron_quote(arg: str) -> str:
    """Shell-quote ``arg`` for a crontab line.

    ``shlex.quote`` makes it one literal word; then two characters that crontab tools read
    specially are moved outside the quotes: ``#`` after a space (python-crontab would take the
    rest for a comment) and ``\\%`` (cron would see an escaped backslash and then a bare ``%``).
    """
    if "\n" in arg or "\r" in arg:
        raise UsageError("an argument of a cron entry contains a newline; crontab lines cannot hold one")
    quoted = shlex.quote(arg)
    if quoted.startswith("'"):
        quoted = quoted.replace("\\%", "\\'%'").replace("#", "'\\#'")
    return quoted


def check_no_secrets(args: Sequence[str]) -> None:
    """Refuse arguments that carry a secret: a crontab is not a place for one."""
    for i, arg in enumerate(args):
        named_option = arg.startswith("-") and "=" not in arg and is_secret_name(arg.lstrip("-"))
        if redact(arg) != arg or (named_option and i + 1 < len(args)):
            raise UsageError(f"argument {redact(arg)!r} carries a secret, and crontab lines are readable: "
                             "let the job read it from the environment or a file instead")


def resolve_job(job: str, cwd: Path | None = None) -> tuple[str, Job]:
    """``(spec, job)`` for an entry: a job file made absolute (as given, or found in ``./jobs`` or
    ``$BATCHKIT_JOBS_PATH``, which cron will not have), else the spec as given (``module:attr``, a
    ready-made job). The job is loaded now, so a broken job is refused now rather than at 3 a.m.;
    ``job.name`` is the job's name as history records it."""
    from ..jobs.find import find_job

    cwd = cwd or Path.cwd()
    head, sep, attr = job.rpartition(":")
    file, attr = (head, attr) if sep and head.endswith(".py") else (job, "")
    path = Path(file).expanduser()
    candidates = [path if path.is_absolute() else cwd / path]
    if os.sep not in file and "/" not in file and ":" not in file:
        dirs = [cwd / "jobs"] + [Path(d) for d in os.environ.get("BATCHKIT_JOBS_PATH", "").split(os.pathsep) if d]
        candidates += [d / (file if file.endswith(".py") else file + ".py") for d in dirs]
    spec = next((str(c.resolve()) + (f":{attr}" if attr else "") for c in candidates if c.is_file()), None)
    if spec is None and (file.endswith(".py") or os.sep in file or "/" in file):
        raise UsageError(f"job file {file!r} not found; give a path to a job file or a job name")
    spec = spec or job
    return spec, find_job(spec)


def explicit_path() -> str:
    """PATH for the entry: the interpreter's directory first, then the absolute entries of ours."""
    seen: list[str] = []
    for d in [os.path.dirname(sys.executable)] + os.environ.get("PATH", "").split(os.pathsep):
        if d and os.path.isabs(d) and d not in seen:
            seen.append(d)
    return os.pathsep.join(seen or ["/usr/bin", "/bin"])


def build_command(job: str, args: Sequence[str] = (), *, log: str | os.PathLike, name: str | None = None,
                  cwd: str | os.PathLike | None = None, home: str | os.PathLike | None = None,
                  python: str | None = None, path: str | None = None) -> list[str]:
    """The argv-like parts of an entry's shell command (see :func:`render_command`); ``name``
    (the entry's) makes the run record its result for ``cron list``."""
    from ..state.journal import default_home

    check_no_secrets(list(args))
    env = [f"PATH={path or explicit_path()}", f"BATCHKIT_HOME={os.path.abspath(home or default_home())}"]
    if name:
        env.append(f"{ENTRY_VARIABLE}={check_entry_name(name)}")
    return ["cd", os.path.abspath(cwd or os.getcwd()), "&&", *env,
            os.path.abspath(python or sys.executable), "-m", "batchkit", "run", job, "--quiet", *args,
            ">>", os.path.abspath(log), "2>&1"]


_OPERATORS = {"&&", ">>", "2>&1"}
_ASSIGNMENTS = ("PATH=", "BATCHKIT_HOME=", f"{ENTRY_VARIABLE}=")


def render_command(parts: Sequence[str]) -> str:
    """Join :func:`build_command`'s parts into one shell command, quoting every word."""
    out = []
    for word in parts:
        if word in _OPERATORS:
            out.append(word)
        elif word.startswith(_ASSIGNMENTS):
            name, value = word.split("=", 1)
            out.append(f"{name}={cron_quote(value)}")
        else:
            out.append(cron_quote(word))
    return " ".join(out)


def render_line(schedule: str, command: str, name: str, job: str | None = None) -> str:
    """One crontab line for our entry, rendered by python-crontab (which escapes ``%``)."""
    from crontab import CronTab

    item = CronTab(tab="").new(command=command, comment=f"{TAG}{name} job={job}" if job else TAG + name)
    item.setall(schedule)
    return item.render()


# -- the crontab ------------------------------------------------------------------------------------

@dataclass
class Entry:
    """One of our crontab entries, as read back."""

    name: str
    schedule: str
    command: str  # what cron hands to sh (``%`` unescaped)
    line: str  # the line as it is in the crontab
    job: str | None = None  # the job's name in history, as resolved when the entry was added

    def words(self) -> list[str]:
        """The command split as sh would split it."""
        try:
            return shlex.split(self.command, comments=True)
        except ValueError:
            return []

    def _assigned(self, variable: str) -> str | None:
        for word in self.words():
            if word.startswith(variable + "="):
                return word.split("=", 1)[1]
        return None

    @property
    def home(self) -> str | None:
        """The ``BATCHKIT_HOME`` the entry pins, if any."""
        return self._assigned("BATCHKIT_HOME")

    @property
    def records_results(self) -> bool:
        """Whether the entry's runs record their results (entries added before batchkit did not)."""
        return self._assigned(ENTRY_VARIABLE) == self.name


def parse_entry(line: str) -> Entry | None:
    """Our entry on ``line``, or ``None`` for any other line (python-crontab reads it)."""
    if TAG not in line or line.lstrip().startswith("#"):
        return None
    from crontab import CronTab

    items = list(CronTab(tab=line + "\n"))
    if len(items) != 1 or not items[0].is_valid() or not (items[0].comment or "").startswith(TAG):
        return None
    item = items[0]
    name, *rest = item.comment[len(TAG):].split() or [""]
    job = next((w[4:] for w in rest if w.startswith("job=")), None)
    return Entry(name, str(item.slices), item.command, line, job)


class Crontab:
    """A crontab: a FILE (``--crontab`` / ``$BATCHKIT_CRONTAB``) or, without one, the user's own
    crontab through the ``crontab`` program."""

    def __init__(self, file: str | os.PathLike | None = None) -> None:
        file = file or os.environ.get("BATCHKIT_CRONTAB") or None
        self.file = Path(file).expanduser().absolute() if file else None

    def __str__(self) -> str:
        return str(self.file) if self.file else "the user's crontab"

    def read(self) -> str:
        """The crontab's text ('' when there is none yet)."""
        if self.file is not None:
            try:
                return self.file.read_bytes().decode("utf-8", "surrogateescape")
            except FileNotFoundError:
                return ""
            except OSError as exc:
                raise UsageError(f"cannot read crontab {self.file}: {exc.strerror}") from None
        proc = self._crontab(["-l"])
        if proc.returncode != 0:
            if "no crontab" in proc.stderr.lower():
                return ""
            raise UsageError(f"crontab -l failed: {proc.stderr.strip() or proc.returncode}")
        return proc.stdout

    def write(self, text: str) -> None:
        """Replace the crontab with ``text`` (a FILE atomically, keeping its mode)."""
        if self.file is None:
            proc = self._crontab(["-"], text)
            if proc.returncode != 0:
                raise UsageError(f"crontab refused the new table: {proc.stderr.strip()}")
            return
        # A new FILE is private like a user's crontab; an existing one keeps its mode.
        write_atomic(self.file, text, mode=None if self.file.exists() else 0o600)

    @staticmethod
    def _crontab(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(["crontab", *args], input=stdin, capture_output=True, text=True, timeout=30)
        except FileNotFoundError:
            raise UsageError("the crontab program is not installed; pass --crontab FILE "
                             "(or set BATCHKIT_CRONTAB)") from None

    def entries(self) -> list[Entry]:
        """Our entries, in file order."""
        return [e for e in map(parse_entry, self.read().splitlines()) if e is not None]

    def add(self, name: str, schedule: str, command: str, *, job: str | None = None,
            replace: bool = False) -> Entry:
        """Install an entry (appended, or in place of the entry ``name`` with ``replace``)."""
        check_entry_name(name)
        line = render_line(validate_schedule(schedule), command, name, job)
        text = self.read()
        lines = text.splitlines(keepends=True)
        at = [i for i, raw in enumerate(lines) if (e := parse_entry(raw.rstrip("\r\n"))) and e.name == name]
        if at and not replace:
            raise UsageError(f"{self} already has an entry named {name!r}: remove it first "
                             "(batchkit cron remove NAME), pass --replace, or choose another --name")
        if at:
            lines[at[0]] = line + "\n"
            for i in reversed(at[1:]):
                del lines[i]
        else:
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"  # cron needs every line terminated; the line's own bytes stay
            lines.append(line + "\n")
        self.write("".join(lines))
        entry = parse_entry(line)
        assert entry is not None
        return entry

    def remove(self, name: str | None = None) -> list[Entry]:
        """Remove the entry ``name`` (every entry of ours with ``None``); returns what was removed."""
        kept, removed = [], []
        for raw in self.read().splitlines(keepends=True):
            entry = parse_entry(raw.rstrip("\r\n"))
            if entry is not None and (name is None or entry.name == name):
                removed.append(entry)
            else:
                kept.append(raw)
        if removed:
            self.write("".join(kept))
        return removed


def last_result(entry: Entry) -> str:
    """The entry's last run, as :func:`describe_result` says it (``"never run"`` without one)."""
    if not entry.records_results:
        return "not recorded: the entry predates result records; re-add it with --replace"
    return describe_result(read_result(entry.name, entry.home))
