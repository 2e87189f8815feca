"""What a command-line run writes as items finish: the journal, ``--output`` lines, the hooks.

:class:`Recorder` is the run's one chunk callback, handed to :func:`batchkit.run` as its
journal record; :func:`earlier_outcomes` rebuilds what an earlier attempt of a resumed run
finished, for a job's finishing step.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import IO, Any

from ..errors import UsageError
from ..outcome import ItemError, Outcome
from ..report import ChunkOutcomes
from ..secrets import redact
from ..state.journal import Journal, RunRecord

KEPT_FAILURES = 20  # failures kept for the summary (the journal has all of them)


class Recorder(RunRecord):
    """The run's chunk callback: the journal (if any) first, then --output, then the hooks.

    A :class:`RunRecord`, so :func:`batchkit.run` drives it like the journal's own record.
    """

    def __init__(self, inner: RunRecord | None, job: str, ops: Any, output: IO[str] | None, ordered: bool) -> None:
        super().__init__(inner.journal if inner else None, inner.id if inner else None,  # type: ignore[arg-type]
                         job, inner.done if inner else set(), inner.resumed if inner else False)
        self.inner = inner
        self.ops = ops
        self.output = output
        self.ordered = ordered
        self.succeeded = self.failed = 0
        self.failures: list[tuple[int, Any, ItemError]] = []
        self._held: dict[int, ChunkOutcomes] = {}
        self._next = 0
        self._ended: tuple[str, dict] | None = None

    def record(self, chunk: ChunkOutcomes) -> None:
        """Record a finished chunk: journal, counts, --output lines, then the hooks."""
        if self.inner is not None:
            self.inner.record(chunk)  # durable first: one transaction per chunk
        errors = chunk.errors
        self.failed += len(errors)
        self.succeeded += len(chunk) - len(errors)
        for pos in sorted(errors):
            if len(self.failures) < KEPT_FAILURES:
                self.failures.append((chunk.index(pos), chunk.key(pos), errors[pos]))
        if self.output is not None:
            self._write(chunk)
        self.ops.chunk_done(chunk)

    def _write(self, chunk: ChunkOutcomes) -> None:
        if not self.ordered:
            self._lines(chunk)
            return
        self._held[chunk.seq] = chunk  # chunks finish out of order; write them in order
        while self._next in self._held:
            self._lines(self._held.pop(self._next))
            self._next += 1

    def _lines(self, chunk: ChunkOutcomes) -> None:
        out = self.output
        assert out is not None
        for pos in range(len(chunk)):
            o = chunk.outcome(pos)
            line: dict[str, Any] = {"key": chunk.key(pos), "index": o.index, "ok": o.ok}
            if o.ok:
                line["value"] = o.value
            else:
                assert o.error is not None
                line["error"] = {k: redact(v) for k, v in o.error.to_dict().items() if k != "traceback"}
            line["attempts"] = o.attempts
            line["duration"] = round(o.duration, 6)
            out.write(json.dumps(line, default=jsonable) + "\n")
        out.flush()

    def end(self, state: str, **kwargs: Any) -> dict:
        """Remember how the engine ended the run; :meth:`close_run` writes it to the journal.

        Until then the journal's writer thread finishes its last chunks while the job's
        finishing step runs, rather than before it.
        """
        if self._held and self.output is not None:  # an interrupted run: write what finished
            for seq in sorted(self._held):
                self._lines(self._held.pop(seq))
        self._ended = (state, kwargs)
        return {}

    def close_run(self, state: str | None = None, message: str | None = None) -> None:
        """Close the journal's run as the engine ended it, or as ``state`` with ``message``
        when what came after (the finishing step) changed that. Safe to call twice."""
        ended, self._ended = self._ended, None
        if self.inner is None or ended is None:
            return
        engine_state, kwargs = ended
        if state is not None:
            engine_state, kwargs["message"] = state, message
        self.inner.end(engine_state, **kwargs)


def jsonable(value: Any) -> Any:
    """``json.dumps``'s fallback for values that are not JSON: paths, sets, bytes, repr."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return repr(value)


def earlier_outcomes(journal: Journal, record: RunRecord) -> list[Outcome]:
    """Outcomes of items finished by an earlier attempt of this run, rebuilt from the journal.

    The journal keeps a value's ``repr`` (up to 200 characters): literals are read back
    exactly; anything else comes back as that text.
    """
    rebuilt = []
    for row in journal.items(record.id):
        if row["key"] not in record.done:
            continue
        value = row["value"]
        if value is not None:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                pass
        error = None if row["ok"] else ItemError(row["error_type"] or "Error", row["message"] or "",
                                                 row["traceback"] or "", row["error_kind"] or "exception",
                                                 row["step"])
        rebuilt.append(Outcome(row["idx"] if row["idx"] is not None else -1, row["key"], bool(row["ok"]),
                               value if row["ok"] else None, error, row["attempts"], row["duration"] or 0.0))
    return rebuilt


def open_output(path: str | None, append: bool) -> IO[str] | None:
    """The ``--output`` stream: a file (appended to when resuming) or stdout for ``-``."""
    if path is None:
        return None
    if path == "-":
        return _Unclosed(sys.stdout)
    try:
        return open(path, "a" if append else "w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write --output {path}: {exc.strerror or exc}") from None


class _Unclosed:
    """stdout as the --output stream: written and flushed, never closed."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()
