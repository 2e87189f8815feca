"""Timing: several rounds per contender, medians, and the targets the figures are held to."""

from __future__ import annotations

import gc
import resource
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .peers import Peer, Shared


@dataclass
class Timing:
    """The rounds of one contender in one scenario. ``skipped`` says why it did not run."""

    name: str
    items: int
    times: list[float] = field(default_factory=list)
    note: str = ""
    cpu: list[float] = field(default_factory=list)  # user + sys of every process, for commands
    ours: bool = False
    skipped: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        """Median wall time of a round, in seconds."""
        return statistics.median(self.times) if self.times else float("nan")

    @property
    def throughput(self) -> float:
        """Items per second at the median."""
        return self.items / self.median if self.times and self.median > 0 else float("nan")


def cost_ratio(a: Timing, b: Timing, paired: bool) -> float | None:
    """``a``'s time per item divided by ``b``'s; ``None`` when either did not run.

    ``paired``: the two ran their rounds interleaved, so round *i* of each saw the same load;
    the median of the per-round ratios then cancels load that drifts during the run, which a
    ratio of the two medians does not. Otherwise: the ratio of the medians.
    """
    if not a.times or not b.times:
        return None
    if paired and len(a.times) == len(b.times):
        return statistics.median((x / a.items) / (y / b.items) for x, y in zip(a.times, b.times))
    return (a.median / a.items) / (b.median / b.items)


@dataclass(frozen=True)
class Target:
    """A promise from the issues: ``value`` (in ``unit``) must be ``<=`` or ``>=`` ``limit``."""

    text: str
    value: float | None
    limit: float
    op: str  # "<=" or ">="
    unit: str = "×"
    note: str = ""

    @property
    def met(self) -> bool | None:
        """True / False, or ``None`` when the figure could not be measured."""
        if self.value is None or self.value != self.value:  # NaN: not measured
            return None
        return self.value <= self.limit if self.op == "<=" else self.value >= self.limit


def time_peers(entries: Sequence[tuple[Peer, list]], shared: Shared, workers: int, fn: Callable[[Any], Any],
               rounds: int, warmup: int = 100, log: Callable[[str], None] | None = None) -> list[Timing]:
    """Open every peer of ``entries``, warm each on a few items, then time ``rounds`` rounds.

    The rounds are interleaved (A B A B ...), so a burst of load from elsewhere on the machine
    hits every contender of the group alike. Every result is checked (length, first and last
    value) off the clock, so a contender that returns early or wrong cannot look fast.
    """
    timings = [Timing(peer.name, len(items), note=peer.note, ours=peer.ours) for peer, items in entries]
    live = []
    with ExitStack() as stack:
        for (peer, items), timing in zip(entries, timings):
            missing = peer.missing()
            if missing:
                timing.skipped = f"{missing} is not installed"
                continue
            if log:
                log(f"  {peer.name}: {len(items):,} items x {rounds} rounds")
            go = stack.enter_context(peer.open(shared, workers))
            go(fn, items[:warmup])  # starts the pool (when it is reused), imports, first-call costs
            live.append((go, items, timing, (fn(items[0]), fn(items[-1]))))
        for _ in range(rounds):
            for go, items, timing, (first, last) in live:
                gc.collect()
                t0 = time.perf_counter()
                out = go(fn, items)
                timing.times.append(time.perf_counter() - t0)
                if len(out) != len(items) or out[0] != first or out[-1] != last:
                    raise AssertionError(f"{timing.name} returned a wrong result")
                del out
    return timings


def time_command(argv: Sequence[str] | str, rounds: int, *, shell: bool = False, env: dict | None = None,
                 stdout: Any = subprocess.DEVNULL, before: Callable[[], None] | None = None,
                 check: Callable[[], None] | None = None) -> tuple[list[float], list[float]]:
    """Wall and CPU times of ``rounds`` runs of a command, which must exit 0.

    CPU is user + sys of the command and every descendant it waited for (``RUSAGE_CHILDREN``):
    unlike wall time, it barely moves when other work shares the machine. ``before`` and
    ``check`` run off the clock, before and after each run.
    """
    times, cpus = [], []
    for _ in range(rounds):
        if before is not None:
            before()
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(argv, shell=shell, env=env, stdout=stdout, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"{argv!r} exited {proc.returncode}: {' | '.join(tail)}")
        if check is not None:
            check()
    return times, cpus


def python_command(*args: str) -> list[str]:
    """``[sys.executable, *args]``."""
    return [sys.executable, *args]


def time_round(t: Timing, cmd: Sequence[str] | str, **kwargs: Any) -> None:
    """One timed run of ``cmd`` (see :func:`time_command`) added to ``t``; a failure marks ``t``
    skipped, with why, and drops its times (a half-measured contender is no contender)."""
    try:
        wall, cpu = time_command(cmd, 1, **kwargs)
        t.times += wall
        t.cpu += cpu
    except (RuntimeError, AssertionError) as exc:
        t.skipped, t.times = f"failed: {exc}", []
