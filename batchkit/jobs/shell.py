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

# Commands running in this process, so an interrupted run can stop them (they run in their own
# process group, which a terminal's Ctrl-C does not reach).
_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()


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
                                stderr=subprocess.PIPE, start_new_session=True)
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


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def terminate_running(grace: float = 2.0) -> int:
    """Stop every command still running in this process (SIGTERM to its group, then SIGKILL).

    Called when a run is interrupted; returns how many were running.
    """
    with _running_lock:
        procs = list(_running)
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    for proc in procs:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
    return len(procs)
