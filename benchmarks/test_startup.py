"""pytest-benchmark suite of start-up: ``import batchkit`` and the CLI's light commands, fresh processes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .checksum import batchkit_exe
from .startup import heavy_modules

EXE = batchkit_exe()
CASES = [("import", [sys.executable, "-c", "import batchkit"]),
         ("--help", [EXE or "batchkit", "--help"]),
         ("jobs", [EXE or "batchkit", "jobs"]),
         ("run checksum --help", [EXE or "batchkit", "run", "checksum", "--help"])]


@pytest.mark.parametrize(("name", "argv"), CASES, ids=[c[0] for c in CASES])
def test_startup(benchmark, sizes, name, argv):
    if EXE is None and name != "import":
        pytest.skip("the batchkit console script is not on PATH")

    def once() -> int:
        return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode

    benchmark.group = "startup"
    code = benchmark.pedantic(once, rounds=sizes.startup_rounds, iterations=1)
    assert code == 0, f"{argv} exited {code}"
    # The light commands must not pay for the heavy backends.
    assert heavy_modules(["import"] if name == "import" else argv[1:]) == []
