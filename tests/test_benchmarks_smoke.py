"""The benchmark code keeps working: its suites at tiny sizes, and the table script end to end.

Nothing here asserts speed (speed belongs in benchmarks/); these tests fail when a suite or
the table script breaks, e.g. after an API change.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import PY, python_env

ROOT = Path(__file__).resolve().parent.parent


def _smoke_env() -> dict:
    env = python_env()
    env["BATCHKIT_BENCH_SIZE"] = "smoke"
    return env


@pytest.mark.timeout(100)
def test_every_benchmark_suite_runs_at_smoke_sizes():
    proc = subprocess.run([PY, "-m", "pytest", "benchmarks", "-q", "--benchmark-disable", "-p", "no:cacheprovider",
                           "-o", "addopts="],
                          cwd=ROOT, env=_smoke_env(), capture_output=True, text=True, timeout=90)
    tail = proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    summary = proc.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    # Every scenario has its cases: map (tiny, dask, cpu, io), memory, start-up, checksum.
    assert passed >= 30, summary
    assert "failed" not in summary and "error" not in summary, summary


@pytest.mark.timeout(60)
def test_table_script_prints_targets_and_rewrites_only_the_results_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# intro kept\n<!-- results:start -->\nOLD TABLE\n<!-- results:end -->\noutro kept\n")
    raw = tmp_path / "raw.json"
    proc = subprocess.run([PY, "-m", "benchmarks.run", "--size", "smoke", "--only", "io",
                           "--write-readme", str(readme), "--json", str(raw)],
                          cwd=ROOT, env=_smoke_env(), capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    # The target row carries a verdict, and the scenario's table compares with batchkit's row.
    assert re.search(r"\| I/O-bound .*ThreadPoolExecutor\.map \| <= 1\.15× \| [\d.]+× \| (met|\*\*not met\*\*) \|",
                     out), out
    assert "| **batchkit thread** | 40 |" in out and "| cf.ThreadPoolExecutor.map | 40 |" in out
    assert "| cores |" in out and "| Python |" in out
    doc = readme.read_text()
    assert doc.startswith("# intro kept\n<!-- results:start -->\n### Results of ")
    assert doc.endswith("<!-- results:end -->\noutro kept\n") and "OLD TABLE" not in doc
    results = json.loads(raw.read_text())["results"]["io"]
    assert {r["name"] for r in results} >= {"batchkit thread", "cf.ThreadPoolExecutor.map"}
    assert all(len(r["times"]) == 1 for r in results if not r["skipped"])


def test_table_script_refuses_an_unknown_scenario():
    proc = subprocess.run([PY, "-m", "benchmarks.run", "--only", "tiny,nope"], cwd=ROOT, env=_smoke_env(),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "unknown scenario 'nope'" in proc.stderr and "Traceback" not in proc.stderr
