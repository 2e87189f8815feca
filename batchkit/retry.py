"""Retry policy for failed items: :class:`Retry`, and the one matcher that decides what is retried.

``on`` is matched by :class:`ErrorMatcher`: exception classes, exception class *names*
(``"OSError"`` matches ``OSError`` and its subclasses, as ``--retry-on OSError`` does), a tuple or
list of those, or a predicate ``exc -> bool``. It looks through a failed job step to the step's
own error. ``match`` is a regular expression searched in ``"Type: message"``, the way GNU parallel
users and the seed's ``withRetry`` pick retryable errors by their text. Everything is checked when
the :class:`Retry` is made, so a typo fails at once rather than silently never retrying.
"""

from __future__ import annotations

import builtins
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Union

from .errors import UsageError

RetryOn = Union[type, str, tuple, list, Callable[[BaseException], bool]]


class ErrorMatcher:
    """Does an error match ``on``? Exception classes, class names (subclasses match too), or a
    predicate. A top-level class so it pickles to workers. A predicate that raises does not match.
    """

    __slots__ = ("types", "names", "predicate")

    def __init__(self, on: RetryOn) -> None:
        self.types: tuple[type, ...] = ()
        self.names: frozenset[str] = frozenset()
        self.predicate: Callable[[BaseException], bool] | None = None
        if isinstance(on, ErrorMatcher):
            self.types, self.names, self.predicate = on.types, on.names, on.predicate
            return
        if callable(on) and not isinstance(on, type):
            self.predicate = on
            return
        parts = list(on) if isinstance(on, (tuple, list, set, frozenset)) else [on]
        if not parts:
            raise UsageError("Retry(on=()): name at least one exception type, or leave the default")
        types, names = [], set()
        for part in parts:
            if isinstance(part, type) and issubclass(part, BaseException):
                types.append(part)
            elif isinstance(part, str) and _is_name(part.strip()):
                names.add(part.strip().rsplit(".", 1)[-1])
            else:
                raise UsageError(f"Retry(on={part!r}): give exception classes, their names (e.g. 'OSError'), "
                                 "or a function exc -> bool")
        self.types, self.names = tuple(types), frozenset(names)

    def __call__(self, exc: BaseException) -> bool:
        exc = own_error(exc)
        if self.predicate is not None:
            try:
                return bool(self.predicate(exc))
            except Exception:  # a broken predicate fails the item, never the run
                return False
        if self.types and isinstance(exc, self.types):
            return True
        return bool(self.names) and any(c.__name__ in self.names for c in type(exc).__mro__)

    def unknown_names(self, namespaces: Iterable[dict]) -> list[str]:
        """Names that are neither built-in exceptions nor exception classes in ``namespaces``."""
        known = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}
        for ns in namespaces:
            known |= {n for n, v in ns.items() if isinstance(v, type) and issubclass(v, BaseException)}
        return sorted(self.names - known)

    def __getstate__(self) -> tuple:
        return (self.types, self.names, self.predicate)

    def __setstate__(self, state: tuple) -> None:
        self.types, self.names, self.predicate = state

    def __repr__(self) -> str:
        if self.predicate is not None:
            return f"ErrorMatcher({self.predicate!r})"
        return f"ErrorMatcher({[t.__name__ for t in self.types] + sorted(self.names)!r})"


def own_error(exc: BaseException) -> BaseException:
    """The error a user's code raised: through a failed job step's wrapper to the step's own error."""
    if getattr(exc, "__batchkit_step__", None) is not None and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def _is_name(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


@dataclass(frozen=True)
class Retry:
    """Re-run an item whose function raised, with exponential backoff and jitter.

    ``attempts`` counts the first run (``attempts=3`` means up to two retries). The n-th retry
    waits ``backoff * 2**(n-1)`` seconds (``backoff`` and ``max_backoff`` take seconds or text such
    as ``"1s"``), capped at ``max_backoff``; with ``jitter`` the wait is drawn from
    ``[wait/2, wait]`` so retries from many workers do not stampede. ``on``: exception classes,
    their names, or a predicate ``exc -> bool`` (default: any ``Exception``); ``match``: a regular
    expression that ``"Type: message"`` must contain. An item is retried when both agree.
    Timed-out items and items whose worker crashed are retried only with ``on_timeout=True`` /
    ``on_crash=True``.

    >>> bk.run(fetch, urls, retry=bk.Retry(attempts=4, backoff="1s", on=(TimeoutError, "ConnectionError"),
    ...                                   match=r"503|temporarily unavailable"))
    """

    attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    jitter: bool = True
    on: RetryOn = field(default=(Exception,))
    match: str | None = None
    on_timeout: bool = False
    on_crash: bool = False

    def __post_init__(self) -> None:
        from .units import parse_duration

        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise UsageError(f"Retry(attempts={self.attempts!r}): attempts must be a whole number >= 1")
        for name in ("backoff", "max_backoff"):
            value = getattr(self, name)
            if isinstance(value, bool):
                raise UsageError(f"Retry({name}={value!r}): give seconds, e.g. 0.5 or '1s'")
            object.__setattr__(self, name, parse_duration(value))
        object.__setattr__(self, "on", ErrorMatcher(self.on))
        if self.match is not None:
            pattern = self.match.pattern if isinstance(self.match, re.Pattern) else self.match
            if not isinstance(pattern, str):
                raise UsageError(f"Retry(match={self.match!r}): give a regular expression")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise UsageError(f"Retry(match={pattern!r}) is not a valid regular expression: {exc}") from None
            object.__setattr__(self, "match", pattern)

    def matches(self, exc: BaseException) -> bool:
        """Whether ``exc`` is an error this policy retries (attempts aside)."""
        if not self.on(exc):
            return False
        if self.match is None:
            return True
        own = own_error(exc)
        try:
            text = f"{type(own).__name__}: {own}"
        except Exception:
            text = type(own).__name__
        return re.search(self.match, text) is not None

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether to run again after ``attempt`` attempts ended with ``exc``."""
        return attempt < self.attempts and self.matches(exc)

    def retries_kind(self, kind: str, attempt: int) -> bool:
        """Whether an item that ended as ``kind`` ("timeout" or "crash") is run again."""
        wanted = self.on_timeout if kind == "timeout" else self.on_crash if kind == "crash" else False
        return wanted and attempt < self.attempts

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt + 1``."""
        wait = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
        return random.uniform(wait / 2, wait) if self.jitter else wait


def coerce_retry(retry: Retry | int | None) -> Retry | None:
    """Accept ``None``, a :class:`Retry`, or an int (number of *retries*, i.e. attempts - 1)."""
    if retry is None or isinstance(retry, Retry):
        return retry
    if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
        raise UsageError(f"retry={retry!r}: pass a bk.Retry(...) or a number of retries >= 0")
    return Retry(attempts=retry + 1) if retry else None


def unknown_retry_names(retry: Retry | None, fn: Any) -> list[str]:
    """Names in ``retry.on`` that no exception class known to ``fn`` has (checked at run start)."""
    if retry is None or not retry.on.names:
        return []
    namespaces = []
    for obj in _functions(fn):
        glb = getattr(obj, "__globals__", None)
        if isinstance(glb, dict):
            namespaces.append(glb)
    return retry.on.unknown_names(namespaces)


def _functions(fn: Any, depth: int = 0) -> Iterable[Any]:
    # The job's steps, wrapped in partials, pipelines and converters: their modules' globals.
    if depth > 4 or fn is None:
        return
    yield fn
    for attr in ("func", "fn", "__wrapped__", "__func__"):
        inner = getattr(fn, attr, None)
        if inner is not None and inner is not fn:
            yield from _functions(inner, depth + 1)
    for step in getattr(fn, "steps", ()) or ():
        if isinstance(step, tuple) and len(step) > 1:
            yield from _functions(step[1], depth + 1)
