"""Progress while a run goes: a tqdm bar on a terminal, the tqdm widget in Jupyter, log lines
elsewhere (cron, CI, a pipe). Updated once per chunk, never per item.

Log lines come every 5 seconds; ``BATCHKIT_PROGRESS_INTERVAL=60`` (seconds) makes a long cron
run's log shorter.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any, Union

from ..errors import UsageError

ProgressOption = Union[bool, str, None]

# How often plain log lines are written when stderr is not a terminal (BATCHKIT_PROGRESS_INTERVAL).
LOG_INTERVAL = 5.0
INTERVAL_VARIABLE = "BATCHKIT_PROGRESS_INTERVAL"


def log_interval() -> float:
    """Seconds between log lines: ``$BATCHKIT_PROGRESS_INTERVAL`` if it is a number >= 0, else 5."""
    text = os.environ.get(INTERVAL_VARIABLE, "").strip()
    if text:
        from ..units import parse_duration

        try:
            seconds = parse_duration(text)
        except UsageError:
            seconds = -1.0
        if seconds >= 0:
            return seconds
    return LOG_INTERVAL


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    try:
        return type(shell.get_ipython()).__name__ == "ZMQInteractiveShell"
    except Exception:
        return False


def make_progress(option: ProgressOption, total: int | None, desc: str | None, file: IO[str] | None = None) -> Progress:
    """Build the progress reporter for ``progress=option``.

    ``None`` (automatic): bar on a terminal, widget in a notebook, log lines otherwise.
    ``True``: always a bar. ``"log"``: always log lines. ``False``: nothing.
    """
    if option is False:
        return Progress()
    if option not in (None, True, "log", "bar"):
        raise UsageError(f"progress={option!r}: use None (automatic), True, False or 'log'")
    stream = file or sys.stderr
    if option == "log":
        return LogProgress(total, desc, stream)
    if option is None and not _in_notebook() and not _isatty(stream):
        return LogProgress(total, desc, stream)
    return BarProgress(total, desc, stream, notebook=option is None and _in_notebook())


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


class Progress:
    """Silent progress; the base of the others."""

    def update(self, done: int, failed: int) -> None:
        """``done`` more items finished, ``failed`` of them failed."""

    def set_total(self, total: int) -> None:
        """The total became known (e.g. the input ran out)."""

    def skip(self, skipped: int) -> None:
        """``skipped`` items in all were left out (finished by an earlier attempt): not counted
        as this run's work, so the total shrinks by them."""

    def close(self, ok: bool = True) -> None:
        """The run ended (``ok``: nothing failed)."""


class BarProgress(Progress):
    """A tqdm bar (tqdm.auto's widget in a notebook)."""

    def __init__(self, total: int | None, desc: str | None, stream: IO[str], notebook: bool = False) -> None:
        if notebook:
            try:
                from tqdm.auto import tqdm
            except Exception:  # no ipywidgets: tqdm.auto falls back by itself, but be safe
                from tqdm import tqdm
        else:
            from tqdm import tqdm
        self._failed = 0
        self._total = total
        self._skipped = 0
        self._notebook = notebook
        self._bar = tqdm(total=total, desc=desc or "batchkit", unit="item", file=stream,
                         dynamic_ncols=True, smoothing=0.1)

    def update(self, done: int, failed: int) -> None:
        if failed:
            self._failed += failed
            self._bar.set_postfix(failed=self._failed, refresh=False)
        self._bar.update(done)

    def set_total(self, total: int) -> None:
        self._total = total
        self._set_bar_total(max(0, total - self._skipped))
        self._bar.refresh()

    def skip(self, skipped: int) -> None:
        self._skipped = skipped
        if self._total is not None:
            self._set_bar_total(max(0, self._total - skipped))
            self._bar.set_postfix(skipped=skipped, **({"failed": self._failed} if self._failed else {}),
                                  refresh=False)

    def _set_bar_total(self, total: int) -> None:
        self._bar.total = total
        # tqdm's notebook widget keeps its own maximum, set when the bar was made: without this a
        # resumed run's widget stops half full, and one over a generator stays a thin 'info' bar.
        widget = getattr(self._bar, "container", None)
        if widget is not None:
            try:
                bar = widget.children[1]
                bar.max = max(total, 1)
                if bar.bar_style == "info":
                    bar.bar_style = ""
                    bar.layout.width = None
            except Exception:  # another tqdm's widget layout: the text still says it
                pass

    def close(self, ok: bool = True) -> None:
        self._bar.refresh()  # the last chunks may have come faster than the bar's redraw interval
        self._bar.close()
        if self._notebook and not ok and hasattr(self._bar, "disp"):
            try:  # tqdm's widget turns green when the count is complete; failures are not success
                self._bar.disp(bar_style="danger", check_delay=False)
            except TypeError:  # older tqdm.notebook without check_delay
                self._bar.disp(bar_style="danger")


class LogProgress(Progress):
    """Plain lines every :func:`log_interval` seconds, and a last one when a run that lasted
    longer ends (never a repeat of the line before): no carriage returns, fit for log files.
    The first line gives no ETA: the start (workers starting, the first chunks sized) would make
    it wild; later ones measure from it."""

    def __init__(self, total: int | None, desc: str | None, stream: IO[str], interval: float | None = None) -> None:
        self._total = total
        self._desc = desc or "batchkit"
        self._stream = stream
        self._interval = log_interval() if interval is None else interval
        self._start = self._last = time.monotonic()
        self._done = self._failed = self._skipped = 0
        self._written: tuple | None = None  # what the last line said, so close() never repeats it
        self._first: tuple[float, int] | None = None  # (time, done) of the first line: the ETA's base

    def update(self, done: int, failed: int) -> None:
        self._done += done
        self._failed += failed
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._write(now)

    def set_total(self, total: int) -> None:
        self._total = total

    def skip(self, skipped: int) -> None:
        self._skipped = skipped

    def close(self, ok: bool = True) -> None:
        if self._done and time.monotonic() - self._start >= self._interval:
            self._write(time.monotonic())

    def _write(self, now: float) -> None:
        from tqdm import tqdm

        state = (self._done, self._failed, self._total, self._skipped)
        if state == self._written:
            return
        self._written = state
        elapsed = now - self._start
        rate = self._done / elapsed if elapsed > 0 else 0.0
        total = None if self._total is None else max(0, self._total - self._skipped)
        line = f"{self._desc}: {self._done}"
        eta = None
        if total:
            line += f"/{total} ({100 * self._done / total:.0f}%)"
            # The ETA is measured from the first line on: the start (workers starting, the first
            # chunks sized) would make the first estimate wild, so the first line has none.
            if self._first is not None and now > self._first[0] and self._done > self._first[1]:
                recent = (self._done - self._first[1]) / (now - self._first[0])
                eta = (total - self._done) / recent
            elif self._first is None:
                self._first = (now, self._done)
        line += f", {self._failed} failed"
        if self._skipped:
            line += f", {self._skipped} skipped (finished earlier)"
        line += f", {rate:.1f} items/s, elapsed {tqdm.format_interval(elapsed)}"
        if eta is not None:
            line += f", ETA {tqdm.format_interval(eta)}"
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except (OSError, ValueError):  # a closed pipe must not fail the run
            pass
