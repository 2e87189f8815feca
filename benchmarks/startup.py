"""Start-up: ``import batchkit`` and the CLI's light commands, timed as fresh processes.

Each command runs as a new process, so the figure is what a shell user or cron waits for. A
second, untimed run of each reports which heavy modules (dask, distributed, joblib, loky) it loaded:
the light commands must load none of them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Callable

from .checksum import batchkit_exe
from .measure import Target, Timing, time_command
from .table import seconds

HEAVY = ("dask", "distributed", "joblib", "loky")

# Runs the CLI in-process, then reports (on stderr) which heavy modules it imported.
_PROBE = f"""
import json, sys
argv = sys.argv[1:]
try:
    if argv == ["import"]:
        import batchkit
    else:
        from batchkit.cli import main
        main(argv)
except SystemExit:
    pass
heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
sys.stderr.write("\\nHEAVY=" + json.dumps(heavy) + "\\n")
"""


def heavy_modules(argv: list[str]) -> list[str] | None:
    """The heavy modules loaded by ``batchkit ARGV`` (``["import"]``: ``import batchkit``)."""
    proc = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, timeout=120)
    for line in proc.stderr.splitlines():
        if line.startswith("HEAVY="):
            return json.loads(line[len("HEAVY="):])
    return None


def _works(argv: list[str]) -> bool:
    return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def run(rounds: int, log: Callable[[str], None]) -> tuple[list[str], list[list[str]], list[Target], list[Timing]]:
    """Time the interpreter alone, ``import batchkit``, the light CLI commands and two peers' imports."""
    exe = batchkit_exe()
    py = sys.executable
    plan: list[tuple[str, list[str], list[str] | None]] = [
        ("python3 -c pass", [py, "-c", "pass"], None),
        ("python3 -c 'import batchkit'", [py, "-c", "import batchkit"], ["import"]),
    ]
    if exe:
        for args in (["--help"], ["jobs"], ["run", "checksum", "--help"]):
            if _works([exe, *args]):
                plan.append(("batchkit " + " ".join(args), [exe, *args], args))
    plan += [("python3 -c 'import joblib'", [py, "-c", "import joblib"], None),
             ("python3 -c 'import dask.distributed'", [py, "-c", "import dask.distributed"], None)]
    log(f"  {len(plan)} commands x {rounds} rounds")
    base = None
    rows, targets, timings = [], [], []
    for name, argv, probe in plan:
        times, _ = time_command(argv, rounds)
        t = Timing(name, 1, times)
        timings.append(t)
        base = t.median if base is None else base
        heavy = heavy_modules(probe) if probe is not None else None
        loaded = "—" if probe is None else ("none" if heavy == [] else ", ".join(heavy or ["?"]))
        bold = f"**{name}**" if probe is not None else name
        rows.append([bold, f"{t.median * 1000:.0f}", f"{(t.median - base) * 1000:.0f}", loaded])
        if probe is not None:
            what = name.replace("python3 -c ", "").strip("'")
            targets.append(Target(f"`{what}` loads none of dask, distributed, joblib, loky",
                                  float(len(heavy)) if heavy is not None else None, 0, "<=", "modules",
                                  f"wall {seconds(t.median)} s"))
    header = ["command", "median wall ms", "ms over bare python3", "dask / distributed / joblib / loky loaded"]
    return header, rows, targets, timings
