"""Worker tracebacks that read as the user's own code: real file names, source lines, type names.

cloudpickle (3.1 and later) names every code object it sends by value ``<dynamic-code>``, so a
function from a script, a job file or a notebook cell that fails in a worker process or on a
Dask worker shows ``File "<dynamic-code>", line 4, in inverse`` with no path and no source line.
The worker cannot know better: the file may not exist on its machine. The parent can: it still
holds the original function. So the parent rewrites such frames when a failed item comes back
(:class:`SourceMap`): it walks the code objects reachable from the run's function, finds the one
named in the frame whose lines contain the frame's line, and puts back its file name and the
source line from :mod:`linecache` (which also knows notebook cells). Nothing is done per item
unless an item failed on a backend that pickles by value.

Job files are imported as modules named ``_batchkit_job_<stem>_<digest>`` (see
:mod:`batchkit.jobfind`); :func:`display_type` keeps that internal name out of the exception type
a traceback shows, so ``ChecksumMismatch`` reads as the user wrote it.
"""

from __future__ import annotations

import dis
import functools
import linecache
import re
import sys
import types
from typing import Any, Iterator

DYNAMIC = "<dynamic-code>"
# The prefix of the module names job files are imported under.
JOB_MODULE_PREFIX = "_batchkit_job_"

_FRAME = re.compile(r'^(?P<indent> *)File "<dynamic-code>", line (?P<line>\d+), in (?P<name>.+)$')
_JOB_MODULE = re.compile(re.escape(JOB_MODULE_PREFIX) + r"\w+?_[0-9a-f]{8}\.")
_EMPTY = object()
_MAX_OBJECTS = 20_000  # a bound on the walk: a function's reachable graph is normally small


def display_type(text: str) -> str:
    """``text`` with job-module prefixes removed (``_batchkit_job_x_1a2b3c4d.Err`` -> ``Err``)."""
    return _JOB_MODULE.sub("", text) if JOB_MODULE_PREFIX in text else text


class SourceMap:
    """Where the code objects reachable from ``fn`` really live: ``(name, line) -> file name``.

    Built on first use (only when a traceback needs it), from ``fn``'s own code, the code it
    references through globals, closures, defaults, ``functools.partial`` and object attributes,
    and every function of the modules cloudpickle sends by value (``__main__`` and job files).
    """

    def __init__(self, fn: Any) -> None:
        self._fn = fn
        self._index: dict[str, list[tuple[int, int, str]]] | None = None

    def fix(self, traceback: str) -> str:
        """``traceback`` with each ``<dynamic-code>`` frame given its file and source line."""
        if DYNAMIC not in traceback:
            return display_type(traceback)
        lines = traceback.splitlines(keepends=True)
        out: list[str] = []
        for i, line in enumerate(lines):
            match = _FRAME.match(line.rstrip("\n"))
            if match is None:
                out.append(line)
                continue
            lineno, name = int(match.group("line")), match.group("name")
            filename = self.locate(name, lineno)
            if filename is None:
                out.append(line)
                continue
            indent = match.group("indent")
            out.append(f'{indent}File "{filename}", line {lineno}, in {name}\n')
            source = linecache.getline(filename, lineno).strip()
            following = lines[i + 1] if i + 1 < len(lines) else ""
            # A frame that already has its source line (never, today) keeps it.
            if source and not following.startswith(indent + "    "):
                out.append(f"{indent}    {source}\n")
        return display_type("".join(out))

    def locate(self, name: str, lineno: int) -> str | None:
        """The file of the code object called ``name`` whose lines include ``lineno``."""
        if self._index is None:
            self._index = self._build()
        for first, last, filename in self._index.get(name, ()):
            if first <= lineno <= last:
                return filename
        return None

    def _build(self) -> dict[str, list[tuple[int, int, str]]]:
        index: dict[str, list[tuple[int, int, str]]] = {}
        for code in _codes(self._fn):
            lines = [n for _, n in dis.findlinestarts(code) if n is not None]
            first = min([code.co_firstlineno, *lines])
            last = max([code.co_firstlineno, *lines])
            index.setdefault(code.co_name, []).append((first, last, code.co_filename))
        return index


def _by_value_modules() -> Iterator[types.ModuleType]:
    names = {"__main__"}
    try:
        import cloudpickle

        names |= set(cloudpickle.list_registry_pickle_by_value())
    except (ImportError, AttributeError):
        pass
    for name in names:
        module = sys.modules.get(name)
        if module is not None:
            yield module


def _codes(root: Any) -> Iterator[types.CodeType]:
    """Every code object reachable from ``root`` (and from the by-value modules), once each."""
    seen: set[int] = set()
    stack: list[Any] = [root, *(vars(m) for m in _by_value_modules())]
    while stack and len(seen) < _MAX_OBJECTS:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, types.CodeType):
            yield obj
            stack.extend(c for c in obj.co_consts if isinstance(c, types.CodeType))
        elif isinstance(obj, types.FunctionType):
            stack.append(obj.__code__)
            glb = obj.__globals__
            stack.extend(glb[n] for n in _names(obj.__code__) if n in glb)
            stack.extend(c.cell_contents for c in obj.__closure__ or () if _has_contents(c))
            stack.extend(obj.__defaults__ or ())
            stack.extend((obj.__kwdefaults__ or {}).values())
        elif isinstance(obj, types.MethodType):
            stack.extend((obj.__func__, obj.__self__))
        elif isinstance(obj, functools.partial):
            stack.extend((obj.func, *obj.args, *obj.keywords.values()))
        elif isinstance(obj, dict):
            stack.extend(v for v in obj.values() if _worth_walking(v))
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(v for v in obj if _worth_walking(v))
        elif isinstance(obj, type):
            if obj.__module__ not in ("builtins",) and not obj.__module__.startswith("batchkit."):
                stack.extend(v for v in vars(obj).values() if _worth_walking(v))
        elif isinstance(obj, (staticmethod, classmethod)):
            stack.append(obj.__func__)
        elif isinstance(obj, property):
            stack.extend(f for f in (obj.fget, obj.fset, obj.fdel) if f is not None)
        elif not isinstance(obj, types.ModuleType):
            attrs = getattr(obj, "__dict__", None)
            if isinstance(attrs, dict):
                stack.append(attrs)
            slots = getattr(type(obj), "__slots__", ())
            stack.extend(getattr(obj, s) for s in ([slots] if isinstance(slots, str) else slots)
                         if hasattr(obj, s))
            if callable(obj) and not isinstance(obj, type):
                stack.append(type(obj))


def _names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def _has_contents(cell: Any) -> bool:
    try:
        return cell.cell_contents is not _EMPTY
    except ValueError:  # an empty cell (a variable not yet assigned)
        return False


def _worth_walking(value: Any) -> bool:
    # Only what can hold code: skips the plain data (numbers, strings, arrays) of big globals.
    return not isinstance(value, (str, bytes, int, float, complex, bool, type(None), types.ModuleType))
