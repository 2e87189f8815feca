"""A job's options, read from plain function signatures and docstrings.

Types come from annotations (``int``, ``float``, ``bool``, ``str``, ``Path``, ``Literal[...]``
for choices, ``list[X]`` for a repeatable option, ``X | None``), defaults from defaults, and
help from an ``Args:`` section of the docstring. Nothing here knows about click: the command
line turns :class:`Param` objects into options.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import typing
from pathlib import Path
from typing import Any, Callable


@dataclasses.dataclass
class Param:
    """One job option or argument, described without reference to click.

    ``type`` is the Python type values should have (``str``, ``int``, ``float``, ``bool``,
    ``Path``); ``choices`` is set for ``Literal[...]``; ``multiple`` for ``list[X]``;
    ``argument`` for the item source's positional parameters (``ROOT``).
    """

    name: str
    type: type = str
    default: Any = None
    required: bool = False
    help: str = ""
    choices: tuple | None = None
    multiple: bool = False
    argument: bool = False


def first_line(doc: str | None) -> str:
    """The first line of a docstring (empty if none)."""
    text = inspect.cleandoc(doc or "").strip()
    return text.splitlines()[0].strip() if text else ""


_ARGS_HEAD = re.compile(r"^(Args|Arguments|Parameters|Options):\s*$")
_ARG_LINE = re.compile(r"^(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def param_help(doc: str | None) -> dict[str, str]:
    """``{name: text}`` from a Google-style ``Args:`` section of a docstring."""
    helps: dict[str, str] = {}
    lines = inspect.cleandoc(doc or "").splitlines()
    inside, current, indent = False, None, None
    for line in lines:
        if _ARGS_HEAD.match(line.strip()) and not line.startswith(" "):
            inside, current, indent = True, None, None
            continue
        if not inside:
            continue
        if line and not line.startswith(" "):
            break  # the next section
        stripped = line.strip()
        if not stripped:
            current = None
            continue
        this_indent = len(line) - len(line.lstrip())
        match = _ARG_LINE.match(stripped)
        if match and (indent is None or this_indent <= indent):
            indent = this_indent
            current = match.group(1)
            helps[current] = match.group(2).strip()
        elif current is not None:
            helps[current] = (helps[current] + " " + stripped).strip()
    return helps


def without_args(doc: str) -> str:
    """``doc`` less its ``Args:`` section (the CLI shows that per option)."""
    out, inside = [], False
    for line in doc.splitlines():
        if _ARGS_HEAD.match(line.strip()) and not line.startswith(" "):
            inside = True
            continue
        if inside and line and not line.startswith(" "):
            inside = False
        if not inside:
            out.append(line)
    return "\n".join(out).strip()


def python_type(annotation: Any, default: Any) -> tuple[type, tuple | None, bool]:
    """``(python type, choices, multiple)`` for an annotation (Optional, Literal, list...)."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return (type(default) if default is not None and default is not inspect.Parameter.empty
                and isinstance(default, (int, float, bool, str, Path)) else str), None, False
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or (origin is not None and type(annotation).__name__ == "UnionType"):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return python_type(rest[0], default)
        return str, None, False
    if origin is typing.Literal:
        return type(args[0]), tuple(args), False
    if origin in (list, tuple, set, frozenset) or (origin is not None and origin.__name__ in ("Sequence", "Iterable")):
        inner = args[0] if args else str
        kind, choices, _ = python_type(inner, None)
        return kind, choices, True
    if isinstance(annotation, type) and issubclass(annotation, os.PathLike):
        return Path, None, False
    if annotation in (str, int, float, bool):
        return annotation, None, False
    return str, None, False


def signature_of(fn: Callable[..., Any]) -> tuple[list[inspect.Parameter], dict[str, Any]]:
    """``fn``'s parameters and its evaluated type hints (empty when they cannot be evaluated)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that cannot be evaluated: fall back to no types
        hints = {}
    params = list(inspect.signature(fn).parameters.values())
    return params, hints
