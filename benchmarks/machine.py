"""The machine a table was measured on: cores, CPU, memory, Python, and the peers' versions."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata

PACKAGES = ("batchkit", "joblib", "dask", "distributed", "mpire", "pqdm", "tqdm")
TOOLS = (("GNU parallel", ["parallel", "--version"]), ("sha256sum", ["sha256sum", "--version"]),
         ("xargs", ["xargs", "--version"]))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> str:
    try:
        import psutil

        return f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    except Exception:
        return "unknown"


def _tool_version(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "not installed"
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.splitlines()[0].strip() if out else "unknown"


def load() -> str:
    """The 1/5/15-minute load averages, as ``"1.02 0.80 0.55"``."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def describe() -> list[tuple[str, str]]:
    """``(label, value)`` pairs describing this machine and the software measured."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    rows = [
        ("cores", f"{os.cpu_count()} ({usable} usable)"),
        ("CPU", _cpu_model()),
        ("memory", _memory_gb()),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_implementation()} {sys.version.split()[0]}"),
        ("packages", ", ".join(versions)),
    ]
    rows += [(label, _tool_version(argv)) for label, argv in TOOLS]
    return rows
