"""What happened to one item: :class:`Outcome`, and :class:`ItemError` when it failed."""

from __future__ import annotations

import traceback as _tb
from dataclasses import dataclass
from typing import Any

# How one item failed. "exception": fn raised; "timeout": it ran past `timeout`;
# "crash": the worker process running it died (segfault, SIGKILL, os._exit, OOM killer).
# ("interrupted" exists only between a worker and the engine: an item stopped by the run's own
# stop signal is never recorded; see batchkit.errors.ItemInterrupted.)
KINDS = ("exception", "timeout", "crash")

# What batchkit writes of one error outside the Python objects (the journal, --output, logs,
# summaries): a 10 MB message must not become a 10 MB line everywhere.
MESSAGE_MAX = 8_000
TRACEBACK_MAX = 32_000
SUMMARY_MAX = 500


def capped(text: str | None, limit: int) -> str | None:
    """``text`` cut to about ``limit`` characters, keeping its start and end and saying how much went."""
    if text is None or len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - limit:,} characters cut] ...\n{text[-half:]}"


@dataclass(frozen=True)
class ItemError:
    """A captured failure, as plain text so it always survives pickling.

    ``type`` is the exception class name, ``message`` its text, ``traceback`` the formatted
    traceback from the worker, ``kind`` one of ``"exception"``, ``"timeout"``, ``"crash"``.
    ``step`` names the job step that failed, when the job has steps.
    """

    type: str
    message: str
    traceback: str = ""
    kind: str = "exception"
    step: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, step: str | None = None, skip: int = 0) -> ItemError:
        """Capture ``exc`` (with its traceback, less its first ``skip`` frames) as text."""
        try:
            message = str(exc)
        except Exception:  # a broken __str__ must not lose the error
            message = f"<unprintable {type(exc).__name__}>"
        tb = exc.__traceback__
        for _ in range(skip):  # drop batchkit's own frames: the user wants their code first
            if tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
        text = "".join(_tb.format_exception(type(exc), exc, tb))
        kind = "interrupted" if type(exc).__name__ == "ItemInterrupted" else "exception"
        return cls(type(exc).__name__, message, text, kind, step)

    def summary(self) -> str:
        """One line: ``Type: message`` (and the step, for multi-step jobs)."""
        where = f"[{self.step}] " if self.step else ""
        first = self.message[:SUMMARY_MAX * 2].splitlines()[0] if self.message else ""
        if len(first) > SUMMARY_MAX:
            first = first[:SUMMARY_MAX] + f"... [{len(self.message):,} characters]"
        return f"{where}{self.type}: {first}" if first else f"{where}{self.type}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        d = {"type": self.type, "message": self.message, "kind": self.kind, "traceback": self.traceback}
        if self.step:
            d["step"] = self.step
        return d


class Outcome:
    """The result of one item.

    ``index`` is its position in the input, ``ok`` tells whether it succeeded, ``value`` is what
    ``fn`` returned (``None`` on failure), ``error`` an :class:`ItemError` (``None`` on success),
    ``attempts`` how many times it ran, ``duration`` its run time in seconds (last attempt).
    Treat it as read-only. (A plain slotted class rather than a frozen dataclass: a run of a
    million items builds a million of these, and a frozen dataclass is several times slower.)
    """

    __slots__ = ("index", "item", "ok", "value", "error", "attempts", "duration")
    _FIELDS = __slots__

    def __init__(self, index: int, item: Any, ok: bool, value: Any = None, error: ItemError | None = None,
                 attempts: int = 1, duration: float = 0.0) -> None:
        self.index = index
        self.item = item
        self.ok = ok
        self.value = value
        self.error = error
        self.attempts = attempts
        self.duration = duration

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Outcome):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        body = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._FIELDS)
        return f"Outcome({body})"

    def __reduce__(self) -> tuple:
        return (Outcome, tuple(getattr(self, f) for f in self._FIELDS))

    def unwrap(self) -> Any:
        """The value, or raise :class:`~batchkit.BatchFailed` if the item failed."""
        if not self.ok:
            from .errors import BatchFailed

            raise BatchFailed([self], 1)
        return self.value
