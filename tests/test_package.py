"""The package surface: light import, a curated __all__, readable reports."""

from __future__ import annotations

import subprocess
import sys

import batchkit as bk

from conftest import python_env


def test_import_batchkit_loads_no_heavy_backend():
    code = ("import sys, batchkit, batchkit.cli.main; "
            "print(sorted(m for m in ('dask', 'distributed', 'joblib', 'loky') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=python_env(), check=True)
    assert out.stdout.strip() == "[]"


def test_the_command_freezes_its_objects_at_exit_and_a_library_user_keeps_a_full_collection():
    # The batchkit command skips the final garbage-collection walk of an exiting process (gc.freeze
    # at exit); a program that only imports batchkit and runs items keeps Python's usual exit.
    probe = "import atexit, gc; atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0)); "
    command = probe + "import sys; sys.argv = ['batchkit', 'jobs']; from batchkit.cli import main; main()"
    library = probe + "import batchkit as bk; bk.run(abs, range(3), backend='serial', progress=False)"
    for code, frozen in ((command, "True"), (library, "False")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=python_env())
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().splitlines()[-1] == f"frozen {frozen}"


def test_all_names_exist_and_are_documented():
    for name in bk.__all__:
        obj = getattr(bk, name)
        if name != "__version__":
            assert obj.__doc__, name


def test_unknown_backend_lists_the_choices():
    import pytest

    with pytest.raises(bk.UsageError, match="serial, thread, process, dask"):
        bk.run(str, [1], backend="gpu")
    with pytest.raises(bk.UsageError, match="workers"):
        bk.run(str, [1], backend="thread", workers=0)
    with pytest.raises(bk.UsageError, match="chunk_size"):
        bk.run(str, [1], backend="thread", chunk_size=0)
    with pytest.raises(bk.UsageError, match="max_failures"):
        bk.run(str, [1], backend="thread", max_failures=-1)


def test_report_repr_and_html_show_counts_and_first_failures():
    report = bk.run(lambda x: 1 / x, [1, 0, 2], backend="serial", progress=False)
    text = repr(report)
    assert "FAILED" in text and "2 succeeded, 1 failed" in text and "ZeroDivisionError" in text
    html = report._repr_html_()
    assert "<table>" in html and "ZeroDivisionError" in html and "<td>1</td>" in html


def test_progress_log_lines_have_no_carriage_returns(capsys):
    import io
    import time

    from batchkit.engine.progress import LogProgress

    buf = io.StringIO()
    prog = LogProgress(100, "demo", buf, interval=0.0)
    prog.update(40, 2)
    time.sleep(0.01)
    prog.update(60, 0)
    lines = buf.getvalue().splitlines()
    assert "\r" not in buf.getvalue()
    assert lines[-1].startswith("demo: 100/100 (100%), 2 failed") and "items/s" in lines[-1]
