"""Pings and notifications that can never hold a run up: :class:`Courier`.

Each request runs in its own daemon thread with a short socket timeout; :meth:`Courier.wait`
joins them all against one deadline. A monitoring endpoint that is down, refuses or hangs
therefore costs a run at most ``timeout`` seconds in total, and never an exception: problems
are reported through the ``on_problem`` callback instead.

Pings follow the healthchecks.io convention: ``URL/start`` when a run starts, ``URL`` when it
succeeded, ``URL/fail`` when it did not. Notifications POST a JSON body whose ``text`` field is
what Slack, Mattermost and most chat webhooks display. Emails (:mod:`batchkit.ops.mail`) go
through the same threads and the same deadline.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable

from ..errors import UsageError
from ..secrets import redact

if TYPE_CHECKING:
    from .mail import SmtpServer

DEFAULT_TIMEOUT = 2.0
USER_AGENT = "batchkit"


def check_url(url: str, what: str = "URL") -> str:
    """Return ``url`` if it is an http(s) URL with a host; raise :class:`~batchkit.UsageError`."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{what} {redact(url)!r} is not an http:// or https:// URL")
    return url


def ping_url(url: str, suffix: str = "") -> str:
    """``url`` with ``/suffix`` appended to its path (the query string stays at the end)."""
    if not suffix:
        return url
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/") + "/" + suffix
    return urllib.parse.urlunsplit(parts._replace(path=path))


def send(url: str, body: bytes | None = None, content_type: str = "text/plain; charset=utf-8",
         timeout: float = DEFAULT_TIMEOUT) -> int:
    """One request (GET without a body, POST with one); returns the HTTP status.

    Raises ``OSError`` (``urllib.error.URLError``, ``TimeoutError``) or ``HTTPError`` on failure.
    """
    # Imported here: urllib.request pulls in http.client, email and ssl (≈ 12 ms), which a run
    # that pings nothing (most short CLI runs) should not pay for.
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    auth = None
    if parts.username is not None or parts.password is not None:
        # urllib does not use user:password@ from the URL itself: send it as Basic auth.
        netloc = parts.netloc.rsplit("@", 1)[1]
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        userinfo = f"{urllib.parse.unquote(parts.username or '')}:{urllib.parse.unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(userinfo.encode()).decode()
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    request.add_header("User-Agent", USER_AGENT)
    if auth:
        request.add_header("Authorization", auth)
    if body is not None:
        request.add_header("Content-Type", content_type)
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) checked
        response.read(1024)
        return response.status


class Courier:
    """Sends requests in the background; :meth:`wait` bounds how long anyone waits for them.

    >>> courier = Courier()
    >>> courier.ping("http://127.0.0.1:9/check", "start")   # returns at once
    >>> courier.wait()                                       # at most 2 s, never raises
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT,
                 on_problem: Callable[[str], None] | None = None) -> None:
        self.timeout = timeout
        self.on_problem = on_problem
        self.sent: list[tuple[str, int]] = []  # (redacted url, status) of the requests that got an answer
        self._threads: list[threading.Thread] = []
        self._last_ping: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False  # after wait(): late failures of abandoned requests are not reported

    def ping(self, url: str, suffix: str = "", body: str | None = None) -> None:
        """Ping ``url`` (healthchecks.io style): ``suffix`` is ``"start"``, ``""`` or ``"fail"``."""
        data = redact(body).encode("utf-8") if body is not None else None
        target = ping_url(url, suffix)
        # Pings of one check arrive in order (start before success/fail): each waits for the last.
        self._last_ping = self._start("ping", target, lambda: send(target, data, timeout=self.timeout),
                                      after=self._last_ping)

    def notify(self, url: str, payload: dict[str, Any]) -> None:
        """POST ``payload`` as JSON (secrets masked) to ``url``."""
        # A failure's "key" is the item's identity, not a credential: redact() would mask any
        # field named like KEY whole, so failures are scrubbed value by value instead.
        failures = payload.get("failures")
        data = redact({k: v for k, v in payload.items() if k != "failures"})
        if failures is not None:
            data["failures"] = [{k: redact(v) for k, v in f.items()} if isinstance(f, dict) else redact(f)
                                for f in failures]
        body = json.dumps(data, default=str).encode("utf-8")
        self._start("notification", url, lambda: send(url, body, "application/json", self.timeout))

    def mail(self, server: SmtpServer, recipients: tuple[str, ...], subject: str, body: str) -> None:
        """Email ``subject`` and ``body`` (secrets masked) to ``recipients`` through ``server``."""
        from .mail import build_message, deliver

        message = build_message(server, recipients, redact(subject), redact(body))
        self._start("email", f"mailto:{','.join(recipients)}",
                    lambda: deliver(server, message, recipients, self.timeout))

    def _start(self, what: str, target: str, deliver: Callable[[], int],
               after: threading.Thread | None = None) -> threading.Thread:
        """Run ``deliver`` (which returns a status) in a daemon thread; ``target`` names it in warnings."""
        thread = threading.Thread(target=self._send, args=(what, target, deliver, after),
                                  name=f"batchkit-{what}", daemon=True)
        # Daemon threads: a request still hanging when the run exits must not keep Python alive.
        thread.start()
        self._threads.append(thread)
        return thread

    def _send(self, what: str, target: str, deliver: Callable[[], int], after: threading.Thread | None) -> None:
        if after is not None:
            after.join(self.timeout)
        shown = redact(target)
        try:
            status = deliver()
        except urllib.error.HTTPError as exc:
            self._problem(f"{what} to {shown} failed: HTTP {exc.code} {exc.reason}")
        except Exception as exc:  # any failure of monitoring must stay a warning
            reason = getattr(exc, "reason", None) or exc
            self._problem(f"{what} to {shown} failed: {reason}")
        else:
            with self._lock:
                self.sent.append((shown, status))

    def _problem(self, message: str) -> None:
        if self.on_problem is not None and not self._closed:
            try:
                self.on_problem(redact(message))
            except Exception:
                pass

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the requests in flight, at most ``timeout`` seconds in all (default: the
        request timeout). Returns False when some were still running and were abandoned."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t for t in self._threads if t.is_alive()]
        self._threads = alive
        if alive:
            self._problem(f"{len(alive)} request(s) still unanswered after the {self.timeout:g}s limit; "
                          "not waiting for them")
            self._closed = True
        return not alive
