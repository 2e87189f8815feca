"""``batchkit schedule FILE`` / ``batchkit schedule --every 10m JOB [ARGS]``: cron without cron."""

from __future__ import annotations

import sys

import click

from ..errors import UsageError


@click.command("schedule", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--every", metavar="DURATION", help="Run JOB [ARGS] at start-up, then every DURATION (10m, 1h).")
@click.option("--grace", default="1h", show_default=True, metavar="DURATION",
              help="At start-up, run a job whose run was missed at most this long ago (0: never).")
@click.option("--stop-timeout", default="30s", show_default=True, metavar="DURATION",
              help="On SIGTERM, how long running jobs get to stop cleanly before they are killed.")
@click.argument("target", nargs=-1, required=True, type=click.UNPROCESSED)
def schedule(every: str | None, grace: str, stop_timeout: str, target: tuple[str, ...]) -> None:
    """Run jobs on cron schedules in the foreground, for hosts and containers without cron.

    \b
    batchkit schedule jobs.cron            # lines of: SCHEDULE JOB [ARGS]
    batchkit schedule --every 10m JOB [ARGS]

    \b
    A jobs.cron file:
      0 3 * * *      jobs/nightly.py --input /srv/list.txt
      */15 * * * *   cleanup /tmp/spool --older-than 1d
      @every 30s     system_status --log status.jsonl
      '*/5 * * * * */10'  shout --input words.txt

    A schedule is five cron fields (minute hour day-of-month month day-of-week), @daily-style
    names, or @every DURATION. For croniter's sixth field, seconds, quote the whole schedule
    as one word (the last line above: every 10 seconds of every 5th minute).

    Each run is `batchkit run JOB ARGS` in a child process (locked and recorded in history like
    any other). A run never overlaps the previous run of its entry; a run missed while the
    scheduler was down runs once at start-up if it is within --grace. SIGTERM (a service
    manager's stop) or SIGHUP stops cleanly and exits 0; Ctrl-C (SIGINT) stops the same way and
    exits 130. Running jobs are passed the signal, record what they finished and exit 143 / 130
    (resumable with --resume); one still running after --stop-timeout is killed.
    """
    from ..ops.scheduler import Entry, Scheduler, parse_table
    from ..units import parse_duration

    try:
        if every is not None:
            entries = [Entry(f"@every {every}", list(target))]
        elif len(target) != 1:
            raise UsageError("give one schedule FILE, or --every DURATION JOB [ARGS]")
        else:
            entries = parse_table(target[0])
        scheduler = Scheduler(entries, grace=parse_duration(grace), stop_timeout=parse_duration(stop_timeout))
    except UsageError as exc:
        click.echo(f"batchkit: error: {exc}", err=True)
        sys.exit(2)
    sys.exit(scheduler.run())
