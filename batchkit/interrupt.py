"""Clean stops on SIGINT, SIGTERM and SIGHUP: :func:`graceful`.

Inside ``with graceful():`` the first of those signals makes every running batchkit run stop
dispatching, gives in-flight chunks ``grace`` seconds to finish (their outcomes are recorded),
stops the workers and raises :class:`~batchkit.errors.Interrupted` (exit code 128 + the signal:
130, 143, 129). Nothing that the stop cut short is recorded as failed, so ``--resume`` runs it
again. A second SIGINT stops at once with a plain ``KeyboardInterrupt``.

The handler never raises in the middle of batchkit's own bookkeeping (a journal transaction, a
manifest being written): it sets a flag that the run checks at safe points. Only where a run is
just waiting (for a lock, for pings) does the signal raise at once (:meth:`Stop.interruptible`).
The command line always runs inside it; from Python, use it where a clean stop matters.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from .errors import Interrupted

DEFAULT_GRACE = 5.0
SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)


class Stop:
    """What :func:`graceful` yields: whether a stop was asked for, and by which signal."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.requested: Interrupted | None = None
        self.event = threading.Event()
        self._raise_at_once = 0

    def check(self) -> None:
        """Raise :class:`Interrupted` if a stop was asked for (a safe point of the run)."""
        if self.requested is not None:
            raise self.requested

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """Within the block (a wait with nothing to lose) a stop signal raises at once."""
        self.check()
        self._raise_at_once += 1
        try:
            yield
        finally:
            self._raise_at_once -= 1

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop at once
        if self.requested is None:
            self.requested = Interrupted(signum)
            self.event.set()
            from .engine.loop import ACTIVE

            for engine in list(ACTIVE):
                engine.request_stop(self.requested, self.grace)
        if self._raise_at_once:
            raise self.requested


_current: list[Stop] = []


def current() -> Stop | None:
    """The innermost :func:`graceful` block's :class:`Stop`, or ``None`` outside one."""
    return _current[-1] if _current else None


@contextmanager
def graceful(grace: float = DEFAULT_GRACE) -> Iterator[Stop]:
    """Turn SIGINT / SIGTERM / SIGHUP into a clean stop of the runs started inside the block."""
    stop = Stop(grace)
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be installed from the main thread
        return
    previous = {}
    try:
        for s in SIGNALS:
            previous[s] = signal.signal(s, stop._handle)
        _current.append(stop)
        yield stop
    finally:
        if _current and _current[-1] is stop:
            _current.pop()
        for s, h in previous.items():
            signal.signal(s, h)
