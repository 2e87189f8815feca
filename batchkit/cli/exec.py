"""``batchkit exec 'COMMAND {}' (--files ROOT | --input FILE|- | ::: ITEM...)``: one shell command per item.

The command runs through :class:`batchkit.jobs.shell.ShellCommand` as a job named ``exec`` with
the command among its arguments, so it has the journal, --resume, the lock and every engine
option of ``batchkit run``. ``--timeout`` stops the command itself (its whole process group).
GNU parallel's habits are here too: ``::: ITEMS``, ``-0``, ``--dry-run``, ``-k``, ``-j``,
``-X``/``-m`` (:mod:`batchkit.jobs.shellbatch`) and ``--tag``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from typing import Any, Iterator

import click

from ..errors import UsageError
from ..jobs.job import OPS_KWARGS, Job
from .main import EPILOG
from .options import CliError, OneLineCommand, Seconds, engine_params, ops_params
from .run import guarded

ARGS = ":::"
# GNU parallel's other input separators: files of arguments, and linked groups.
OTHER_SEPARATORS = ("::::", ":::+", "::::+")
SHOWN_ARGS = 2000  # ::: items longer than this (joined) are identified in the journal by a digest


class ExecCommand(OneLineCommand):
    """``exec``: remembers its command line for the "resume with" hint, and takes the items after
    ``:::`` literally (never as options), as GNU parallel does."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["batchkit.argv"] = [ctx.info_name or "exec", *args]
        for sep in OTHER_SEPARATORS:
            if sep in args:
                raise CliError(f"{sep} is not supported: give one ::: list of items, or --input FILE")
        if ARGS in args:
            at = args.index(ARGS)
            items = args[at + 1:]
            if ARGS in items:
                raise CliError("several ::: lists (GNU parallel's combinations of them) are not supported: "
                               "give one ::: list, or write the combinations to a file for --input")
            if not items:
                raise CliError("::: needs items after it: batchkit exec 'gzip -9 {}' ::: a.log b.log")
            ctx.meta["batchkit.exec_args"] = items
            args = args[:at]
        return super().parse_args(ctx, args)


class NulItems:
    """Items read lazily from a file (or stdin), separated by NUL bytes (``find -print0``,
    ``-0``); empty ones are skipped, as empty lines are."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __iter__(self) -> Iterator[str]:
        if self.name == "-":
            stream = getattr(sys.stdin, "buffer", None) or sys.stdin
        else:
            stream = open(self.name, "rb")
        read = getattr(stream, "read1", None) or stream.read  # read1: items flow as the writer writes
        rest = b""
        try:
            while True:
                block = read(65536)
                if isinstance(block, str):
                    block = block.encode("utf-8", "surrogateescape")
                if not block:
                    break
                *records, rest = (rest + block).split(b"\0")
                for record in records:
                    if record:
                        yield record.decode("utf-8", "surrogateescape")
            if rest:
                yield rest.decode("utf-8", "surrogateescape")
        finally:
            if self.name != "-":
                stream.close()


def _items(bound: Any, opts: dict, args: list[str] | None, null: bool) -> tuple[Any, dict]:
    """The run's items and what identifies them: the ::: list, or --input (NUL-separated with
    -0), or --files."""
    from .runner import item_source

    if args is not None:
        if opts.get("input_file") is not None or opts.get("files_root") is not None:
            raise UsageError("give the items after ::: or with --input/--files, not both")
        if null:
            raise UsageError("-0 reads --input FILE|- separated by NUL bytes; ::: items need no separator")
        if opts.get("include") or opts.get("exclude"):
            raise UsageError("--include and --exclude go with --files ROOT")
        joined = "\0".join(args)
        shown: Any = args if len(joined) <= SHOWN_ARGS else (
            f"{len(args)} items, b2:{hashlib.blake2b(joined.encode('utf-8', 'surrogateescape')).hexdigest()[:32]}")
        return list(args), {"args": shown}
    if null and opts.get("input_file") is None:
        raise UsageError("-0 reads --input FILE|- separated by NUL bytes: give --input")
    items, source = item_source(bound, opts)
    if null:
        items, source = NulItems(opts["input_file"]), {**source, "null": True}
    return items, source


def _exec(ctx: click.Context, /, command: str, keep_output: str | None, null: bool, dry_run: bool,
          keep_order: bool, many_x: bool, many_m: bool, max_chars: int | None, tag: bool, **kwargs: Any) -> None:
    from ..jobs.shell import HeldOutput, ShellCommand, terminate_running
    from ..jobs.shellbatch import Batch, batches
    from ..options import cpu_count
    from .runner import run_job

    ops_kwargs = {k: kwargs.pop(k) for k in OPS_KWARGS}
    timeout = kwargs.pop("timeout")  # for the command, not the engine: a thread cannot be killed
    mode = "X" if many_x else "m" if many_m else None

    def check() -> None:
        if many_x and many_m:
            raise UsageError("-X and -m: pick one (-X repeats the word around {} for each item, "
                             "-m puts all items in its place)")
        if max_chars is not None and mode is None:
            raise UsageError("--max-chars goes with -X or -m (several items per command)")
        if keep_output is not None and (keep_order or tag):
            raise UsageError(f"{'--keep-order' if keep_order else '--tag'} shapes printed output, and "
                             "--keep-output saves it to files instead: drop one")
        if keep_order and not kwargs.get("ordered", True):
            raise UsageError("--keep-order prints in input order; it cannot go with --unordered")
        if keep_order and kwargs.get("scheduler"):
            raise UsageError("--keep-order holds output on this machine: it cannot go with --scheduler")
        if dry_run and (kwargs.get("resume") or kwargs.get("retry_failed")):
            raise UsageError("--dry-run runs nothing and reads no journal: drop --resume/--retry-failed")

    def go() -> int:
        check()
        spool = tempfile.mkdtemp(prefix="batchkit-exec-") if keep_order and not dry_run else None
        try:
            shell = ShellCommand(command, timeout=timeout, keep_output=keep_output, mode=mode or "X", tag=tag,
                                 spool=spool)
            job = Job(shell, name="exec", backend="thread", writes_stdout=keep_output is None)
            job.teardown(lambda: terminate_running())  # commands a stopped run leaves running do not outlive it
            bound = job.bind()
            items, source_args = _items(bound, kwargs, ctx.meta.get("batchkit.exec_args"), null)
            args = {"command": command, "timeout": timeout,
                    "keep_output": os.path.abspath(keep_output) if keep_output else None, **source_args}
            if mode is not None:
                jobs = kwargs.get("workers") or cpu_count()
                args["per_command"] = {"mode": mode, "max_chars": max_chars, "jobs": jobs}
                items = batches(items, shell.parsed, mode, max_chars=max_chars, jobs=jobs)
            elif keep_order:
                numbered = (Batch(i, [item]) for i, item in enumerate(items))
                items = list(numbered) if isinstance(items, list) else numbered
            if dry_run:
                return _dry_run(shell, items)
            return run_job(bound, kwargs, ops_kwargs, ctx.meta.get("batchkit.argv", ["exec", command]),
                           default_backend="thread", items=items, source_args=args, json_after_data=True,
                           sinks=[HeldOutput(spool)] if spool else None)
        finally:
            if spool is not None:
                shutil.rmtree(spool, ignore_errors=True)

    ctx.exit(guarded(go))


def _dry_run(shell: Any, items: Any) -> int:
    """Print each command that would run, one after another; run nothing, record nothing."""
    from ..errors import Interrupted
    from ..jobs.sinks import write

    out = getattr(sys.stdout, "buffer", None)
    try:
        for unit in items:
            line = shell.display(unit) + "\n"
            if out is None:
                sys.stdout.write(line)
            else:
                write(out, line.encode("utf-8", "surrogateescape"), "stdout")
    except Interrupted as exc:  # | head: the reader has seen enough
        return int(exc.exit_code)
    return 0


def _params() -> list[click.Parameter]:
    o = click.Option
    own = [
        click.Argument(["command"], metavar="'COMMAND {}'"),
        o(["--keep-output"], metavar="DIR", type=click.Path(file_okay=False),
          help="Save each command's stdout and stderr in DIR (NAME.out, NAME.err) instead of printing."),
        o(["--timeout"], type=Seconds(),
          help="Fail a command that runs longer, killing it and every process it started."),
        o(["-0", "--null", "null"], is_flag=True,
          help="--input items are separated by NUL bytes, not newlines (find -print0)."),
        o(["--dry-run"], is_flag=True, help="Print each command that would run; run nothing, record nothing."),
        o(["-k", "--keep-order", "keep_order"], is_flag=True,
          help="Print each command's output in input order (held back until its turn, on disk)."),
        o(["-X", "many_x"], is_flag=True,
          help="Many items per command, as many as fit the command line; the word around {} is "
               "repeated for each item (pre-{} -> pre-a pre-b)."),
        o(["-m", "many_m"], is_flag=True, help="Like -X, but {} itself holds all the items."),
        o(["-s", "--max-chars"], type=click.IntRange(min=1), metavar="N",
          help="With -X/-m: commands shorter than N characters (as --dry-run shows them) [default: "
               "what the system allows]."),
        o(["--tag"], is_flag=True, help="Start each output line with the item and a tab."),
    ]
    engine = []
    for p in engine_params("thread"):
        if p.name == "timeout":
            continue
        if p.name == "workers":
            p = o(["--workers", "-j", "workers"], type=click.IntRange(min=1), metavar="N",
                  help="Commands running at once [default: CPU count + 4, at most 32].")
        engine.append(p)
    return [*own, *engine, *ops_params()]


exec_ = ExecCommand(
    name="exec",
    params=_params(),
    callback=click.pass_context(_exec),
    short_help="Run one shell command per item.",
    help="""Run one shell command per item: 'gzip -9 {}' --files logs --include '*.log',
    or with the items as arguments: 'gzip -9 {}' ::: a.log b.log (one ::: list; options go before it).

    \b
    {} is the item; {name}, {stem} and {parent} its base name, base name without suffix, and
    directory; with no placeholder the item is appended. \\{} is a literal {}.
    An item is never run as code, wherever {} stands: bare, in '...', in "...", in $(...),
    in ${...}, in backticks or a here-document. The script gets the item in a variable and {}
    refers to it, quoted for its place: a name with spaces, quotes, ;, $(...), backticks, *
    or a newline is one literal argument (or literal text inside quotes). Refused, with exit 2:
    {} inside $((...)) (arithmetic evaluates it) or in a quoted here-document (<<'EOF': literal).
    A command that hands its text to another shell or interpreter (sh -c, ssh, eval, awk '...{}')
    reads it as code there: pass the item as an argument instead.

    \b
    An item starting with - that is a file (--files, or an --input/::: item naming an existing
    file) is passed as ./-name, never as an option; other text is passed as given (-5 stays -5):
    write 'cmd -- {}' when such items may start with -.

    \b
    A non-zero exit, a signal or --timeout fails the item with its exit code and the tail of
    its stderr. Each command's stdout and stderr are printed in one piece when it ends (-k: in
    input order; --tag: each line after the item and a tab), or saved with --keep-output; the
    summary goes to stderr.

    \b
    -X/-m: one command runs many items, as many as fit the command line (or -s N). It is one unit
    of work: one entry in the journal, the counts and --output, keyed 'first .. last (n items,
    digest)'; its exit status is all of theirs. Items are grouped in input order, and a short
    list is spread evenly over the -j N commands, so --resume (same input and options) skips the
    commands that finished. -0: NUL-separated --input. --dry-run prints the commands, with the
    items written inline, and runs nothing.
    """,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
