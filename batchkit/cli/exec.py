"""``batchkit exec 'COMMAND {}' (--files ROOT | --input FILE|-)``: one shell command per item.

The command runs through :class:`batchkit.shell.ShellCommand` as a job named ``exec`` with the
command among its arguments, so it has the journal, --resume, the lock and every engine
option of ``batchkit run``. ``--timeout`` stops the command itself (its whole process group).
"""

from __future__ import annotations

import os
from typing import Any

import click

from ..jobs.job import OPS_KWARGS, Job
from .main import EPILOG
from .options import OneLineCommand, Seconds, engine_params, ops_params
from .run import guarded


class ExecCommand(OneLineCommand):
    """``exec``, remembering its command line for the "resume with" hint."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["batchkit.argv"] = [ctx.info_name or "exec", *args]
        return super().parse_args(ctx, args)


def _exec(ctx: click.Context, /, command: str, keep_output: str | None, **kwargs: Any) -> None:
    from ..jobs.shell import ShellCommand, terminate_running
    from .runner import item_source, run_job

    ops_kwargs = {k: kwargs.pop(k) for k in OPS_KWARGS}
    timeout = kwargs.pop("timeout")  # for the command, not the engine: a thread cannot be killed

    def go() -> int:
        shell = ShellCommand(command, timeout=timeout, keep_output=keep_output)
        job = Job(shell, name="exec", backend="thread", writes_stdout=keep_output is None)
        job.teardown(lambda: terminate_running())  # commands a stopped run leaves running do not outlive it
        bound = job.bind()
        items, source_args = item_source(bound, kwargs)
        args = {"command": command, "timeout": timeout,
                "keep_output": os.path.abspath(keep_output) if keep_output else None, **source_args}
        return run_job(bound, kwargs, ops_kwargs, ctx.meta.get("batchkit.argv", ["exec", command]),
                       default_backend="thread", items=items, source_args=args, json_after_data=True)

    ctx.exit(guarded(go))


exec_ = ExecCommand(
    name="exec",
    params=[
        click.Argument(["command"], metavar="'COMMAND {}'"),
        click.Option(["--keep-output"], metavar="DIR", type=click.Path(file_okay=False),
                     help="Save each item's stdout and stderr in DIR (NAME.out, NAME.err) instead of printing."),
        click.Option(["--timeout"], type=Seconds(),
                     help="Fail an item whose command runs longer, killing its process group."),
        *[p for p in engine_params("thread") if p.name != "timeout"],
        *ops_params(),
    ],
    callback=click.pass_context(_exec),
    short_help="Run one shell command per item.",
    help="""Run one shell command per item: 'gzip -9 {}' --files logs --include '*.log'.

    {} becomes the item, shell-quoted: a name with spaces, quotes, ;, $(...), backticks, *,
    a newline or a leading - is one literal argument and is never executed. {name}, {stem}
    and {parent} are its base name, base name without suffix, and directory; with no
    placeholder the item is appended. A non-zero exit, a signal or --timeout fails the item
    with its exit code and the tail of its stderr. Each command's stdout is printed in one
    piece (or saved with --keep-output); the summary goes to stderr.
    """,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
