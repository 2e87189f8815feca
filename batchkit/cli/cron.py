"""``batchkit cron add|list|remove``: tagged crontab entries (or Windows tasks) that run batchkit jobs."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from ..errors import BatchkitError, UsageError

CRONTAB_HELP = "Edit this crontab FILE instead of the user's crontab (default: $BATCHKIT_CRONTAB)."
WINDOWS_HELP = ("Use the Windows Task Scheduler (schtasks) instead of a crontab; elsewhere `add` prints "
                "what it would run (see BATCHKIT_SCHTASKS in `batchkit cron --help`).")

# cron add's own options, and whether each takes a value: they may also stand after the job's arguments.
ADD_OPTIONS = {"--name": True, "--crontab": True, "--log": True, "--replace": False, "--print": False,
               "--windows": False}


def _fail(exc: BaseException, code: int = 2) -> None:
    click.echo(f"batchkit: error: {exc}", err=True)
    sys.exit(code)


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one line on stderr and exit 2 (usage) or 3 (anything else)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .options import CliError

        try:
            return fn(*args, **kwargs)
        except (UsageError, CliError) as exc:
            _fail(getattr(exc, "message", exc), 2)
        except (BatchkitError, OSError) as exc:
            _fail(exc, 3)

    return wrapper


@click.group("cron")
def cron() -> None:
    """Install, list and remove crontab entries that run batchkit jobs.

    \b
    batchkit cron add '0 3 * * *' jobs/nightly.py --input /srv/list.txt
    batchkit cron list
    batchkit cron remove nightly

    With --windows, the same for the Windows Task Scheduler (tasks \\batchkit\\NAME, through
    schtasks). BATCHKIT_SCHTASKS names the schtasks program to run on any system (without it,
    only on Windows; elsewhere `cron add --windows` prints what it would run).
    """


def split_own_options(args: list[str], job_cmd: click.Command) -> tuple[dict[str, Any], list[str]]:
    """cron add's own options among ``args`` (what follows JOB), and the job's arguments.

    An option the job itself has stays the job's (system_status has its own --log): put cron
    add's options before the schedule to be unambiguous. A value that follows a job option
    taking one stays the job's too. After ``--`` everything is the job's.
    """
    takes_value: dict[str, bool] = {}
    for p in job_cmd.params:
        if isinstance(p, click.Option):
            for opt in (*p.opts, *p.secondary_opts):
                takes_value[opt] = not (p.is_flag or p.count)
    own: dict[str, Any] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            rest.extend(args[i:])
            break
        opt, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if opt in takes_value:
            rest.append(word)
            if takes_value[opt] and not eq and i + 1 < len(args):
                rest.append(args[i + 1])
                i += 1
        elif opt in ADD_OPTIONS:
            if not ADD_OPTIONS[opt]:
                if eq:
                    raise UsageError(f"{opt} takes no value")
                own[opt] = True
            elif eq:
                own[opt] = value
            elif i + 1 < len(args):
                own[opt] = args[i + 1]
                i += 1
            else:
                raise UsageError(f"{opt} needs a value")
        else:
            rest.append(word)
        i += 1
    return own, rest


def check_job_args(job: Any, command: click.Command, shown: str, args: list[str]) -> dict[str, Any]:
    """Parse ``args`` with the job's ``command`` (:func:`batchkit.cli.run.job_command`) exactly as
    ``batchkit run SHOWN ARGS`` would, without running anything; return the parsed values.
    Errors are one line (CliError or UsageError), naming ``batchkit run SHOWN --help``."""
    from .main import cli
    from .run import run

    parent = click.Context(run, info_name="run", parent=click.Context(cli, info_name="batchkit"))
    with command.make_context(shown, list(args), parent=parent) as ctx:
        values = dict(ctx.params)
    # What `batchkit run` refuses before it starts, and a cron job cannot do.
    given = [o for o in ("--input", "--files") if values.get({"--input": "input_file", "--files": "files_root"}[o])]
    if job.has_source and given:
        raise UsageError(f"job {job.name!r} reads its own items; drop {' and '.join(given)}")
    if not job.has_source and not given:
        raise UsageError(f"job {job.name!r} needs items: --input FILE or --files ROOT")
    if values.get("input_file") == "-":
        raise UsageError("--input - reads stdin, and a scheduled run has none: give a file")
    return values


@cron.command("add", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--name", help="Entry name (default: the job's name).")
@click.option("--crontab", "crontab_file", type=click.Path(dir_okay=False), help=CRONTAB_HELP)
@click.option("--log", "log_file", type=click.Path(dir_okay=False),
              help="Append the job's output here (default: $BATCHKIT_HOME/logs/NAME.log).")
@click.option("--replace", is_flag=True, help="Replace an existing entry with the same name.")
@click.option("--print", "print_only", is_flag=True, help="Print the crontab line (or task) instead of installing it.")
@click.option("--windows", is_flag=True, help=WINDOWS_HELP)
@click.argument("schedule")
@click.argument("job")
@click.argument("job_args", nargs=-1, type=click.UNPROCESSED)
@_guarded
def add(name: str | None, crontab_file: str | None, log_file: str | None, replace: bool, print_only: bool,
        windows: bool, schedule: str, job: str, job_args: tuple[str, ...]) -> None:
    """Add an entry running JOB [JOB ARGS] on SCHEDULE (one quoted argument: '0 3 * * *').

    The job and its arguments are checked now as `batchkit run` would parse them (an unknown
    option, a missing ROOT, a bad value: exit 2, nothing installed). This command's own
    options may also follow the job's arguments, except one the job itself has (put those
    before SCHEDULE).

    The entry pins the working directory, PATH, BATCHKIT_HOME, the interpreter and the job file
    as absolute paths, runs with --quiet (silent unless something failed) and the usual
    one-run-at-a-time lock, and appends its output to a log file. Lines already in the crontab
    are left exactly as they were. `batchkit cron list` shows each entry's last result.
    """
    from ..ops import cron as c
    from ..state.journal import default_home

    if len(schedule.split()) == 1 and not schedule.startswith("@"):
        raise UsageError(f"SCHEDULE {schedule!r} is one field: quote the whole schedule, e.g. '0 3 * * *'")
    schedule = c.validate_schedule(schedule)
    spec, found = c.resolve_job(job)
    from .run import job_command

    command = job_command(found, spec)
    own, args = split_own_options(list(job_args), command)
    name = own.get("--name", name) or found.name
    crontab_file = own.get("--crontab", crontab_file)
    log_file = own.get("--log", log_file)
    replace, print_only, windows = (bool(own.get(f"--{o}", v)) for o, v in
                                    (("replace", replace), ("print", print_only), ("windows", windows)))
    c.check_no_secrets(args)  # first: a parse error could echo the secret
    check_job_args(found, command, job, args)
    c.check_entry_name(name)
    log = Path(log_file).absolute() if log_file else default_home() / "logs" / f"{name}.log"
    if windows:
        _add_task(name, schedule, spec, args, log, replace, print_only)
        return
    command = c.render_command(c.build_command(spec, args, log=log, name=name))
    if print_only:
        click.echo(c.render_line(schedule, command, name, found.name))
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    tab = c.Crontab(crontab_file)
    entry = tab.add(name, schedule, command, job=found.name, replace=replace)
    when = c.next_run(entry.schedule)
    click.echo(f"added {entry.name!r} to {tab}: next run "
               f"{when.strftime('%Y-%m-%d %H:%M') if when else 'at reboot'}; output goes to {log}")


def _add_task(name: str, schedule: str, spec: str, args: list[str], log: Path, replace: bool,
              print_only: bool) -> None:
    from ..ops import schtasks as w

    script = w.wrapper_script(name, schedule, spec, args, log=log)
    path = w.wrapper_path(name)
    line = w.command_line(w.create_args(name, schedule, path))
    if print_only or w.program() is None:
        click.echo(f"rem {path}\r\n{script}".replace("\r\n", "\n"), nl=False)
        click.echo(line)
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    w.Schtasks().create(name, schedule, script, replace=replace)
    click.echo(f"added task {w.FOLDER}\\{name} to the Task Scheduler ({schedule}); it runs {path}; "
               f"output goes to {log}")


@cron.command("list")
@click.option("--crontab", "crontab_file", type=click.Path(dir_okay=False), help=CRONTAB_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry.")
@click.option("--windows", is_flag=True, help="List our Windows Task Scheduler tasks (schtasks /Query).")
@_guarded
def list_(crontab_file: str | None, as_json: bool, windows: bool) -> None:
    """Our entries: name, schedule, next run and the last run's result (exit code and time)."""
    from ..ops import cron as c
    from ..ops import lastrun

    rows = []
    if windows:
        from ..ops.schtasks import Schtasks

        where = "the Task Scheduler"
        for task in Schtasks().query():
            result = lastrun.read_result(task.name, task.home)
            rows.append({"name": task.name, "schedule": task.schedule or "?", "next_run": task.next_run,
                         "last_result": lastrun.describe_result(result), "last": result,
                         "status": task.status, "command": task.command})
    else:
        tab = c.Crontab(crontab_file)
        where = str(tab)
        for entry in tab.entries():
            when = c.next_run(entry.schedule)
            rows.append({"name": entry.name, "schedule": entry.schedule, "job": entry.job,
                         "next_run": when.strftime("%Y-%m-%d %H:%M") if when else "at reboot",
                         "last_result": c.last_result(entry),
                         "last": lastrun.read_result(entry.name, entry.home) if entry.records_results else None,
                         "command": entry.command})
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    if not rows:
        click.echo(f"no batchkit entries in {where}")
        return
    headers = ("NAME", "SCHEDULE", "NEXT RUN", "LAST RESULT")
    table = [headers] + [(r["name"], r["schedule"], r["next_run"], r["last_result"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])


@cron.command("remove")
@click.argument("name", required=False)
@click.option("--all", "remove_all", is_flag=True, help="Remove every batchkit entry.")
@click.option("--crontab", "crontab_file", type=click.Path(dir_okay=False), help=CRONTAB_HELP)
@click.option("--windows", is_flag=True, help="Remove Windows Task Scheduler tasks (schtasks /Delete).")
@_guarded
def remove(name: str | None, remove_all: bool, crontab_file: str | None, windows: bool) -> None:
    """Remove the entry NAME (or every batchkit entry with --all); other lines stay untouched."""
    from ..ops import cron as c

    if bool(name) == remove_all:
        raise UsageError("give an entry NAME or --all (`batchkit cron list` shows the names)")
    if windows:
        from ..ops.schtasks import Schtasks

        tasks = Schtasks()
        where = "the Task Scheduler"
        removed = [t for t in tasks.query() if remove_all or t.name == name]
        for task in removed:
            tasks.delete(task)
    else:
        tab = c.Crontab(crontab_file)
        where = str(tab)
        removed = tab.remove(None if remove_all else name)
    if not removed and not remove_all:
        raise UsageError(f"no batchkit entry named {name!r} in {where}; `batchkit cron list"
                         f"{' --windows' if windows else ''}` shows them")
    click.echo(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} from {where}")
