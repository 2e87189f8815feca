"""``batchkit run JOB [JOB ARGS] [OPTIONS]``: run a job found by path, name or ``module:attr``.

``run`` is a click group whose sub-commands are the jobs: naming a job loads it and builds a
command from its own parameters plus the engine and operations options, so
``batchkit run checksum --help`` shows checksum's options. Listing the jobs (``batchkit run
--help``) reads job files without importing them.
"""

from __future__ import annotations

import functools
import inspect
import shutil
from pathlib import Path
from typing import Any

import click

from ..errors import BackendError, ExitCode, UsageError
from ..jobs.bound import ConvertItems
from ..jobs.job import OPS_KWARGS, Job
from ..jobs.params import Param, python_type, signature_of
from .main import EPILOG
from .options import CliError, OneLineCommand, OneLineErrors, engine_params, job_params, ops_params

# Jobs listed by a bare `batchkit run`: enough to pick one, short enough for one screen.
SHORT_LIST = 20


class RunGroup(OneLineErrors, click.Group):
    """Sub-commands are jobs, resolved when named."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # A bare `batchkit run` is someone looking for what to run: the jobs and where help is,
        # on one screen, rather than the whole help behind "error:".
        if not args and not ctx.resilient_parsing:
            click.echo(short_list(), err=True)
            ctx.exit(ExitCode.USAGE)
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        from ..jobs.find import list_jobs

        return [info.name for info in list_jobs()]

    def format_commands(self, ctx: click.Context, formatter: Any) -> None:
        from ..jobs.find import list_jobs

        rows = [(info.name, info.help) for info in list_jobs()]
        if rows:
            with formatter.section("Jobs found (batchkit run JOB --help for a job's options)"):
                formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from ..jobs.find import find_job

        try:
            job = find_job(name)
        except UsageError as exc:
            raise CliError(str(exc)) from None
        return job_command(job, name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple:
        name, cmd, rest = super().resolve_command(ctx, args)
        # Kept for the "resume with" hint: the command line exactly as given.
        ctx.meta["batchkit.argv"] = ["run", *args]
        return name, cmd, rest


def short_list() -> str:
    """What a bare ``batchkit run`` prints: usage, the jobs found (one line each), where help is."""
    from ..jobs.find import list_jobs

    found = list(list_jobs())
    width = shutil.get_terminal_size((100, 24)).columns
    lines = ["Usage: batchkit run JOB [JOB ARGS]... [OPTIONS]", ""]
    if found:
        name_width = min(24, max(len(j.name) for j in found))
        lines.append("Jobs found:")
        for j in found[:SHORT_LIST]:
            line = f"  {j.name:<{name_width}}  {j.help or ''}".rstrip()
            lines.append(line if len(line) <= width else line[:max(width - 3, 20)] + "...")
        if len(found) > SHORT_LIST:
            lines.append(f"  ... and {len(found) - SHORT_LIST} more: `batchkit jobs` lists them all")
    else:
        lines.append("No jobs found: put job files in ./jobs or set BATCHKIT_JOBS_PATH.")
    lines += ["", "JOB may also be a path to a job file or module:attr.",
              "`batchkit run JOB --help` shows a job's options; `batchkit run --help` says more."]
    return "\n".join(lines)


class JobCommand(OneLineCommand):
    """One job as a click command."""


def job_command(job: Job, spec: str) -> click.Command:
    """A click command running ``job`` (named ``spec`` on the command line)."""
    try:
        params = job.params()
    except UsageError as exc:
        raise CliError(str(exc)) from None
    callback = functools.partial(_run_job, job, params)
    return JobCommand(
        name=spec,
        params=[*job_params(params), *engine_params(job.backend or "process", item_options=not job.has_source),
                *ops_params()],
        callback=click.pass_context(callback),
        help=job.description,
        short_help=job.help,
        epilog=EPILOG,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    )


def _run_job(job: Job, params: list[Param], ctx: click.Context, /, **kwargs: Any) -> None:
    from .runner import run_job

    job_values = {p.name: _from_cli(p, kwargs.pop(p.name)) for p in params}
    ops_kwargs = {k: kwargs.pop(k) for k in OPS_KWARGS}
    argv = ctx.meta.get("batchkit.argv") or ["run", ctx.info_name or job.name]
    generic = bool(kwargs.get("input_file") or kwargs.get("files_root") or kwargs.get("queue"))
    code = guarded(lambda: run_job(_bind(job, job_values, generic), kwargs, ops_kwargs, argv))
    ctx.exit(code)


def _bind(job: Job, values: dict, generic_items: bool) -> Any:
    bound = job.bind(**values)
    kind = _item_converter(job) if generic_items else None
    if kind is not None:
        bound.fn = ConvertItems(bound.fn, kind)
    return bound


def _from_cli(p: Param, value: Any) -> Any:
    if p.choices is not None and value is not None:
        by_text = {str(c): c for c in p.choices}  # click.Choice gives text; Literal[1, 2] wants ints
        return by_text.get(value, value)
    if p.multiple and value is not None:
        return list(value)
    return value


def _item_converter(job: Job) -> type | None:
    """What ``--input`` lines (text) and ``--files`` items (paths) are converted to: the type
    the job's first parameter is annotated with, if it is str, int, float or Path."""
    fn = job.steps[0][1]
    params, hints = signature_of(fn)
    annotation = hints.get(params[0].name, params[0].annotation)
    if annotation is inspect.Parameter.empty:
        return None
    kind, _, _ = python_type(annotation, None)
    return kind if kind in (str, int, float, Path) else None


def guarded(call: Any) -> int:
    """Run ``call``; turn batchkit's own errors into one line and an exit code."""
    try:
        return call()
    except UsageError as exc:
        raise CliError(str(exc)) from None
    except BackendError as exc:
        raise CliError(str(exc), 3) from None


@click.group(cls=RunGroup, epilog=EPILOG, subcommand_metavar="JOB [JOB ARGS]...",
             context_settings={"help_option_names": ["-h", "--help"]})
def run() -> None:
    """Run a job: a path to a job file, a job name, or module:attr.

    Names are found in ./jobs, in $BATCHKIT_JOBS_PATH, among the ready-made jobs and in the
    'batchkit.jobs.job' entry-point group. `batchkit run JOB --help` shows the job's options.
    """
