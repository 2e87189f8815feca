"""What ``batchkit run`` and ``batchkit exec`` share: the engine options and one-line errors.

Bad input must end in one line on stderr and exit 2, never click's three-line usage block
nor a traceback: :class:`OneLineErrors` turns every click usage error into :class:`CliError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ..backends import NAMES as BACKENDS
from ..jobs.params import Param


class CliError(click.ClickException):
    """A one-line error that exits with ``exit_code`` (2 unless given)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"batchkit: error: {self.message}", err=True)


class OneLineErrors:
    """Mixin for click commands: usage errors become one line naming the command's --help."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)  # type: ignore[misc]
        except click.UsageError as exc:
            if isinstance(exc, CliError):
                raise
            where = " ".join(p for p in (parent.command_path if parent else "batchkit", info_name) if p)
            raise CliError(f"{exc.format_message()} (see '{where} --help')") from None


class OneLineCommand(OneLineErrors, click.Command):
    """A click command with one-line usage errors."""


class ChunkSize(click.ParamType):
    """``auto`` or a whole number >= 1."""

    name = "N|auto"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if value == "auto" or isinstance(value, int):
            return value
        try:
            n = int(value)
        except ValueError:
            self.fail(f"{value!r} is not a whole number or 'auto'", param, ctx)
        if n < 1:
            self.fail(f"{value!r}: use a whole number >= 1 or 'auto'", param, ctx)
        return n


class MaxFailures(click.ParamType):
    """A count (``10``) or a percentage of the items (``5%``)."""

    name = "N|P%"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        try:
            if text.endswith("%"):
                pct = float(text[:-1])
                if 0 < pct < 100:
                    return pct / 100
            elif int(text) >= 1:
                return int(text)
        except ValueError:
            pass
        self.fail(f"{value!r}: use a count >= 1 (e.g. 10) or a percentage (e.g. 5%)", param, ctx)


class Seconds(click.ParamType):
    """A duration: ``90``, ``1.5``, ``90s``, ``15m``, ``2h``."""

    name = "SECONDS"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from ..errors import UsageError
        from ..units import parse_duration

        try:
            seconds = parse_duration(value)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)
        return seconds


def engine_params(default_backend: str | None = None, item_options: bool = True) -> list[click.Parameter]:
    """The options every run takes: item sources (unless the job has its own), engine,
    retries, journal, output."""
    o = click.Option
    backend_help = "Where items run." + (f" [default: {default_backend}]" if default_backend else "")
    items = [
        o(["--input", "input_file"], metavar="FILE|-",
          help="Read items from FILE, one per line ('-' for stdin; empty lines are skipped)."),
        o(["--files", "files_root"], metavar="ROOT", help="Run on every file under ROOT."),
        o(["--include"], multiple=True, metavar="GLOB", help="With --files: only names matching GLOB (repeatable)."),
        o(["--exclude"], multiple=True, metavar="GLOB", help="With --files: skip names and directories matching GLOB."),
        o(["--watch"], is_flag=True,
          help="With --files: keep running and process files as they arrive or change, each version once "
               "(a restart skips what is done; stop with Ctrl-C or SIGTERM)."),
        o(["--settle"], type=Seconds(), default=2.0, show_default=True,
          help="With --watch: a file is complete once its size and time are unchanged this long."),
        o(["--poll"], is_flag=True, help="With --watch: poll instead of OS events (network file systems)."),
        o(["--queue"], metavar="NAME",
          help="Consume the durable queue NAME (items put with `batchkit queue put` or bk.Queue); "
               "several consumers may run at once."),
        o(["--follow"], is_flag=True, help="With --queue: keep waiting for new items until stopped."),
        o(["--lease"], type=Seconds(), default=60.0, show_default=True,
          help="With --queue: how long a claimed item stays ours if this process dies without giving it back."),
    ]
    return (items if item_options else []) + [
        o(["--backend"], type=click.Choice(BACKENDS), help=backend_help),
        o(["--workers"], type=click.IntRange(min=1), help="Parallel workers [default: CPU count]."),
        o(["--chunk-size"], type=ChunkSize(), default="auto", show_default=True,
          help="Items per task; 'auto' sizes chunks to take ~0.2-2 s."),
        o(["--max-failures"], type=MaxFailures(),
          help="Stop dispatching after N failures or P% of the items."),
        o(["--ordered/--unordered"], default=True, show_default=True,
          help="Write --output lines in input order, or as items finish."),
        o(["--progress/--no-progress"], default=None,
          help="Progress bar on a terminal, log lines otherwise [default: automatic]."),
        o(["--quiet", "-q"], is_flag=True,
          help="No progress or notes; the summary and failures only if something failed (for cron)."),
        o(["--output"], type=click.Path(dir_okay=False, allow_dash=True), metavar="FILE|-",
          help="Write one JSON line per item (key, ok, value or error, attempts, duration) to FILE "
               "('-': stdout, and the summary goes to stderr)."),
        o(["--json", "json_summary"], is_flag=True, help="Print the run summary as one JSON object on stdout."),
        o(["--show-failures"], is_flag=True, help="Print the tracebacks of failed items."),
        o(["--scheduler"], metavar="ADDRESS",
          help="Run on this Dask scheduler (tcp://host:8786); implies --backend dask."),
        o(["--retries"], type=click.IntRange(min=0),
          help="Retry a failed item up to N times (overrides the job's own retry policy; 0: never)."),
        o(["--retry-backoff"], type=Seconds(), default=0.5, show_default=True,
          help="First retry delay; doubles each retry, with jitter."),
        o(["--retry-on"], metavar="NAME[,NAME]",
          help="Only retry these exception types (and their subclasses), e.g. TimeoutError,OSError."),
        o(["--retry-if"], metavar="REGEX",
          help="Only retry errors whose 'Type: message' matches REGEX, e.g. '503|timed out'."),
        o(["--timeout"], type=Seconds(), help="Fail an item still running after this long (process backend: kill it)."),
        o(["--resume"], is_flag=True, help="Continue the latest unfinished run of this job and arguments."),
        o(["--retry-failed"], is_flag=True, help="Re-run only the items that failed in the latest run."),
        o(["--no-journal"], is_flag=True, help="Do not record the run in $BATCHKIT_HOME/batchkit.db."),
        o(["--wait-lock"], type=Seconds(), default=0.0,
          help="If another run of this job holds the lock, wait up to this long [default: exit 75]."),
    ]


def ops_params() -> list[click.Parameter]:
    """The operations options (log file, pings, notifications, metrics), from ops_options."""
    from .ops_options import ops_options

    def target(**kwargs: Any) -> None:
        """Placeholder for collecting the options."""

    collected = getattr(ops_options(target), "__click_params__", [])
    return list(reversed(collected))  # click decorators collect parameters in reverse




class JobPath(click.Path):
    """A job's path: never the empty string (what ``"$ROOT"`` gives when ROOT is unset, and
    what ``Path("")`` turns into the current directory), and for a source's arguments (ROOT),
    a path that exists."""

    def __init__(self, *, must_exist: bool = False) -> None:
        super().__init__(path_type=Path)
        self.must_exist = must_exist

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, (str, bytes)) and not value:
            self.fail("'' is not a path; give a file or directory (is a shell variable unset?)", param, ctx)
        if self.must_exist and not os.path.lexists(value):
            self.fail(f"{os.fsdecode(value)}: no such file or directory", param, ctx)
        return super().convert(value, param, ctx)


def job_params(params: list[Param]) -> list[click.Parameter]:
    """Click parameters for a job's own options and arguments.

    Path-typed ones refuse ``""``; a source's path arguments (ROOT) must exist, while path
    options may name files the job creates (``--manifest``).
    """
    out: list[click.Parameter] = []
    for p in params:
        if p.choices is not None:
            kind: Any = click.Choice([str(c) for c in p.choices])
        elif p.type is Path:
            kind = JobPath(must_exist=p.argument)
        else:
            kind = {int: click.INT, float: click.FLOAT, bool: click.BOOL}.get(p.type, click.STRING)
        if p.argument:
            out.append(click.Argument([p.name], type=kind, required=True, metavar=p.name.upper()))
            continue
        flag = "--" + p.name.replace("_", "-")
        if p.type is bool and not p.multiple:
            out.append(click.Option([f"{flag}/--no-{flag[2:]}", p.name], default=bool(p.default),
                                    show_default=True, help=p.help))
            continue
        default = p.default
        if p.multiple:
            default = tuple(default or ())
        out.append(click.Option([flag, p.name], type=kind, multiple=p.multiple, required=p.required,
                                default=default, show_default=default not in (None, ()), help=p.help))
    return out
