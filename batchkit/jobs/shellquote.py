"""A command template with ``{}`` placeholders, read the way ``/bin/sh`` reads it: :class:`Template`.

The item's text is never parsed by the shell. Each placeholder becomes a reference to a shell
variable that holds the item (``"${__bk_item1}"``), assigned at the start of the script with
the value single-quoted (``__bk_item1='a b.log';``), a position where single quotes are always
exact. A parameter's value is never read again as shell syntax, so whatever the item contains
(``$(...)``, backticks, ``;``, quotes, a newline) and wherever the placeholder sits, it is data.

Where it sits decides only how the reference is quoted, so that the value also stays one literal
word: bare ``{}`` gives ``"${v}"``; inside ``"..."``, ``${...}`` or a here-document, ``${v}``;
inside ``'...'`` the quote is closed around it: ``'"${v}"'``. A small scanner follows the
shell's quoting (single and double quotes, backslashes, ``$(...)``, backticks, ``${...}``,
``$((...))``, comments and here-documents) to know which. Were it ever wrong, the value could at
worst be split into words or left unexpanded, never run. Two places are refused, because there a
value is code or nothing: ``$((...))`` (arithmetic evaluates its text; bash runs ``$(...)`` in
array subscripts) and the body of a quoted here-document (``<<'EOF'``, literal).

:meth:`Template.display` is the same command with the values written inline and quoted for their
context, as a person would type it (what ``--dry-run`` prints).

Several items per command (``-X``, ``-m``, as in GNU parallel): with ``-X`` the word around a
placeholder is repeated for each item (``pre-{}-post`` -> ``pre-a-post pre-b-post``), with ``-m``
the placeholder holds every item (bare: one word each; quoted: joined by spaces). Lengths add up
item by item (:meth:`Template.cost`), so a command can be filled to the limit in one pass.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from pathlib import PurePath
from typing import Any, Sequence

from ..errors import UsageError

PLACEHOLDERS = ("{}", "{name}", "{stem}", "{parent}")
_VAR = {"{}": "item", "{name}": "name", "{stem}": "stem", "{parent}": "parent"}
_WORD_END = frozenset(" \t\n;&|<>()")
_DOUBLE_SPECIAL = re.compile(r'([\\$`"])')
_PARAM_SPECIAL = re.compile(r'([\\$`"}])')
_HEREDOC_SPECIAL = re.compile(r"([\\$`])")
_BACKTICK_SPECIAL = re.compile(r"([\\$`])")


@dataclasses.dataclass(frozen=True)
class Slot:
    """One placeholder: its token, its quoting context (bare, single, double, heredoc, comment),
    whether it sits inside backticks (whose text is unescaped once more by the shell) and inside
    ``${...}`` (where ``}`` ends the expansion)."""

    token: str
    context: str
    backticks: bool = False
    param: bool = False


@dataclasses.dataclass
class Word:
    """A shell word holding placeholders: repeated once per item with ``-X``."""

    parts: list


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
        self.parts = _Scanner(text).parse()
        if not _slots(self.parts):  # no placeholder: the item is appended, as GNU parallel does
            self.parts = _Scanner(f"{text} {{}}").parse()
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
        text = _HEREDOC_SPECIAL.sub(r"\\\1", value)
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


# -- the scanner ---------------------------------------------------------------------------------


@dataclasses.dataclass
class _Frame:
    kind: str  # cmd (top level, $(...), backticks), single, double, param, arith, heredoc, comment
    opener: str = ""  # cmd: "", "$(" or "`"; heredoc: its delimiter
    outer: str = "bare"  # param: the quoting around ${...}
    depth: int = 0  # parentheses open inside $(...) or $((...)), braces inside ${...}
    word: int | None = None  # cmd: where the current word started
    strip_tabs: bool = False  # heredoc: <<-
    quoted: bool = False  # heredoc: a quoted delimiter (literal body)
    pending: list = dataclasses.field(default_factory=list)  # cmd: here-documents to read


class _Scanner:
    """Walks a template once, recording each placeholder's context and (in command context)
    the word around it; the result is a list of text, :class:`Slot` and :class:`Word`."""

    def __init__(self, text: str) -> None:
        self.t = text
        self.stack = [_Frame("cmd")]
        self.slots: list[tuple[int, Slot]] = []  # (position, slot)
        self.words: list[tuple[int, int]] = []  # spans of words holding placeholders
        self._open_words: dict[int, int] = {}  # id(frame) -> start of a word holding a placeholder

    def parse(self) -> list:
        t, i = self.t, 0
        while i < len(t):
            i = self._step(i)
        while len(self.stack) > 1 and self.stack[-1].kind in ("cmd", "param", "arith", "comment", "heredoc"):
            self._pop(len(t))
        top = self.stack[-1]
        if top.kind in ("single", "double"):
            quote = "'" if top.kind == "single" else '"'
            raise UsageError(f"the command has an unterminated {quote} quote; close it (see 'batchkit exec --help')")
        self._end_word(self.stack[0], len(t))
        return self._assemble()

    # -- one step --------------------------------------------------------------------------

    def _step(self, i: int) -> int:
        t, f = self.t, self.stack[-1]
        if t[i] == "{":
            for token in PLACEHOLDERS:
                if t.startswith(token, i):
                    self._slot(i, token)
                    return i + len(token)
        return getattr(self, f"_in_{f.kind}")(i, t[i], f)

    def _slot(self, i: int, token: str) -> None:
        f = self.stack[-1]
        if f.kind == "arith":
            raise UsageError(f"{token} inside $((...)) would be evaluated as arithmetic (bash runs commands "
                             f"found there): pass it as an argument or compute it in a script")
        if f.kind == "heredoc" and f.quoted:
            raise UsageError(f"{token} in the body of a quoted here-document (<<'{f.opener}') stays literal: "
                             f"use an unquoted delimiter (<<{f.opener})")
        context = {"cmd": "bare", "single": "single", "double": "double", "heredoc": "heredoc",
                   "comment": "comment"}.get(f.kind) or f.outer
        backticks = any(fr.kind == "cmd" and fr.opener == "`" for fr in self.stack)
        self.slots.append((i, Slot(token, context, backticks, f.kind == "param")))
        if context != "comment" and f.kind != "heredoc":
            cmd = self._command_frame()
            if cmd is not None:
                self._word_here(cmd, i)
                self._open_words.setdefault(id(cmd), cmd.word if cmd.word is not None else i)

    def _command_frame(self) -> _Frame | None:
        for fr in reversed(self.stack):
            if fr.kind == "cmd":
                return fr
            if fr.kind == "heredoc":
                return None
        return None

    def _word_here(self, f: _Frame, i: int) -> None:
        if f.word is None:
            f.word = i

    def _end_word(self, f: _Frame, i: int) -> None:
        start = self._open_words.pop(id(f), None)
        if start is not None:
            self.words.append((start, i))
        f.word = None

    def _push(self, frame: _Frame) -> None:
        self.stack.append(frame)

    def _pop(self, i: int) -> None:
        f = self.stack.pop()
        if f.kind == "cmd":
            self._end_word(f, i)

    # -- contexts ----------------------------------------------------------------------------

    def _expansion(self, i: int, c: str, outer: str) -> int | None:
        """``$(``, ``$((``, ``${`` or a backtick at ``i``: push its frame, return the next index."""
        t = self.t
        if c == "`":
            self._push(_Frame("cmd", opener="`"))
            return i + 1
        if c != "$":
            return None
        if t.startswith("$((", i):
            self._push(_Frame("arith"))
            return i + 3
        if t.startswith("$(", i):
            self._push(_Frame("cmd", opener="$("))
            return i + 2
        if t.startswith("${", i):
            self._push(_Frame("param", outer=outer))
            return i + 2
        return None

    def _in_cmd(self, i: int, c: str, f: _Frame) -> int:
        t = self.t
        if c == "\\":
            self._word_here(f, i)
            return i + 2
        if c == "`" and f.opener == "`":
            self._pop(i)
            return i + 1
        if c == ")" and f.opener == "$(" and f.depth == 0:
            self._pop(i)
            return i + 1
        if c == "#" and f.word is None:
            self._push(_Frame("comment"))
            return i + 1
        if c == "\n" and f.pending:
            self._end_word(f, i)
            first, *rest = f.pending
            f.pending = []
            for doc in reversed(rest):
                self._push(doc)
            self._push(first)
            return i + 1
        if c in _WORD_END:
            self._end_word(f, i)
            if c == "(":
                f.depth += 1
            elif c == ")" and f.depth:
                f.depth -= 1
            elif c == "<" and t.startswith("<<", i) and not t.startswith("<<<", i):
                return self._heredoc(i, f)
            return i + 1
        self._word_here(f, i)
        if c == "'":
            self._push(_Frame("single"))
            return i + 1
        if c == '"':
            self._push(_Frame("double"))
            return i + 1
        nxt = self._expansion(i, c, "bare")
        return nxt if nxt is not None else i + 1

    def _heredoc(self, i: int, f: _Frame) -> int:
        t, j = self.t, i + 2
        strip = t.startswith("-", j)
        j += strip
        while j < len(t) and t[j] in " \t":
            j += 1
        k = j
        while k < len(t) and t[k] not in _WORD_END:
            if t[k] == "\\":
                k += 1
            elif t[k] in "'\"":
                close = t.find(t[k], k + 1)
                k = close if close != -1 else len(t)
            k += 1
        raw = t[j:k]
        quoted = any(q in raw for q in "'\"\\")
        delimiter = re.sub(r"\\(.)", r"\1", raw.replace("'", "").replace('"', ""))
        f.pending.append(_Frame("heredoc", opener=delimiter, strip_tabs=strip, quoted=quoted))
        return k

    def _in_single(self, i: int, c: str, f: _Frame) -> int:
        if c == "'":
            self.stack.pop()
        return i + 1

    def _in_double(self, i: int, c: str, f: _Frame) -> int:
        if c == "\\":
            return i + 2
        if c == '"':
            self.stack.pop()
            return i + 1
        nxt = self._expansion(i, c, "double")
        return nxt if nxt is not None else i + 1

    def _in_param(self, i: int, c: str, f: _Frame) -> int:
        if c == "\\":
            return i + 2
        if c == "}":
            if f.depth == 0:
                self.stack.pop()
            else:
                f.depth -= 1
            return i + 1
        if c == "{":
            f.depth += 1
            return i + 1
        if c == "'" and f.outer == "bare":  # inside "${...}" a single quote is an ordinary character
            self._push(_Frame("single"))
            return i + 1
        if c == '"':
            self._push(_Frame("double"))
            return i + 1
        nxt = self._expansion(i, c, f.outer)
        return nxt if nxt is not None else i + 1

    def _in_arith(self, i: int, c: str, f: _Frame) -> int:
        if c == "(":
            f.depth += 1
        elif c == ")":
            if f.depth == 0 and self.t.startswith("))", i):
                self.stack.pop()
                return i + 2
            f.depth = max(0, f.depth - 1)
        return i + 1

    def _in_comment(self, i: int, c: str, f: _Frame) -> int:
        if c == "\n":
            self.stack.pop()
            return i  # the newline ends the command's line too (and starts pending here-documents)
        return i + 1

    def _in_heredoc(self, i: int, c: str, f: _Frame) -> int:
        t = self.t
        if i == 0 or t[i - 1] == "\n":  # a line starts: is it the delimiter?
            end = t.find("\n", i)
            line = t[i:end if end != -1 else len(t)]
            if (line.lstrip("\t") if f.strip_tabs else line) == f.opener:
                self.stack.pop()
                return end + 1 if end != -1 else len(t)
        if f.quoted:
            return i + 1
        if c == "\\":
            return i + 2
        nxt = self._expansion(i, c, "double")
        return nxt if nxt is not None else i + 1

    # -- the result ------------------------------------------------------------------------------

    def _assemble(self) -> list:
        spans = _merge(self.words)
        slots = dict(self.slots)
        out: list = []
        cuts = sorted({0, len(self.t), *(p for span in spans for p in span)})
        for lo, hi in zip(cuts, cuts[1:]):
            parts = _split(self.t, lo, hi, slots)
            if any(s <= lo and hi <= e for s, e in spans):
                out.append(Word(parts))
            else:
                out.extend(parts)
        return out


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for s, e in sorted(spans):
        if merged and s < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def _split(t: str, lo: int, hi: int, slots: dict[int, Slot]) -> list:
    parts: list = []
    i = lo
    for pos in sorted(p for p in slots if lo <= p < hi):
        if pos > i:
            parts.append(t[i:pos])
        parts.append(slots[pos])
        i = pos + len(slots[pos].token)
    if i < hi:
        parts.append(t[i:hi])
    return parts
