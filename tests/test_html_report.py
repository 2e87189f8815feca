"""The HTML report of a run (``batchkit show RUN --html``, ``Report.to_html``), the history page
(``batchkit history --html``) and the notebook's compact chart, drawn from real runs in a real
journal. The page itself is checked by parsing it; ``test_html_browser.py`` opens it in Chromium.
"""

from __future__ import annotations

import html.parser
import os
import re
import signal
import sqlite3
import subprocess
import time

import pytest
from click.testing import CliRunner

import batchkit as bk
from batchkit.cli.main import cli
from batchkit.ops import htmlhistory, htmlreport, runseries, runview
from batchkit.ops.svgcharts import TimeAxis
from batchkit.state.journal import Journal, default_path

from conftest import PY, python_env


class Page(html.parser.HTMLParser):
    """A parsed page: every start tag with its attributes, and the text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.chunks: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.chunks.append(data)

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def count(self, tag: str, cls: str | None = None) -> int:
        return sum(1 for t, a in self.tags if t == tag and (cls is None or cls in (a.get("class") or "").split()))

    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.tags if "id" in a}


def chunks_drawn(text: str) -> int:
    """How many chunks the timeline's bars stand for (bars thinner than a pixel are drawn as one,
    whose tooltip says how many chunks it holds)."""
    timeline = text[text.index('id="timeline"'):text.index('id="throughput"')]
    single = len(re.findall(r"<title>(?:items [\d,]+ to [\d,]+|a chunk): ", timeline))
    return single + sum(int(n) for n in re.findall(r"<title>(\d+) chunks, ", timeline))


def bk_cli(*args):
    return CliRunner().invoke(cli, list(args))


def unlucky(n):
    if n % 10 == 3:
        raise ValueError(f"item {n} is unlucky")
    if n == 44:
        raise KeyError(f"key-{n}")
    return n


def hostile(item):
    if "bad" in item:
        raise RuntimeError(f"cannot read {item}\nsecond line <b>bold</b>")
    return len(item)


HOSTILE = ['<script>alert("x")</script>bad', "quote\"'bad", "new\nline bad", "rtl\u202egnp.exe bad", "ok",
           "<img src=x onerror=alert(1)>bad"]


def page_of(run_id: int) -> Page:
    with Journal(default_path(), readonly=True) as journal:
        return Page(htmlreport.run_page(runview.from_journal(journal, run_id)))


# -- the run page ----------------------------------------------------------------------------


def test_show_html_writes_one_self_contained_page_of_a_failed_run(tmp_path):
    report = bk.run(unlucky, range(400), backend="thread", workers=3, journal=True, progress=False, name="unlucky")
    out = tmp_path / "run.html"
    result = bk_cli("show", str(report.run_id), "--html", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote the report of run {report.run_id} to {out}" in result.output
    text = out.read_text()
    page = Page(text)
    # Nothing loaded from elsewhere and nothing to run: no scripts, no src/href, a CSP forbidding both.
    assert page.count("script") == 0 and page.count("link") == 0 and page.count("img") == 0
    assert not [a for _, a in page.tags if "src" in a or "href" in a]
    csp = [a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]
    assert {"title", "timeline", "throughput", "chunks", "durations", "failures", "settings"} <= page.ids()
    assert page.count("svg") >= 4
    assert page.count("rect", "ok") >= 3  # one bar per chunk at least (threads: a row each)
    assert "failed" in page.text and "41 failed items in 2 groups" in page.text
    assert "40×" in page.text and "ValueError" in page.text and "item # is unlucky" in page.text
    assert page.count("details") >= 3  # tracebacks fold
    assert "Traceback (most recent call last)" in page.text
    assert os.stat(out).st_mode & 0o777 == 0o600  # item keys and messages: the user's own file


def test_page_shows_hostile_keys_and_messages_as_text(tmp_path):
    report = bk.run(hostile, HOSTILE, backend="serial", journal=True, progress=False, key=str, name="hostile")
    text = htmlreport.run_page(runview.from_journal(Journal(default_path(), readonly=True), report.run_id))
    page = Page(text)
    assert page.count("script") == 0 and page.count("img") == 0
    assert not [a for _, a in page.tags if any(k.startswith("on") for k in a)]
    shown = page.text
    assert '<script>alert("x")</script>bad' in shown  # exactly as it was, as text
    assert "<img src=x onerror=alert(1)>bad" in shown
    assert "new\\nline bad" in shown  # a newline in a key is shown, not obeyed
    assert "rtl\\u202egnp.exe bad" in shown  # so is a right-to-left override
    assert "\u202e" not in text
    assert "second line <b>bold</b>" in shown  # messages keep their lines, and their markup as text


def test_page_redacts_secrets_it_shows(tmp_path, monkeypatch):
    report = bk.run(hostile, ["file-hunter2hunter2-bad", "ok"], backend="serial", journal=True, progress=False,
                    key=str, name="secret")
    monkeypatch.setenv("DB_PASSWORD", "hunter2hunter2")  # known as a secret by the time it is shown
    text = htmlreport.run_page(runview.from_journal(Journal(default_path(), readonly=True), report.run_id))
    assert "hunter2hunter2" not in text
    assert "file-***-bad" in text


def test_every_backend_draws_its_workers_lanes(backend, workers):
    report = bk.run(unlucky, range(300), backend=backend, workers=workers, journal=True, progress=False,
                    chunk_size=25, name="lanes")
    with Journal(default_path(), readonly=True) as journal:
        view = runview.from_journal(journal, report.run_id)
        spans = [s for c in journal.timeline(report.run_id)["chunks"] for s in c["spans"]]
    assert len(spans) == 12 and all(s[0] and s[2] >= s[1] for s in spans)
    lanes, stats, _ = runseries.lanes(view)
    assert sum(len(lane.bars) for lane in lanes) == 12
    assert sum(st.items for st in stats) == 300
    assert {w for st in stats for w in st.workers} == {s[0] for s in spans}
    text = htmlreport.run_page(view)
    assert chunks_drawn(text) == 12
    assert "31 failed items in 2 groups" in Page(text).text


def test_a_crash_shows_as_a_split_chunk_a_restart_and_a_crash_event():
    def crashy(n):
        if n == 150:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.001)
        return n

    report = bk.run(crashy, range(400), backend="process", workers=2, journal=True, progress=False,
                    chunk_size=50, name="crashy")
    assert report.failed == 1 and report.failures[0].error.kind == "crash"
    page = page_of(report.run_id)
    assert page.count("g", "restart") >= 1  # the pool's new worker process took over a row
    assert page.count("g", "crash") == 1
    assert page.count("rect", "rerun") >= 1  # the crashed chunk's other items ran again in pieces
    assert "WorkerCrashed" in page.text or "crash" in page.text


def test_resumed_run_draws_every_attempt_on_one_timeline(tmp_path):
    """A CLI run stopped by SIGTERM, then resumed: both attempts on one chart, a break between."""
    job = tmp_path / "slow.py"
    job.write_text("import time\nimport batchkit as bk\n\n@bk.job\ndef slow(item: str) -> str:\n"
                   '    """Sleep."""\n    time.sleep(0.01)\n    return item\n')
    items = tmp_path / "items.txt"
    items.write_text("".join(f"i{n}\n" for n in range(300)))
    env = python_env() | {"BATCHKIT_HOME": os.environ["BATCHKIT_HOME"]}
    argv = [PY, "-m", "batchkit", "run", str(job), "--input", str(items), "--backend", "thread", "--workers", "2",
            "--chunk-size", "10", "--quiet"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_chunks(3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 143, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with Journal(default_path(), readonly=True) as journal:
        interrupted = Page(htmlreport.run_page(runview.from_journal(journal, 1)))
    assert "interrupted" in interrupted.text and "--resume" in interrupted.text  # the command that resumes it
    time.sleep(1.0)
    done = subprocess.run(argv + ["--resume"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with Journal(default_path(), readonly=True) as journal:
        chunks = journal.timeline(1)["chunks"]
        text = htmlreport.run_page(runview.from_journal(journal, 1))
    page = Page(text)
    assert {c["attempt"] for c in chunks} == {0, 1}
    assert sum(c["n"] for c in chunks) == 300
    assert page.count("g", "brk") >= 1  # the time between the attempts is cut out, and marked
    assert "attempt 2" in page.text
    assert chunks_drawn(text) == len(chunks)
    assert "succeeded" in page.text


def _wait_for_chunks(n: int) -> None:
    _wait_for_items(10 * n)  # chunks of 10


def test_a_run_in_progress_renders_as_far_as_it_has_got(tmp_path):
    script = tmp_path / "slow.py"
    script.write_text("import time\nimport batchkit as bk\n\ndef slow(item):\n    time.sleep(0.02)\n    return item\n\n"
                      "if __name__ == '__main__':\n    bk.run(slow, list(range(2000)), backend='thread', workers=2, "
                      "chunk_size=10, journal=True, progress=False, name='slow')\n")
    env = python_env() | {"BATCHKIT_HOME": os.environ["BATCHKIT_HOME"]}
    proc = subprocess.Popen([PY, str(script)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_chunks(2)
        out = tmp_path / "now.html"
        shown = subprocess.run([PY, "-m", "batchkit", "show", "1", "--html", str(out)], env=env,
                               capture_output=True, text=True, timeout=60)
        history = subprocess.run([PY, "-m", "batchkit", "history", "--html", str(tmp_path / "h.html")], env=env,
                                 capture_output=True, text=True, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert shown.returncode == 0, shown.stderr
    page = Page(out.read_text())
    assert "running" in page.text and "in progress" in page.text
    assert "% done" in page.text and "/ 2,000" in page.text
    assert page.count("rect", "ok") >= 2
    assert history.returncode == 0, history.stderr
    hist = Page((tmp_path / "h.html").read_text())
    assert "running" in hist.text and hist.count("rect", "running") == 1


WATCH_JOB = '''
import time
import batchkit as bk

@bk.job(backend="thread")
def ingest(path) -> int:
    """Read a file that arrived."""
    time.sleep(0.02)
    return len(open(path, "rb").read())
'''


def test_a_watching_run_renders_as_far_as_it_has_got(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(20):
        (inbox / f"early{i}.csv").write_text("x\n" * i)
    (tmp_path / "ingest.py").write_text(WATCH_JOB)
    env = python_env() | {"BATCHKIT_HOME": os.environ["BATCHKIT_HOME"]}
    proc = subprocess.Popen([PY, "-m", "batchkit", "run", "ingest.py", "--files", str(inbox), "--watch",
                             "--settle", "0.2", "--workers", "2", "--quiet"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_items(20)
        time.sleep(0.5)
        for i in range(10):
            (inbox / f"late{i}.csv").write_text("y\n" * i)
        _wait_for_items(30)
        out = tmp_path / "watch.html"
        shown = subprocess.run([PY, "-m", "batchkit", "show", "1", "--html", str(out)], env=env,
                               capture_output=True, text=True, timeout=60)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    assert shown.returncode == 0, shown.stderr
    text = out.read_text()
    page = Page(text)
    assert "running" in page.text and "in progress" in page.text
    with Journal(default_path(), readonly=True) as journal:
        recorded = [c for c in journal.timeline(1)["chunks"] if c["spans"]]
    assert sum(c["n"] for c in recorded) >= 30
    assert chunks_drawn(text) >= 2  # the files present at the start, and those that arrived later
    assert "30" in page.text


def _wait_for_items(n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with Journal(default_path(), readonly=True) as journal:
                runs = journal.runs(limit=1)
                if runs and journal.counts(runs[0]["id"])[0] >= n:
                    return
        except (bk.BatchkitError, sqlite3.Error):  # not there yet, or its tables not yet
            pass
        time.sleep(0.05)
    raise AssertionError(f"the run recorded fewer than {n} items in time")


_tried: set = set()


def flaky_then_fine(n):
    if n % 25 == 0 and n not in _tried:
        _tried.add(n)
        raise ConnectionError(f"reset by peer on {n}")
    if n % 40 == 1:
        raise OSError(f"HTTP status {503 if n == 41 else 404}")
    return n


def test_retries_are_drawn_as_events_and_repeated_messages_are_counted():
    _tried.clear()
    report = bk.run(flaky_then_fine, range(200), backend="thread", workers=2, journal=True, progress=False,
                    retry=bk.Retry(attempts=2, backoff=0, on=ConnectionError), name="retries")
    assert report.failed == 5
    text = htmlreport.run_page(runview.from_journal(Journal(default_path(), readonly=True), report.run_id))
    page = Page(text)
    assert page.count("g", "retry") >= 1  # markers on the events strip (several may share a pixel)
    assert "8 retries" in page.text
    assert "OSError: HTTP status #" in page.text
    assert "2 different messages" in page.text and "HTTP status 404" in page.text and "× 4" in page.text


def test_report_to_html_draws_the_run_from_the_report_itself(tmp_path):
    report = bk.run(unlucky, range(500), backend="process", workers=2, progress=False)
    path = report.to_html(tmp_path / "report.html")
    page = Page(path.read_text())
    assert page.count("rect", "ok") >= 2 and page.count("polyline", "tput") == 1
    assert "51 failed items in 2 groups" in page.text
    assert "'key-44'" in page.text  # the KeyError's own message, as an example


def test_imap_report_says_why_it_has_no_timeline(tmp_path):
    it = bk.imap(unlucky, range(50), backend="serial", progress=False)
    for _ in it:
        pass
    page = Page(htmlreport.run_page(runview.from_report(it.report)))
    assert "streamed its outcomes" in page.text
    assert page.count("rect", "ok") == 0


def test_show_html_dash_prints_the_page_and_bad_input_exits_2(tmp_path):
    report = bk.run(unlucky, range(20), backend="serial", journal=True, progress=False, name="u")
    result = bk_cli("show", str(report.run_id), "--html", "-")
    assert result.exit_code == 0 and result.output.startswith("<!DOCTYPE html>")
    missing = bk_cli("show", "999", "--html", str(tmp_path / "x.html"))
    assert missing.exit_code == 2 and "no run 999" in missing.output and not (tmp_path / "x.html").exists()
    (tmp_path / "a-file").write_text("")  # a path under a file cannot be written, even by root
    denied = bk_cli("show", str(report.run_id), "--html", str(tmp_path / "a-file" / "x.html"))
    assert denied.exit_code == 2, denied.output
    assert denied.output.startswith("batchkit: error: cannot write") and len(denied.output.splitlines()) == 1


# -- history ---------------------------------------------------------------------------------


def test_history_html_draws_the_runs_of_a_job_over_time(tmp_path):
    for n in (10, 20, 30):
        bk.run(unlucky, range(n), backend="serial", journal=True, progress=False, name="nightly")
    bk.run(abs, range(5), backend="serial", journal=True, progress=False, name="other")
    out = tmp_path / "history.html"
    result = bk_cli("history", "--html", str(out), "--job", "nightly")
    assert result.exit_code == 0, result.output
    page = Page(out.read_text())
    assert page.count("h2", "job") == 1 and "nightly" in page.text and "other" not in page.text
    assert page.count("rect", "failed") == 3  # a bar per run, coloured by its end state
    assert page.count("tr") == 4  # header + three runs, newest first
    assert "3 failed" in page.text
    both = Page(htmlhistory.history_page(Journal(default_path(), readonly=True).runs(limit=50)))
    assert both.count("h2", "job") == 2
    assert both.count("rect", "succeeded") == 1


def test_history_html_without_runs_says_so(tmp_path):
    out = tmp_path / "h.html"
    assert bk_cli("history", "--html", str(out)).exit_code == 0
    assert "No runs recorded" in Page(out.read_text()).text


# -- the notebook ----------------------------------------------------------------------------


def test_repr_html_shows_the_compact_timeline_and_throughput_under_the_counts():
    report = bk.run(unlucky, range(200), backend="thread", workers=3, progress=False, chunk_size=20)
    page = Page(report._repr_html_())
    assert page.count("table") >= 1 and page.count("svg") == 2
    assert page.count("rect", "ok") == 10 and page.count("polyline", "tput") == 1
    assert page.count("style") == 0  # nothing that would restyle the rest of the notebook


def test_repr_html_of_an_imap_report_has_no_chart():
    it = bk.imap(unlucky, range(20), backend="serial", progress=False)
    list(it)
    assert "<svg" not in it.report._repr_html_()


def test_notebook_shows_the_chart_in_a_real_kernel(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("PYTHONPATH", python_env()["PYTHONPATH"])
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import batchkit as bk\n"
                                          "def f(x):\n    return 1 // (x % 7)\n"
                                          "r = bk.run(f, range(300), backend='process', workers=2, progress=False)\n"
                                          "r")]
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    shown = [o["data"]["text/html"] for o in nb.cells[0].outputs if "text/html" in o.get("data", {})]
    assert shown, nb.cells[0].outputs
    page = Page(shown[0])
    assert "FAILED" in page.text and page.count("svg") == 2 and page.count("rect", "ok") >= 2


# -- pieces ----------------------------------------------------------------------------------


def test_failures_group_by_type_and_message_pattern_keeping_a_few_examples():
    groups = runview.FailureGroups()
    for n in range(50):
        groups.add({"error_type": "FileNotFoundError", "message": f"No such file: '/data/f{n}.csv'", "key": f"f{n}"})
    groups.add({"error_type": "ValueError", "message": "bad", "key": "x"})
    first, second = groups.sorted()
    assert (first.type, first.count, first.pattern) == ("FileNotFoundError", 50, "No such file: '…'")
    assert [e["key"] for e in first.examples] == ["f0", "f1", "f2"]
    assert (second.type, second.count) == ("ValueError", 1)


def test_many_distinct_failures_keep_a_bounded_number_of_groups():
    groups = runview.FailureGroups()
    for n in range(runview.MAX_GROUPS + 30):
        groups.add({"error_type": f"E{chr(65 + n % 26)}{n // 26}", "message": "m", "key": str(n)})
    assert len(groups.groups) == runview.MAX_GROUPS and groups.other == 30 and groups.total == runview.MAX_GROUPS + 30


def test_time_axis_cuts_out_hours_between_attempts():
    day = 1_800_000_000.0
    axis = TimeAxis.fit([[(day, day + 60)], [(day + 8 * 3600, day + 8 * 3600 + 30)]], 100, 900)
    assert len(axis.segments) == 2
    first, second = axis.segments
    assert first[3] - first[2] > second[3] - second[2] > 60  # proportional, the short one still readable
    assert axis.x(day + 60) < axis.x(day + 4 * 3600) < axis.x(day + 8 * 3600)  # inside the break
    assert 'attempt 2' in axis.draw(20, 80)


def test_a_run_of_many_tiny_chunks_draws_a_bounded_number_of_shapes():
    t0 = 1_800_000_000.0
    chunks = [{"first_idx": i * 10, "n": 10, "failed": 0, "finished": t0 + (i + 1) * 0.001, "attempt": 0,
               "spans": [[f"h:{100 + i % 2}", t0 + i * 0.001, t0 + (i + 1) * 0.001, 10]]} for i in range(50_000)]
    view = runview.RunView({"id": 1, "job": "tiny", "state": "succeeded", "started": t0, "ended": t0 + 50,
                            "elapsed": 50.0, "args": {}, "settings": {}}, chunks, [])
    text = htmlreport.run_page(view)
    assert Page(text).count("rect", "ok") < 3000
    assert len(text) < 1_500_000
