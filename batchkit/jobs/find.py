"""Finding jobs: a path to a job file, a name, or ``module:attr``.

A name is looked up, in order, as ``NAME.py`` in ``./jobs``, in each directory of
``$BATCHKIT_JOBS_PATH`` (``:``-separated), among the ready-made jobs shipped with batchkit, and
in the ``batchkit.jobs`` entry-point group (how other packages add theirs)::

    [project.entry-points."batchkit.jobs"]
    thumbnails = "mypkg.jobs:thumbnails"

Job files are imported by path, not by module name, so a worker process or a Dask worker
started elsewhere could not import them: their module is registered with cloudpickle to be
sent *by value* with the job.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..engine.tracebacks import JOB_MODULE_PREFIX
from ..errors import UsageError
from .job import Job
from .params import first_line

ENTRY_POINT_GROUP = "batchkit.jobs"


@dataclass(frozen=True)
class JobInfo:
    """A job as ``batchkit jobs`` lists it: found, but not imported."""

    name: str
    help: str
    where: str


def readymade_dir() -> Path | None:
    """Where the ready-made jobs are: ``batchkit/_jobs`` when installed, ``jobs/`` in a checkout."""
    spec = importlib.util.find_spec("batchkit._jobs")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "jobs").is_dir() and (checkout / "pyproject.toml").is_file():
        return checkout / "jobs"
    return None


def search_dirs() -> list[Path]:
    """Directories searched for ``NAME.py``, in order."""
    dirs = [Path("jobs")]
    for entry in os.environ.get("BATCHKIT_JOBS_PATH", "").split(os.pathsep):
        if entry:
            dirs.append(Path(entry).expanduser())
    ready = readymade_dir()
    if ready is not None:
        dirs.append(ready)
    return dirs


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    try:
        return list(entry_points(group=ENTRY_POINT_GROUP))
    except TypeError:  # Python 3.9: entry_points() takes no arguments
        return list(entry_points().get(ENTRY_POINT_GROUP, []))  # type: ignore[attr-defined]


def load_job(spec: str | os.PathLike) -> Job:
    """The job ``spec`` names, found as ``batchkit run`` finds it: a path to a job file
    (``jobs/x.py``, ``jobs/x.py:NAME``), a name (in ``./jobs``, ``$BATCHKIT_JOBS_PATH``, the
    ready-made jobs, the ``batchkit.jobs`` entry points) or ``module:attr``.

    >>> checksum = bk.load_job("checksum")
    >>> checksum.run(root="/data", manifest="/tmp/data.sha256", journal=True, resume=True)
    """
    return find_job(os.fspath(spec))


def find_job(spec: str) -> Job:
    """The :class:`~batchkit.jobs.Job` that ``spec`` names; :class:`UsageError` if none does."""
    path, attr = _split_path_spec(spec)
    if path is not None:
        if not path.is_file():
            raise UsageError(f"job file {path} does not exist")
        return load_file(path, attr)
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        return _from_module(module_name, attr, spec)
    for directory in search_dirs():
        candidate = directory / f"{spec}.py"
        if candidate.is_file():
            return load_file(candidate)
    for ep in _entry_points():
        if ep.name == spec:
            module_name, _, attr = ep.value.partition(":")
            return _from_module(module_name.strip(), attr.strip(), f"entry point {spec}")
    raise UsageError(f"unknown job {spec!r}: not a file, not in ./jobs, $BATCHKIT_JOBS_PATH or the "
                     "ready-made jobs; `batchkit jobs` lists them")


def _split_path_spec(spec: str) -> tuple[Path | None, str | None]:
    """``jobs/x.py`` or ``jobs/x.py:name`` -> (path, name); anything else -> (None, None)."""
    head, sep, tail = spec.rpartition(":")
    if sep and head.endswith(".py") and tail.isidentifier():
        return Path(head), tail
    if spec.endswith(".py") or "/" in spec or os.sep in spec:
        return Path(spec), None
    return None, None


def load_file(path: str | os.PathLike, attr: str | None = None) -> Job:
    """Import the job file at ``path`` and return its job (the one named ``attr`` if given)."""
    path = Path(path)
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read job file {path}: {exc.strerror or exc}") from None
    try:
        # The absolute name, so tracebacks from workers elsewhere still say which file.
        code = compile(source, os.path.abspath(path), "exec")
    except SyntaxError as exc:
        raise UsageError(f"job file {path}, line {exc.lineno}: syntax error: {exc.msg}") from None
    digest = hashlib.blake2b(os.fsencode(os.path.abspath(path)), digest_size=4).hexdigest()
    name = f"{JOB_MODULE_PREFIX}{''.join(c if c.isalnum() else '_' for c in path.stem)}_{digest}"
    module = types.ModuleType(name)
    module.__file__ = os.path.abspath(path)
    sys.modules[name] = module  # dataclasses, pickling and cloudpickle look modules up here
    try:
        exec(code, module.__dict__)
    except Exception as exc:
        sys.modules.pop(name, None)
        line = _user_line(exc, module.__file__)
        raise UsageError(f"job file {path}{line}: importing it raised {type(exc).__name__}: {exc}") from None
    _send_by_value(module)
    return _pick(module, attr, str(path), default=path.stem)


def _user_line(exc: BaseException, filename: str) -> str:
    tb, line = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f", line {line}" if line else ""


def _send_by_value(module: types.ModuleType) -> None:
    import cloudpickle

    try:
        cloudpickle.register_pickle_by_value(module)
    except (ValueError, AttributeError):  # very old cloudpickle: functions still pickle by value
        pass


def _from_module(module_name: str, attr: str, what: str) -> Job:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"{what}: cannot import {module_name!r}: {exc}") from None
    except Exception as exc:
        raise UsageError(f"{what}: importing {module_name!r} raised {type(exc).__name__}: {exc}") from None
    return _pick(module, attr or None, what, default=None)


def _pick(module: types.ModuleType, attr: str | None, what: str, default: str | None) -> Job:
    if attr:
        value = getattr(module, attr, None)
        if value is None:
            raise UsageError(f"{what}: has no {attr!r}")
        return _as_job(value, what)
    jobs = [v for v in vars(module).values() if isinstance(v, Job)]
    own = [j for j in jobs if j.module == module.__name__] or jobs
    if len(own) == 1:
        return own[0]
    for j in own:
        if j.name == default:
            return j
    if own:
        names = ", ".join(sorted(j.name for j in own))
        raise UsageError(f"{what} defines several jobs ({names}): name one as {what}:NAME")
    fn = getattr(module, default, None) if default else None
    if callable(fn):
        return _as_job(fn, what)
    raise UsageError(f"{what} has no job: decorate a function with @bk.job")


def _as_job(value: Any, what: str) -> Job:
    if isinstance(value, Job):
        return value
    if callable(value):
        return Job(value)
    raise UsageError(f"{what} is not a job or a function")


def list_jobs() -> Iterator[JobInfo]:
    """Every job that can be found, first of each name only, without importing any."""
    seen: set[str] = set()
    ready = readymade_dir()
    for directory in search_dirs():
        if not directory.is_dir():
            continue
        label = "ready-made" if ready is not None and directory.resolve() == ready.resolve() else str(directory)
        for path in sorted(directory.glob("*.py")):
            if path.name.startswith("_"):
                continue
            for name, text in describe_file(path):
                # A name resolves to its file's stem; other jobs in the file need FILE:NAME.
                ref = path.stem if name == path.stem else f"{path}:{name}"
                if ref in seen:
                    continue
                seen.add(ref)
                yield JobInfo(ref, text, label if label == "ready-made" else str(path))
    for ep in _entry_points():
        if ep.name not in seen:
            seen.add(ep.name)
            yield JobInfo(ep.name, f"(entry point {ep.value})", "entry point")


def describe_file(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``[(name, first docstring line)]`` of the jobs in a file, read without importing it."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=os.fspath(path))
    except (OSError, SyntaxError, ValueError) as exc:
        return [(Path(path).stem, f"(cannot read: {type(exc).__name__})")]
    found = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for deco in node.decorator_list:
            target = deco.func if isinstance(deco, ast.Call) else deco
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
            if name == "job":
                job_name = node.name
                if isinstance(deco, ast.Call):
                    for kw in deco.keywords:
                        if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                            job_name = str(kw.value.value)
                found.append((job_name, first_line(ast.get_docstring(node))))
    return found
