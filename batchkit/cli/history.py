"""``batchkit history``, ``batchkit show RUN_ID`` and ``batchkit status``: reading the journal.

All three only read ``$BATCHKIT_HOME/batchkit.db`` (WAL mode lets them do so while a run
writes), so they work from any terminal, while a run is in progress or long after it.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import Any, Iterator

import click

from ..errors import BatchkitError

RATE_WINDOW = 60.0  # seconds of recent items the status rate is measured over
SHOW_FAILURES = 50


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"batchkit: error: {message}", err=True)
    sys.exit(code)


def _open() -> Any:
    """The journal, or ``None`` when no run was ever recorded (reading must not create it)."""
    from ..state.journal import Journal, default_path

    if not default_path().exists():
        return None
    try:
        return Journal(default_path(), readonly=True)
    except BatchkitError as exc:
        _fail(str(exc), exc.exit_code)


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{sec:02d}s" if hours else f"{minutes}m{sec:02d}s"


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> Iterator[str]:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        yield "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()


def _run_json(run: dict) -> dict:
    elapsed = run.get("elapsed") or 0.0
    done = (run.get("succeeded") or 0) + (run.get("failed") or 0)
    return {"run_id": run["id"], "job": run["job"], "state": run["state"], "args": run["args"],
            "started": datetime.fromtimestamp(run["started"]).astimezone().isoformat(timespec="seconds"),
            "ended": (datetime.fromtimestamp(run["ended"]).astimezone().isoformat(timespec="seconds")
                      if run.get("ended") else None),
            "total": run.get("total"), "succeeded": run.get("succeeded"), "failed": run.get("failed"),
            "skipped": run.get("skipped"), "elapsed": round(elapsed, 3),
            "throughput": round(done / elapsed, 3) if elapsed else None,
            "resumes": run.get("resumes"), "pid": run.get("pid"), "host": run.get("host"),
            "message": run.get("message")}


HTML_HELP = "Write one self-contained HTML page with charts to FILE ('-' for stdout); opens offline."
HTML_LIMIT = 500  # runs drawn by history --html unless --limit says otherwise


def _write_html(path: str, page: str, what: str) -> None:
    """Write a report page (or print it for ``-``); a path that cannot be written exits 2."""
    if path == "-":
        click.echo(page, nl=False)
        return
    from ..ops.htmlreport import write_page

    try:
        write_page(path, page)
    except OSError as exc:
        _fail(f"cannot write {path}: {exc.strerror or exc}; choose another --html file")
    click.echo(f"wrote {what} to {path}")


@click.command("history")
@click.option("--job", help="Only runs of this job.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help=f"How many runs (default 20; {HTML_LIMIT} with --html).")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of runs instead of a table.")
@click.option("--html", "html_path", metavar="FILE", help=HTML_HELP + " Runs of each job over time.")
def history(job: str | None, limit: int | None, as_json: bool, html_path: str | None) -> None:
    """Past runs, newest first: state, counts, duration and throughput."""
    journal = _open()
    if html_path is not None:
        from ..ops.htmlhistory import history_page
        from ..ops.runview import history_rows

        runs = history_rows(journal, journal.runs(job=job, limit=limit or HTML_LIMIT)) if journal else []
        _write_html(html_path, history_page(runs, job=job), f"the history of {len(runs)} runs")
        return
    runs = journal.runs(job=job, limit=limit or 20) if journal else []
    if as_json:
        click.echo(json.dumps([_run_json(r) for r in runs], indent=1))
        return
    if not runs:
        click.echo("no runs recorded" + (f" for job {job!r}" if job else ""))
        return
    rows = []
    for r in runs:
        d = _run_json(r)
        rate = f"{d['throughput']:,.1f}/s" if d["throughput"] is not None else "-"
        rows.append((str(r["id"]), r["job"], r["state"], _when(r["started"]), _duration(r.get("elapsed")),
                     str(r["succeeded"]), str(r["failed"]), str(r["skipped"]), rate))
    for line in _table(("RUN", "JOB", "STATE", "STARTED", "DURATION", "OK", "FAILED", "SKIPPED", "RATE"), rows):
        click.echo(line)


@click.command("show")
@click.argument("run_id", type=int)
@click.option("--tracebacks", is_flag=True, help="Print each failure's traceback too.")
@click.option("--all", "show_all", is_flag=True, help=f"Every failure (default: the first {SHOW_FAILURES}).")
@click.option("--json", "as_json", is_flag=True, help="The run and its failures as one JSON object.")
@click.option("--html", "html_path", metavar="FILE",
              help=HTML_HELP + " Workers' timeline, throughput, chunk sizes, durations, failures, settings.")
def show(run_id: int, tracebacks: bool, show_all: bool, as_json: bool, html_path: str | None) -> None:
    """One run: its summary and its failures with their messages."""
    journal = _open()
    run = journal.run(run_id) if journal else None
    if run is None:
        _fail(f"no run {run_id} in the journal; `batchkit history` lists the runs")
    if html_path is not None:
        from ..ops.htmlreport import run_page
        from ..ops.runview import from_journal

        _write_html(html_path, run_page(from_journal(journal, run_id)), f"the report of run {run_id}")
        return
    failures = journal.items(run_id, failed_only=True)
    if as_json:
        keep = ("key", "idx", "error_type", "error_kind", "message", "step", "attempts", "duration")
        fails = [{k: f[k] for k in keep} | ({"traceback": f["traceback"]} if tracebacks else {}) for f in failures]
        click.echo(json.dumps({**_run_json(run), "failures": fails}, indent=1))
        return
    args = " ".join(f"{k}={v}" for k, v in run["args"].items()) if run["args"] else "(no arguments)"
    click.echo(f"run {run['id']}: {run['job']} {args}")
    click.echo(f"  {run['state']}, started {_when(run['started'])}, ended {_when(run.get('ended'))}, "
               f"{_duration(run.get('elapsed'))}")
    click.echo(f"  {run['succeeded']} succeeded, {run['failed']} failed, {run['skipped']} skipped"
               + (f" of {run['total']}" if run.get("total") else ""))
    if run.get("message"):
        click.echo(f"  {run['message']}")
    shown = failures if show_all else failures[:SHOW_FAILURES]
    if shown:
        click.echo("failures:")
    for f in shown:
        step = f"[{f['step']}] " if f.get("step") else ""
        first = (f["message"] or "").splitlines()[0] if f.get("message") else ""
        kind = f" ({f['error_kind']})" if f.get("error_kind") not in (None, "exception") else ""
        click.echo(f"  {f['key']}: {step}{f['error_type']}{kind}: {first}".rstrip(": "))
        if tracebacks and f.get("traceback"):
            for line in f["traceback"].rstrip().splitlines():
                click.echo(f"      {line}")
    if len(failures) > len(shown):
        click.echo(f"  ... and {len(failures) - len(shown)} more (--all shows every one)")


def progress(journal: Any, run: dict, now: float | None = None) -> dict:
    """Done / failed / pending / rate / ETA of a running run, from its item rows and ``total``."""
    now = time.time() if now is None else now
    window = max(1.0, min(RATE_WINDOW, now - run["started"]))
    done, failed, recent = journal.counts(run["id"], since=now - window)
    rate = recent / window
    total = run.get("total")
    pending = max(0, total - done) if total is not None else None
    eta = pending / rate if pending is not None and rate > 0 else None
    return {"run_id": run["id"], "job": run["job"], "pid": run.get("pid"), "host": run.get("host"),
            "started": run["started"], "total": total, "done": done, "failed": failed, "pending": pending,
            "rate": round(rate, 3), "eta": round(eta, 1) if eta is not None else None}


@click.command("status")
@click.option("--job", help="Only runs of this job.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array instead of a table.")
def status(job: str | None, as_json: bool) -> None:
    """Runs in progress, from any terminal: done, failed, pending, rate and ETA."""
    journal = _open()
    running = [r for r in (journal.runs(job=job, limit=1000, states=["running"]) if journal else [])
               if r["state"] == "running"]  # a "running" row whose process is gone reads as "crashed"
    rows = [progress(journal, r) for r in running]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo("no runs in progress")
        return
    table = []
    for p in rows:
        pct = f" ({100 * p['done'] / p['total']:.0f}%)" if p["total"] else ""
        table.append((str(p["run_id"]), p["job"], str(p["pid"]), _when(p["started"]), f"{p['done']}{pct}",
                      str(p["failed"]), "?" if p["pending"] is None else str(p["pending"]),
                      f"{p['rate']:,.1f}/s", "?" if p["eta"] is None else _duration(p["eta"])))
    for line in _table(("RUN", "JOB", "PID", "STARTED", "DONE", "FAILED", "PENDING", "RATE", "ETA"), table):
        click.echo(line)
