"""batchkit: run a function over many items or files, in parallel, without losing any.

>>> import batchkit as bk
>>> report = bk.run(str.upper, ["a", "b"], backend="thread")
>>> report.values()
['A', 'B']

The process and Dask backends load loky / dask only when used: ``import batchkit`` is light.
"""

from __future__ import annotations

from typing import Any

from .api import Outcomes, imap, run
from .errors import (
    BackendError,
    BatchFailed,
    BatchkitError,
    ExitCode,
    Interrupted,
    JournalError,
    Locked,
    OutputError,
    UsageError,
    WorkerCrashed,
)
from .interrupt import graceful
from .options import RunOptions
from .outcome import ItemError, Outcome
from .report import Report
from .retry import Retry
from .sources.files import FileWalk, files

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BatchFailed",
    "BatchkitError",
    "DaskBackend",
    "ExecutorBackend",
    "ExitCode",
    "FileWalk",
    "Interrupted",
    "ItemError",
    "Job",
    "Journal",
    "JournalError",
    "Locked",
    "Outcome",
    "Outcomes",
    "OutputError",
    "ProcessBackend",
    "Queue",
    "Report",
    "Retry",
    "RunOptions",
    "SerialBackend",
    "ThreadBackend",
    "UsageError",
    "WorkerCrashed",
    "__version__",
    "files",
    "graceful",
    "imap",
    "job",
    "load_job",
    "run",
]

# Names resolved on first use, so importing batchkit never imports loky, joblib, dask or distributed.
_LAZY = {
    "SerialBackend": ("batchkit.backends.serial", "SerialBackend"),
    "ThreadBackend": ("batchkit.backends.thread", "ThreadBackend"),
    "ProcessBackend": ("batchkit.backends.process", "ProcessBackend"),
    "DaskBackend": ("batchkit.backends.dask", "DaskBackend"),
    "ExecutorBackend": ("batchkit.backends.executor", "ExecutorBackend"),
    "Journal": ("batchkit.state.journal", "Journal"),
    "Job": ("batchkit.jobs.job", "Job"),
    "Queue": ("batchkit.state.queue", "Queue"),
    "job": ("batchkit.jobs.job", "job"),
    "load_job": ("batchkit.jobs.find", "load_job"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'batchkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
