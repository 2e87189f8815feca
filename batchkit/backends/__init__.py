"""Backends: where chunks run. ``resolve`` turns a name, an instance or an executor into a backend.

The process, Dask and joblib backends are imported only when used, so ``import batchkit``
never loads loky, joblib, dask or distributed.
"""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any

from ..errors import UsageError
from .base import Backend

NAMES = ("serial", "thread", "process", "dask", "joblib")


def backend_class(name: str) -> type[Backend]:
    """The backend class for ``name`` (imports it on first use)."""
    if name == "serial":
        from .serial import SerialBackend

        return SerialBackend
    if name == "thread":
        from .thread import ThreadBackend

        return ThreadBackend
    if name == "process":
        from .process import ProcessBackend

        return ProcessBackend
    if name == "dask":
        from .dask import DaskBackend

        return DaskBackend
    if name == "joblib":
        from .joblib import JoblibBackend

        return JoblibBackend
    raise UsageError(f"unknown backend {name!r}: choose one of {', '.join(NAMES)}")


def resolve(backend: Any, workers: int | None) -> tuple[Backend, bool]:
    """Return ``(backend instance, owned)``; ``owned`` means the caller must close it."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise UsageError(f"workers={workers!r}: must be a whole number >= 1")
    if isinstance(backend, Backend):
        return backend, False
    if isinstance(backend, str):
        return backend_class(backend)(workers=workers), True
    if isinstance(backend, cf.Executor):
        from .executor import ExecutorBackend

        return ExecutorBackend(backend, workers), False
    raise UsageError(f"backend={backend!r}: pass one of {', '.join(NAMES)}, a backend instance "
                     "or a concurrent.futures.Executor")
