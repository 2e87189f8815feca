"""The HTML report of a real run, opened in a real headless Chromium (Debian's ``chromium``,
installed by ``.ci/run``): no console errors, no request but the page itself, the expected
elements in the rendered DOM, and a full-page screenshot.

Chromium is driven through its own DevTools protocol over a pipe (``--remote-debugging-pipe``:
JSON messages separated by NUL bytes on file descriptors 3 and 4), so nothing is downloaded and no
websocket library is needed. The page is served by a local HTTP server on 127.0.0.1 that logs every
request it gets.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from conftest import PY, python_env

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--hide-scrollbars", "--mute-audio"]
SCREENSHOT_COPY = Path("/work/tools/report-screenshot.png")

needs_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason="Chromium is not installed (/usr/bin/chromium; Debian package `chromium`, which .ci/run installs)")


class Browser:
    """One headless Chromium and one page in it, driven over the DevTools pipe."""

    def __init__(self, profile: Path, timeout: float = 60.0) -> None:
        self.timeout = timeout
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def on_fds() -> None:  # in the child: the pipe ends on the descriptors Chromium reads and writes
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            preexec_fn=on_fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next = 0
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                data = os.read(self._from_chrome, 1 << 16)
            except OSError:
                data = b""
            if not data:
                with self._cond:
                    self._cond.notify_all()
                return
            buf += data
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cond:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._cond.notify_all()

    def call(self, method: str, session: bool = False, **params) -> dict:
        """Send one command and wait for its reply; raises on a protocol error."""
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while self._next not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"Chromium did not answer {method}")
                self._cond.wait(left)
            reply = self._replies.pop(self._next)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_for(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while True:
                for ev in self.events:
                    if ev.get("method") == method:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"no {method} event")
                self._cond.wait(left)

    def open(self, url: str, width: int = 1200) -> None:
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=900,
                  deviceScaleFactor=1, mobile=False)
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        reply = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(reply["exceptionDetails"])
        return reply["result"].get("value")

    def screenshot(self, path: Path, width: int = 1200) -> None:
        """A PNG of the whole page, top to bottom."""
        height = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)"))
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)
        data = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and error log entries (CSP violations
        among them) seen so far."""
        out = []
        for ev in self.events:
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
                out.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                out.append(f"exception: {params.get('exceptionDetails')}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
                out.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        return out

    def requests(self) -> list[str]:
        return [ev["params"]["request"]["url"] for ev in self.events
                if ev.get("method") == "Network.requestWillBeSent"]

    def close(self) -> None:
        try:
            os.write(self._to_chrome, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(10)
        finally:
            os.close(self._to_chrome)
            os.close(self._from_chrome)


class LoggingServer:
    """A static file server on 127.0.0.1 that records every path it is asked for."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        log = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, fmt, *args):
                log.append(self.path)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def png_size_and_colors(path: Path) -> tuple[int, int, int]:
    """Width, height and (roughly) how many distinct colours the first rows of a PNG hold: a blank
    or broken page has one or two."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompressobj().decompress(idat, 4 * width * 400)
    return width, height, len(set(raw[i:i + 3] for i in range(0, len(raw) - 3, 3)))


JOB = '''
import os, time
import batchkit as bk

@bk.job
def flaky(item: str) -> int:
    """Sleeps a little; some items fail, one kills its worker."""
    n = int(item.split("-")[1])
    time.sleep(0.0005 * (n % 5))
    if n == 1234:
        os.kill(os.getpid(), 9)
    if n % 97 == 0:
        raise ValueError(f"item {n} is not valid")
    if n % 331 == 0:
        raise KeyError(item)
    return n
'''


@pytest.fixture
def crashed_run(tmp_path):
    """A real CLI run on the process backend: 2,000 items, some failing, one crash by SIGKILL; the
    item names include hostile text."""
    job = tmp_path / "flaky.py"
    job.write_text(JOB)
    names = [f"x-{n}" if n % 331 else f"<script>alert({n})</script>\"'-{n}" for n in range(2000)]
    (tmp_path / "items.txt").write_text("\n".join(names) + "\n")
    env = python_env() | {"BATCHKIT_HOME": str(tmp_path / "home")}
    proc = subprocess.run([PY, "-m", "batchkit", "run", str(job), "--input", str(tmp_path / "items.txt"),
                           "--backend", "process", "--workers", "2", "--quiet"],
                          env=env, capture_output=True, text=True, timeout=100, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    return tmp_path, env


@needs_chromium
def test_report_of_a_crashed_run_renders_in_chromium_without_errors_or_requests(crashed_run):
    tmp_path, env = crashed_run
    site = tmp_path / "site"
    site.mkdir()
    proc = subprocess.run([PY, "-m", "batchkit", "show", "1", "--html", str(site / "report.html")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    server = LoggingServer(site)
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(server.url("report.html"))
        dom = browser.evaluate("""(() => {
            const q = s => document.querySelectorAll(s).length;
            const text = s => (document.querySelector(s) || {}).textContent || "";
            return {
              title: text('#title'), state: text('.badge.state'),
              svgs: q('svg.chart'), bars: q('#timeline ~ svg rect.ok, #timeline ~ svg rect.rerun'),
              restarts: q('g.restart'), crashes: q('g.ev.crash'),
              tput: q('svg polyline.tput'), sizes: q('svg circle.size'),
              groups: q('.group'), details: q('.group details'), scripts: q('script'),
              counts: [...document.querySelectorAll('.group .count')].map(e => e.textContent),
              keys: [...document.querySelectorAll('.group code.key')].map(e => e.textContent),
              resume: text('#resume') + text('pre.cmd'), settings: text('table.settings'),
              width: document.documentElement.scrollWidth };
        })()""")
        shot = tmp_path / "report.png"
        browser.screenshot(shot)
        problems, requests = browser.problems(), browser.requests()
    finally:
        browser.close()
        server.close()
    assert problems == []
    assert requests == [server.url("report.html")]
    assert server.requests == ["/report.html"]
    assert "flaky" in dom["title"] and dom["state"] == "failed"
    assert dom["svgs"] >= 4  # timeline, throughput, chunk sizes, durations
    assert dom["bars"] >= 10 and dom["restarts"] >= 1 and dom["crashes"] == 1
    assert dom["tput"] >= 1 and dom["sizes"] >= 10
    assert dom["scripts"] == 0  # the hostile item names stayed text
    assert dom["counts"][0] == "21×"  # the items n % 97 == 0 below 2,000: the biggest group
    assert any("<script>alert(" in k for k in dom["keys"])  # shown as text, exactly
    assert "--retry-failed" in dom["resume"]
    assert '"process"' in dom["settings"] or "process" in dom["settings"]
    assert dom["width"] <= 1200  # nothing overflows sideways
    width, height, colors = png_size_and_colors(shot)
    assert width == 1200 and height > 1500 and colors > 20
    if SCREENSHOT_COPY.parent.is_dir():
        shutil.copy(shot, SCREENSHOT_COPY)
    print(f"screenshot: {shot}", file=sys.stderr)
