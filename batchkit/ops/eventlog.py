"""A run's event log: one line per event, as text or JSON (:class:`EventLog`).

Events are ``run start``, ``chunk done``, ``item failed``, ``run end`` and ``warning``. Every line
is written with a single ``write`` on a file opened for appending, so several runs may share one
log file without interleaving inside a line. Every value goes through
:func:`batchkit.secrets.redact` first.

Text::

    2024-05-01T03:00:00.120+00:00 INFO  nightly[12] run start args={"root": "/data"}

JSON (``log_format="json"``)::

    {"time": "2024-05-01T03:00:00.120+00:00", "level": "info", "job": "nightly", "run_id": 12,
     "event": "run start", "args": {"root": "/data"}}
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any

from ..errors import UsageError
from ..secrets import redact

FORMATS = ("text", "json")


def now_iso() -> str:
    """The current UTC time as ISO 8601 with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class EventLog:
    """Appends events to ``path`` in ``fmt`` (``"text"`` or ``"json"``)."""

    def __init__(self, path: str | os.PathLike, job: str, fmt: str = "text") -> None:
        if fmt not in FORMATS:
            raise UsageError(f"unknown log format {fmt!r}: use one of {', '.join(FORMATS)}")
        self.path = os.fspath(path)
        self.job = job
        self.fmt = fmt
        self.run_id: int | None = None
        try:
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
            # O_APPEND: each line lands whole at the end even with concurrent writers.
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UsageError(f"cannot open log file {self.path}: {exc.strerror or exc}; "
                             "choose a writable --log-file") from exc

    def emit(self, event: str, level: str = "info", **fields: Any) -> None:
        """Write one event with ``fields`` (secrets masked)."""
        fields = redact(fields)
        if self.fmt == "json":
            record = {"time": now_iso(), "level": level, "job": self.job, "run_id": self.run_id,
                      "event": event, **fields}
            line = json.dumps(record, default=str, ensure_ascii=False)
        else:
            who = self.job if self.run_id is None else f"{self.job}[{self.run_id}]"
            parts = [now_iso(), f"{level.upper():5}", who, event]
            parts += [f"{k}={_text_value(v)}" for k, v in fields.items()]
            line = " ".join(parts)
        os.write(self._fd, (line + "\n").encode("utf-8", "replace"))

    def close(self) -> None:
        """Close the file (further events are an error)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        # Bare when unambiguous; quoted (JSON string) when it has spaces, quotes or newlines.
        return value if value and not any(c in value for c in ' "=\n\r\t') else json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value, default=str, ensure_ascii=False)
