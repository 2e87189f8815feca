"""Record CPU, memory and per-mount disk usage as JSON lines; a crossed threshold fails its item.

    batchkit run system_status --max-disk 90 --max-memory 90 --log /var/log/status.jsonl

Each check (cpu, memory, and one per mounted filesystem) is one item, so a full disk shows up
as a failed item naming the mount and the threshold — and as exit code 1 for cron. Every
check's figures are appended to --log (stdout without it), crossed or not.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import batchkit as bk
from batchkit.jobs.sinks import write_stdout

# Read-only images are full by construction; their usage says nothing.
SKIP_FSTYPES = {"squashfs", "iso9660", "udf", "cramfs", "erofs"}


class ThresholdCrossed(Exception):
    """A figure is above its --max-* threshold."""


@bk.job(backend="serial", writes_stdout=lambda o: o.get("log") is None)
def system_status(check: str, max_disk: float = 90.0, max_memory: float = 90.0, max_cpu: float = 100.0,
                  log: Path | None = None) -> dict:
    """Check CPU, memory and disk usage (psutil) against thresholds, logging each as a JSON line.

    Args:
        max_disk: Fail a mount whose disk usage is above this percentage.
        max_memory: Fail when memory usage is above this percentage.
        max_cpu: Fail when CPU usage (sampled over 0.2 s) is above this percentage.
        log: Append the JSON lines to this file instead of printing them.
    """
    import psutil

    if check == "cpu":
        figures = {"percent": psutil.cpu_percent(interval=0.2), "count": psutil.cpu_count(),
                   "load": list(os.getloadavg())}
        limit, what = max_cpu, "CPU usage"
    elif check == "memory":
        vm = psutil.virtual_memory()
        figures = {"percent": vm.percent, "total": vm.total, "available": vm.available}
        limit, what = max_memory, "memory usage"
    elif check.startswith("disk:"):
        mount = check[len("disk:"):]
        du = psutil.disk_usage(mount)
        figures = {"mount": mount, "percent": du.percent, "total": du.total, "free": du.free}
        limit, what = max_disk, f"disk usage of {mount}"
    else:
        raise ValueError(f"unknown check {check!r}")
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(), "check": check,
              **figures, "threshold": limit, "ok": figures["percent"] <= limit}
    _append(log, record)
    if not record["ok"]:
        raise ThresholdCrossed(f"{what} is {figures['percent']:.1f}%, above the threshold of {limit:g}%")
    return record


def _append(log: Path | None, record: dict) -> None:
    line = json.dumps(record) + "\n"
    if log is None:
        write_stdout(line)  # whole, in one piece per item
        return
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write with O_APPEND: lines from parallel runs never mix
    finally:
        os.close(fd)


@system_status.source
def _checks(mount: list[str] = ()) -> list[str]:
    """cpu, memory, and each mounted filesystem (or only those given with --mount).

    Args:
        mount: Only check these mount points (repeatable); default: every real filesystem.
    """
    import psutil

    if mount:
        return ["cpu", "memory", *(f"disk:{m}" for m in mount)]
    seen, disks = set(), []
    for part in psutil.disk_partitions(all=False):
        if part.fstype in SKIP_FSTYPES or part.mountpoint in seen:
            continue
        seen.add(part.mountpoint)
        disks.append(f"disk:{part.mountpoint}")
    return ["cpu", "memory", *disks]


@system_status.setup
def _check(max_disk: float = 90.0, max_memory: float = 90.0, max_cpu: float = 100.0,
           mount: list[str] = ()) -> None:
    for name, value in (("--max-disk", max_disk), ("--max-memory", max_memory), ("--max-cpu", max_cpu)):
        if not 0 <= value <= 100:
            raise bk.UsageError(f"{name} {value:g}: use a percentage from 0 to 100")
    for m in mount:
        if not Path(m).is_dir():
            raise bk.UsageError(f"--mount {m}: not a directory")
