"""The ``batchkit`` group and the lazy loading of its sub-commands."""

from __future__ import annotations

import atexit
import gc
import importlib
import os
import time
from typing import Any

import click

# name -> (module, attribute, one-line help). Modules are imported only when the command runs.
COMMANDS: dict[str, tuple[str, str, str]] = {
    # running jobs
    "run": ("batchkit.cli.run", "run", "Run a job (a file, a name or module:attr) over items or files."),
    "exec": ("batchkit.cli.exec", "exec_", "Run one shell command per item: 'gzip -9 {}' --files logs."),
    "jobs": ("batchkit.cli.jobs", "jobs", "List the jobs that `batchkit run` can find."),
    # nightly operations
    "cron": ("batchkit.cli.cron", "cron", "Add, list or remove crontab entries that run batchkit jobs."),
    "schedule": ("batchkit.cli.schedule", "schedule", "Run jobs on cron schedules in the foreground (no cron)."),
    "history": ("batchkit.cli.history", "history", "Past runs with state, counts, duration and throughput."),
    "show": ("batchkit.cli.history", "show", "One run's failures with their messages."),
    "status": ("batchkit.cli.history", "status", "Runs in progress: done, failed, pending, rate, ETA."),
    "queue": ("batchkit.cli.queue", "queue", "A durable queue: put items, see counts, read results by id."),
}

def _exit_codes() -> str:
    from ..errors import ExitCode

    return "\b\nExit codes:\n" + "".join(f"  {code:<4} {text}\n" for code, text in ExitCode.describe())


EPILOG = _exit_codes()


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS:
            module, attr, _ = COMMANDS[name]
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: Any) -> None:
        # Short help from the table, so listing commands imports none of them.
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="batchkit")
def cli() -> None:
    """batchkit: run a job over many items or files, in parallel, without losing any."""


_exit_hook: list = []


def _no_final_collection() -> None:
    # The command's process is about to end: its last cyclic garbage collection would only walk
    # every object once more before the memory is handed back (≈ 15 ms after a 100k-file run,
    # ≈ 5 ms after a short one). Freezing them at exit skips that walk; files, pools and locks are
    # closed by then (by the command itself and the atexit handlers registered after this one,
    # which run before it).
    if not _exit_hook:
        _exit_hook.append(atexit.register(gc.freeze))


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point.

    Run by a cron entry or a Windows task (``$BATCHKIT_CRON_ENTRY`` set to the entry's name), it
    records how the command ended, whatever the way (an exit code, an error, an exception), for
    ``batchkit cron list``: see :mod:`batchkit.ops.lastrun`.
    """
    _no_final_collection()
    # Popped: commands this one starts (exec's, a scheduler's jobs) are not the entry's run.
    entry = os.environ.pop("BATCHKIT_CRON_ENTRY", None)
    if not entry:
        return cli.main(args=argv, prog_name="batchkit")
    from ..ops import lastrun

    lastrun.set_current_entry(entry)
    started, code, error = time.time(), 1, None
    try:
        result = cli.main(args=argv, prog_name="batchkit")
        code = 0
        return result
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        raise
    except KeyboardInterrupt:
        code = 130
        raise
    except BaseException as exc:  # a bug: Python prints the traceback and exits 1
        error = type(exc).__name__
        raise
    finally:
        lastrun.record_result(entry, code, started, error=error)
