"""``@ops_options``: the operations options shared by ``batchkit run`` and ``batchkit exec``.

The decorated command receives ``log_file``, ``log_format``, ``notify`` (a tuple: the option may
be given several times), ``notify_on``, ``ping``, ``metrics_file`` and ``run_name`` as keyword
arguments, ready for ``Operations(job, **those)``.
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


def _targets(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    if not values:
        return values
    from ..ops.mail import is_mailto
    from ..ops.operations import check_notify_target

    for value in values:
        try:
            check_notify_target(value)
        except UsageError as exc:
            if is_mailto(value):
                raise click.BadParameter(str(exc).replace("--notify ", "", 1)) from None
            raise click.BadParameter(f"{redact(value)!r} is not an http(s):// URL or mailto:ADDRESS "
                                     "(e.g. https://hooks.example.com/T or mailto:ops@example.com)") from None
    return values


_OPTIONS = [
    click.option("--log-file", type=click.Path(dir_okay=False, writable=True), metavar="PATH",
                 help="Append one line per event (run start/end, chunk done, item failed) to PATH."),
    click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
                 help="Format of --log-file lines."),
    click.option("--notify", metavar="URL|mailto:ADDR", multiple=True, callback=_targets,
                 help="When the run fails, POST a JSON summary (with a Slack-compatible 'text') to URL, or email it "
                      "to mailto:ADDR[,ADDR] through $BATCHKIT_SMTP (host[:port]). Repeatable."),
    click.option("--notify-on", type=click.Choice(["failure", "always"]), default="failure", show_default=True,
                 help="When to --notify."),
    click.option("--ping", metavar="URL", callback=_url,
                 help="healthchecks.io-style pings: URL/start, then URL on success or URL/fail."),
    click.option("--metrics-file", type=click.Path(dir_okay=False), metavar="PATH",
                 help="Write Prometheus textfile-collector metrics for this job to PATH (shared by jobs)."),
    click.option("--run-name", metavar="NAME",
                 help="Name this run [default: $BATCHKIT_CRON_ENTRY, a cron entry's name]: a name=\"NAME\" label "
                      "on its --metrics-file series, and said in notifications."),
]


def ops_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add --log-file, --log-format, --notify, --notify-on, --ping, --metrics-file and --run-name to a command."""
    for option in reversed(_OPTIONS):
        f = option(f)
    return f
