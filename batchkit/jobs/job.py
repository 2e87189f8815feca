"""Jobs: ``@bk.job`` turns a plain function into a :class:`Job` that runs from Python and the CLI.

The first parameter of the function receives one item; its other parameters become the job's
options (on the command line: ``--name VALUE``, typed from the annotations and defaults, with
help from an ``Args:`` section of the docstring). A job may also declare::

    @job.source    # where items come from; parameters without defaults become arguments (ROOT)
    @job.step      # a further step: receives the previous step's value (and ``item`` if asked)
    @job.setup     # once before the run (validate options, create directories)
    @job.initializer  # once in each worker before its first item (load a model, open a connection)
    @job.teardown  # once after the run, whatever happened
    @job.finish    # once after a completed run, with every outcome (e.g. write a manifest)

>>> @bk.job
... def shout(item: str, suffix: str = "!") -> str:
...     '''Upper-case each item.'''
...     return item.upper() + suffix
>>> shout.run(["a", "b"], suffix="?", backend="thread").values()
['A?', 'B?']
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterable

from ..errors import UsageError
from ..retry import Retry, coerce_retry
from .bound import BoundJob
from .params import Param, first_line, param_help, python_type, signature_of, without_args

# Keyword arguments of bk.run: Job.run passes these to the engine, never to the job.
ENGINE_KWARGS = ("backend", "workers", "chunk_size", "ordered", "retry", "timeout", "progress",
                 "journal", "resume", "key", "max_failures", "desc", "name", "initializer", "initargs")
# What Job.run takes for the run's lifecycle: the lock, --output, and the operations.
LIFECYCLE_KWARGS = ("lock", "wait_lock", "output", "retry_failed", "log_file", "log_format", "notify",
                    "notify_on", "ping", "metrics_file", "run_name")
OPS_KWARGS = ("log_file", "log_format", "notify", "notify_on", "ping", "metrics_file", "run_name")
# Names the command line uses for its own options; a job option may not take one of them.
RESERVED = frozenset(ENGINE_KWARGS) | frozenset(LIFECYCLE_KWARGS) | {
    "input", "files", "include", "exclude", "json", "quiet", "scheduler", "retries",
    "retry_backoff", "retry_on", "retry_if", "no_journal", "show_failures", "run_name",
    "unordered", "help", "keep_output", "watch", "settle", "poll", "queue", "follow", "lease",
}


class Job:
    """A job: one or more steps run on every item, with options, made by :func:`job`.

    Attributes: ``name``, ``help`` (the docstring's first line), ``description`` (the
    docstring less its ``Args:`` section), ``backend`` (default backend), ``key`` (the item's
    journal key, optional), ``steps`` (``[(name, fn)]``).
    """

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, help: str | None = None,
                 backend: str | None = None, key: Callable[[Any], Any] | None = None,
                 writes_stdout: bool | Callable[[dict], bool] = False, retry: Retry | int | None = None) -> None:
        if not callable(fn):
            raise UsageError(f"@bk.job needs a function, got {type(fn).__name__}")
        self.name = name or getattr(fn, "__name__", "job")
        self.doc = inspect.cleandoc(fn.__doc__ or "")
        self.help = help or first_line(fn.__doc__)
        self.description = without_args(self.doc) or self.help
        self.backend = backend
        self.key = key
        self.writes_stdout = writes_stdout
        self.retry = coerce_retry(retry)
        self.module = getattr(fn, "__module__", None)
        self.steps: list[tuple[str, Callable[..., Any]]] = [(getattr(fn, "__name__", self.name), fn)]
        self._source: Callable[..., Iterable[Any]] | None = None
        self._setup: Callable[..., Any] | None = None
        self._initializer: Callable[..., Any] | None = None
        self._teardown: Callable[..., Any] | None = None
        self._finish: Callable[..., Any] | None = None
        params, _ = signature_of(fn)
        if not params or params[0].kind not in (inspect.Parameter.POSITIONAL_ONLY,
                                                inspect.Parameter.POSITIONAL_OR_KEYWORD):
            raise UsageError(f"job {self.name!r}: the function's first parameter must receive the item")
        self.params()  # check the options now, at decoration time
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<Job {self.name}: {self.help}>"

    def __call__(self, item: Any, **options: Any) -> Any:
        """Run every step on one ``item`` here, in this process (handy in tests)."""
        return self.bind(**options).fn(item)

    @property
    def has_source(self) -> bool:
        """Whether the job declares where its items come from (see :meth:`source`)."""
        return self._source is not None

    # -- declaring ---------------------------------------------------------------------------

    def step(self, fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
        """Add a step run after the previous ones; it receives the previous step's value.

        A step that declares a parameter named ``item`` also receives the original item. When
        a step raises, the item fails with the step's name in ``ItemError.step``.
        """
        def add(f: Callable[..., Any]) -> Callable[..., Any]:
            self.steps.append((name or f.__name__, f))
            self.params()
            return f

        return add(fn) if fn is not None else add

    def source(self, fn: Callable[..., Iterable[Any]]) -> Callable[..., Iterable[Any]]:
        """Declare where items come from when none are given (e.g. the files under ``ROOT``).

        Its parameters without a default become positional command-line arguments.
        """
        self._source = fn
        self.params()
        return fn

    def setup(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Run ``fn`` once before the run; raise :class:`bk.UsageError` to refuse bad options."""
        self._setup = fn
        self.params()
        return fn

    def initializer(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Run ``fn`` once in each worker before its first item: load a model, open a connection.

        The ``initializer`` of ``concurrent.futures`` and ``multiprocessing.Pool``, declared on
        the job: its parameters are job options, filled like :meth:`setup`'s. It runs once per
        worker process (again in a worker that replaces one that died), per Dask worker, per
        thread on the thread backend, and once in this process on the serial backend. What it
        stores in a module-level global is there for the job's function in that worker. If it
        raises, the items of that worker's chunk fail with ``ItemError.step == "initializer"``
        and its next chunk tries again.

        >>> MODEL = None
        >>> @tag.initializer
        ... def load(model: str = "small"):
        ...     global MODEL
        ...     MODEL = load_model(model)
        """
        self._initializer = fn
        self.params()
        return fn

    def teardown(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Run ``fn`` once after the run, whether it succeeded, failed or was interrupted."""
        self._teardown = fn
        self.params()
        return fn

    def finish(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Run ``fn(outcomes, **options)`` once a run completes (not when it was interrupted).

        ``outcomes`` lists every item's :class:`~batchkit.Outcome` in input order, including
        those finished by an earlier attempt of a resumed run (rebuilt from the journal).
        A parameter named ``report`` receives this run's :class:`~batchkit.Report`.
        """
        self._finish = fn
        self.params()
        return fn

    @property
    def has_finish(self) -> bool:
        """Whether the job has a finishing step (which sees every outcome)."""
        return self._finish is not None

    # -- options -----------------------------------------------------------------------------

    def _hooks(self) -> list[tuple[Callable[..., Any], int]]:
        """Every function with options, and how many leading parameters are not options."""
        hooks = [(fn, 1) for _, fn in self.steps]
        if self._finish is not None:
            hooks.append((self._finish, 1))
        hooks += [(f, 0) for f in (self._source, self._setup, self._initializer, self._teardown) if f is not None]
        return hooks

    def params(self) -> list[Param]:
        """Every option and argument of the job, arguments (from the source) first."""
        found: dict[str, Param] = {}
        helps = param_help(self.doc)
        for fn, skip in self._hooks():
            params, hints = signature_of(fn)
            helps = {**param_help(fn.__doc__), **helps}
            for p in params[skip:]:
                if p.name in ("item", "report") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    continue
                if p.name in RESERVED:
                    raise UsageError(f"job {self.name!r}: option {p.name!r} clashes with batchkit's own "
                                     f"--{p.name.replace('_', '-')}; rename it")
                kind, choices, multiple = python_type(hints.get(p.name, p.annotation), p.default)
                required = p.default is inspect.Parameter.empty
                param = Param(p.name, kind, None if required else p.default, required,
                              helps.get(p.name, ""), choices, multiple,
                              argument=fn is self._source and required)
                old = found.get(p.name)
                if old is not None and (old.type, old.default) != (param.type, param.default):
                    raise UsageError(f"job {self.name!r}: option {p.name!r} is declared twice "
                                     "with different types or defaults")
                if old is None or param.argument:
                    found[p.name] = param
        return sorted(found.values(), key=lambda p: not p.argument)

    # -- running -----------------------------------------------------------------------------

    def bind(self, **options: Any) -> BoundJob:
        """Check ``options`` against the job's parameters and fill in the defaults."""
        params = {p.name: p for p in self.params()}
        unknown = sorted(set(options) - set(params))
        if unknown:
            known = ", ".join(sorted(params)) or "none"
            raise UsageError(f"job {self.name!r} has no option {unknown[0]!r} (its options: {known})")
        values = {}
        for name, p in params.items():
            if name in options:
                values[name] = options[name]
            elif p.required and not p.argument:
                raise UsageError(f"job {self.name!r} needs the option {name!r}")
            else:
                values[name] = p.default  # a missing argument stays None: only the source needs it
        return BoundJob(self, values)

    def run(self, items: Iterable[Any] | None = None, /, **kwargs: Any) -> Any:
        """Run the job over ``items`` (or its own source) and return a :class:`~batchkit.Report`.

        The same run lifecycle as ``batchkit run``: keyword arguments named like
        :func:`batchkit.run`'s (``backend``, ``workers``, ``retry``, ``journal``, ``resume``,
        ...) go to the engine; ``lock=True`` (and ``wait_lock``), ``output``, ``retry_failed``
        and the operations (``log_file``, ``ping``, ``notify``, ``metrics_file``, ...) to the
        lifecycle; the others are the job's options. A resumed run's finishing step and report
        see every item, earlier attempts included, with exact values.
        """
        from ..api import raise_for
        from .lifecycle import Run

        engine = {k: kwargs.pop(k) for k in ENGINE_KWARGS if k in kwargs}
        life = {k: kwargs.pop(k) for k in LIFECYCLE_KWARGS if k in kwargs}
        bound = self.bind(**kwargs)
        result = Run(bound.plan(items, keep_outcomes=True, **life, **engine)).execute()
        raise_for(result)
        return result.report


def job(fn: Callable[..., Any] | None = None, *, name: str | None = None, help: str | None = None,
        backend: str | None = None, key: Callable[[Any], Any] | None = None,
        writes_stdout: bool | Callable[[dict], bool] = False, retry: Retry | int | None = None) -> Any:
    """Make a :class:`Job` of ``fn``: ``@bk.job`` or ``@bk.job(name=..., backend="thread")``.

    ``backend`` is the job's default backend and ``retry`` its default :class:`bk.Retry`
    (``--retries`` overrides it); ``key`` gives each item's journal key; ``writes_stdout``
    says (for given option values) that the job writes its data to stdout.
    """
    def make(f: Callable[..., Any]) -> Job:
        return Job(f, name=name, help=help, backend=backend, key=key, writes_stdout=writes_stdout, retry=retry)

    return make(fn) if fn is not None else make
