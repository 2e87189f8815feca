"""The queue benchmark keeps working: its table at smoke sizes through the benchmarks' table script
(speed is not asserted here; it belongs in benchmarks/)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import PY, python_env

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(100)
def test_the_queue_scenario_prints_put_and_consume_rows():
    env = python_env()
    env["BATCHKIT_BENCH_SIZE"] = "smoke"
    proc = subprocess.run([PY, "-m", "benchmarks.run", "--size", "smoke", "--only", "queue"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "#### Durable queue: put and consume (tiny items)" in out
    for row in (r"\*\*Queue\.put, one item a call\*\* \| 100 \|",
                r"\*\*Queue\.put_many, 1,000 items a call\*\* \| 2,000 \|",
                r"\*\*consume: QueueSource \+ QueueSink, thread backend\*\* \| 2,000 \|"):
        assert re.search(row + r" [\d.]+ \([\d.]+–[\d.]+\) \| [\d,.]+ \|", out), (row, out[-3000:])
