"""One shell command per item: :class:`ShellCommand`, what ``batchkit exec`` runs.

``{}`` in the template stands for the item, ``{name}``, ``{stem}`` and ``{parent}`` for its base
name, base name without suffix, and directory. The item's text is never read as shell syntax:
the script assigns it to a variable and the command refers to it, quoted for where the
placeholder stands (see :mod:`batchkit.jobs.shellquote`), so a name with spaces, quotes, ``;``,
``$(...)``, backticks, ``*`` or a newline is one literal argument, bare or inside quotes.
Without any placeholder the item is appended, as GNU parallel does. Nothing else in the template
is touched, so ``awk '{print $1}'`` keeps its braces.

One command may run several items (a :class:`~batchkit.jobs.shellbatch.Batch`, ``-X``/``-m``).
Its output is printed in one piece when it ends, or saved (``keep_output``), or held in ``spool``
for :class:`HeldOutput` to print in input order (``--keep-order``); ``tag`` prefixes each line
with the item and a tab (``--tag``).

>>> report = bk.run(ShellCommand("gzip -9 {}"), bk.files("logs", include="*.log"), backend="thread")
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .shellbatch import Batch
from .shellquote import PLACEHOLDERS, Template, item_values

TAIL = 2000  # characters of a failed command's stderr kept in its error message
__all__ = ["PLACEHOLDERS", "CommandFailed", "CommandTimedOut", "HeldOutput", "ShellCommand", "output_name", "render",
           "terminate_running"]

# Commands running in this process, so a stopped run can stop them after its grace period.
# They run in batchkit's own process group: a terminal's Ctrl-C, a service manager's stop and
# `kill -9 -- -PGID` reach them with batchkit, so none outlives it.
_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()
_output_lock = threading.Lock()  # one command's output at a time on this process's stdout/stderr
# Exit statuses of a command stopped by a stop signal (killed by it, or a shell reporting 128+n).
_STOP_SIGNALS = {getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)}
_STOPPED = {-s for s in _STOP_SIGNALS} | {128 + s for s in _STOP_SIGNALS}


class CommandFailed(Exception):
    """The command exited with a non-zero code or was killed by a signal.

    ``returncode`` is its exit code (negative: the signal number); the message ends with the
    tail of its stderr.
    """

    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        self.returncode = returncode


class CommandTimedOut(CommandFailed):
    """The command ran past its timeout; its whole process group was killed."""


def render(template: str, item: Any) -> str:
    """The command line for ``item``, with its value written inline and quoted for its place (what
    ``--dry-run`` prints; what runs passes the value in a variable, to the same effect)."""
    return Template(template).display([item_values(item)])


class ShellCommand:
    """Run ``template`` through ``/bin/sh`` for one item (or a :class:`Batch` of items); return the
    command's exit code (0).

    A non-zero exit, a signal or ``timeout`` fails the item with :class:`CommandFailed` /
    :class:`CommandTimedOut`, naming the exit code and the tail of stderr. The command's stdout
    and stderr are passed through (written in one piece per command, so outputs never
    interleave; a failed command's are not: its stderr's tail is in the error) unless
    ``keep_output`` names a directory, where each one's stdout and stderr are saved as
    ``NAME.out`` / ``NAME.err``, or ``spool`` names a directory where they wait, as ``SEQ.out`` /
    ``SEQ.err``, for :class:`HeldOutput`. ``tag``: each printed line starts with the item and a
    tab. ``mode``: how a batch fills the placeholders, "X" (the word around it repeated per item)
    or "m" (all items in its place). Its stdin is ``/dev/null``.
    """

    def __init__(self, template: str, *, timeout: float | None = None, keep_output: str | os.PathLike | None = None,
                 shell: str = "/bin/sh", mode: str = "X", tag: bool = False,
                 spool: str | os.PathLike | None = None) -> None:
        if not template.strip():
            from ..errors import UsageError

            raise UsageError("the command is empty: e.g. batchkit exec 'gzip -9 {}' --files logs")
        self.template = template
        self.parsed = Template(template)  # refuses what cannot be made safe, before anything runs
        self.timeout = timeout
        self.keep_output = os.fspath(keep_output) if keep_output is not None else None
        self.shell = shell
        self.mode = mode
        self.tag = tag
        self.spool = os.fspath(spool) if spool is not None else None

    def __repr__(self) -> str:
        return f"ShellCommand({self.template!r})"

    def script(self, unit: Any) -> str:
        """The script ``/bin/sh -c`` runs for ``unit`` (an item or a :class:`Batch`)."""
        items = unit.items if isinstance(unit, Batch) else [unit]
        return self.parsed.script([item_values(i) for i in items], self.mode)

    def display(self, unit: Any) -> str:
        """The command for ``unit`` with the values written inline (what ``--dry-run`` prints)."""
        items = unit.items if isinstance(unit, Batch) else [unit]
        return self.parsed.display([item_values(i) for i in items], self.mode)

    def __call__(self, item: Any) -> int:
        command = self.script(item)
        proc = subprocess.Popen([self.shell, "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        with _running_lock:
            _running.add(proc)
        try:
            out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            self._keep(item, out, err)
            raise CommandTimedOut(f"still running after {self.timeout:g}s: killed{_tail(err)}", -9) from None
        finally:
            with _running_lock:
                _running.discard(proc)
        self._keep(item, out, err)
        code = proc.returncode
        if code in _STOPPED:
            from ..errors import ItemInterrupted

            what = signal.Signals(-code).name if code < 0 else f"exit code {code}"
            raise ItemInterrupted(f"stopped ({what}){_tail(err)}")
        if code != 0:
            if code < 0:
                try:
                    what = f"killed by {signal.Signals(-code).name}"
                except ValueError:
                    what = f"killed by signal {-code}"
            else:
                what = f"exit code {code}"
            raise CommandFailed(f"{what}{_tail(err)}", code)
        if self.keep_output is None:
            if self.tag:
                label = (item.tag if isinstance(item, Batch) else _text(item)).encode("utf-8", "surrogateescape")
                out, err = _tagged(out, label), _tagged(err, label)
            if self.spool is not None and isinstance(item, Batch):
                _hold(self.spool, item.seq, out, err)
            else:
                _write(sys.stdout, out)
                _write(sys.stderr, err)
        return code

    def _keep(self, item: Any, out: bytes, err: bytes) -> None:
        if self.keep_output is None:
            return
        directory = Path(self.keep_output)
        directory.mkdir(parents=True, exist_ok=True)
        name = output_name(item)
        (directory / f"{name}.out").write_bytes(out)
        (directory / f"{name}.err").write_bytes(err)


def output_name(item: Any) -> str:
    """A file name for ``item``'s saved output: the item, %-quoted, shortened with a digest."""
    text = str(item) if isinstance(item, Batch) else _text(item)
    name = quote(text, safe="")
    if len(name) > 180 or name.startswith("."):
        digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()
        name = f"{name[:160].lstrip('.')}-{digest}"
    return name


def _text(item: Any) -> str:
    return os.fspath(item) if isinstance(item, os.PathLike) else str(item)


def _tagged(data: bytes, label: bytes) -> bytes:
    """Every line of ``data`` prefixed with ``label`` and a tab (GNU parallel's ``--tag``)."""
    if not data:
        return data
    return b"".join(label + b"\t" + line for line in data.splitlines(keepends=True))


def _hold(spool: str, seq: int, out: bytes, err: bytes) -> None:
    for suffix, data in ((".out", out), (".err", err)):
        if data:
            with open(os.path.join(spool, f"{seq}{suffix}"), "wb") as f:
                f.write(data)


class HeldOutput:
    """A run sink for ``--keep-order``: prints each command's output (held in ``spool`` by
    :class:`ShellCommand`) as its chunk is handed on, in input order.

    The run's sequencer hands chunks on in input order, and holds back at most the chunks of the
    in-flight window; so does this, with their output on disk rather than in memory: each file is
    read, printed and removed as soon as its turn comes.
    """

    def __init__(self, spool: str | os.PathLike) -> None:
        self.spool = os.fspath(spool)

    def open(self, run: Any) -> None:
        """Nothing to do: the spool directory exists already."""

    def chunk(self, chunk: Any) -> None:
        """Print the held output of every command of ``chunk``, in order."""
        from .sinks import write

        for unit in chunk.items:
            for suffix, stream in ((".out", sys.stdout), (".err", sys.stderr)):
                path = os.path.join(self.spool, f"{unit.seq}{suffix}")
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                    os.unlink(path)
                except FileNotFoundError:  # no output, or the command failed
                    continue
                target = getattr(stream, "buffer", None)
                if target is None:
                    stream.write(data.decode("utf-8", "replace"))
                    stream.flush()
                else:
                    write(target, data, "stdout" if suffix == ".out" else "stderr")

    def close(self, state: str) -> None:
        """Nothing to do: the caller removes the spool directory."""


def _tail(err: bytes) -> str:
    text = err.decode("utf-8", "replace").strip()
    if not text:
        return ""
    if len(text) > TAIL:
        text = "..." + text[-TAIL:]
    return f"; stderr: {text}"


def _write(stream: Any, data: bytes) -> None:
    if not data:
        return
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        # One piece, never interleaved with another command's: an unbuffered stream (python -u)
        # may take only part of it, so the rest follows under the same lock.
        with _output_lock:
            view = memoryview(data)
            while view:
                n = buffer.write(view)
                view = view[len(view) if n is None else n:]
            buffer.flush()
    else:
        stream.write(data.decode("utf-8", "replace"))
        stream.flush()


def _tree(proc: subprocess.Popen) -> list[int]:
    import psutil

    try:
        root = psutil.Process(proc.pid)
        return [root.pid, *(c.pid for c in root.children(recursive=True))]
    except psutil.Error:
        return []


def _pipe_holders(proc: subprocess.Popen) -> list[int]:
    """Processes that still hold the command's output pipes: its descendants, including those
    orphaned when the shell exited first (``cmd &``). Linux only (/proc); elsewhere, none."""
    inodes = set()
    for stream in (proc.stdout, proc.stderr):
        try:
            inodes.add(f"pipe:[{os.fstat(stream.fileno()).st_ino}]")
        except (AttributeError, OSError, ValueError):
            pass
    if not inodes or not os.path.isdir("/proc/self/fd"):
        return []
    me, holders = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") in inodes:
                    holders.append(int(entry))
                    break
            except OSError:
                continue
    return holders


def _kill_group(proc: subprocess.Popen, sig: int = getattr(signal, "SIGKILL", signal.SIGTERM)) -> None:
    """Signal the command and every process it started: its process tree, and whatever still
    holds its output (a background job the shell left behind)."""
    for pid in dict.fromkeys(_tree(proc) + _pipe_holders(proc)):
        try:
            os.kill(pid, sig)
        except OSError:  # gone already, or not ours
            pass


def terminate_running(grace: float = 2.0) -> int:
    """Stop every command still running in this process (SIGTERM to its tree, then SIGKILL).

    Called when a run is stopped; returns how many were running.
    """
    with _running_lock:
        procs = list(_running)
    for proc in procs:
        _kill_group(proc, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
    return len(procs)
