"""The options of a run, validated once: :class:`RunOptions`.

``bk.run``, ``bk.imap``, ``Job.run`` and the command line all build one of these, so an option
means the same everywhere: ``timeout="30s"`` works from Python as ``--timeout 30s`` does on the
command line, a bad value is refused with the same one-line :class:`~batchkit.UsageError`
before anything runs, and the default worker count respects CPU affinity and cgroup limits.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Union

from .errors import UsageError
from .retry import Retry, coerce_retry
from .units import parse_duration

MaxFailures = Union[int, float, None]
PROGRESS_CHOICES = (None, True, False, "log", "bar")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Everything that shapes one run, checked and normalised by :meth:`build`.

    ``name`` is the run's identity for resume and locking (by default the job's name or the
    function's qualified name); ``desc`` only labels progress and reports.
    """

    backend: Any = "process"
    workers: int | None = None
    chunk_size: int | str = "auto"
    ordered: bool = True
    retry: Retry | None = None
    timeout: float | None = None
    progress: bool | str | None = None
    max_failures: MaxFailures = None
    desc: str | None = None
    name: str | None = None
    key: Callable[[Any], Any] | None = None
    journal: Any = None
    resume: bool | str = False
    initializer: Callable[..., Any] | None = None
    initargs: tuple = ()

    @classmethod
    def build(cls, **options: Any) -> RunOptions:
        """Validate ``options`` (the keyword arguments of :func:`batchkit.run`) and return them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UsageError(f"unknown run option {unknown[0]!r}; the options are: {', '.join(sorted(known))}")
        o = dict(options)
        if "workers" in o:
            o["workers"] = check_workers(o["workers"])
        if "chunk_size" in o:
            o["chunk_size"] = check_chunk_size(o["chunk_size"])
        if "retry" in o:
            o["retry"] = coerce_retry(o["retry"])
        if "timeout" in o:
            o["timeout"] = check_timeout(o["timeout"])
        if o.get("progress") not in PROGRESS_CHOICES:
            raise UsageError(f"progress={o['progress']!r}: use None (automatic), True, False or 'log'")
        if "max_failures" in o:
            o["max_failures"] = check_max_failures(o["max_failures"])
        for text in ("desc", "name"):
            if o.get(text) is not None and not isinstance(o[text], str):
                raise UsageError(f"{text}={o[text]!r}: give a string")
        if o.get("key") is not None and not callable(o["key"]):
            raise UsageError(f"key={o['key']!r}: give a function item -> key (or None for the default)")
        if "journal" in o:
            o["journal"] = check_journal(o["journal"])
        resume = o.get("resume", False)
        if resume not in (True, False, "failed"):
            raise UsageError(f"resume={resume!r}: use True (continue the latest unfinished run) or 'failed'")
        if resume and not o.get("journal"):
            raise UsageError("resume needs a journal: pass journal=True (or a path) as well")
        if o.get("initializer") is not None and not callable(o["initializer"]):
            raise UsageError(f"initializer={o['initializer']!r}: give a function")
        if "initargs" in o:
            if not isinstance(o["initargs"], (tuple, list)):
                raise UsageError(f"initargs={o['initargs']!r}: give a tuple of arguments")
            o["initargs"] = tuple(o["initargs"])
        return cls(**o)

    def replace(self, **changes: Any) -> RunOptions:
        """A copy with ``changes`` (validated)."""
        merged = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        merged.update(changes)
        return RunOptions.build(**merged)


def check_workers(workers: Any) -> int | None:
    """``None`` (the CPU count) or a whole number >= 1."""
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers={workers!r}: must be a whole number >= 1")
    return workers


def check_chunk_size(chunk_size: Any) -> int | str:
    """``"auto"`` or a whole number >= 1."""
    if chunk_size == "auto":
        return "auto"
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise UsageError(f"chunk_size={chunk_size!r}: use 'auto' or a whole number >= 1")
    return chunk_size


def check_timeout(timeout: Any) -> float | None:
    """``None``, or seconds > 0 given as a number, a ``timedelta`` or text such as ``"30s"``."""
    if timeout is None:
        return None
    if isinstance(timeout, bool):
        raise UsageError(f"timeout={timeout!r}: use a number of seconds > 0, e.g. 30 or '30s'")
    seconds = parse_duration(timeout)
    if not seconds > 0:
        raise UsageError(f"timeout={timeout!r}: use a number of seconds > 0, e.g. 30 or '30s'")
    if not math.isfinite(seconds):
        raise UsageError(f"timeout={timeout!r}: use None for no timeout")
    return seconds


def check_max_failures(value: Any) -> MaxFailures:
    """A count >= 1, or a fraction strictly between 0 and 1."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise UsageError(f"max_failures={value!r}: use a count (e.g. 10) or a fraction (e.g. 0.05)")
    if isinstance(value, int) and value >= 1:
        return value
    if isinstance(value, float) and 0 < value < 1:
        return value
    raise UsageError(f"max_failures={value!r}: use a count >= 1 or a fraction between 0 and 1")


def check_journal(journal: Any) -> Any:
    """``None``/``False`` (no journal), ``True`` (the default file), a path, or an open ``Journal``."""
    if journal is None or journal is False or journal is True:
        return journal or None
    if isinstance(journal, (str, os.PathLike)):
        if not os.fspath(journal):
            raise UsageError("journal='': give True (the default file) or a path")
        return journal
    from .state.journal import Journal

    if isinstance(journal, Journal):
        return journal
    raise UsageError(f"journal={journal!r}: use True, a path, or a batchkit Journal")


def cpu_count() -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (containers).

    ``os.cpu_count()`` counts the host's CPUs: under ``taskset -c 0`` or in a container limited to
    2 CPUs on a 64-core host it would say 1 or 2 too many times over.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def _cgroup_quota() -> float | None:
    """CPUs allowed by the cgroup (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), or ``None``."""
    root = os.environ.get("BATCHKIT_CGROUP_ROOT", "/sys/fs/cgroup")  # tests point this elsewhere
    candidates = [(os.path.join(root, "cpu.max"), None)]
    own = _own_cgroup()
    if own:
        candidates.insert(0, (os.path.join(root, own.lstrip("/"), "cpu.max"), None))
    for path, _ in candidates:
        try:
            with open(path) as f:
                quota, period = (f.read().split() + ["100000"])[:2]
        except OSError:
            continue
        if quota == "max":
            return None
        try:
            return int(quota) / int(period)
        except (ValueError, ZeroDivisionError):
            return None
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as f:
            quota_us = int(f.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as f:
            period_us = int(f.read())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _own_cgroup() -> str | None:
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None
