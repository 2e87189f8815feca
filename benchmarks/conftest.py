"""Fixtures for the pytest-benchmark suites (``python3 -m pytest benchmarks``).

Sizes come from ``$BATCHKIT_BENCH_SIZE`` (full, quick or smoke; default quick). CI runs the
smoke sizes with ``--benchmark-disable`` (see tests/test_benchmarks_smoke.py) so this code
keeps working; the table with ratios and targets comes from ``python3 -m benchmarks.run``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .peers import Shared
from .scenarios import Sizes, sizes_from_env

ROOT = str(Path(__file__).resolve().parent.parent)
# Workers started by spawn, loky or Dask import `benchmarks.workloads` by reference.
if ROOT not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)

SIZES = sizes_from_env()


@pytest.fixture(scope="session")
def sizes() -> Sizes:
    """The sizes of this session."""
    return SIZES


@pytest.fixture(scope="session")
def shared():
    """One Dask LocalCluster (2 worker processes) for every Dask contender of the session."""
    s = Shared()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Nothing benchmarked may touch the user's own journal."""
    monkeypatch.setenv("BATCHKIT_HOME", str(tmp_path / "bkhome"))
