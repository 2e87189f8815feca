"""Prometheus textfile-collector metrics: :func:`write_run_metrics`.

node_exporter's textfile collector reads ``*.prom`` files from one directory, so several jobs
often share one file. We read it, replace only this series' samples, and write it back atomically
(a hidden temp file in the same directory, fsync, rename): the collector never sees a half
written file and no temp file is left behind. A file lock (``filelock``: flock on Unix, msvcrt on
Windows) under ``$BATCHKIT_HOME/locks`` serialises jobs that finish at the same moment, so neither
loses the other's update.

A series is one ``(job, name)``: every sample carries ``job="..."``, and a named run (a cron
entry's name, or ``--run-name``) adds ``name="..."``, so two entries running one job (``checksum``
on two roots) keep a series each. Unnamed runs write exactly the labels they always did.

``batchkit_last_success_timestamp_seconds`` is carried over unchanged when a run fails, which
is what makes the usual alert work: ``time() - batchkit_last_success_timestamp_seconds > 86400``.
A job that never succeeded reports 0.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from ..atomic import write_atomic

# (name, help) in the order they are written.
FAMILIES = [
    ("batchkit_last_run_timestamp_seconds", "When the job's last run ended (Unix time)."),
    ("batchkit_last_success_timestamp_seconds", "When the job last ran with every item succeeding (Unix time)."),
    ("batchkit_last_run_exit_code", "Exit code of the job's last run."),
    ("batchkit_items_total", "Items of the job's last run, by result."),
    ("batchkit_run_duration_seconds", "Wall time of the job's last run."),
]
_HELP = dict(FAMILIES)
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\S+)?\s*$")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse(text: str) -> dict[str, dict[Labels, str]]:
    """Samples of a textfile: ``{metric name: {labels: value text}}`` (comments dropped)."""
    out: dict[str, dict[Labels, str]] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue  # not ours to judge: the collector will complain about it, we keep going
        labels = tuple((k, _unescape(v)) for k, v in _LABEL.findall(m.group("labels") or ""))
        out.setdefault(m.group("name"), {})[labels] = m.group("value")
    return out


def render(samples: dict[str, dict[Labels, str]]) -> str:
    """The textfile for ``samples``: each family once, with HELP and TYPE, samples sorted."""
    lines = []
    names = [n for n, _ in FAMILIES if n in samples] + sorted(n for n in samples if n not in _HELP)
    for name in names:
        if name in _HELP:
            lines.append(f"# HELP {name} {_HELP[name]}")
            lines.append(f"# TYPE {name} gauge")
        for labels, value in sorted(samples[name].items()):
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{name}{{{text}}} {value}" if labels else f"{name} {value}")
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) and not value.is_integer() else str(int(value))


def write_run_metrics(path: str | os.PathLike, job: str, *, ended: float, succeeded: bool, exit_code: int,
                      counts: dict[str, int], duration: float, name: str | None = None) -> None:
    """Replace the samples of series ``(job, name)`` in the textfile at ``path`` (created if missing), atomically.

    ``counts`` maps ``"succeeded"``, ``"failed"``, ``"skipped"`` to item counts. ``name`` (a cron
    entry's or run's name) becomes a ``name`` label; other series of the same job are kept.
    """
    path = Path(path)
    series = {"job": job, **({"name": name} if name else {})}
    with _file_lock(path):
        try:
            samples = parse(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            samples = {}
        mine: Labels = tuple(sorted(series.items()))
        previous = samples.get("batchkit_last_success_timestamp_seconds", {}).get(mine, "0")
        for family in samples.values():  # drop this series' old samples, keep every other's
            for labels in [lb for lb in family if _series(lb) == series]:
                del family[labels]

        def put(metric: str, value: Any, **extra: str) -> None:
            labels = tuple(sorted({**series, **extra}.items()))
            samples.setdefault(metric, {})[labels] = value if isinstance(value, str) else _number(value)

        put("batchkit_last_run_timestamp_seconds", round(ended, 3))
        put("batchkit_last_success_timestamp_seconds", round(ended, 3) if succeeded else previous)
        put("batchkit_last_run_exit_code", exit_code)
        for result in ("succeeded", "failed", "skipped"):
            put("batchkit_items_total", int(counts.get(result, 0)), result=result)
        put("batchkit_run_duration_seconds", round(duration, 3))
        # 0644: the collector usually runs as another user.
        write_atomic(path, render({k: v for k, v in samples.items() if v}), mode=0o644)


def _series(labels: Labels) -> dict[str, str]:
    """The series a sample belongs to: its job and, if any, its name."""
    found = dict(labels)
    return {k: found[k] for k in ("job", "name") if k in found}


def _file_lock(path: Path) -> Any:
    """A lock on ``$BATCHKIT_HOME/locks/metrics-<digest>.lock`` for the textfile ``path``: nothing extra
    in the collector's directory. Held by one writer at a time, across threads and processes."""
    from filelock import FileLock  # ~30 ms to import: only runs that write metrics pay it

    from ..state.journal import default_home

    digest = hashlib.blake2b(str(path.resolve()).encode(), digest_size=8).hexdigest()
    lock_path = default_home() / "locks" / f"metrics-{digest}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh lock object per write: two threads of one process exclude each other too.
    return FileLock(lock_path, mode=0o644)
