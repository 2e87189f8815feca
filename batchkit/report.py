"""The result of a run: :class:`Report`, built from compact per-chunk outcomes."""

from __future__ import annotations

import html
from array import array
from itertools import repeat
from typing import Any, Iterator

from .errors import BatchFailed
from .outcome import ItemError, Outcome
from .state.keys import key_list, text_key


class ChunkOutcomes:
    """The outcomes of one chunk, stored compactly (lists, not one object per item).

    The engine fills it, possibly in pieces when a worker crash forced part of the chunk to be
    re-run; ``remaining`` counts the items still without an outcome.
    """

    __slots__ = ("seq", "start", "indices", "items", "keys", "keyfn", "values", "errors", "attempts",
                 "durations", "remaining")

    def __init__(self, seq: int, start: int, items: list, indices: list[int] | None = None,
                 keys: list | None = None, keyfn: Any = None) -> None:
        n = len(items)
        self.seq = seq
        self.start = start
        self.indices = indices  # None: the chunk covers input positions start .. start + n - 1
        self.items = items
        self.keys = keys
        self.keyfn = keyfn  # keys are computed on demand when nothing needed them up front
        # Filled by merge(); allocated here only when the chunk arrives in pieces.
        self.values: list = []
        self.errors: dict[int, ItemError] = {}
        self.attempts: dict[int, int] = {}
        self.durations = array("d")
        self.remaining = n

    def __len__(self) -> int:
        return len(self.items)

    def index(self, pos: int) -> int:
        """The input position of the item at ``pos`` in this chunk."""
        return self.start + pos if self.indices is None else self.indices[pos]

    def merge(self, lo: int, result: Any) -> None:
        """Store a worker's :class:`~batchkit.worker.ChunkResult` for positions ``lo`` onwards."""
        n = len(result.values)
        if lo == 0 and n == len(self.items):
            self.values = result.values
            self.durations = result.durations
        else:
            self._allocate()
            self.values[lo:lo + n] = result.values
            self.durations[lo:lo + n] = result.durations
        for pos, err in result.errors.items():
            self.errors[lo + pos] = err
        for pos, count in result.attempts.items():
            self.attempts[lo + pos] = count
        self.remaining -= n

    def _allocate(self) -> None:
        n = len(self.items)
        if len(self.values) != n:
            self.values = [None] * n
            self.durations = array("d", bytes(8 * n))

    def fail(self, pos: int, error: ItemError, duration: float = 0.0) -> None:
        """Record ``error`` for the item at ``pos`` (a crash or a timeout seen by the engine)."""
        self._allocate()
        self.values[pos] = None
        self.errors[pos] = error
        self.durations[pos] = duration
        self.remaining -= 1

    def outcome(self, pos: int) -> Outcome:
        """The :class:`Outcome` of the item at ``pos``."""
        err = self.errors.get(pos)
        return Outcome(self.index(pos), self.items[pos], err is None,
                       self.values[pos] if err is None else None, err,
                       self.attempts.get(pos, 1), self.durations[pos])

    def outcomes(self) -> Iterator[Outcome]:
        """Every outcome of this chunk, in input order."""
        if self.errors or self.attempts or self.indices is not None:
            return (self.outcome(pos) for pos in range(len(self.items)))
        # The common case (every item succeeded on its first attempt), built in bulk.
        return map(Outcome, range(self.start, self.start + len(self.items)), self.items,
                   repeat(True, len(self.items)), self.values, repeat(None), repeat(1), self.durations)

    def key(self, pos: int) -> Any:
        """The item's key (``None`` when the run has no key function)."""
        if self.keys is not None:
            return self.keys[pos]
        return text_key(self.keyfn(self.items[pos])) if self.keyfn is not None else None

    def key_list(self) -> list:
        """Every item's key, computed once."""
        if self.keys is None:
            keyfn = self.keyfn
            self.keys = key_list(keyfn, self.items) if keyfn is not None else [None] * len(self.items)
        return self.keys


class Report:
    """What :func:`batchkit.run` returns: every outcome, the counts and the timing.

    ``outcomes`` is in input order; ``failures`` only the failed ones. ``skipped`` counts items
    finished in an earlier run and skipped on resume. ``halted`` says why dispatching stopped
    early (``max_failures``), with ``not_run`` items never started (``None`` when the input's
    length is unknown). ``input_errors`` lists ``(path, message)`` for directories that
    :func:`batchkit.files` could not read.
    """

    def __init__(self, chunks: list[ChunkOutcomes], *, elapsed: float, skipped: int = 0,
                 halted: str | None = None, not_run: int | None = 0,
                 input_errors: list[tuple[str, str]] | None = None, desc: str | None = None,
                 run_id: Any = None) -> None:
        self._chunks = sorted(chunks, key=lambda c: c.seq)
        self._outcomes: list[Outcome] | None = None
        self.elapsed = elapsed
        self.skipped = skipped
        self.halted = halted
        self.not_run = not_run
        self.input_errors = list(input_errors or [])
        self.desc = desc
        self.run_id = run_id
        self.failed = sum(len(c.errors) for c in self._chunks)
        self.succeeded = sum(len(c) for c in self._chunks) - self.failed

    @property
    def total(self) -> int:
        """Items run in this run (``succeeded + failed``; ``skipped`` not included)."""
        return self.succeeded + self.failed

    @property
    def outcomes(self) -> list[Outcome]:
        """Every :class:`Outcome` of this run, in input order (built on first use)."""
        if self._outcomes is None:
            self._outcomes = [o for c in self._chunks for o in c.outcomes()]
        return self._outcomes

    @property
    def failures(self) -> list[Outcome]:
        """The failed outcomes, in input order."""
        return [c.outcome(pos) for c in self._chunks for pos in sorted(c.errors)]

    @property
    def ok(self) -> bool:
        """True when every item succeeded, nothing was left unrun and every directory was read."""
        return self.failed == 0 and self.halted is None and not self.input_errors

    @property
    def throughput(self) -> float:
        """Items per second over the whole run."""
        return self.total / self.elapsed if self.elapsed > 0 else 0.0

    def values(self) -> list:
        """The values in input order; raises :class:`~batchkit.BatchFailed` if any item failed."""
        self.raise_on_failure()
        if len(self._chunks) == 1:
            return list(self._chunks[0].values)
        return [v for c in self._chunks for v in c.values]

    def raise_on_failure(self) -> Report:
        """Raise :class:`~batchkit.BatchFailed` listing the failures, if there are any."""
        if self.failed:
            raise BatchFailed(self.failures, self.total)
        return self

    def to_dict(self, max_failures: int | None = None) -> dict[str, Any]:
        """A JSON-serialisable summary with every failure (or the first ``max_failures``)."""
        fails = self.failures if max_failures is None else self.failures[:max_failures]
        return {
            "desc": self.desc,
            "run_id": self.run_id,
            "ok": self.ok,
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "skipped": self.skipped,
            "elapsed": round(self.elapsed, 6),
            "throughput": round(self.throughput, 3),
            "halted": self.halted,
            "not_run": self.not_run,
            "input_errors": [{"path": p, "message": m} for p, m in self.input_errors],
            "failures": [
                {"index": o.index, "item": _short(o.item), "attempts": o.attempts,
                 "duration": round(o.duration, 6), **o.error.to_dict()}
                for o in fails
            ],
        }

    def summary(self) -> str:
        """One line: counts, time and rate."""
        text = (f"{self.succeeded} succeeded, {self.failed} failed"
                + (f", {self.skipped} skipped" if self.skipped else "")
                + f" in {self.elapsed:.2f}s ({self.throughput:,.1f} items/s)")
        if self.halted:
            text += f"; halted: {self.halted}"
        if self.input_errors:
            text += f"; {len(self.input_errors)} unreadable directories"
        return text

    def __repr__(self) -> str:
        lines = [f"<Report {'ok' if self.ok else 'FAILED'}: {self.summary()}>"]
        for o in self.failures[:5]:
            lines.append(f"  [{o.index}] {_short(o.item)}: {o.error.summary()}")
        if self.failed > 5:
            lines.append(f"  ... {self.failed - 5} more failures in report.failures")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = [("succeeded", self.succeeded), ("failed", self.failed), ("skipped", self.skipped),
                ("elapsed", f"{self.elapsed:.2f} s"), ("throughput", f"{self.throughput:,.1f} items/s")]
        if self.halted:
            rows.append(("halted", self.halted))
        head = "".join(f"<tr><th style='text-align:left'>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in rows)
        out = [f"<div><b>batchkit report</b>: {'ok' if self.ok else 'FAILED'}<table>{head}</table>"]
        fails = self.failures[:10]
        if fails:
            out.append("<table><tr><th>index</th><th>item</th><th>kind</th><th>error</th></tr>")
            for o in fails:
                out.append(f"<tr><td>{o.index}</td><td>{esc(_short(o.item))}</td><td>{esc(o.error.kind)}</td>"
                           f"<td><code>{esc(o.error.summary())}</code></td></tr>")
            out.append("</table>")
            if self.failed > len(fails):
                out.append(f"<p>... {self.failed - len(fails)} more in <code>report.failures</code></p>")
        out.append("</div>")
        return "".join(out)


def _short(item: Any, width: int = 80) -> str:
    text = str(item) if hasattr(item, "__fspath__") else repr(item)
    return text if len(text) <= width else text[: width - 3] + "..."
