"""A command template with ``{}`` placeholders, read the way ``/bin/sh`` reads it: :class:`Template`.

The item's text is never parsed by the shell. Each placeholder becomes a reference to a shell
variable that holds the item (``"${__bk_item1}"``), assigned at the start of the script with
the value single-quoted (``__bk_item1='a b.log';``), a position where single quotes are always
exact. A parameter's value is never read again as shell syntax, so whatever the item contains
(``$(...)``, backticks, ``;``, quotes, a newline) and wherever the placeholder sits, it is data.

Where it sits decides only how the reference is quoted, so that the value also stays one literal
word: bare ``{}`` gives ``"${v}"``; inside ``"..."``, ``${...}`` or a here-document, ``${v}``;
inside ``'...'`` the quote is closed around it: ``'"${v}"'``. A small scanner
(:mod:`batchkit.jobs.shellscan`) follows the shell's quoting to know which. Were it ever wrong, the value could at
worst be split into words or left unexpanded, never run. Two places are refused, because there a
value is code or nothing: ``$((...))`` (arithmetic evaluates its text; bash runs ``$(...)`` in
array subscripts) and the body of a quoted here-document (``<<'EOF'``, literal).

:meth:`Template.display` is the same command with the values written inline and quoted for their
context, as a person would type it (what ``--dry-run`` prints). It is as safe to run, and runs the
same, with one exception: in a here-document a value's newlines are written by ``$(printf %b
...)`` (a raw line could be the delimiter), which drops trailing newlines.

Several items per command (``-X``, ``-m``, as in GNU parallel): with ``-X`` the word around a
placeholder is repeated for each item (``pre-{}-post`` -> ``pre-a-post pre-b-post``), with ``-m``
the placeholder holds every item (bare: one word each; quoted: joined by spaces). Lengths add up
item by item (:meth:`Template.cost`), so a command can be filled to the limit in one pass.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import PurePath
from typing import Any, Sequence

from .shellscan import PLACEHOLDERS, Slot, Word, scan

__all__ = ["PLACEHOLDERS", "Template", "item_values"]

_VAR = {"{}": "item", "{name}": "name", "{stem}": "stem", "{parent}": "parent"}
_DOUBLE_SPECIAL = re.compile(r'([\\$`"])')
_PARAM_SPECIAL = re.compile(r'([\\$`"}])')  # inside ${...}, in "..." or a here-document
_HEREDOC_SPECIAL = re.compile(r"([\\$`])")
_BACKTICK_SPECIAL = re.compile(r"([\\$`])")


def item_values(item: Any) -> dict[str, str]:
    """The text each placeholder stands for, for one item.

    An item that is a path (``--files``), or text naming an existing file, and that starts with
    ``-`` is written ``./-name``: the same file, never read as an option. Other text is passed as
    given (``-5`` stays a number); put ``--`` before ``{}`` where text items may start with ``-``.
    """
    text = os.fspath(item) if isinstance(item, os.PathLike) else str(item)
    is_file = isinstance(item, PurePath) or (text.startswith("-") and os.path.lexists(text))
    p = PurePath(text)
    return {"{}": _not_an_option(text, is_file), "{name}": p.name, "{stem}": p.stem,
            "{parent}": _not_an_option(str(p.parent), True)}


def _not_an_option(text: str, is_file: bool) -> str:
    return "./" + text if is_file and text.startswith("-") else text


class Template:
    """A parsed command template; see the module docstring.

    >>> Template("gzip -9 {}").display([{"{}": "a b.log"}])
    "gzip -9 'a b.log'"
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.parts = scan(text)
        if not _slots(self.parts):  # no placeholder: the item is appended, as GNU parallel does
            self.parts = scan(f"{text} {{}}")
        self.tokens = tuple(t for t in PLACEHOLDERS if any(s.token == t for s in _slots(self.parts)))

    def __repr__(self) -> str:
        return f"Template({self.text!r})"

    # -- the three renderings ------------------------------------------------------------------

    def script(self, items: Sequence[dict[str, str]], mode: str = "X") -> str:
        """The shell script that runs for ``items`` (their :func:`item_values`): the values
        assigned to variables, then the command referring to them."""
        return "".join(self._pieces(items, mode, inline=False))

    def display(self, items: Sequence[dict[str, str]], mode: str = "X") -> str:
        """The same command with the values inline, quoted for where they stand."""
        return "".join(self._pieces(items, mode, inline=True))

    def cost(self, values: dict[str, str], k: int, mode: str = "X", inline: bool = False) -> int:
        """How much longer the script (``inline``: the displayed command) grows when ``values``
        is added as item number ``k`` (1-based); ``base + sum(cost)`` is the exact length."""
        n = 0 if inline else len(_assignments(self.tokens, values, k))
        for part in self.parts:
            if isinstance(part, Word) and mode == "X":
                n += 1 + sum(len(p) for p in _word(part, values, k, inline))
            elif isinstance(part, (Word, Slot)):
                for slot in _slots([part]):
                    n += 1 + len(_piece(slot, values, k, inline))
        return n

    def base(self, mode: str = "X", inline: bool = False) -> int:
        """The length of the script (or displayed command) before any item's :meth:`cost`."""
        n = 0
        for part in self.parts:
            if isinstance(part, str):
                n += len(part)
            elif isinstance(part, Word) and mode == "X":
                n -= 1
            else:
                for p in (part.parts if isinstance(part, Word) else [part]):
                    if isinstance(p, str):
                        n += len(p)
                    else:
                        prefix, suffix = _wrap(p, inline)
                        n += len(prefix) + len(suffix) - 1
        return n

    def _pieces(self, items: Sequence[dict[str, str]], mode: str, inline: bool) -> list[str]:
        if not items:
            raise ValueError("a command needs at least one item")
        out = [] if inline else [_assignments(self.tokens, v, k) for k, v in enumerate(items, 1)]
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, Word) and mode == "X":
                out.append(" ".join("".join(_word(part, v, k, inline)) for k, v in enumerate(items, 1)))
            else:
                for p in (part.parts if isinstance(part, Word) else [part]):
                    out.append(p if isinstance(p, str) else _joined(p, list(enumerate(items, 1)), inline))
        return out


def _slots(parts: list) -> list[Slot]:
    found = []
    for part in parts:
        if isinstance(part, Slot):
            found.append(part)
        elif isinstance(part, Word):
            found.extend(_slots(part.parts))
    return found


def _var(token: str, k: int) -> str:
    return f"__bk_{_VAR[token]}{k}"


def _assignments(tokens: Sequence[str], values: dict[str, str], k: int) -> str:
    # At the start of the script, a position where a single-quoted word is always exact.
    return " ".join(f"{_var(t, k)}={shlex.quote(values[t])}" for t in tokens) + "; "


def _wrap(slot: Slot, inline: bool) -> tuple[str, str]:
    if not inline and slot.context == "single":
        return "'\"", "\"'"  # close the single quotes around a double-quoted reference
    return "", ""


def _piece(slot: Slot, values: dict[str, str], k: int, inline: bool) -> str:
    """One item's text for ``slot``, without the context's wrapping."""
    ctx = slot.context
    if not inline:
        ref = "${" + _var(slot.token, k) + "}"
        return f'"{ref}"' if ctx == "bare" else ref
    value = values[slot.token]
    if ctx == "bare":
        text = shlex.quote(value)
    elif ctx == "single":
        text = value.replace("'", "'\\''")
    elif ctx == "double":
        text = (_PARAM_SPECIAL if slot.param else _DOUBLE_SPECIAL).sub(r"\\\1", value)
    elif ctx == "heredoc":
        text = (_PARAM_SPECIAL if slot.param else _HEREDOC_SPECIAL).sub(r"\\\1", value)
        if "\n" in value:  # a raw newline could form the delimiter's line: let printf write it
            escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace("'", "'\\''")
            text = f"$(printf %b '{escaped}')"
    else:  # a comment: never run; a newline would end it
        text = value.replace("\n", " ")
    return _BACKTICK_SPECIAL.sub(r"\\\1", text) if slot.backticks else text


def _joined(slot: Slot, items: Sequence[tuple[int, dict[str, str]]], inline: bool) -> str:
    prefix, suffix = _wrap(slot, inline)
    return prefix + " ".join(_piece(slot, v, k, inline) for k, v in items) + suffix


def _word(word: Word, values: dict[str, str], k: int, inline: bool) -> list[str]:
    return [p if isinstance(p, str) else _joined(p, [(k, values)], inline) for p in word.parts]
