"""Parsing of human-friendly durations ("7d", "90s") and sizes ("10MB"), shared by API and CLI."""

from __future__ import annotations

import re
from datetime import timedelta

from .errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.I)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.I)
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
               "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_duration(value: str | float | int | timedelta) -> float:
    """Seconds from ``"90"``, ``"90s"``, ``"15m"``, ``"12h"``, ``"7d"``, ``"2w"``, a number or a timedelta."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise UsageError(f"duration {value!r} is negative")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise UsageError(f"cannot read {value!r} as a duration: use e.g. 30s, 15m, 12h, 7d")
    unit = match.group(2).lower() if match.group(2) else None
    return float(match.group(1)) * _DURATION_UNITS[unit]


def parse_size(value: str | int) -> int:
    """Bytes from ``1024``, ``"10k"``, ``"10KB"``, ``"5MiB"``, ``"2G"`` (k = 1000, Ki = 1024)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise UsageError(f"size {value!r} is negative")
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise UsageError(f"cannot read {value!r} as a size: use e.g. 512, 10k, 5MB, 2GiB")
    unit = (match.group(2) or "").lower().rstrip("b")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])
