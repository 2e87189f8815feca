"""A chunk's item rows packed into one JSON text: how the journal stores a finished chunk.

SQLite costs about 2 µs of CPU per inserted row, most of it the Python binding, and on a
small machine whose cores are busy running items that is the journal's whole cost. So a chunk's
item rows travel as one JSON array in one SQLite row (``chunks.rows``) and the ``items`` view
unfolds them with ``json_each``: one row per item for whoever queries the journal.

Each row is ``[key, value, duration_µs]``, or ``[key, value, duration_µs, idx, attempts]`` when
the chunk's input positions are not consecutive or an item was retried. ``value`` is the
value's summary (its ``repr``), or ``null`` for a failed item.
"""

from __future__ import annotations

import json
from itertools import chain, repeat
from typing import Any, Iterator, Sequence

# Bytes that may not appear raw inside a JSON string: control characters, '"' and '\'. The
# table maps each of them to NUL (and NUL itself to NUL), every other byte to a non-NUL byte.
VALUE_SUMMARY = 200  # characters of a value's repr() kept in the journal

_UNSAFE = bytes(0 if (b < 32 or b in (34, 92)) else b for b in range(256))
_COMPACT = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), check_circular=False)


def pack(keys: Sequence[str], values: Sequence[str | None], durations: Sequence[float],
         indices: Sequence[int] | None = None, attempts: dict[int, int] | None = None) -> str:
    """The JSON text of a chunk's rows. ``values`` are summaries (``None`` for a failure);
    ``indices`` the input positions when they are not consecutive; ``attempts`` the counts
    that are not 1, by position."""
    if indices is None and not attempts:
        text = _pack_plain(keys, values, durations)
        if text is not None:
            return text
    n = len(keys)
    positions = indices if indices is not None else repeat(None, n)
    counts = [1] * n
    for pos, count in (attempts or {}).items():
        counts[pos] = count
    micros = map(int, map((1e6).__mul__, durations))
    return _COMPACT.encode(list(zip(keys, values, micros, positions, counts)))  # tuples encode as arrays


def _pack_plain(keys: Sequence[str], values: Sequence[str | None], durations: Sequence[float]) -> str | None:
    # The common case, built by one C-level %-format of the whole chunk (a fifth of json.dumps'
    # cost): every key and value is ASCII text that needs no escaping. Anything else: None.
    try:
        text = "".join(keys) + "".join(values)  # type: ignore[arg-type]  # TypeError: a None or a non-str
    except TypeError:
        return None
    if not text.isascii() or b"\0" in text.encode("ascii").translate(_UNSAFE):
        return None
    # %d of a float truncates it: the duration in whole microseconds.
    fields = tuple(chain.from_iterable(zip(keys, values, map((1e6).__mul__, durations))))
    return "[" + (('["%s","%s",%d],' * len(keys)) % fields)[:-1] + "]"


def summaries(values: Sequence[Any], errors: dict[int, Any]) -> list[str | None]:
    """Each value's summary: its ``repr()``, cut at ``VALUE_SUMMARY`` characters; ``None`` where
    the item failed (it has an error, not a value)."""
    try:
        texts: list = list(map(repr, values))  # one C-level map() for the common case
    except Exception:  # a value whose repr() fails: one at a time
        texts = [_summary(v) for v in values]
    if max(map(len, texts), default=0) > VALUE_SUMMARY:
        texts = [t if len(t) <= VALUE_SUMMARY else t[: VALUE_SUMMARY - 3] + "..." for t in texts]
    for pos in errors:
        texts[pos] = None
    return texts


def _summary(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= VALUE_SUMMARY else text[: VALUE_SUMMARY - 3] + "..."


def unpack(text: str, first_idx: int | None) -> Iterator[tuple[str, int | None, str | None, int, float]]:
    """``(key, idx, value, attempts, duration)`` for each row of a packed chunk."""
    for pos, row in enumerate(json.loads(text)):
        idx = row[3] if len(row) > 3 and row[3] is not None else (
            first_idx + pos if first_idx is not None else None)
        yield row[0], idx, row[1], row[4] if len(row) > 4 else 1, row[2] / 1e6


def row_keys(text: str) -> list[str]:
    """The keys of a packed chunk's rows."""
    return [row[0] for row in json.loads(text)]


# How the ``items`` view reads a row: ``$[3]``/``$[4]`` only exist in the long form.
VIEW = """
CREATE VIEW IF NOT EXISTS items (run_id, key, idx, ok, value, attempts, duration, finished) AS
SELECT c.run_id,
       json_extract(r.value, '$[0]'),
       COALESCE(json_extract(r.value, '$[3]'), c.first_idx + r.key),
       json_extract(r.value, '$[1]') IS NOT NULL,
       json_extract(r.value, '$[1]'),
       COALESCE(json_extract(r.value, '$[4]'), 1),
       json_extract(r.value, '$[2]') / 1e6,
       c.finished
FROM chunks c, json_each(c.rows) r;
"""

__all__ = ["VALUE_SUMMARY", "VIEW", "pack", "row_keys", "summaries", "unpack"]
