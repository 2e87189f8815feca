"""The serial backend: runs each call in the calling thread, at submit time."""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any, Callable

from .base import Backend, run_now


class SerialBackend(Backend):
    """Runs everything in the caller's thread, one chunk at a time.

    The reference backend: no pickling, no threads, so a debugger and ``print`` work as usual,
    and it is the one to compare the others against in tests.
    """

    name = "serial"
    runs_in_process = True

    def __init__(self, workers: int | None = None) -> None:
        self.workers = 1

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> cf.Future:
        return run_now(fn, arg)
