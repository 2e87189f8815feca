"""Reading a command template the way ``/bin/sh`` reads it: :func:`scan`.

:func:`scan` walks the template once and finds each placeholder (``{}``, ``{name}``, ``{stem}``,
``{parent}``) with its quoting context: bare, inside single or double quotes, inside ``${...}``,
in an unquoted here-document's body, in a comment, inside backticks. It follows what changes the
context: single and double quotes, backslashes (``\\{}`` is a literal ``{}``), ``$(...)`` and
backticks (a new command context), ``${...}``, ``$((...))``, ``#`` comments and here-documents
(``<<EOF``, ``<<-EOF``, quoted delimiters). In command context it also notes the word around each
placeholder, which ``-X`` repeats per item. It refuses, with a :class:`~batchkit.UsageError`,
what cannot hold an item as data: a placeholder inside ``$((...))`` or a quoted here-document,
and an unterminated quote.

It is not a full shell parser (``case`` patterns inside ``$(...)`` can end that context early);
:mod:`batchkit.jobs.shellquote` relies on it only for how to quote, never for safety.
"""

from __future__ import annotations

import dataclasses
import re

from ..errors import UsageError

PLACEHOLDERS = ("{}", "{name}", "{stem}", "{parent}")
_WORD_END = frozenset(" \t\n;&|<>()")


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


@dataclasses.dataclass
class _Frame:
    kind: str  # cmd (top level, $(...), backticks), single, double, param, arith, heredoc, comment
    opener: str = ""  # cmd: "", "$(" or "`"; heredoc: its delimiter
    outer: str = "bare"  # param: the context around ${...} (bare, double, heredoc)
    depth: int = 0  # parentheses open inside $(...) or $((...)), braces inside ${...}
    word: int | None = None  # cmd: where the current word started
    strip_tabs: bool = False  # heredoc: <<-
    quoted: bool = False  # heredoc: a quoted delimiter (literal body)
    pending: list = dataclasses.field(default_factory=list)  # cmd: here-documents to read


def scan(text: str) -> list:
    """The template as a list of text, :class:`Slot` and :class:`Word` (see the module docstring)."""
    return _Scanner(text).parse()


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
        nxt = self._expansion(i, c, "heredoc")
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
