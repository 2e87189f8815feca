"""Retry policy for items whose function raised: :class:`Retry`."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Union

from .errors import UsageError

RetryOn = Union[type, tuple, Callable[[BaseException], bool]]


@dataclass(frozen=True)
class Retry:
    """Re-run an item whose function raised, with exponential backoff and jitter.

    ``attempts`` counts the first run (``attempts=3`` means up to two retries). The n-th retry
    waits ``backoff * 2**(n-1)`` seconds, capped at ``max_backoff``; with ``jitter`` the wait is
    drawn uniformly from ``[wait/2, wait]`` so retries from many workers do not stampede.
    ``on`` is an exception class, a tuple of them, or a predicate ``exc -> bool``; other errors
    fail at once. Timeouts and crashed workers are not retried.

    >>> bk.run(fetch, urls, retry=bk.Retry(attempts=4, backoff=1.0, on=(TimeoutError, OSError)))
    """

    attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    jitter: bool = True
    on: RetryOn = field(default=(Exception,))

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise UsageError(f"Retry(attempts={self.attempts!r}): attempts must be an integer >= 1")
        if self.backoff < 0 or self.max_backoff < 0:
            raise UsageError("Retry: backoff and max_backoff must be >= 0")

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether to run again after ``attempt`` attempts ended with ``exc``."""
        if attempt >= self.attempts:
            return False
        on = self.on
        if isinstance(on, (type, tuple)):
            return isinstance(exc, on)
        try:
            return bool(on(exc))
        except Exception:
            return False

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
