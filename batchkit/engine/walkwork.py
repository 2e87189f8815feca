"""What a worker does with a unit of a file walk: :func:`run_walk` lists its files, then runs them as a chunk.

The parent hands out units of the walk (see :mod:`~batchkit.engine.walkfeed`); the worker lists
what its unit covers (:func:`batchkit.sources.walkunits.gather`), runs the files it found with
:func:`~batchkit.engine.worker.run_chunk` and sends back a :class:`WalkResult`: their outcomes,
their paths and the part of the unit it did not reach.
"""

from __future__ import annotations

import os
import time
from array import array

from .worker import ChunkResult, Task, run_chunk


class WalkResult(ChunkResult):
    """A :class:`ChunkResult` of a unit of a file walk, with what the walk found: ``paths`` (the
    files run, in order), ``rest`` (the segments not reached, in order), ``errors`` (directories
    that could not be read), ``dirs`` (directories listed) and ``blind`` (this worker cannot see
    the tree's root: nothing was done)."""

    __slots__ = ("paths", "rest", "errors_walk", "dirs", "blind")

    def __init__(self, result: ChunkResult | None, paths: list[str], rest: list, errors: list, dirs: int,
                 blind: bool = False) -> None:
        if result is None:
            super().__init__([], {}, {}, array("d"), 0.0)
        else:
            super().__init__(result.values, result.errors, result.attempts, result.durations, result.elapsed,
                             result.worker, result.started, result.events)
        self.paths = paths
        self.rest = rest
        self.errors_walk = errors
        self.dirs = dirs
        self.blind = blind

    def __getstate__(self) -> tuple:
        return (super().__getstate__(), self.paths, self.rest, self.errors_walk, self.dirs, self.blind)

    def __setstate__(self, state: tuple) -> None:
        base, self.paths, self.rest, self.errors_walk, self.dirs, self.blind = state
        super().__setstate__(base)


def run_walk(task: Task) -> WalkResult:
    """Find this unit's files (walking its part of the tree), then run them as a chunk."""
    from ..sources.walkunits import gather

    walk, segments, budget = task.walk  # type: ignore[misc]
    if not os.path.isdir(walk.root):
        return WalkResult(None, [], [], [], 0, blind=True)
    wall, t0 = time.time(), time.perf_counter()
    paths, rest, errors, dirs = gather(walk, segments, budget)
    listing = time.perf_counter() - t0
    task.walk = None
    if walk.as_str:
        task.items = paths
    else:
        from pathlib import Path

        task.items = list(map(Path, paths))
    result = run_chunk(task)
    # The unit's whole time, listing included, sizes the next units and draws the timeline.
    result.elapsed += listing
    result.started = wall
    return WalkResult(result, paths, rest, errors, dirs)
