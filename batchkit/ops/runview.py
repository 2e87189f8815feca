"""What a run's pictures are drawn from: :class:`RunView`, read from the journal or from a
:class:`~batchkit.Report`, and the figures computed from it (worker lanes, throughput, chunk sizes,
failure groups).

Both sources give the same shapes: the run's row (``Journal.run``), its chunks with their worker
spans ``(worker, started, ended, items)`` and attempt, its events (retries, crashes, timeouts),
every item's duration, and its failures grouped as they stream past, so a run of ten million
items with a million failures keeps a few examples per group, not a million tracebacks.
"""

from __future__ import annotations

import re
import statistics
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..secrets import redact
from .svgcharts import Bar, Lane, Marker, Series, fmt_clock, fmt_seconds

EXAMPLES = 3  # examples kept per failure group
MESSAGES = 20  # distinct messages counted per failure group (HTTP 404 and 503 share a pattern)
MAX_GROUPS = 200  # distinct failure groups kept; the rest are counted together
SLOW = 3.0  # a chunk taking this many times the median chunk time is marked as a straggler


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


# -- figures ---------------------------------------------------------------------------------


def _short_workers(workers: list[str]) -> dict[str, str]:
    """Worker ids as short row labels, without what they all share: ``host:pid`` -> ``pid 123``;
    the threads of one process -> the thread's name; a process with several threads (Dask) ->
    ``pid 123/…-1``. The full id is in the row's tooltip."""
    hosts = {w.split(":", 1)[0] for w in workers if ":" in w}
    threads: dict[str, set[str]] = {}
    for w in workers:
        pid, _, thread = w.split(":", 1)[-1].partition("/")
        threads.setdefault(pid, set()).add(thread)
    out = {}
    for w in workers:
        if ":" not in w or len(hosts) > 1:
            out[w] = _tail(w or "?", 22)
            continue
        pid, _, thread = w.split(":", 1)[1].partition("/")
        if len(threads) == 1 and thread:
            out[w] = _tail(thread, 20)
        elif len(threads[pid]) > 1 and thread:
            out[w] = f"pid {pid}/{_tail(thread, 6)}"
        else:
            out[w] = f"pid {pid}"
    return out


def _tail(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]


@dataclass
class LaneStats:
    """What the table under the timeline says about one lane."""
    label: str
    workers: list[str]
    chunks: int = 0
    items: int = 0
    busy: float = 0.0


def lanes(view: RunView) -> tuple[list[Lane], list[LaneStats], float]:
    """The Gantt chart's lanes: each worker process or thread gets a row; a worker that starts after
    another ended (a pool restarted after a crash, the next attempt of a resumed run) takes over that
    row, with a mark where a restart happened. Returns the lanes, their statistics and the median
    chunk time."""
    spans = list(view.spans())
    if not spans:
        return [], [], 0.0
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    attempt_of: dict[str, int] = {}
    for c, _, w, s, e, _ in spans:
        first[w] = min(first.get(w, s), s)
        last[w] = max(last.get(w, e), e)
        attempt_of.setdefault(w, c.get("attempt") or 0)
    short = _short_workers(list(first))
    slots: list[list[str]] = []
    for w in sorted(first, key=lambda k: (first[k], k)):
        free = [i for i, occupants in enumerate(slots) if last[occupants[-1]] <= first[w] + 1e-6]
        if free:
            best = max(free, key=lambda i: last[slots[i][-1]])
            slots[best].append(w)
        else:
            slots.append([w])
    slot_of = {w: i for i, occ in enumerate(slots) for w in occ}
    durations = [e - s for _, _, _, s, e, _ in spans]
    median = statistics.median(durations) if durations else 0.0
    # Auto chunking starts with tiny chunks, so a chunk is slow by its time per item, not its length alone.
    per_item = statistics.median([(e - s) / max(1, n) for _, _, _, s, e, n in spans]) if spans else 0.0
    out: list[Lane] = []
    stats: list[LaneStats] = []
    for occupants in slots:
        label = short[occupants[0]] + (f" +{len(occupants) - 1}" if len(occupants) > 1 else "")
        title = "; ".join(f"{w}: {fmt_clock(first[w])} to {fmt_clock(last[w])}" for w in occupants)
        lane = Lane(label, title)
        for prev, w in zip(occupants, occupants[1:]):
            if attempt_of[w] == attempt_of[prev]:
                lane.marks.append((first[w], f"new worker {w} after {prev} stopped at {fmt_clock(last[prev])} "
                                             "(the pool was restarted)"))
        out.append(lane)
        stats.append(LaneStats(label, occupants))
    for c, j, w, s, e, n in spans:
        i = slot_of[w]
        rerun = len(c["spans"]) > 1
        d = e - s
        slow = (len(spans) >= 8 and median > 0 and d >= SLOW * median and d - median >= 0.05
                and d / max(1, n) >= SLOW * per_item)
        first_idx = c.get("first_idx")
        where = f"items {first_idx:,} to {first_idx + c['n'] - 1:,}" if first_idx is not None else "a chunk"
        part = f"{n:,} of its {c['n']:,} items" if n != c["n"] else f"{n:,} items"
        title = (f"{where}: {part} on {w}, {fmt_clock(s)} to {fmt_clock(e)} ({fmt_seconds(d)})"
                 + (f", {c['failed']:,} failed in the chunk" if c["failed"] else "")
                 + (f"; piece {j + 1} of {len(c['spans'])}: the chunk was split after a worker crash" if rerun else "")
                 + (f"; slow: {d / median:.1f}× the median chunk time ({fmt_seconds(median)})" if slow else ""))
        out[i].bars.append(Bar(s, e, "rerun" if rerun else "ok", title, c["failed"] / max(1, c["n"]), slow))
        stats[i].chunks += 1 if j == 0 or c["spans"][j - 1][0] != w else 0
        stats[i].items += n
        stats[i].busy += d
    return out, stats, median


def markers(view: RunView) -> list[Marker]:
    """The events strip: retries, crashes and timeouts at their times."""
    out = []
    for ev in view.events:
        kind = ev.get("kind") or "event"
        words = {"crash": "worker crash", "timeout": "timeout", "retry": "retry"}.get(kind, kind)
        title = f"{fmt_clock(ev['time'])} {words}"
        if ev.get("idx") is not None:
            title += f" of item {ev['idx']:,}"
        if ev.get("key") is not None:
            title += f" ({visible(ev['key'], limit=200)})" if ev.get("idx") is not None else \
                f" of {visible(ev['key'], limit=200)}"
        if ev.get("worker") and kind == "retry":  # a crash's recorded worker is its chunk's, not the dead one
            title += f" ({ev['worker']})"
        if ev.get("detail"):
            title += f": {visible(ev['detail'], limit=300)}"
        out.append(Marker(ev["time"], kind, title))
    return out


def throughput(view: RunView, axis: Any, px_per_bin: float = 8.0) -> list[Series]:
    """Items per second (and failed items per second) over the run: each piece's items spread
    evenly over the time it ran, summed in bins of ``px_per_bin`` pixels."""
    bins: list[tuple[float, float]] = []
    for t0, t1, x0, x1 in axis.segments:
        k = max(3, int((x1 - x0) / px_per_bin))
        width = (t1 - t0) / k
        bins.extend((t0 + i * width, t0 + (i + 1) * width) for i in range(k))
    if not bins:
        return []
    done = [0.0] * len(bins)
    failed = [0.0] * len(bins)
    starts = [b[0] for b in bins]
    from bisect import bisect_right

    for c, _, _, s, e, n in view.spans():
        share = c["failed"] / max(1, c["n"])
        i = max(0, bisect_right(starts, s) - 1)
        if e - s <= 0:
            done[i] += n
            failed[i] += n * share
            continue
        while i < len(bins) and bins[i][0] < e:
            lo, hi = max(s, bins[i][0]), min(e, bins[i][1])
            if hi > lo:
                part = n * (hi - lo) / (e - s)
                done[i] += part
                failed[i] += part * share
            i += 1
    rate = [((a + b) / 2, d / max(1e-9, b - a)) for (a, b), d in zip(bins, done)]
    frate = [((a + b) / 2, f / max(1e-9, b - a)) for (a, b), f in zip(bins, failed)]
    series = [Series("items/s", "tput", rate)]
    if any(v for _, v in frate):
        series.append(Series("failed/s", "fail", frate, kind="line"))
    return series


def chunk_sizes(view: RunView) -> tuple[Series, bool]:
    """Each chunk's size at the time it started (dots); whether a log scale suits them."""
    points, titles = [], []
    for c in view.chunks:
        if not c["spans"]:
            continue
        s = min(sp[1] for sp in c["spans"])
        e = max(sp[2] for sp in c["spans"])
        points.append((s, float(c["n"])))
        titles.append(f"{c['n']:,} items, started {fmt_clock(s)}, took {fmt_seconds(max(0.0, e - s))}")
    sizes = [v for _, v in points]
    log = bool(sizes) and max(sizes) / max(1.0, min(sizes)) >= 20
    return Series("chunk size", "size", points, kind="dots", titles=titles), log


def percentile(sorted_values: Any, q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values (nearest rank)."""
    if not len(sorted_values):
        return 0.0
    k = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[k]


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
