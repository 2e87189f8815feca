"""``batchkit queue put|stats|result|retry-failed|list|purge``: the durable queue from a shell.

Producers put items (strings: the arguments, or the lines of a file or of stdin) and get their
ids; ``batchkit run JOB --queue NAME`` consumes them; ``result`` prints an item's value once it is
done. Everything lives in ``$BATCHKIT_HOME/queue.db`` (see :mod:`batchkit.state.queue`); the
reading commands never create it.
"""

from __future__ import annotations

import functools
import json
import queue as stdqueue
import threading
from typing import Any, Callable, Iterable, Iterator

import click

from ..errors import BatchkitError, UsageError
from .options import CliError, OneLineCommand, OneLineErrors, Seconds

NOT_DONE = 75  # `result` of an item not finished yet: EX_TEMPFAIL, try again later
BATCH = 1000  # lines put in one transaction
STALL = 0.2  # seconds without a new line after which the lines read so far are put


class QueueGroup(OneLineErrors, click.Group):
    """The ``queue`` group: its usage errors, an unknown sub-command too, are one line."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            if isinstance(exc, CliError):
                raise
            raise CliError(f"{exc.format_message()} (see '{ctx.command_path} --help')") from None


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Library errors become one line on stderr: exit 2 (usage) or 3 (the queue is unusable)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UsageError as exc:
            raise CliError(str(exc), 2) from None
        except (BatchkitError, OSError) as exc:
            raise CliError(str(exc), 3) from None

    return wrapper


def _queue(name: str, create: bool = True) -> Any:
    """The queue ``name``, or ``None`` when nothing was ever queued and ``create`` is false."""
    from ..state.queue import Queue, default_path

    if not name.strip():
        raise UsageError(f"queue name {name!r}: use a non-empty string")
    if not create and not default_path().exists():
        return None
    return Queue(name)


def _json(value: Any) -> str:
    from ..jobs.sinks import jsonable  # as --output writes values

    return json.dumps(value, default=jsonable)


@click.group("queue", cls=QueueGroup)
def queue() -> None:
    """A durable queue: put items, see counts, read results by id.

    \b
    batchkit queue put thumbs a.jpg b.jpg          # prints the ids, one per line
    find /data -name '*.jpg' | batchkit queue put thumbs --input -
    batchkit run jobs/thumb.py --queue thumbs      # consumers: as many as you like
    batchkit queue stats thumbs
    batchkit queue result thumbs 1 --wait 60
    """


@queue.command("put", cls=OneLineCommand)
@click.argument("name")
@click.argument("items", nargs=-1)
@click.option("--input", "input_file", metavar="FILE|-",
              help="Put the lines of FILE ('-': stdin, put as they arrive; empty lines are skipped).")
@click.option("--json", "as_json", is_flag=True, help='Print {"queue": NAME, "ids": [...]} instead of one id a line.')
@_guarded
def put(name: str, items: tuple[str, ...], input_file: str | None, as_json: bool) -> None:
    """Add items to queue NAME; print their ids.

    The items are strings: the ITEMS arguments (one transaction), or the lines of --input, put
    in batches of up to 1,000 (one transaction each) as they are read, so that a slow
    producer's lines go in within 0.2 s.
    """
    if items and input_file:
        raise UsageError("give the items as arguments or with --input FILE|-, not both")
    if not items and not input_file:
        raise UsageError(f"no items to put: give them as arguments (batchkit queue put {name} ITEM...) "
                         "or with --input FILE|- (one item per line)")
    q = _queue(name)
    if items:
        batches: Iterable[list[str]] = [list(items)]
    else:
        from .runner import LineItems

        batches = _batches(iter(LineItems(input_file)))  # type: ignore[arg-type]
    every: list[int] = []
    for batch in batches:
        ids = q.put_many(batch)
        if as_json:
            every.extend(ids)
        else:
            click.echo("\n".join(map(str, ids)))
    if as_json:
        click.echo(_json({"queue": name, "ids": every}))


def _batches(lines: Iterator[str], size: int = BATCH, stall: float = STALL) -> Iterator[list[str]]:
    """The lines in lists of up to ``size``; a list goes out early when no line came for ``stall`` s."""
    handoff: stdqueue.Queue = stdqueue.Queue(maxsize=4 * size)
    end = object()

    def read() -> None:  # a thread, so that waiting for the next line cannot hold back the batch
        try:
            for line in lines:
                handoff.put(line)
        except BaseException as exc:  # raised again in the caller's thread
            handoff.put(exc)
        handoff.put(end)

    threading.Thread(target=read, name="batchkit-queue-put", daemon=True).start()
    batch: list[str] = []
    while True:
        try:
            got = handoff.get(timeout=stall if batch else None)
        except stdqueue.Empty:
            yield batch
            batch = []
            continue
        if got is end:
            break
        if isinstance(got, BaseException):
            raise got
        batch.append(got)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@queue.command("stats", cls=OneLineCommand)
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: queue, pending, running, done, failed, total.")
@_guarded
def stats(name: str, as_json: bool) -> None:
    """Counts of queue NAME: pending, running, done, failed, total."""
    q = _queue(name, create=False)
    counts = q.stats() if q is not None else dict.fromkeys(("pending", "running", "done", "failed", "total"), 0)
    if as_json:
        click.echo(_json({"queue": name, **counts}))
        return
    click.echo(f"{name}: {counts['pending']} pending, {counts['running']} running, {counts['done']} done, "
               f"{counts['failed']} failed ({counts['total']} total)")


@queue.command("result", cls=OneLineCommand)
@click.argument("name")
@click.argument("item_id", metavar="ID", type=int)
@click.option("--wait", type=Seconds(), default=0.0, help="Wait up to this long for the item to finish [default: 0].")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: id, status, ok, value or error, attempts.")
@_guarded
def result(name: str, item_id: int, wait: float, as_json: bool) -> None:
    """Print the value of item ID of queue NAME.

    A string value is printed as it is, other values as JSON.

    \b
    Exit codes: 0 done; 1 failed (the error on stderr); 2 no such id;
    75 not done yet (pending or running: try later, or --wait).
    """
    from ..state.queue import QueueTimeout

    q = _queue(name, create=False)
    if q is None:
        raise UsageError(f"queue {name!r} has no item {item_id}: nothing was ever queued")
    try:
        outcome = q.result(item_id, timeout=wait)
    except QueueTimeout:
        status = q.status(item_id)
        if as_json:
            click.echo(_json({"queue": name, "id": item_id, "status": status}))
        else:
            click.echo(f"batchkit: item {item_id} of queue {name!r} is {status}, not done yet; try later or use "
                       "--wait SECONDS", err=True)
        raise SystemExit(NOT_DONE) from None
    if as_json:
        body: dict[str, Any] = {"queue": name, "id": item_id, "status": "done" if outcome.ok else "failed",
                                "ok": outcome.ok}
        if outcome.ok:
            body["value"] = outcome.value
        else:
            body["error"] = outcome.error.to_dict()
        body.update(attempts=outcome.attempts, duration=round(outcome.duration, 6))
        click.echo(_json(body))
    elif outcome.ok:
        click.echo(outcome.value if isinstance(outcome.value, str) else _json(outcome.value))
    else:
        click.echo(f"batchkit: item {item_id} of queue {name!r} failed: {outcome.error.summary()}", err=True)
    if not outcome.ok:
        raise SystemExit(1)


@queue.command("retry-failed", cls=OneLineCommand)
@click.argument("name")
@_guarded
def retry_failed(name: str) -> None:
    """Put the failed items of queue NAME back to pending.

    The consumers then run them again; their old errors are dropped.
    """
    q = _queue(name, create=False)
    n = q.retry_failed() if q is not None else 0
    click.echo(f"{name}: {n} failed item{'s' if n != 1 else ''} pending again")


@queue.command("list", cls=OneLineCommand)
@click.option("--json", "as_json", is_flag=True, help="One JSON object: each queue's counts by name.")
@_guarded
def list_(as_json: bool) -> None:
    """Every queue with its counts."""
    from ..state.queue import default_path, list_queues
    from .history import _table

    queues = list_queues() if default_path().exists() else {}
    if as_json:
        click.echo(_json(queues))
        return
    if not queues:
        click.echo("no queues (batchkit queue put NAME ITEM... makes one)")
        return
    rows = [(name, *(str(c[k]) for k in ("pending", "running", "done", "failed", "total")))
            for name, c in queues.items()]
    for line in _table(("QUEUE", "PENDING", "RUNNING", "DONE", "FAILED", "TOTAL"), rows):
        click.echo(line)


@queue.command("purge", cls=OneLineCommand)
@click.argument("name")
@click.option("--failed", is_flag=True, help="Delete the failed items too.")
@click.option("--older-than", type=Seconds(), help="Only items finished longer ago than this (e.g. 7d).")
@_guarded
def purge(name: str, failed: bool, older_than: float | None) -> None:
    """Delete the done items of queue NAME, and their results.

    Pending and running items stay; --failed deletes the failed ones too.
    """
    q = _queue(name, create=False)
    n = q.purge(failed=failed, older_than=older_than) if q is not None else 0
    click.echo(f"{name}: deleted {n} item{'s' if n != 1 else ''}")
