"""A job bound to its option values, ready to run: :class:`BoundJob`, and the per-item callables it
sends to workers.

:meth:`Job.bind <batchkit.jobs.job.Job.bind>` checks the options and returns a :class:`BoundJob`:
its ``fn`` runs every step on one item (a :class:`Pipeline` for a multi-step job), its hooks
(set-up, initializer, tear-down, finish) are called with the options they declare, and
:meth:`BoundJob.plan` makes the :class:`~batchkit.jobs.plan.RunPlan` that ``Job.run`` and the
command line execute. :class:`Pipeline`, :class:`InitChain` and :class:`ConvertItems` are
top-level classes, not closures, so they pickle to worker processes and Dask workers.
"""

from __future__ import annotations

import functools
import inspect
import os
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..errors import UsageError
from .params import signature_of

if TYPE_CHECKING:
    from .job import Job


class StepFailed(Exception):
    """Raised (from the original error) when one step of a multi-step job fails; the worker
    records the original error with ``ItemError.step`` set to the step's name."""


class BoundJob:
    """A job with its option values: the per-item function and the hooks, ready to call."""

    def __init__(self, job: Job, values: dict[str, Any]) -> None:
        self.job = job
        self.values = values
        self.fn = self._pipeline()

    def _kwargs(self, fn: Callable[..., Any], skip: int) -> dict[str, Any]:
        params, _ = signature_of(fn)
        return {p.name: self.values[p.name] for p in params[skip:] if p.name in self.values}

    def _pipeline(self) -> Callable[[Any], Any]:
        steps = [(name, fn, self._kwargs(fn, 1)) for name, fn in self.job.steps]
        if len(steps) == 1:
            _, fn, kw = steps[0]
            return functools.partial(fn, **kw) if kw else fn
        # Later steps may ask for the original item by declaring a parameter named `item`.
        wants_item = tuple(i > 0 and "item" in list(inspect.signature(fn).parameters)[1:]
                           for i, (_, fn, _) in enumerate(steps))
        return Pipeline(steps, wants_item)

    def _call(self, fn: Callable[..., Any] | None, *first: Any) -> Any:
        if fn is None:
            return None
        return fn(*first, **self._kwargs(fn, len(first)))

    @property
    def args(self) -> dict[str, Any]:
        """The option values as JSON-friendly data (paths made absolute), for the journal."""
        def plain(v: Any) -> Any:
            if isinstance(v, os.PathLike):
                return os.path.abspath(os.fspath(v))
            if isinstance(v, (list, tuple)):
                return [plain(x) for x in v]
            return v
        return {k: plain(v) for k, v in self.values.items()}

    def items(self, given: Iterable[Any] | None = None) -> Iterable[Any]:
        """``given``, or the items of the job's source."""
        if given is not None:
            return given
        if self.job._source is None:
            raise UsageError(f"job {self.job.name!r} has no item source: pass items "
                             "(on the command line --input FILE or --files ROOT)")
        missing = [p.name for p in self.job.params() if p.argument and self.values.get(p.name) is None]
        if missing:
            raise UsageError(f"job {self.job.name!r} needs {missing[0].upper()}")
        return self._call(self.job._source)

    def setup(self) -> None:
        """Run the job's set-up, if any."""
        self._call(self.job._setup)

    def initializer(self) -> Callable[[], Any] | None:
        """The job's per-worker initializer with its option values (picklable), or ``None``."""
        fn = self.job._initializer
        if fn is None:
            return None
        kw = self._kwargs(fn, 0)
        return functools.partial(fn, **kw) if kw else fn

    def teardown(self) -> None:
        """Run the job's tear-down, if any."""
        self._call(self.job._teardown)

    def finish(self, outcomes: list, report: Any = None) -> Any:
        """Run the job's finishing step with every outcome, if it has one; return what it returns
        (a line of text is shown in the run's summary, e.g. where a manifest was written)."""
        fn = self.job._finish
        if fn is None:
            return None
        kw = self._kwargs(fn, 1)
        if "report" in inspect.signature(fn).parameters:
            kw["report"] = report
        return fn(outcomes, **kw)

    def plan(self, items: Iterable[Any] | None = None, *, keep_outcomes: bool = True,
             source_args: dict | None = None, lock: bool = False, wait_lock: float = 0.0,
             output: str | None = None, retry_failed: bool = False, command: list[str] | None = None,
             redirect_stdout: bool = False, sinks: list | None = None, operations: Any = None,
             **options: Any) -> Any:
        """The :class:`~batchkit.jobs.plan.RunPlan` of a run of this job (used by
        :meth:`Job.run` and the command line alike): the job's defaults (backend, key, retry,
        name) under the given options, its items, and its identity for the journal."""
        from ..api import identity_args
        from ..options import RunOptions
        from .job import OPS_KWARGS  # job.py imports this module: a module-level import would be a cycle
        from .plan import RunPlan

        job = self.job
        ops_kwargs = {k: options.pop(k) for k in OPS_KWARGS if k in options}
        options.setdefault("backend", job.backend or "process")
        options.setdefault("name", job.name)
        options.setdefault("desc", job.name)
        if job.key is not None:
            options.setdefault("key", job.key)
        if "retry" not in options:  # given, even as None or 0, it overrides the job's own policy
            options["retry"] = job.retry
        init = self.initializer()
        if init is not None:  # the job's own first, then one the caller gave too
            given = options.get("initializer")
            if given is not None:
                init = InitChain(init, given, tuple(options.get("initargs") or ()))
            options["initializer"], options["initargs"] = init, ()
        opts = RunOptions.build(**options)
        source = self.items(items)
        args = {**self.args, **(identity_args(source) if items is not None and source_args is None else {}),
                **(source_args or {})}
        if operations is None and any(v is not None for v in ops_kwargs.values()):
            from ..ops.operations import Operations

            operations = Operations(job.name, **{k: v for k, v in ops_kwargs.items() if v is not None})
        return RunPlan(self.fn, source, opts, name=opts.name or job.name, args=args, job=self, lock=lock,
                       wait_lock=wait_lock, retry_failed=retry_failed, output=output, operations=operations,
                       sinks=list(sinks or []), keep_outcomes=keep_outcomes, command=command,
                       redirect_stdout=redirect_stdout)

    def writes_stdout(self) -> bool:
        """Whether the job writes its data to stdout with these options (the CLI then keeps
        its own output off stdout)."""
        w = self.job.writes_stdout
        return bool(w(self.values) if callable(w) else w)


class Pipeline:
    """The per-item function of a multi-step job: each step gets the previous step's value.

    A top-level class (not a closure) so it pickles to worker processes and Dask workers.
    """

    def __init__(self, steps: list[tuple[str, Callable[..., Any], dict]], wants_item: tuple[bool, ...]) -> None:
        self.steps = steps
        self.wants_item = wants_item

    def __call__(self, item: Any) -> Any:
        value = item
        for (name, fn, kw), wants_item in zip(self.steps, self.wants_item):
            try:
                value = fn(value, item=item, **kw) if wants_item else fn(value, **kw)
            except Exception as exc:
                # The worker records the original error (our cause) and names the step.
                err = StepFailed(f"step {name!r} failed: {type(exc).__name__}: {exc}")
                err.__batchkit_step__ = name  # type: ignore[attr-defined]
                raise err from exc
        return value


class InitChain:
    """A job's initializer, then the caller's ``initializer(*initargs)``; a top-level class so it
    pickles to workers."""

    def __init__(self, first: Callable[[], Any], then: Callable[..., Any], then_args: tuple) -> None:
        self.first = first
        self.then = then
        self.then_args = then_args

    def __call__(self) -> None:
        self.first()
        self.then(*self.then_args)


class ConvertItems:
    """``fn`` with each item converted to ``kind`` first (lines read from a file are text, but
    the job may want ``int`` or ``Path``). A top-level class so it pickles to workers."""

    def __init__(self, fn: Callable[[Any], Any], kind: type) -> None:
        self.fn = fn
        self.kind = kind

    def __call__(self, item: Any) -> Any:
        kind = self.kind
        return self.fn(item if isinstance(item, kind) else kind(item))
