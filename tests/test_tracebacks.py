"""An item's traceback names the user's file and shows the source line, on every backend, from a
script, a job file and a notebook cell; an exception type reads as the user wrote it."""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

from batchkit.engine.tracebacks import SourceMap, display_type

from conftest import PY, python_env

SCRIPT = textwrap.dedent('''
    import json, sys
    import batchkit as bk

    class Refused(Exception):
        """Raised by the script's own code."""

    def inverse(x):
        if x < 0:
            raise Refused(f"negative {x}")
        return 1 / x

    if __name__ == "__main__":
        report = bk.run(inverse, [1, 0, -1], backend=sys.argv[1], workers=2, progress=False)
        print(json.dumps([o.error.traceback for o in report.failures]))
''')


@pytest.mark.parametrize("backend", ["serial", "thread", "process", "dask"])
def test_script_function_traceback_names_the_file_and_line(tmp_path, backend):
    script = tmp_path / "inverse_script.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([PY, str(script), backend], capture_output=True, text=True, env=python_env(),
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    zero, negative = json.loads(proc.stdout.strip().splitlines()[-1])
    assert f'File "{script}", line 11, in inverse' in zero
    assert "return 1 / x" in zero
    assert "ZeroDivisionError: division by zero" in zero
    assert "<dynamic-code>" not in zero + negative
    assert 'raise Refused(f"negative {x}")' in negative
    assert negative.rstrip().endswith("Refused: negative -1")


JOB = textwrap.dedent('''
    import batchkit as bk

    class TooBig(Exception):
        pass

    def check(n):
        if n > 2:
            raise TooBig(f"{n} is too big")
        return n

    @bk.job
    def limited(item: int) -> int:
        """Fail on big numbers."""
        return check(item)
''')


@pytest.mark.parametrize("backend", ["serial", "process"])
def test_job_file_traceback_names_the_job_file_and_its_exception_type(tmp_path, backend):
    job = tmp_path / "limited.py"
    job.write_text(JOB)
    items = tmp_path / "items.txt"
    items.write_text("1\n3\n")
    proc = subprocess.run([PY, "-m", "batchkit", "run", str(job), "--input", str(items), "--backend", backend,
                           "--show-failures", "--no-journal", "--no-progress"],
                          capture_output=True, text=True, env=python_env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert f'File "{job}", line 9, in check' in out
    assert 'raise TooBig(f"{n} is too big")' in out
    assert "TooBig: 3 is too big" in out
    assert "_batchkit_job_" not in out + proc.stderr
    assert "<dynamic-code>" not in out


def test_notebook_cell_traceback_names_the_cell_and_line(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    env = python_env()
    monkeypatch.setenv("PYTHONPATH", env["PYTHONPATH"])
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import batchkit as bk"),
        nbformat.v4.new_code_cell("def halve(x):\n    return 10 // x"),
        nbformat.v4.new_code_cell(
            "r = bk.run(halve, [1, 0], backend='process', workers=2, progress=False)\n"
            "print(r.failures[0].error.traceback)"),
    ]
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    text = "".join(o.get("text", "") for o in nb.cells[2].outputs if o.get("output_type") == "stream")
    assert "<dynamic-code>" not in text
    assert "return 10 // x" in text, text
    assert ", line 2, in halve" in text
    assert "ZeroDivisionError" in text


def test_source_map_leaves_unknown_frames_alone():
    text = 'Traceback (most recent call last):\n  File "<dynamic-code>", line 3, in nowhere\nValueError: x\n'
    assert SourceMap(len).fix(text) == text


def test_display_type_strips_only_job_module_prefixes():
    assert display_type("_batchkit_job_checksum_9109a228.ChecksumMismatch: bad") == "ChecksumMismatch: bad"
    assert display_type("mypkg.errors.Bad: x") == "mypkg.errors.Bad: x"
