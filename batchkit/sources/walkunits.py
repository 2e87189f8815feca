"""A file walk cut into pieces that workers carry out: :func:`gather`.

A piece of the walk, a *segment*, is either a directory still to be listed, ``("d", path, rel)``
(``rel``: its path relative to the root, ending with ``/``, or ``""`` when no pattern needs it),
or files already listed, ``("f", [path, ...])``. :func:`gather` carries out segments in walk order
— listing directories exactly as :meth:`FileWalk.scan <batchkit.sources.files.FileWalk.scan>`
does for the parent's own walk — until it has ``budget`` files, and returns them with what it did
not reach, still in walk order. Run in a worker it takes the walk off the parent; run in the
parent it finds the same files (a unit whose worker died is re-run that way).
"""

from __future__ import annotations

import copy
from typing import Any, List, Tuple, Union

from .files import FileWalk

Segment = Union[Tuple[str, str, str], Tuple[str, List[str]]]


def quiet_copy(walk: FileWalk) -> FileWalk:
    """A copy of ``walk`` that collects the directories it cannot read instead of logging them
    (the parent logs them, in walk order, when their files' turn comes)."""
    spec = copy.copy(walk)
    spec.errors = []
    spec.quiet = True
    return spec


# Directories one unit may list even when its budget of files is smaller: a first unit (budget
# one file) still reaches the files below the root in one round trip.
MIN_DIRS = 16


def gather(walk: FileWalk, segments: list[Segment], budget: int
           ) -> tuple[list[str], list[Segment], list[tuple[str, str]], int]:
    """Carry out ``segments`` in order until ``budget`` files are found (or ``budget`` directories
    listed, at least :data:`MIN_DIRS`). Returns the files' paths, the segments left (in order),
    the directories that could not be read ``(path, message)``, and how many directories were
    listed."""
    walk.errors = []
    max_dirs = max(budget, MIN_DIRS)
    todo = segments[::-1]  # a stack: the next segment last
    paths: list[str] = []
    dirs = 0
    while todo and len(paths) < budget and dirs < max_dirs:
        seg = todo.pop()
        if seg[0] == "f":
            files: Any = seg[1]
            room = budget - len(paths)
            if len(files) <= room:
                paths += files
            else:
                paths += files[:room]
                todo.append(("f", files[room:]))
            continue
        dirs += 1
        listed: list[Segment] = []
        run: list[str] | None = None
        for path, rel in walk.scan(seg[1], seg[2]):
            if rel is None:
                if run is None:
                    run = []
                    listed.append(("f", run))
                run.append(path)
            else:
                run = None
                listed.append(("d", path, rel))
        todo += listed[::-1]
    return paths, todo[::-1], walk.errors, dirs

