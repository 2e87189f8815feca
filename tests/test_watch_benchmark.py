"""The watch benchmark keeps working (at smoke sizes, inside the table script): no figure is asserted."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import PY, python_env

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(100)
def test_watch_scenario_runs_in_the_table_script_with_its_rows_and_targets():
    proc = subprocess.run([PY, "-m", "benchmarks.run", "--size", "smoke", "--only", "watch"], cwd=ROOT,
                          env=python_env(), capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "#### Watching a directory" in out
    for row in (r"\| \*\*latency, OS events \(inotify\)\*\* \| 5 \|", r"\| \*\*latency, polling every 1 s\*\* \| 5 \|",
                r"\| idle, OS events, 200 files \|"):
        assert re.search(row, out), out
    assert re.search(r"\| watch, OS events \(inotify\): a file comes out within settle \+ 2 s of its close \(p95\) "
                     r"\| <= 2 s \| [\d.]+ s \| (met|\*\*not met\*\*) \|", out), out
