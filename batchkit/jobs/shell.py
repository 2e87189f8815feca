"""One shell command per item: :class:`ShellCommand`, what ``batchkit exec`` runs.

``{}`` in the template becomes the item, shell-quoted, so a name with spaces, quotes, ``;``,
``$(...)``, backticks, ``*`` or a newline is one literal argument and is never executed;
``{name}``, ``{stem}`` and ``{parent}`` are its base name, base name without suffix, and
directory. Without any placeholder the item is appended, as GNU parallel does. Nothing else in
the template is touched, so ``awk '{print $1}'`` keeps its braces.

>>> report = bk.run(ShellCommand("gzip -9 {}"), bk.files("logs", include="*.log"), backend="thread")
"""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import quote

TAIL = 2000  # characters of a failed command's stderr kept in its error message
PLACEHOLDERS = ("{}", "{name}", "{stem}", "{parent}")

# Commands running in this process, so a stopped run can stop them after its grace period.
# They run in batchkit's own process group: a terminal's Ctrl-C, a service manager's stop and
# `kill -9 -- -PGID` reach them with batchkit, so none outlives it.
_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()
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


def _arg(value: Any, *, path: bool) -> str:
    text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    if path and text.startswith("-"):
        text = "./" + text  # a file named -rf is a file, not an option
    return shlex.quote(text)


def render(template: str, item: Any) -> str:
    """The command line for ``item`` (see the module docstring)."""
    is_path = isinstance(item, PurePath)
    if not any(p in template for p in PLACEHOLDERS):
        return f"{template} {_arg(item, path=is_path)}"
    p = PurePath(os.fspath(item) if is_path else str(item))
    values = {"{}": _arg(item, path=is_path), "{name}": _arg(p.name, path=False),
              "{stem}": _arg(p.stem, path=False), "{parent}": _arg(p.parent, path=True)}
    out, i = [], 0
    while i < len(template):  # one pass, so a substituted value is never substituted again
        for token in PLACEHOLDERS:
            if template.startswith(token, i):
                out.append(values[token])
                i += len(token)
                break
        else:
            out.append(template[i])
            i += 1
    return "".join(out)


class ShellCommand:
    """Run ``template`` through ``/bin/sh`` for one item; return the command's exit code (0).

    A non-zero exit, a signal or ``timeout`` fails the item with :class:`CommandFailed` /
    :class:`CommandTimedOut`, naming the exit code and the tail of stderr. The command's stdout
    is passed through (written in one piece per item, so outputs never interleave) unless
    ``keep_output`` names a directory, where each item's stdout and stderr are saved as
    ``NAME.out`` / ``NAME.err``. Its stdin is ``/dev/null``.
    """

    def __init__(self, template: str, *, timeout: float | None = None, keep_output: str | os.PathLike | None = None,
                 shell: str = "/bin/sh") -> None:
        if not template.strip():
            from ..errors import UsageError

            raise UsageError("the command is empty: e.g. batchkit exec 'gzip -9 {}' --files logs")
        self.template = template
        self.timeout = timeout
        self.keep_output = os.fspath(keep_output) if keep_output is not None else None
        self.shell = shell

    def __repr__(self) -> str:
        return f"ShellCommand({self.template!r})"

    def __call__(self, item: Any) -> int:
        command = render(self.template, item)
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
    text = os.fspath(item) if isinstance(item, os.PathLike) else str(item)
    name = quote(text, safe="")
    if len(name) > 180 or name.startswith("."):
        digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()
        name = f"{name[:160].lstrip('.')}-{digest}"
    return name


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
        buffer.write(data)  # one call: a whole item's output, never interleaved with another's
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
