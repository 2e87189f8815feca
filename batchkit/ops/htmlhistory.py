"""The history of a job as one self-contained HTML page (``batchkit history --html``): for the
nightly cron user, each job's runs over time — run time and items per run, coloured by the end
state — and a table of them, newest first. Same page rules as :mod:`batchkit.ops.htmlreport`.
"""

from __future__ import annotations

import time
from typing import Iterable

from . import svgcharts as svg
from .htmlreport import WIDTH, badge, legend, page_shell
from .runview import visible
from .svgaxis import COLORS, esc, fmt_clock, fmt_num, fmt_seconds

__all__ = ["history_page"]


def history_page(runs: Iterable[dict], job: str | None = None) -> str:
    """The runs of each job over time (oldest to newest): duration and items per run with its end
    state, and a table. ``runs`` are :meth:`Journal.runs` rows; a run not ended should carry its
    counts so far (``succeeded``, ``failed``) and ``elapsed``."""
    by_job: dict[str, list[dict]] = {}
    for r in runs:
        by_job.setdefault(r["job"], []).append(r)
    title = f"batchkit history: {visible(job, limit=200)}" if job else "batchkit history"
    if not by_job:
        return page_shell(title, f'<h1 id="title">{esc(title)}</h1><p class="muted">No runs recorded'
                            + (f" for job {esc(visible(job, limit=200))}" if job else "") + ".</p>")
    body = [f'<h1 id="title">{esc(title)}</h1><p class="sub">{sum(len(v) for v in by_job.values()):,} runs of '
            f"{len(by_job)} job{'s' if len(by_job) > 1 else ''}, newest last in the charts and first in the tables; "
            "<code>batchkit show RUN --html FILE</code> draws one run in detail.</p>"]
    for name, rows in sorted(by_job.items(), key=lambda kv: -max(r["started"] for r in kv[1])):
        body.append(_job_history(name, sorted(rows, key=lambda r: r["started"])))
    return page_shell(title, "".join(body))


def _job_history(job: str, runs: list[dict]) -> str:
    states: dict[str, int] = {}
    for r in runs:
        states[r["state"]] = states.get(r["state"], 0) + 1
    ended = [r for r in runs if r["state"] == "succeeded"]
    durations = sorted(r.get("elapsed") or 0.0 for r in runs)
    median = durations[len(durations) // 2] if durations else 0.0
    last = runs[-1]
    out = [f'<h2 class="job">{esc(visible(job, limit=200))}</h2>',
           f'<p class="muted">{len(runs):,} run{"s" * (len(runs) != 1)}: '
           + esc(", ".join(f"{n} {s}" for s, n in sorted(states.items(), key=lambda kv: -kv[1])))
           + f"; median run time {esc(fmt_seconds(median))}; last run {esc(fmt_clock(last['started'], date=True))}"
           f" {badge(last['state'])}"
           + (f"; {len(ended)} of {len(runs)} succeeded" if runs else "") + "</p>"]
    cols, items = [], []
    for r in runs:
        label = time.strftime("%m-%d %H:%M", time.localtime(r["started"]))
        done = (r.get("succeeded") or 0) + (r.get("failed") or 0)
        tip = (f"run {r['id']} ({r['state']}), {fmt_clock(r['started'], date=True)}: "
               f"{fmt_seconds(r.get('elapsed') or 0.0)}, {done:,} items, {r.get('failed') or 0:,} failed")
        cols.append(svg.Column(label, r.get("elapsed") or 0.0, r["state"], tip))
        items.append(svg.Column(label, float(done), "ok", tip, overlay=float(r.get("failed") or 0)))
    out.append(svg.bar_chart(cols, width=WIDTH, height=170, y_label="run time", y_fmt=_short_seconds))
    out.append(legend(*((COLORS.get(s, COLORS["axis"]), s) for s in sorted(states))))
    out.append(svg.bar_chart(items, width=WIDTH, height=150, y_label="items"))
    out.append(legend((COLORS["ok"], "items with an outcome"), (COLORS["fail"], "failed")))
    rows = []
    for r in reversed(runs):
        done = (r.get("succeeded") or 0) + (r.get("failed") or 0)
        elapsed = r.get("elapsed") or 0.0
        rate = f"{fmt_num(done / elapsed)}/s" if elapsed > 0 and done else "-"
        message = (r.get("message") or "").strip().split("\n", 1)[0]
        started = esc(fmt_clock(r["started"], date=True))
        rows.append(f"<tr><td class=\"n\">{r['id']}</td><td class=\"when\">{started}</td>"
                    f"<td>{badge(r['state'])}</td><td class=\"n\">{esc(fmt_seconds(elapsed))}</td>"
                    f"<td class=\"n\">{r.get('succeeded') or 0:,}</td><td class=\"n\">{r.get('failed') or 0:,}</td>"
                    f"<td class=\"n\">{r.get('skipped') or 0:,}</td><td class=\"n\">{esc(rate)}</td>"
                    f"<td class=\"n\">{r.get('resumes') or 0}</td>"
                    f"<td>{esc(visible(message, limit=160))}</td></tr>")
    out.append('<table class="runs"><tr><th class="n">run</th><th>started</th><th>state</th><th class="n">'
               'run time</th><th class="n">ok</th><th class="n">failed</th><th class="n">skipped</th>'
               f'<th class="n">rate</th><th class="n">resumes</th><th>message</th></tr>{"".join(rows)}</table>')
    return "".join(out)


def _short_seconds(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.3g} h"
    if s >= 60:
        return f"{s / 60:.3g} min"
    return f"{s:.3g} s"
