"""A chunk's item rows packed into one JSON text: how the journal stores a finished chunk.

SQLite costs about 2 µs of CPU per inserted row, most of it the Python binding, and on a
small machine whose cores are busy running items that is the journal's whole cost. So a chunk's
item rows travel as one JSON array in one SQLite row (``chunks.rows``) and the ``items`` view
unfolds them with ``json_each``: one row per item for whoever queries the journal.

Each row is ``[key, value, duration_µs]``, or ``[key, value, duration_µs, idx, attempts]`` when
the chunk's input positions are not consecutive or an item was retried. ``value`` is the
value's summary (its ``repr``), or ``null`` for a failed item.

When every value of a chunk is a plain literal (text, a whole number, a finite float, a bool or
``None``) whose ``repr`` fits in the summary, the summaries *are* the exact values: the chunk's
exact values are then not pickled a second time (``chunks.data`` holds :data:`IN_ROWS`) and are
read back from the rows with :func:`literal`.
"""

from __future__ import annotations

import ast
import json
import math
from itertools import chain, repeat
from typing import Any, Iterator, Sequence

VALUE_SUMMARY = 200  # characters of a value's repr() kept in the journal

# The ASCII characters a JSON string holds as they are (all but control characters, '"' and '\'),
# and those a str's repr() also keeps as they are between its quotes (less "'" and DEL). Deleting
# them from a text leaves exactly what rules out the fast path: one C pass, a third of a table lookup's.
_JSON_PLAIN = bytes(b for b in range(32, 128) if b not in (34, 92))
_REPR_PLAIN = bytes(b for b in range(32, 127) if b not in (34, 39, 92))
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
    # The common case, built by joining the pieces of the whole chunk (a sixth of json.dumps'
    # cost): every key and value is ASCII text that needs no escaping. Anything else: None.
    try:
        text = "".join(chain(keys, values))  # type: ignore[arg-type]  # TypeError: a None or a non-str
    except TypeError:
        return None
    if not _only(text, _JSON_PLAIN):
        return None
    return _rows(keys, values, durations, '","', '",')


def _only(text: str, plain: bytes) -> bool:
    """Whether every character of ``text`` is one of the ASCII characters ``plain``."""
    return text.isascii() and not text.encode("ascii").translate(None, plain)


def pack_strings(keys: Sequence[str], values: Sequence[Any], durations: Sequence[float]) -> str | None:
    """:func:`pack` of a chunk whose values are all short plain strings (ASCII, no quote,
    backslash or control character): their summaries, ``'value'``, are written without building
    them. ``None`` when the values are anything else (then :func:`summaries` and :func:`pack`)."""
    if set(map(type, values)) != {str} or max(map(len, values)) > VALUE_SUMMARY - 3:
        return None
    if not (_only("".join(keys), _JSON_PLAIN) and _only("".join(values), _REPR_PLAIN)):
        return None  # JSON would escape something, or repr() would escape or re-quote a value
    return _rows(keys, values, durations, '","\'', '\'",')


def _rows(keys: Sequence[str], values: Sequence[Any], durations: Sequence[float], open_value: str,
          close_value: str) -> str:
    # ["key","value",µs] rows of text that needs no escaping: one join of the pieces, interleaved
    # by slice assignments (C-level copies; a fifth cheaper than one %-format of the chunk).
    n = len(keys)
    if not n:
        return "[]"
    pieces: list = [None] * (6 * n)
    pieces[0::6] = keys
    pieces[1::6] = repeat(open_value, n)
    pieces[2::6] = values
    pieces[3::6] = repeat(close_value, n)
    pieces[4::6] = map(str, map(int, map((1e6).__mul__, durations)))  # whole microseconds
    pieces[5::6] = repeat('],["', n)
    return '[["' + "".join(pieces)[:-3] + "]"


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


IN_ROWS = b"=rows"  # chunks.data: "the summaries in the rows are the exact values"
_LITERAL = frozenset((str, int, bool, float, type(None)))
_BIG = 1 << 600  # ints below this have a repr well under VALUE_SUMMARY characters


def exact_in_summaries(values: Sequence[Any], texts: Sequence[str | None], errors: dict[int, Any]) -> bool:
    """Whether the summaries of a chunk's successful values give each value back exactly
    (see :func:`literal`): plain literals, none cut short."""
    kinds = set(map(type, values))
    if not kinds <= _LITERAL:
        return False
    ok = [v for p, v in enumerate(values) if p not in errors] if errors else values
    if float in kinds and not all(math.isfinite(v) for v in ok if type(v) is float):
        return False
    if int in kinds and not all(-_BIG < v < _BIG for v in ok if type(v) is int):
        return False  # a huge int's repr may fail or be cut: it keeps its pickle
    return max(map(len, filter(None, texts)), default=0) < VALUE_SUMMARY - 3


def literal(text: str) -> Any:
    """The value whose summary is ``text``, for chunks stored with :data:`IN_ROWS`."""
    if text[0] == "'" and "\\" not in text:
        return text[1:-1]  # the common case: a plain string
    return ast.literal_eval(text)


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

__all__ = ["IN_ROWS", "VALUE_SUMMARY", "VIEW", "exact_in_summaries", "literal", "pack", "pack_strings", "row_keys",
           "summaries", "unpack"]
