"""``batchkit cron add|list|remove``: tagged crontab entries that run batchkit jobs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from ..errors import BatchkitError, UsageError

CRONTAB_HELP = "Edit this crontab FILE instead of the user's crontab (default: $BATCHKIT_CRONTAB)."


def _fail(exc: BaseException, code: int = 2) -> None:
    click.echo(f"batchkit: error: {exc}", err=True)
    sys.exit(code)


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one line on stderr and exit 2 (usage) or 3 (anything else)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UsageError as exc:
            _fail(exc, 2)
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
    """


@cron.command("add", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--name", help="Entry name (default: the job's name).")
@click.option("--crontab", "crontab_file", type=click.Path(dir_okay=False), help=CRONTAB_HELP)
@click.option("--log", "log_file", type=click.Path(dir_okay=False),
              help="Append the job's output here (default: $BATCHKIT_HOME/logs/NAME.log).")
@click.option("--replace", is_flag=True, help="Replace an existing entry with the same name.")
@click.option("--print", "print_only", is_flag=True, help="Print the crontab line instead of installing it.")
@click.option("--windows", is_flag=True, help="Print the equivalent Windows 'schtasks /Create' command instead.")
@click.argument("schedule")
@click.argument("job")
@click.argument("job_args", nargs=-1, type=click.UNPROCESSED)
@_guarded
def add(name: str | None, crontab_file: str | None, log_file: str | None, replace: bool, print_only: bool,
        windows: bool, schedule: str, job: str, job_args: tuple[str, ...]) -> None:
    """Add an entry running JOB [JOB ARGS] on SCHEDULE (one quoted argument: '0 3 * * *').

    The entry pins the working directory, PATH, BATCHKIT_HOME, the interpreter and the job file
    as absolute paths, runs with --quiet (silent unless something failed) and the usual
    one-run-at-a-time lock, and appends its output to a log file. Lines already in the crontab
    are left exactly as they were.
    """
    from ..ops import cron as c
    from ..state.journal import default_home

    if len(schedule.split()) == 1 and not schedule.startswith("@"):
        raise UsageError(f"SCHEDULE {schedule!r} is one field: quote the whole schedule, e.g. '0 3 * * *'")
    schedule = c.validate_schedule(schedule)
    spec, job_name = c.resolve_job(job)
    name = name or job_name
    log = Path(log_file).absolute() if log_file else default_home() / "logs" / f"{name}.log"
    if windows:
        click.echo(c.schtasks_command(name, schedule, spec, list(job_args), log=str(log)))
        return
    command = c.render_command(c.build_command(spec, list(job_args), log=log))
    if print_only:
        click.echo(c.render_line(schedule, command, name, job_name))
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    tab = c.Crontab(crontab_file)
    entry = tab.add(name, schedule, command, job=job_name, replace=replace)
    when = c.next_run(entry.schedule)
    click.echo(f"added {entry.name!r} to {tab}: next run "
               f"{when.strftime('%Y-%m-%d %H:%M') if when else 'at reboot'}; output goes to {log}")


@cron.command("list")
@click.option("--crontab", "crontab_file", type=click.Path(dir_okay=False), help=CRONTAB_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry.")
@_guarded
def list_(crontab_file: str | None, as_json: bool) -> None:
    """Our entries: name, schedule, next run and the last run's result from history."""
    from ..ops import cron as c

    tab = c.Crontab(crontab_file)
    rows = []
    for entry in tab.entries():
        when = c.next_run(entry.schedule)
        rows.append({"name": entry.name, "schedule": entry.schedule, "job": entry.job,
                     "next_run": when.strftime("%Y-%m-%d %H:%M") if when else "at reboot",
                     "last_result": c.last_result(entry), "command": entry.command})
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    if not rows:
        click.echo(f"no batchkit entries in {tab}")
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
@_guarded
def remove(name: str | None, remove_all: bool, crontab_file: str | None) -> None:
    """Remove the entry NAME (or every batchkit entry with --all); other lines stay untouched."""
    from ..ops import cron as c

    if bool(name) == remove_all:
        raise UsageError("give an entry NAME or --all (`batchkit cron list` shows the names)")
    tab = c.Crontab(crontab_file)
    removed = tab.remove(None if remove_all else name)
    if not removed and not remove_all:
        raise UsageError(f"no batchkit entry named {name!r} in {tab}; `batchkit cron list` shows them")
    click.echo(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} from {tab}")

