"""``@ops_options``: the operations options shared by ``batchkit run`` and ``batchkit exec``.

The decorated command receives ``log_file``, ``log_format``, ``notify``, ``notify_on``, ``ping``
and ``metrics_file`` as keyword arguments, ready for ``Operations(job, **those)``.
"""

from __future__ import annotations

from typing import Any, Callable

import click

from ..errors import UsageError
from ..ops.notify import check_url
from ..secrets import redact


def _url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_url(value)
    except UsageError:
        raise click.BadParameter(f"{redact(value)!r} is not an http:// or https:// URL "
                                 "(e.g. https://hc-ping.com/UUID)") from None


_OPTIONS = [
    click.option("--log-file", type=click.Path(dir_okay=False, writable=True), metavar="PATH",
                 help="Append one line per event (run start/end, chunk done, item failed) to PATH."),
    click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
                 help="Format of --log-file lines."),
    click.option("--notify", metavar="URL", callback=_url,
                 help="POST a JSON summary (with a Slack-compatible 'text') to URL when the run fails."),
    click.option("--notify-on", type=click.Choice(["failure", "always"]), default="failure", show_default=True,
                 help="When to --notify."),
    click.option("--ping", metavar="URL", callback=_url,
                 help="healthchecks.io-style pings: URL/start, then URL on success or URL/fail."),
    click.option("--metrics-file", type=click.Path(dir_okay=False), metavar="PATH",
                 help="Write Prometheus textfile-collector metrics for this job to PATH (shared by jobs)."),
]


def ops_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add --log-file, --log-format, --notify, --notify-on, --ping and --metrics-file to a command."""
    for option in reversed(_OPTIONS):
        f = option(f)
    return f
