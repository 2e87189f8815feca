"""Support for the operations tests (no tests here): a real HTTP server on 127.0.0.1 that records what it receives.

Paths containing ``hang`` answer only when the test ends; paths containing ``boom`` answer 500.
"""

from __future__ import annotations

import http.server
import threading


class Recorder(http.server.ThreadingHTTPServer):
    """``requests``: a list of ``(method, path, body bytes, headers dict)`` in arrival order."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str, bytes, dict]] = []
        self.release = threading.Event()
        self.arrived = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def paths(self) -> list[str]:
        return [r[1] for r in self.requests]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append((self.command, self.path, body, dict(self.headers)))
        self.server.arrived.set()
        if "hang" in self.path:
            self.server.release.wait(30)
        status = 500 if "boom" in self.path else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    do_GET = do_POST = do_HEAD = _handle

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


def start_recorder() -> Recorder:
    server = Recorder()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def stop_recorder(server: Recorder) -> None:
    server.release.set()
    server.shutdown()
    server.server_close()
