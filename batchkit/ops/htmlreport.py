"""A run's report as one self-contained HTML page (``batchkit show RUN --html``,
``Report.to_html``), and the compact chart under a :class:`~batchkit.Report` in a notebook.

Pure functions from journal data (:mod:`batchkit.ops.runview`) to one HTML string. The page
has no script and loads nothing: styles are inline, charts are inline SVG (see
:mod:`batchkit.ops.svgcharts` for why), tracebacks fold with ``<details>``, and its
Content-Security-Policy forbids scripts and requests, so it opens offline, can be attached to an
email, and even a hostile item key that slipped past escaping could not run or fetch anything.
Every text shown is redacted (:func:`batchkit.secrets.redact`) and escaped; keys and messages
show control and right-to-left characters as escapes.

    from batchkit.ops.htmlreport import run_page
    from batchkit.ops.runview import from_journal
    html = run_page(from_journal(journal, 12))
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ..secrets import redact
from . import svgcharts as svg
from .runseries import chunk_sizes, lanes, markers, percentile, throughput
from .runview import MESSAGES, FailureGroup, RunView, visible
from .svgcharts import COLORS, TimeAxis, esc, fmt_clock, fmt_num, fmt_seconds

__all__ = ["compact_html", "run_page", "write_page"]

WIDTH = 1040  # the charts' drawing width in pixels (they scale down with the window)
LABELS = 130  # room for lane and axis labels on the left
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'")
RESUMABLE = ("crashed", "interrupted", "error", "halted")

CSS = """
:root{--fg:#1f2328;--muted:#5b6168;--bg:#fff;--card:#f6f8fa;--line:#d8dee4;--ok:#3a9d5d;--bad:#d64541;
--warn:#c27c0e;--info:#4a7fd4}
@media (prefers-color-scheme: dark){:root{--fg:#e6edf3;--muted:#9aa4ae;--bg:#0d1117;--card:#161b22;
--line:#30363d}svg .ax,svg .lab{fill:#9aa4ae}svg .grid{stroke:#30363d}svg .band{fill:#12171e}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,sans-serif}
main{max-width:1100px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:22px;margin:0 0 2px}h2{font-size:17px;margin:30px 0 8px;padding-bottom:4px;
border-bottom:1px solid var(--line)}h3{font-size:14px;margin:14px 0 4px}
.sub{color:var(--muted);margin:0 0 14px}
.badge{display:inline-block;padding:1px 9px;border-radius:10px;font-size:12px;font-weight:600;
color:#fff;vertical-align:middle;margin-left:6px;text-transform:uppercase;letter-spacing:.03em}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:10px;margin:12px 0}
.tile{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:9px 12px}
.tile b{display:block;font-size:20px;font-variant-numeric:tabular-nums}.tile span{color:var(--muted);
font-size:12px}
.note{background:var(--card);border-left:4px solid var(--info);padding:8px 12px;margin:8px 0;border-radius:4px}
.note.bad{border-left-color:var(--bad)}.note.warn{border-left-color:var(--warn)}
pre,code{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:8px 10px;
white-space:pre-wrap;word-break:break-word;margin:6px 0;max-height:420px;overflow:auto}
table{border-collapse:collapse;width:100%;margin:6px 0}th,td{text-align:left;padding:4px 8px;
border-bottom:1px solid var(--line);vertical-align:top}th{color:var(--muted);font-weight:600;font-size:12px}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td.when{white-space:nowrap}
svg.chart{display:block;margin:10px 0 0}
.legend{color:var(--muted);font-size:12px;margin:4px 0 0}.legend span{white-space:nowrap}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 12px;vertical-align:-1px}
.util{display:inline-block;height:8px;background:var(--ok);border-radius:2px;vertical-align:middle}
details{margin:4px 0}summary{cursor:pointer;color:var(--muted)}
.group{border:1px solid var(--line);border-radius:8px;padding:8px 12px;margin:10px 0}
.group h3{margin:2px 0 6px;font-size:14px}.count{color:var(--bad);font-weight:700}
.key{word-break:break-all}.muted{color:var(--muted)}
footer{color:var(--muted);font-size:12px;margin-top:36px;border-top:1px solid var(--line);padding-top:8px}
"""


def page_shell(title: str, body: str) -> str:
    from .. import __version__

    foot = (f"<footer>batchkit {esc(__version__)} · written {esc(fmt_clock(time.time(), date=True))} · one "
            "self-contained page: no scripts, nothing loaded from the network</footer>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<meta name="color-scheme" content="light dark">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>"
            f"<body><main>{body}{foot}</main></body></html>\n")


def write_page(path: str | os.PathLike, page: str) -> None:
    """Write ``page`` to ``path`` atomically; a new file is the user's own (0600), like the journal
    it comes from: it holds item keys and error messages."""
    from ..atomic import write_atomic

    write_atomic(path, page, mode=None if os.path.exists(path) else 0o600)


def badge(state: str) -> str:
    color = COLORS.get(state, COLORS["axis"])
    return f'<span class="badge state" style="background:{color}">{esc(state)}</span>'


def _tile(value: str, label: str, title: str = "") -> str:
    tip = f' title="{esc(title)}"' if title else ""
    return f'<div class="tile"{tip}><b>{esc(value)}</b><span>{esc(label)}</span></div>'


def legend(*items: tuple[str, str]) -> str:
    return ('<p class="legend">' + "".join(f'<span><i style="background:{c}"></i>{esc(t)}</span>' for c, t in items)
            + "</p>")


# -- a run -----------------------------------------------------------------------------------


def run_page(view: RunView) -> str:
    """The whole report of one run: summary, timeline, throughput, chunk sizes, item durations,
    failures, events and settings."""
    run = view.run
    job = visible(run.get("job") or "?", limit=200)
    run_id = run.get("id")
    title = f"batchkit run {run_id}: {job}" if run_id is not None else f"batchkit: {job}"
    parts = [_header(view, title)]
    parts.append(_timeline_section(view))
    parts.append(_durations_section(view))
    parts.append(_failures_section(view))
    parts.append(_events_section(view))
    parts.append(_settings_section(view))
    return page_shell(title, "".join(parts))


def _header(view: RunView, title: str) -> str:
    run = view.run
    state = run.get("state") or "?"
    succeeded, failed = view.succeeded, view.failed
    done = succeeded + failed
    total = run.get("total")
    elapsed = view.elapsed
    args = run.get("args") or {}
    argtext = " ".join(f"{k}={v}" for k, v in redact(args).items())
    out = [f'<h1 id="title">{esc(title)}{badge(state)}</h1>']
    when = f"started {fmt_clock(run['started'], date=True)}"
    if run.get("ended"):
        when += f", ended {fmt_clock(run['ended'], date=True)}"
    if run.get("host"):
        when += f" on {run['host']}" + (f" (pid {run['pid']})" if run.get("pid") else "")
    out.append(f'<p class="sub">{esc(visible(argtext, limit=400)) + " · " if argtext else ""}{esc(when)}</p>')
    rate = done / elapsed if elapsed > 0 and done else 0.0
    workers = len({w for _, _, w, _, _, _ in view.spans()})
    attempts = (run.get("resumes") or 0) + 1
    tiles = [
        _tile(f"{done:,}" + (f" / {total:,}" if total and total != done else ""), "items with an outcome",
              "items that finished, of the run's total when it is known"),
        _tile(f"{succeeded:,}", "succeeded"),
        _tile(f"{failed:,}", "failed"),
        _tile(fmt_seconds(elapsed), "run time" + (" so far" if state == "running" else "")),
        _tile(f"{fmt_num(rate)}/s", "items per second"),
        _tile(str(workers), "workers", "worker processes or threads that ran chunks (a restarted pool adds new ones)"),
    ]
    if attempts > 1 or run.get("skipped"):
        tiles.append(_tile(str(attempts), "attempts", f"{run.get('skipped') or 0:,} items skipped by the last "
                                                      "attempt: an earlier one had finished them"))
    out.append(f'<div class="tiles">{"".join(tiles)}</div>')
    if state == "running" and total:
        pct = 100 * done / total
        out.append(f'<p class="progress">{pct:.0f}% done <span class="util" style="width:{3 * pct:.0f}px">'
                   "</span></p>")
    for note in view.notes:
        out.append(f'<p class="note">{esc(visible(note))}</p>')
    if run.get("message"):
        cls = "bad" if state in ("error", "crashed", "failed") else "warn"
        out.append(f'<p class="note {cls}" id="message">{esc(visible(run["message"], keep=chr(10)))}</p>')
    out.append(_next_step(view))
    return "".join(out)


def _next_step(view: RunView) -> str:
    """The command that resumes the run (or re-runs its failures), as the run recorded it."""
    run = view.run
    state, command = run.get("state"), run.get("command")
    if command:
        command = visible(command, limit=2000)
        if state in RESUMABLE:
            return (f'<p id="resume">Stopped before the end ({esc(state)}); resume it, skipping what finished:</p>'
                    f'<pre class="cmd">{esc(command)}</pre>')
        if state == "running":
            return (f'<p id="resume">Still running. Should it stop or crash, resume it with:</p>'
                    f'<pre class="cmd">{esc(command)}</pre>')
        base = command[: -len(" --resume")] if command.endswith(" --resume") else command
        if state == "failed":
            return (f'<p id="resume">Re-run only the failed items:</p>'
                    f'<pre class="cmd">{esc(base + " --retry-failed")}</pre>')
        return f'<p id="resume" class="muted">Command:</p><pre class="cmd">{esc(base)}</pre>'
    if state in RESUMABLE and run.get("id") is not None:
        return ('<p id="resume">Stopped before the end; it was started from Python: run it again with the same '
                "<code>journal=</code> and <code>resume=True</code> to finish it.</p>")
    return ""


def _timeline_section(view: RunView) -> str:
    lane_list, stats, median = lanes(view)
    if not lane_list:
        return ('<h2 id="timeline">Timeline</h2><p class="muted">No chunk has been recorded'
                + (" yet." if view.run.get("state") == "running" else ".") + "</p>")
    axis = TimeAxis.fit(view.attempts(), LABELS, WIDTH - LABELS - 14)
    lane_h = max(7.0, min(26.0, 420.0 / len(lane_list)))
    out = ['<h2 id="timeline">Workers over time</h2>',
           '<p class="muted">Each row is a worker process or thread, each bar a chunk it ran: gaps are idle time, '
           "a long bar at the end is a straggler. Hover for details.</p>",
           svg.gantt(lane_list, axis, markers(view), width=WIDTH, lane_height=lane_h, label_width=LABELS)]
    out.append(legend((COLORS["ok"], "chunk"), (COLORS["fail"], "red base: failed items in the chunk"),
                       (COLORS["rerun"], "piece re-run after a worker crash"),
                       (COLORS["slow"], f"outlined: slow (≥ 3× the median {fmt_seconds(median)})"),
                       (COLORS["restart"], "▸ new worker process in the row"),
                       (COLORS["crash"], "✕ crash"), (COLORS["timeout"], "▲ timeout"), (COLORS["retry"], "● retry")))
    window = sum(t1 - t0 for t0, t1, _, _ in axis.segments)
    rows = []
    for st in stats:
        util = min(1.0, st.busy / window) if window > 0 else 0.0
        who = ", ".join(st.workers)
        rows.append(f'<tr><td title="{esc(who)}">{esc(st.label)}</td><td class="n">{st.chunks:,}</td>'
                    f'<td class="n">{st.items:,}</td><td class="n">{esc(fmt_seconds(st.busy))}</td>'
                    f'<td><span class="util" style="width:{120 * util:.0f}px"></span> {100 * util:.0f}%</td></tr>')
    busy = sum(st.busy for st in stats)
    overall = busy / (window * len(stats)) if window > 0 and stats else 0.0
    out.append(f'<details id="workers"><summary>Workers were busy {100 * overall:.0f}% of the time '
               f'({len(stats)} rows)</summary><table><tr><th>worker</th><th class="n">chunks</th>'
               f'<th class="n">items</th><th class="n">busy</th><th>busy share</th></tr>{"".join(rows)}</table>'
               "</details>")
    series = throughput(view, axis)
    if series:
        out.append('<h2 id="throughput">Throughput</h2>')
        out.append(svg.time_series(series, axis, width=WIDTH, height=170, y_label="items/s", captions=False))
        out.append(legend((COLORS["tput"], "items per second"), (COLORS["fail"], "failed items per second")))
    sizes, log = chunk_sizes(view)
    if sizes.points:
        setting = (view.run.get("settings") or {}).get("chunk_size")
        out.append('<h2 id="chunks">Chunk size</h2>')
        out.append(f'<p class="muted">{len(view.chunks):,} chunks'
                   + (f" (chunk size: {esc(setting)})" if setting is not None else "")
                   + ": with <code>auto</code>, chunks grow until each takes about 0.2–2 s.</p>")
        out.append(svg.time_series([sizes], axis, width=WIDTH, height=150, y_label="items per chunk", log=log,
                               captions=False))
    return "".join(out)


def _durations_section(view: RunView) -> str:
    ok, bad = sorted(view.durations_ok), sorted(view.durations_failed)
    every = sorted(ok + bad) if bad else ok
    if not every:
        return ""
    positive = [d for d in every if d > 0]
    zero = len(every) - len(positive)
    out = ['<h2 id="durations">Item durations</h2>']
    p50, p90, p99 = (percentile(every, q) for q in (0.5, 0.9, 0.99))
    out.append(f'<p class="muted">{len(every):,} items: median {esc(fmt_seconds(p50))}, 90% under '
               f'{esc(fmt_seconds(p90))}, 99% under {esc(fmt_seconds(p99))}, slowest {esc(fmt_seconds(every[-1]))}'
               + (f"; {zero:,} without a measured time (a crash, or not started)" if zero else "") + ".</p>")
    if positive:
        lo, hi = positive[0], positive[-1]
        log = hi / lo > 3  # durations over orders of magnitude: a log scale; else a linear one
        edges = svg.log_edges(lo, hi, 40) if log else svg.linear_edges(lo, hi, 30)
        from bisect import bisect_right

        def counts(values: list[float]) -> list[int]:
            c = [0] * (len(edges) - 1)
            for v in values:
                if v > 0:
                    c[min(len(c) - 1, max(0, bisect_right(edges, v) - 1))] += 1
            return c

        stacks = [("tput", counts(ok))] + ([("fail", counts(bad))] if bad else [])
        out.append(svg.histogram(edges, stacks, width=WIDTH, height=180, log_x=log,
                             marks=[(p50, "p50"), (p90, "p90"), (p99, "p99")]))
        out.append(legend((COLORS["tput"], "succeeded"), (COLORS["fail"], "failed")))
    return "".join(out)


def _failures_section(view: RunView) -> str:
    groups = view.failures.sorted()
    failed = view.failed
    if not failed and not groups:
        return '<h2 id="failures">Failures</h2><p class="muted">None: every item succeeded.</p>'
    out = [f'<h2 id="failures">Failures</h2><p class="muted">{failed:,} failed item{"s" * (failed != 1)} in '
           f'{len(groups):,} group{"s" * (len(groups) != 1)} (same exception type and message, numbers and '
           "quoted text aside).</p>"]
    for g in groups[:50]:
        out.append(_group(g, failed))
    if len(groups) > 50:
        rest = sum(g.count for g in groups[50:])
        out.append(f'<p class="muted">… {len(groups) - 50:,} more groups ({rest:,} failures): '
                   "<code>batchkit show RUN --all</code> lists every one.</p>")
    if view.failures.other:
        out.append(f'<p class="muted">… and {view.failures.other:,} failures of yet other kinds.</p>')
    return "".join(out)


def _group(g: FailureGroup, failed: int) -> str:
    kind = f" ({g.kind})" if g.kind != "exception" else ""
    step = f"[{visible(g.step, limit=100)}] " if g.step else ""
    share = f"{100 * g.count / failed:.0f}%" if failed else ""
    out = [f'<div class="group"><h3><span class="count">{g.count:,}×</span> {esc(step)}'
           f"<code>{esc(visible(g.type, limit=200))}{esc(kind)}: {esc(visible(g.pattern, limit=300))}</code>"
           f' <span class="muted">{esc(share)}</span></h3>']
    for ex in g.examples:
        where = f"item {ex['idx']:,}: " if ex.get("idx") is not None else ""
        meta = []
        if (ex.get("attempts") or 1) > 1:
            meta.append(f"{ex['attempts']} attempts")
        if ex.get("duration"):
            meta.append(fmt_seconds(ex["duration"]))
        out.append(f'<p class="example">{esc(where)}<code class="key">{esc(visible(ex.get("key"), limit=400))}</code>'
                   + (f' <span class="muted">({esc(", ".join(meta))})</span>' if meta else "") + "</p>")
        message = ex.get("message") or ""
        if message:
            out.append(f'<pre class="msg">{esc(visible(message, keep=chr(10) + chr(9), limit=4000))}</pre>')
        if ex.get("traceback"):
            out.append(f"<details><summary>traceback</summary><pre class=\"tb\">"
                       f"{esc(visible(ex['traceback'], keep=chr(10) + chr(9)))}</pre></details>")
    if len(g.messages) > 1 and max(g.messages.values()) > 1:  # some repeat: which (all differ: see the examples)
        common = sorted(g.messages.items(), key=lambda kv: -kv[1])[:5]
        listed = "".join(f"<li><code>{esc(visible(m, limit=200))}</code> <span class=\"muted\">× {n:,}</span></li>"
                         for m, n in common)
        more = "at least " if len(g.messages) >= MESSAGES else ""
        out.append(f'<details class="messages"><summary>{more}{len(g.messages):,} different messages</summary>'
                   f"<ul>{listed}</ul></details>")
    if g.count > len(g.examples):
        out.append(f'<p class="muted">… and {g.count - len(g.examples):,} more like these.</p>')
    out.append("</div>")
    return "".join(out)


def _events_section(view: RunView) -> str:
    if not view.events:
        return ""
    kinds: dict[str, int] = {}
    for ev in view.events:
        kinds[ev["kind"]] = kinds.get(ev["kind"], 0) + 1
    plural = {"crash": "crashes", "retry": "retries", "timeout": "timeouts"}
    summary = ", ".join(f"{n:,} {plural.get(k, k + 's') if n > 1 else k}" for k, n in sorted(kinds.items()))
    rows = []
    for ev in view.events[:200]:
        idx = "" if ev.get("idx") is None else f"{ev['idx']:,}: "
        rows.append(f"<tr><td>{esc(fmt_clock(ev['time']))}</td><td>{esc(ev['kind'])}</td>"
                    f'<td class="key">{idx}{esc(visible(ev.get("key") or "", limit=200))}</td>'
                    f"<td>{esc(visible(ev.get('worker') or '', limit=100) if ev['kind'] == 'retry' else '')}</td>"
                    f"<td>{esc(visible(ev.get('detail') or '', limit=300))}</td></tr>")
    more = (f'<p class="muted">… {len(view.events) - 200:,} more.</p>' if len(view.events) > 200 else "")
    return (f'<h2 id="events">Retries, crashes and timeouts</h2><details open><summary>{esc(summary)}</summary>'
            f"<table><tr><th>time</th><th>kind</th><th>item</th><th>worker</th><th>detail</th></tr>"
            f"{''.join(rows)}</table>{more}</details>")


def _settings_section(view: RunView) -> str:
    run = view.run
    rows: list[tuple[str, Any]] = []
    for k, v in redact(run.get("settings") or {}).items():
        rows.append((k, v))
    for k, v in redact(run.get("args") or {}).items():
        rows.append((f"argument {k}", v))
    for k in ("exit_code", "resumes", "skipped"):
        if run.get(k) or (k == "exit_code" and run.get(k) is not None):
            rows.append((k.replace("_", " "), run[k]))
    if run.get("id") is not None:
        rows.append(("run id", run["id"]))
    if not rows:
        return ""
    body = "".join(f"<tr><th>{esc(visible(k))}</th><td><code>{esc(visible(_value(v), limit=500))}</code></td></tr>"
                   for k, v in rows)
    return f'<h2 id="settings">Settings</h2><table class="settings">{body}</table>'


def _value(v: Any) -> str:
    if v is None:
        return "none"
    return v if isinstance(v, str) else json.dumps(v, default=str)


# -- the notebook's compact chart -----------------------------------------------------------


def compact_html(view: RunView, width: int = 640) -> str:
    """The worker timeline and the throughput, small, for a Report shown in a notebook (no
    stylesheet: the shapes' own attributes colour them)."""
    lane_list, _, _ = lanes(view)
    if not lane_list:
        return ""
    left = 70
    axis = TimeAxis.fit(view.attempts(), left, width - left - 8)
    lane_h = max(3.0, min(10.0, 120.0 / len(lane_list)))
    chart = svg.gantt(lane_list, axis, markers(view), width=width, lane_height=lane_h, label_width=left, compact=True)
    series = throughput(view, axis, px_per_bin=10.0)
    spark = (svg.time_series(series[:1], axis, width=width, height=90, y_label="items/s", captions=False)
             if series else "")
    return (f'<div class="batchkit-charts" style="margin-top:6px"><div style="font-size:12px;color:#5b6168">'
            f"workers over time ({len(lane_list)} rows; hover a bar for its chunk)</div>{chart}{spark}</div>")
