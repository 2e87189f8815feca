"""In a notebook, as a user runs it: a real Jupyter kernel driven by nbclient.

The progress widget ends full (also for a resumed run and a generator) and red when items failed;
without ipywidgets the text fallback shows the final count; interrupting a cell that runs on Dask
(the kernel's interrupt, SIGINT to its process group, workers included) prints no worker
tracebacks into the cell and records the run as interrupted.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from conftest import python_env

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def kernel_env() -> dict:
    """The kernel's environment: our batchkit and the test's own BATCHKIT_HOME, and not
    PYTEST_CURRENT_TEST, which makes ipykernel stop forwarding what child processes (Dask
    workers) write to its stderr into the cell, as a user's kernel does."""
    env = python_env()
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def notebook(*sources: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


def run_notebook(nb, tmp_path, env: dict) -> None:
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)


def progress_bars(nb, cell) -> list[dict]:
    """The state of each progress widget a cell displayed: ``value``, ``max``, ``bar_style``, text."""
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    bars = []
    for out in cell.outputs:
        view = out.get("data", {}).get(WIDGET_VIEW)
        if not view:
            continue
        left, bar, right = (state[c.removeprefix("IPY_MODEL_")]["state"]
                            for c in state[view["model_id"]]["state"]["children"])
        bars.append({"value": bar["value"], "max": bar["max"], "bar_style": bar["bar_style"],
                     "text": (left["value"] + right["value"]).replace("\u2007", " ")})
    return bars


def test_the_progress_widget_ends_full_and_red_when_items_failed(tmp_path, kernel_env):
    nb = notebook(
        "import batchkit as bk\ndef inverse(x):\n    return 1 / x",
        "r = bk.run(inverse, range(-5, 35), backend='thread', workers=2, chunk_size=3)",
        "r = bk.run(inverse, range(1, 31), backend='thread', workers=2, chunk_size=3)",
        "r = bk.run(inverse, (x for x in range(1, 21)), backend='thread', workers=2, chunk_size=3)",
        # A run stopped halfway, then resumed: the widget counts this attempt's 30 items.
        "with bk.imap(inverse, range(1, 61), backend='thread', chunk_size=5, journal=True, name='half',\n"
        "             progress=False) as outcomes:\n"
        "    for o in outcomes:\n"
        "        if o.index == 29:\n"
        "            break\n"
        "r = bk.run(inverse, range(1, 61), backend='thread', chunk_size=5, journal=True, resume=True,\n"
        "           name='half')\n"
        "print(r.skipped, r.succeeded)",
    )
    run_notebook(nb, tmp_path, kernel_env)
    bars = [progress_bars(nb, cell) for cell in nb.cells[1:]]
    assert [[(b["value"], b["max"], b["bar_style"]) for b in cell] for cell in bars] == [
        [(40, 40, "danger")],    # one item failed: red, and full
        [(30, 30, "success")],
        [(20, 20, "success")],   # a generator: the total became known at its end
        [(30, 30, "success")],   # resumed: 30 items were finished by the stopped attempt
    ], bars
    assert "40/40" in bars[0][0]["text"] and "failed=1" in bars[0][0]["text"]
    assert "30/30" in bars[3][0]["text"] and "skipped=30" in bars[3][0]["text"]
    assert "30 60" in "".join(o.get("text", "") for o in nb.cells[4].outputs)


def test_without_ipywidgets_the_text_progress_shows_the_final_count(tmp_path, kernel_env):
    nb = notebook(
        "import sys\nsys.modules['ipywidgets'] = None  # as if it were not installed\n"
        "import batchkit as bk\nimport time\n"
        "def inverse(x):\n    time.sleep(0.005)\n    return 1 / x",
        "r = bk.run(inverse, range(-5, 35), backend='thread', workers=2, chunk_size=3)",
    )
    run_notebook(nb, tmp_path, kernel_env)
    cell = nb.cells[1]
    assert not any(WIDGET_VIEW in o.get("data", {}) for o in cell.outputs)
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stderr")
    last = [part for part in text.replace("\n", "\r").split("\r") if part.strip()][-1]
    assert "100%" in last and "40/40" in last and "failed=1" in last, text


def test_interrupting_a_cell_running_on_dask_records_an_interrupted_run_without_worker_tracebacks(
        tmp_path, kernel_env):
    pytest.importorskip("distributed")
    started = tmp_path / "started.log"
    nb = notebook(
        "import batchkit as bk, time\n"
        f"def slow(x):\n    open({str(started)!r}, 'a').write('.')\n    time.sleep(0.2)\n    return x",
        "r = bk.run(slow, range(400), backend='dask', workers=2, chunk_size=2, journal=True, progress=False)",
        "from batchkit.state.journal import Journal\n"
        "print([(run['state'], run['message']) for run in Journal().runs()])",
    )
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(tmp_path)}})

    def interrupt_once_items_run() -> None:
        deadline = time.monotonic() + 90
        while not (started.exists() and started.stat().st_size >= 6) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        asyncio.run(client.km.interrupt_kernel())  # Jupyter's interrupt button

    with client.setup_kernel(env=kernel_env):
        client.execute_cell(nb.cells[0], 0)
        interrupter = threading.Thread(target=interrupt_once_items_run)
        interrupter.start()
        client.execute_cell(nb.cells[1], 1)
        interrupter.join()
        client.execute_cell(nb.cells[2], 2)
    outputs = nb.cells[1].outputs
    errors = [o for o in outputs if o["output_type"] == "error"]
    assert [e["ename"] for e in errors] == ["KeyboardInterrupt"], outputs
    streamed = "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")
    assert "stopped by SIGINT" in streamed and "resume=True" in streamed
    for noise in ("Traceback", "distributed.", "Nanny", "Worker", "KeyboardInterrupt"):
        assert noise not in streamed, streamed
    assert started.stat().st_size < 400  # stopped, not run to the end
    printed = "".join(o.get("text", "") for o in nb.cells[2].outputs)
    assert printed == "[('interrupted', 'stopped by SIGINT')]\n", nb.cells[2].outputs  # nothing from workers
