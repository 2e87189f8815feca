"""Item keys: an item's identity in the journal, stable across runs and processes and independent
of its position in the input (the path for files, the string itself up to 4096 characters, else a
digest of its pickle with sets in a canonical order).

Two more rules make resume exact:

- Duplicates: the second occurrence of a key in one input is a different item (a line repeated
  in ``--input`` is run twice), so it is keyed ``KEY\\x00#2`` (:class:`Occurrences`).
- Secrets: a key that contains a secret (a URL with a password, an environment secret) is stored
  as its redacted text plus a digest of the exact key (:func:`stored_key`), so nothing secret is
  written and two different keys still never collide.
"""

from __future__ import annotations

import io
import os
import pickle
from typing import Any, Callable, Sequence

# Strings up to this long are their own key: PATH_MAX, so that any path given as a string (as
# bk.files(as_str=True) yields them) is keyed by itself, readable in the journal.
TEXT_KEY_MAX = 4096
DUPLICATE = "\x00#"


def item_key(item: Any) -> str:
    """A stable key for ``item``: its own ``key`` for file versions from a watch, the path for
    files, the text for strings up to 4096 characters, else a digest of the item's canonical
    pickle. Independent of the item's position, the process and ``PYTHONHASHSEED``."""
    own = getattr(item, "__batchkit_key__", None)
    if own is not None:
        return own() if callable(own) else str(own)
    if isinstance(item, os.PathLike):
        return os.fspath(item)  # type: ignore[return-value]
    if isinstance(item, str) and len(item) <= TEXT_KEY_MAX:
        return item
    import hashlib  # loads OpenSSL (~2.5 ms): only runs whose items need a digest pay for it

    return "b2:" + hashlib.blake2b(canonical_pickle(item), digest_size=16).hexdigest()


class _Canonical(pickle.Pickler):
    # Sets and frozensets iterate in hash order, which for strings changes with every process's
    # hash seed: pickle them as sorted lists (sorted by each element's own canonical pickle).
    # The C pickler asks reducer_override about set *subclasses* only; exact sets are below.
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (set, frozenset)):
            return (type(obj), (sorted(obj, key=canonical_pickle),))
        return NotImplemented


class _CanonicalSets(pickle._Pickler):  # type: ignore[name-defined]
    # The pure-Python pickler asks reducer_override about every object, exact sets included.
    # Slower, so only used for the items whose plain pickle holds a set.
    reducer_override = _Canonical.reducer_override


# The opcodes a set or frozenset is pickled with (protocol 4): their byte in a pickle means it may
# hold one (or that byte is part of some data: then the slower pickler just runs for nothing).
_SET_OPCODES = (pickle.EMPTY_SET, pickle.FROZENSET)


def canonical_pickle(item: Any) -> bytes:
    """The item's pickle with sets in a stable order (its ``repr`` if it cannot be pickled)."""
    buf = io.BytesIO()
    try:
        _Canonical(buf, protocol=4).dump(item)
    except Exception:
        return repr(item).encode("utf-8", "surrogateescape")
    blob = buf.getvalue()
    if not any(op in blob for op in _SET_OPCODES):
        return blob  # no set inside: the common case, at C speed
    buf = io.BytesIO()
    try:
        _CanonicalSets(buf, protocol=4).dump(item)
    except Exception:
        return blob
    return buf.getvalue()


def text_key(key: Any) -> str:
    """A key function's result as the journal's text (only what is not text already)."""
    return key if type(key) is str else str(key)


def key_list(keyfn: Callable[[Any], Any], items: Sequence[Any]) -> list[str]:
    """Every item's key as text, with C-level loops: for a million small files, one Python call
    per item is a measurable part of what the journal costs."""
    if keyfn is item_key and set(map(type, items)) == {str} and max(map(len, items)) <= TEXT_KEY_MAX:
        return list(items)  # short strings are their own keys
    keys = list(map(keyfn, items))
    if set(map(type, keys)) - {str}:
        keys = list(map(text_key, keys))
    return keys


class Occurrences:
    """Numbers repeated keys within one run's input: the n-th ``k`` (n >= 2) becomes ``k\\x00#n``.

    Keeps every key seen (a set), which is what makes duplicates detectable; a run with a
    journal keeps its keys in memory anyway when it resumes.
    """

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._counts: dict[str, int] = {}

    def number(self, keys: list[str]) -> list[str]:
        """``keys`` (in input order) with repeats numbered; the common case is C-level set work."""
        seen = self._seen
        if len(set(keys)) == len(keys) and seen.isdisjoint(keys):
            seen.update(keys)
            return keys
        out = []
        for k in keys:
            if k in seen:
                n = self._counts.get(k, 1) + 1
                self._counts[k] = n
                out.append(f"{k}{DUPLICATE}{n}")
            else:
                seen.add(k)
                out.append(k)
        return out


def stored_key(key: str) -> str:
    """How ``key`` is written: itself, or, if it holds a secret, its redacted text and a digest."""
    from ..secrets import contains_secret, redact_text

    if not contains_secret(key):
        return key
    import hashlib

    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=12).hexdigest()
    return f"{redact_text(key)} #{digest}"


def stored_keys(keys: list[str]) -> list[str]:
    """:func:`stored_key` of each key, with one C-speed scan when none holds a secret."""
    from ..secrets import contains_secret

    if not keys or not contains_secret("\n".join(keys)):
        return keys
    return [stored_key(k) for k in keys]
