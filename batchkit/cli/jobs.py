"""``batchkit jobs``: every job ``batchkit run`` can find, one line each, without importing any."""

from __future__ import annotations

import click

from .options import OneLineCommand


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
def jobs() -> None:
    """List the jobs found in ./jobs, $BATCHKIT_JOBS_PATH, the ready-made jobs and entry points.

    Each line: the name to pass to `batchkit run`, what the job does, and where it was found.
    """
    from ..jobs.find import list_jobs

    found = list(list_jobs())
    if not found:
        click.echo("no jobs found: put job files in ./jobs or set BATCHKIT_JOBS_PATH", err=True)
        return
    width = min(28, max(len(j.name) for j in found))
    for j in found:
        click.echo(f"{j.name:<{width}}  {j.help or '(no description)'}  [{j.where}]")
