"""What a run's pictures are drawn from: :class:`RunView`, read from the journal or from a
:class:`~batchkit.Report`, with its failures grouped (the chart series computed from a view are in
:mod:`batchkit.ops.runseries`).

Both sources give the same shapes: the run's row (``Journal.run``), its chunks with their worker
spans ``(worker, started, ended, items)`` and attempt, its events (retries, crashes, timeouts),
every item's duration, and its failures grouped as they stream past, so a run of ten million
items with a million failures keeps a few examples per group, not a million tracebacks.
"""

from __future__ import annotations

import re
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..secrets import redact
from .svgcharts import fmt_clock

EXAMPLES = 3  # examples kept per failure group
MESSAGES = 20  # distinct messages counted per failure group (HTTP 404 and 503 share a pattern)
MAX_GROUPS = 200  # distinct failure groups kept; the rest are counted together


@dataclass
class FailureGroup:
    """Failures sharing an exception type, kind, step and message pattern (numbers and quoted text
    replaced), with their count and the first :data:`EXAMPLES` of them."""
    type: str
    kind: str
    step: str | None
    pattern: str
    count: int = 0
    examples: list[dict] = field(default_factory=list)
    messages: dict[str, int] = field(default_factory=dict)  # distinct first lines (the first MESSAGES)


class FailureGroups:
    """Groups failures as they stream past (see :class:`FailureGroup`)."""

    def __init__(self) -> None:
        self.groups: dict[tuple, FailureGroup] = {}
        self.other = 0  # failures past MAX_GROUPS distinct groups
        self.total = 0

    def add(self, row: dict) -> None:
        """Count one failure: ``row`` has ``error_type``, ``error_kind``, ``message``, ``traceback``,
        ``step``, ``key``, ``idx``, ``attempts`` and ``duration``."""
        self.total += 1
        message = row.get("message") or ""
        kind = row.get("error_kind") or "exception"
        gkey = (row.get("error_type") or "Error", kind, row.get("step"), message_pattern(message))
        group = self.groups.get(gkey)
        if group is None:
            if len(self.groups) >= MAX_GROUPS:
                self.other += 1
                return
            group = self.groups[gkey] = FailureGroup(gkey[0], kind, gkey[2], gkey[3])
        group.count += 1
        if len(group.examples) < EXAMPLES:
            group.examples.append(row)
        first = message.strip().split("\n", 1)[0][:300]
        if first in group.messages or len(group.messages) < MESSAGES:
            group.messages[first] = group.messages.get(first, 0) + 1

    def sorted(self) -> list[FailureGroup]:
        """The groups, the most frequent first."""
        return sorted(self.groups.values(), key=lambda g: (-g.count, g.type, g.pattern))


# A quoted string as repr() writes it (escaped quotes inside), bounded so that matching stays linear.
_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.){0,400}'|\"(?:[^\"\\\n]|\\.){0,400}\"")
_NUMBER = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?")


def message_pattern(message: str) -> str:
    """A message's first line with quoted text as ``'…'`` and numbers as ``#``: what failures of
    one kind share (``No such file: '/data/a.csv'`` and ``... '/data/b.csv'`` group together)."""
    first = message.strip().split("\n", 1)[0][:300]
    return _NUMBER.sub("#", _QUOTED.sub("'…'", first))


def visible(text: Any, keep: str = "", limit: int | None = None) -> str:
    """``text`` redacted, with control and invisible format characters (newlines in a file name,
    escape sequences, right-to-left overrides, lone surrogates) shown as escapes rather than acted
    on; the characters in ``keep`` (a message's newlines) stay."""
    s = redact(str(text))
    if limit is not None and len(s) > limit:
        s = s[:limit] + "…"
    plain = s
    for ch in keep:
        plain = plain.replace(ch, "")
    if plain.isprintable():  # the usual case, checked in C
        return s
    return "".join(ch if ch in keep or ch.isprintable() else ch.encode("unicode_escape", "backslashreplace")
                   .decode("ascii") for ch in s)


@dataclass
class RunView:
    """One run as its pictures need it (see the module docstring)."""
    run: dict
    chunks: list[dict]
    events: list[dict]
    durations_ok: array = field(default_factory=lambda: array("d"))
    durations_failed: array = field(default_factory=lambda: array("d"))
    failures: FailureGroups = field(default_factory=FailureGroups)
    notes: list[str] = field(default_factory=list)
    now: float = field(default_factory=time.time)

    @property
    def succeeded(self) -> int:
        if self.chunks:
            return sum(c["n"] - c["failed"] for c in self.chunks)
        return self.run.get("succeeded") or 0

    @property
    def failed(self) -> int:
        if self.chunks:
            return sum(c["failed"] for c in self.chunks)
        return self.run.get("failed") or 0

    @property
    def elapsed(self) -> float:
        """Time spent running, every attempt; a run in progress counts up to now, a crashed one up to
        its last recorded chunk (its row's elapsed is written when an attempt ends)."""
        elapsed = self.run.get("elapsed") or 0.0
        if self.run.get("ended") is not None:
            return elapsed
        start = self.run["started"]
        if self.run.get("resumes"):
            latest = max((c.get("attempt") or 0 for c in self.chunks), default=0)
            start = min((s for c, _, _, s, _, _ in self.spans() if (c.get("attempt") or 0) == latest),
                        default=self.run.get("updated") or start)
        end = self.now if self.run.get("state") == "running" else (self.run.get("updated") or start)
        return elapsed + max(0.0, end - start)

    def spans(self) -> Iterable[tuple[dict, int, str, float, float, int]]:
        """``(chunk, piece, worker, started, ended, items)`` for every piece that ran."""
        for c in self.chunks:
            for j, (worker, s, e, n) in enumerate(c["spans"]):
                yield c, j, worker, s, max(s, e), n

    def attempts(self) -> list[list[tuple[float, float]]]:
        """The spans' intervals grouped by attempt (one group when attempts were not recorded)."""
        groups: dict[int, list[tuple[float, float]]] = {}
        for c, _, _, s, e, _ in self.spans():
            groups.setdefault(c.get("attempt") or 0, []).append((s, e))
        return [groups[k] for k in sorted(groups)]


def from_journal(journal: Any, run_id: int) -> RunView | None:
    """The :class:`RunView` of run ``run_id``, or ``None`` when the journal has no such run."""
    run = journal.run(run_id)
    if run is None:
        return None
    timeline = journal.timeline(run_id)
    view = RunView(run, timeline["chunks"], timeline["events"])
    wanted = {e["key"] for e in view.events if e.get("key") is not None}  # events name keys: find their index
    index: dict[str, int] = {}
    for row in journal.iter_items(run_id):
        if wanted and row["key"] in wanted:
            index[row["key"]] = row["idx"]
        duration = row["duration"] or 0.0
        if row["ok"]:
            view.durations_ok.append(duration)
        else:
            view.durations_failed.append(duration)
            view.failures.add(row)
    for e in view.events:
        e["idx"] = index.get(e.get("key"))
    if run["state"] == "running":
        # A run in progress: the row's counts are written when it ends; the chunks have them now.
        last = max((c["finished"] for c in view.chunks), default=None)
        view.notes.append(f"in progress: a snapshot taken at {fmt_clock(view.now)}"
                          + (f", last chunk recorded at {fmt_clock(last)}" if last else ", no chunk recorded yet"))
    return view


def from_report(report: Any, *, items: bool = True) -> RunView:
    """The :class:`RunView` of a :class:`~batchkit.Report` (this attempt's chunks; outcomes that an
    earlier attempt finished count in the figures but have no place on the timeline). Without
    ``items`` only the timeline is read (what the notebook's compact chart needs)."""
    from ..report import _short

    chunks, events = [], []
    complete = report._complete
    for c in report._chunks if complete else []:
        spans = [list(s) for s in c.spans]
        chunks.append({"first_idx": c.start if c.indices is None else None, "n": len(c), "failed": len(c.errors),
                       "finished": max((s[2] for s in spans), default=0.0), "spans": spans, "attempt": 0})
        worker = spans[-1][0] if spans else None
        for pos, kind, when, detail in c.events:
            item = c.items[pos] if 0 <= pos < len(c.items) else None
            events.append({"time": when, "kind": kind, "key": _short(item), "worker": worker, "detail": detail})
    events.sort(key=lambda e: e["time"])
    starts = [s[1] for c in chunks for s in c["spans"]]
    started = min(starts) if starts else time.time() - report.elapsed
    state = "succeeded" if report.ok else ("halted" if report.halted else "failed")
    run = {"id": report.run_id, "job": report.desc or "bk.run", "args": {}, "state": state, "started": started,
           "ended": started + report.elapsed, "elapsed": report.elapsed, "total": report.total,
           "succeeded": report.succeeded, "failed": report.failed, "skipped": report.skipped, "resumes": 0,
           "settings": {}, "command": None, "message": report.halted, "host": None, "pid": None,
           "exit_code": None}
    view = RunView(run, chunks, events)
    if not complete:
        view.notes.append("bk.imap streamed its outcomes and kept only the failed ones, so there is no timeline "
                          "here; with journal=True, `batchkit show RUN --html FILE` draws it")
    if report.skipped and report.run_id is not None:
        view.notes.append(f"{report.skipped:,} items were finished by an earlier attempt of run {report.run_id}: "
                          f"they count in the figures but are not on this timeline; `batchkit show {report.run_id} "
                          "--html FILE` draws every attempt")
    if not items:
        return view
    if complete:
        for c in report._chunks:
            errors = c.errors
            if not errors:
                view.durations_ok.extend(c.durations)
                continue
            for pos, d in enumerate(c.durations):
                (view.durations_failed if pos in errors else view.durations_ok).append(d)
        for o in report._earlier:
            (view.durations_ok if o.ok else view.durations_failed).append(o.duration)
    for o in report.failures:
        e = o.error
        view.failures.add({"key": _short(o.item, 300), "idx": o.index, "error_type": e.type, "error_kind": e.kind,
                           "message": e.message, "traceback": e.traceback, "step": e.step, "attempts": o.attempts,
                           "duration": o.duration})
    return view


def history_rows(journal: Any, runs: list[dict], now: float | None = None) -> list[dict]:
    """``runs`` (``Journal.runs`` rows) with counts and run time so far for those not ended (a run
    writes its counts when it ends): what :func:`~batchkit.ops.htmlreport.history_page` draws."""
    now = time.time() if now is None else now
    out = []
    for r in runs:
        if r.get("ended") is None:
            done, failed, _ = journal.counts(r["id"])
            chunks = journal.timeline(r["id"])["chunks"] if r.get("resumes") else []
            elapsed = RunView(r, chunks, [], now=now).elapsed
            r = {**r, "succeeded": done - failed, "failed": failed, "elapsed": elapsed}
        out.append(r)
    return out
