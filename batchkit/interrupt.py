"""Clean stops on SIGINT / SIGTERM: :func:`graceful`.

Inside ``with graceful():`` the first SIGINT or SIGTERM makes every running batchkit run stop
dispatching, gives in-flight chunks ``grace`` seconds to finish (their outcomes are recorded),
stops the workers and raises :class:`~batchkit.errors.Interrupted` (exit code 130 / 143). A
second SIGINT stops at once with a plain ``KeyboardInterrupt``. The command line always runs
inside it; from Python, use it where a clean stop matters (without it, Ctrl-C stops at once).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from .errors import Interrupted

DEFAULT_GRACE = 5.0


@contextmanager
def graceful(grace: float = DEFAULT_GRACE) -> Iterator[None]:
    """Turn SIGINT / SIGTERM into a clean stop of the runs started inside the block."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    from .engine.loop import ACTIVE

    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if received and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop at once
        received.append(signum)
        engines = list(ACTIVE)
        if not engines:
            raise Interrupted(signum)
        for engine in engines:
            engine.request_stop(Interrupted(signum), grace)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
