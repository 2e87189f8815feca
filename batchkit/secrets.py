"""Keeping secrets out of everything batchkit writes (journal, history, logs, crontab, pings).

Environment values whose names contain TOKEN, SECRET, PASSWORD, PASSWD or KEY are replaced by
``***`` wherever they appear, and so is the ``user:password@`` part of URLs.
"""

from __future__ import annotations

import os
import re
from typing import Any

SECRET_NAMES = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY")
MASK = "***"
# scheme://user:password@host -> scheme://***@host
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/@\s:]*:[^/@\s]*)@")
# Options and key=value pairs named like a secret: --token X, --api-key=X, password=X
_NAMED = re.compile(
    r"(?i)(?P<name>[\w\-]*(?:token|secret|password|passwd|[a-z0-9]+[_\-]key|(?:api|access|private|auth|ssh|signing|license|encryption)key)[\w\-]*)(?P<sep>=|:\s*)"
    r"(?P<value>[^\s&,;\"']+)"
)


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """The values of environment variables whose names look secret (longest first)."""
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if v and len(v) >= 4 and any(s in k.upper() for s in SECRET_NAMES)}
    return sorted(values, key=len, reverse=True)


_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD")
_KEY_WORDS = {"APIKEY", "ACCESSKEY", "PRIVATEKEY", "AUTHKEY", "SSHKEY", "SIGNINGKEY", "LICENSEKEY", "ENCRYPTIONKEY"}


def is_secret_name(name: str) -> bool:
    """Whether an option or field name looks like it holds a secret.

    Matched by its parts, so ``api_key``, ``--access-key``, ``apikey`` and ``db_password`` are
    secret, but an item's ``key`` or ``--sort-keys`` are not. (Environment variables follow the
    plainer rule in :func:`secret_values`: any name containing one of :data:`SECRET_NAMES`.)
    """
    parts = [p for p in re.split(r"[^A-Z0-9]+", name.upper()) if p]
    if any(word in part for part in parts for word in _SECRET_WORDS):
        return True
    if any(part in _KEY_WORDS for part in parts):
        return True
    return len(parts) > 1 and parts[-1] == "KEY"  # API_KEY, PRIVATE-KEY


def redact_text(text: str) -> str:
    """``text`` with secret environment values and URL passwords masked."""
    if not text:
        return text
    for value in secret_values():
        text = text.replace(value, MASK)
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    return _NAMED.sub(lambda m: f"{m.group('name')}{m.group('sep')}{MASK}", text)


def redact(value: Any) -> Any:
    """Mask secrets in a string, or recursively in a dict / list (dict keys named like secrets
    have their values masked whole)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and is_secret_name(k) and v not in (None, False, "")
                    else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    return value


def contains_secret(text: str) -> bool:
    """Whether :func:`redact_text` would change ``text``."""
    return bool(text) and redact_text(text) != text


def redact_argv(argv: list[str]) -> list[str]:
    """A command line with secrets masked: the value after an option named like a secret
    (``--api-token X``, ``--api-token=X``), URL passwords and secret environment values."""
    out: list[str] = []
    mask_next = False
    for arg in argv:
        if mask_next:
            out.append(MASK)
            mask_next = False
            continue
        if arg.startswith("--") and is_secret_name(arg[2:].split("=", 1)[0]):
            if "=" in arg:
                out.append(arg.split("=", 1)[0] + "=" + MASK)
            else:
                out.append(arg)
                mask_next = True
            continue
        out.append(redact_text(arg))
    return out
