"""The result of a run: :class:`Report`, built from compact per-chunk outcomes.

A resumed run's report covers every item of the run, in input order: this attempt's chunks and
the outcomes earlier attempts recorded (rebuilt from the journal with their exact values).
"""

from __future__ import annotations

import gc
import heapq
import os
from itertools import chain
from pathlib import Path
from typing import Any

from .engine.chunk import ChunkOutcomes
from .errors import BatchFailed, BatchkitError
from .outcome import Outcome

__all__ = ["ChunkOutcomes", "Report"]


class Report:
    """What :func:`batchkit.run` returns: every outcome, the counts and the timing.

    ``outcomes`` is in input order; ``failures`` only the failed ones. ``succeeded`` and
    ``failed`` count every item of the run; ``skipped`` says how many of them an earlier attempt
    of a resumed run finished (their outcomes are included, rebuilt from the journal).
    ``halted`` says why dispatching stopped early (``max_failures``), with ``not_run`` items never
    started (``None`` when the input's length is unknown). ``input_errors`` lists
    ``(path, message)`` for directories that :func:`batchkit.files` could not read.
    """

    def __init__(self, chunks: list[ChunkOutcomes], *, elapsed: float, skipped: int = 0,
                 halted: str | None = None, not_run: int | None = 0,
                 input_errors: list[tuple[str, str]] | None = None, desc: str | None = None,
                 run_id: Any = None, earlier: list[Outcome] | None = None,
                 counts: tuple[int, int] | None = None) -> None:
        self._chunks = sorted(chunks, key=lambda c: c.seq)
        self._earlier = sorted(earlier or [], key=lambda o: o.index)
        self._outcomes: list[Outcome] | None = None
        self.elapsed = elapsed
        self.skipped = len(self._earlier) if earlier is not None else skipped
        self.halted = halted
        self.not_run = not_run
        self.input_errors = list(input_errors or [])
        self.desc = desc
        self.run_id = run_id
        earlier_failed = sum(not o.ok for o in self._earlier)
        self.failed = sum(len(c.errors) for c in self._chunks) + earlier_failed
        self.succeeded = sum(len(c) for c in self._chunks) + len(self._earlier) - self.failed
        self._ran = sum(len(c) for c in self._chunks)
        # counts given: the chunks are only those with failures (imap kept no other outcomes)
        self._complete = counts is None
        if counts is not None:
            self.succeeded, self.failed = counts
            self._ran = sum(counts)

    @property
    def total(self) -> int:
        """Items of the run with an outcome (``succeeded + failed``), earlier attempts included."""
        return self.succeeded + self.failed

    @property
    def outcomes(self) -> list[Outcome]:
        """Every :class:`Outcome` of the run, in input order (built on first use)."""
        if not self._complete:
            raise BatchkitError("this report (from bk.imap) has counts and failures only: the outcomes "
                                "were streamed to you")
        if self._outcomes is None:
            mine = _build(chain.from_iterable(c.outcomes() for c in self._chunks))
            if self._earlier:
                if self._chunks and any(c.indices is not None for c in self._chunks):
                    mine.sort(key=lambda o: o.index)
                mine = list(heapq.merge(mine, self._earlier, key=lambda o: o.index))
            self._outcomes = mine
        return self._outcomes

    @property
    def failures(self) -> list[Outcome]:
        """The failed outcomes, in input order."""
        mine = [c.outcome(pos) for c in self._chunks for pos in sorted(c.errors)]
        if self._earlier:
            mine = sorted(mine + [o for o in self._earlier if not o.ok], key=lambda o: o.index)
        return mine

    @property
    def ok(self) -> bool:
        """True when every item succeeded, nothing was left unrun and every directory was read."""
        return self.failed == 0 and self.halted is None and not self.input_errors

    @property
    def throughput(self) -> float:
        """Items run per second by this attempt."""
        return self._ran / self.elapsed if self.elapsed > 0 else 0.0

    def values(self) -> list:
        """The values in input order; raises :class:`~batchkit.BatchFailed` if any item failed."""
        self.raise_on_failure()
        if not self._complete:
            raise BatchkitError("this report (from bk.imap) has counts and failures only: the values "
                                "were streamed to you")
        if self._earlier:
            from .state.journal import MISSING

            values = [o.value for o in self.outcomes]
            if any(v is MISSING for v in values):
                raise BatchkitError("some values of items finished by an earlier attempt were not stored; "
                                    "run again without resume to compute them")
            return values
        if len(self._chunks) == 1:
            return list(self._chunks[0].values)
        if any(c.indices is not None for c in self._chunks):
            return [o.value for o in self.outcomes]
        values: list = []
        for c in self._chunks:  # list += list: a memory copy per chunk, no Python loop per item
            values += c.values
        return values

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
                + (f" ({self.skipped} finished by an earlier attempt)" if self.skipped else "")
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

    def to_html(self, path: str | os.PathLike) -> Path:
        """Write this run's report to ``path`` as one self-contained HTML page (no scripts, nothing
        loaded from the network: it opens offline and can be mailed): the workers' timeline,
        throughput, chunk sizes, item durations and the failures grouped by type and message.
        Returns the path. For a journaled run, ``batchkit show RUN --html FILE`` draws the same from
        the journal, with every attempt of a resumed run and the run's settings.
        """
        from .ops.htmlreport import run_page, write_page
        from .ops.runview import from_report

        write_page(path, run_page(from_report(self)))
        return Path(path)

    def _repr_html_(self) -> str:
        import html

        esc = html.escape
        rows = [("succeeded", self.succeeded), ("failed", self.failed),
                ("skipped (finished earlier)", self.skipped),
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
        out.append(self._charts_html())
        out.append("</div>")
        return "".join(out)

    def _charts_html(self) -> str:
        """The compact worker timeline and throughput under the counts (empty without a timeline)."""
        if not self._complete or not any(c.spans for c in self._chunks):
            return ""
        try:
            from .ops.htmlreport import compact_html
            from .ops.runview import from_report

            return compact_html(from_report(self, items=False))
        except Exception as exc:  # noqa: BLE001 - a chart must never hide the report's table
            import html

            return f"<p><i>(no chart: {html.escape(type(exc).__name__)}: {html.escape(str(exc))})</i></p>"


def _build(outcomes: Any) -> list[Outcome]:
    """``list(outcomes)`` with the cyclic garbage collector paused: every new Outcome is a tracked
    object, and collections triggered while a million are made (each one walking those made so
    far) cost more than making them (100k outcomes: 80 ms with the collector on, 35 ms off)."""
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        return list(outcomes)
    finally:
        if paused:
            gc.enable()


def _short(item: Any, width: int = 80) -> str:
    text = str(item) if hasattr(item, "__fspath__") else repr(item)
    return text if len(text) <= width else text[: width - 3] + "..."
