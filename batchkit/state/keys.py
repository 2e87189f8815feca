"""Item keys: an item's identity in the journal, stable across runs and independent of its
position in the input (the path for files, the string itself up to 4096 characters, else a digest)."""

from __future__ import annotations

import hashlib
import os
import pickle
from typing import Any, Callable, Sequence

# Strings up to this long are their own key: PATH_MAX, so that any path given as a string (as
# bk.files(as_str=True) yields them) is keyed by itself, readable in the journal.
TEXT_KEY_MAX = 4096


def item_key(item: Any) -> str:
    """A stable key for ``item``: the path for files, the text for strings up to 4096
    characters, else a digest of the item's pickle. Independent of the item's position."""
    if isinstance(item, os.PathLike):
        return os.fspath(item)  # type: ignore[return-value]
    if isinstance(item, str) and len(item) <= TEXT_KEY_MAX:
        return item
    try:
        data = pickle.dumps(item, protocol=4)
    except Exception:
        data = repr(item).encode()
    return "b2:" + hashlib.blake2b(data, digest_size=16).hexdigest()


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
