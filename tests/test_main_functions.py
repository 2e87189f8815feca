"""Functions defined in ``__main__`` (a script or a notebook cell) work on every backend."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from conftest import NAMED_BACKENDS, python_env

SCRIPT = textwrap.dedent("""
    import sys
    import batchkit as bk

    SCALE = 3

    def triple(x):            # defined in __main__: workers cannot import it by name
        return x * SCALE

    class Box:                # a class from __main__ travels too
        def __init__(self, v):
            self.v = v

    if __name__ == "__main__":
        backend = sys.argv[1]
        report = bk.run(triple, range(50), backend=backend, workers=2, progress=False)
        boxes = bk.run(lambda x: Box(x).v + 1, range(5), backend=backend, workers=2, progress=False)
        print(sum(report.values()), boxes.values())
""")


@pytest.mark.parametrize("backend", NAMED_BACKENDS)
def test_function_defined_in_main_runs_on_every_backend(tmp_path, backend):
    script = tmp_path / "notebook_like.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script), backend], capture_output=True, text=True,
                         env=python_env(), cwd=tmp_path, timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[0] == f"{3 * sum(range(50))} [1, 2, 3, 4, 5]"
