"""Where a run's finished chunks go: the :class:`Sink` protocol, and :class:`OutputSink` (``--output``).

The run lifecycle (:mod:`batchkit.jobs.lifecycle`) hands every finished chunk, in the run's one
order, to each sink in turn: ``--output`` first, then the journal (which records how far
``--output`` had got, so a resume can cut the file back to exactly what the journal has), then
the operations log, then any other sink (a queue marking its items done). While items run,
:class:`stdout_to_stderr` keeps what they print off a stdout that carries data.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
from pathlib import Path
from typing import IO, Any, Protocol

from ..engine.chunk import ChunkOutcomes
from ..errors import Interrupted, OutputError, UsageError
from ..outcome import MESSAGE_MAX, capped
from ..secrets import redact


class Sink(Protocol):
    """Receives a run's finished chunks: :meth:`open` once, :meth:`chunk` for each finished chunk
    (in the run's order), :meth:`close` once with the run's end state ("succeeded", "failed",
    "halted", "interrupted", "error"). An exception from a sink stops the run."""

    def open(self, run: Any) -> None: ...

    def chunk(self, chunk: ChunkOutcomes) -> None: ...

    def close(self, state: str) -> None: ...


def jsonable(value: Any) -> Any:
    """``json.dumps``'s fallback for values that are not JSON: paths, sets, bytes, repr."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return repr(value)


class OutputSink:
    """``--output FILE|-``: one JSON line per item (key, index, ok, value or error, attempts,
    duration). Values are written exactly as the function returned them; batchkit's own fields
    (the key, error messages) are redacted.

    ``resume_at``: the offset the journal recorded with its last chunk; the file is cut back to
    it, so lines of chunks the journal never recorded (they run again) are not written twice.
    ``forget``: keys whose lines are dropped first (``--retry-failed`` re-runs them).
    """

    def __init__(self, path: str, *, resume_at: int | None = None, resumed: bool = False,
                 forget: list[str] | None = None) -> None:
        self.path = path
        self._stream: IO[bytes] | None = None
        self._resume_at = resume_at
        self._resumed = resumed
        self._forget = forget or []
        self._own_stdout = False
        self.note: str | None = None

    @property
    def to_stdout(self) -> bool:
        """Whether the lines go to stdout (``-``)."""
        return self.path == "-"

    def open(self, run: Any = None) -> None:
        if self.to_stdout:
            # A duplicate of stdout taken now: while items run, file descriptor 1 points at
            # stderr so that what items print cannot mix with the data (see the lifecycle).
            try:
                sys.stdout.flush()
                self._stream = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
                self._own_stdout = True
            except (AttributeError, OSError, ValueError):  # not a real file (tests, notebooks)
                self._stream = sys.stdout.buffer
            return
        try:
            if not self._resumed:
                self._stream = open(self.path, "wb")
            elif self._forget:
                self._rewrite_without(set(map(_shown_key, self._forget)))
                self._stream = open(self.path, "ab")
            else:
                self._stream = open(self.path, "r+b" if os.path.exists(self.path) else "wb")
                if self._resume_at is None:
                    self._stream.truncate(0)
                    self.note = (f"--output {self.path}: the earlier attempt wrote no output; it now holds "
                                 "this attempt's items only")
                else:
                    self._stream.truncate(self._resume_at)
                self._stream.seek(0, os.SEEK_END)
        except OSError as exc:
            raise UsageError(f"cannot write --output {self.path}: {exc.strerror or exc}") from None

    def _rewrite_without(self, keys: set[str]) -> None:
        from ..atomic import write_atomic

        try:
            with open(self.path, "rb") as f:
                kept = [line for line in f if json.loads(line).get("key") not in keys]
        except FileNotFoundError:
            return
        write_atomic(self.path, b"".join(kept))

    def position(self) -> int | None:
        """Bytes written so far (``None`` for stdout)."""
        if self._stream is None or self.to_stdout:
            return None
        return self._stream.tell()

    def chunk(self, chunk: ChunkOutcomes) -> None:
        lines = []
        for pos in range(len(chunk)):
            o = chunk.outcome(pos)
            line: dict[str, Any] = {"key": _shown_key(chunk.key(pos)), "index": o.index, "ok": o.ok}
            if o.ok:
                line["value"] = o.value
            else:
                assert o.error is not None
                line["error"] = {k: redact(capped(v, MESSAGE_MAX) if isinstance(v, str) else v)
                                 for k, v in o.error.to_dict().items() if k != "traceback"}
            line["attempts"] = o.attempts
            line["duration"] = round(o.duration, 6)
            lines.append(json.dumps(line, default=jsonable, ensure_ascii=False))
        data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
        write(self._stream, data, f"--output {self.path}")

    def close(self, state: str = "") -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            stream.flush()
        except OSError:
            pass
        if not self.to_stdout or self._own_stdout:
            try:
                stream.close()
            except OSError:  # a closed pipe: already reported
                pass


def _shown_key(key: Any) -> Any:
    return redact(key) if isinstance(key, str) else key


def write(stream: Any, data: bytes, what: str) -> None:
    """Write ``data`` whole and flush; a closed pipe stops the run like SIGPIPE (exit 141, resumable),
    a full disk or another error is an :class:`OutputError` (exit 3).

    Whole: an unbuffered stream (``python -u``, ``PYTHONUNBUFFERED=1``) writes what the pipe takes
    and returns the count; the rest is written until all of it is, or the reader is gone.
    """
    try:
        view = memoryview(data)
        while view:
            n = stream.write(view)
            view = view[len(view) if n is None else n:]
        stream.flush()
    except BrokenPipeError:
        raise closed_pipe() from None
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            raise closed_pipe() from None
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise OutputError(f"cannot write {what}: {reason}; the run stopped and can be resumed "
                          "with --resume once there is room") from None


def write_stdout(data: bytes | str) -> None:
    """Write a job's data to stdout, whole (for a job's finishing step: a manifest, a listing).
    A reader that went away (``| head``) stops the run like SIGPIPE: exit 141, resumable."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    sys.stdout.flush()
    write(getattr(sys.stdout, "buffer", sys.stdout), data, "stdout")


def closed_pipe() -> Interrupted:
    """What a write to a closed stdout means: the reader is gone (``| head``)."""
    _quiet_stdout()
    return Interrupted(getattr(signal, "SIGPIPE", 13), "stopped: the output pipe was closed")


def _quiet_stdout() -> None:
    # Point stdout at /dev/null so the interpreter's final flush does not fail again loudly.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class stdout_to_stderr:
    """While items run, what they print goes to stderr: stdout carries data (``--output -``, a
    manifest) or the ``--json`` summary. At the file-descriptor level, so worker processes started
    during the run inherit it too."""

    def __init__(self, active: bool) -> None:
        self.active = active
        self._saved: int | None = None

    def __enter__(self) -> None:
        if not self.active:
            return
        try:
            sys.stdout.flush()
            self._saved = os.dup(1)
            os.dup2(2, 1)
        except (OSError, ValueError, AttributeError):
            self._saved = None

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            try:
                sys.stdout.flush()
            except (OSError, ValueError):
                pass
            os.dup2(self._saved, 1)
            os.close(self._saved)
            self._saved = None
