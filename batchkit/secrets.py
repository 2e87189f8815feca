"""Keeping secrets out of everything batchkit writes (journal, history, logs, crontab, pings).

Three things are masked with ``***`` wherever they appear:

- the values of environment variables whose names contain TOKEN, SECRET, PASSWORD, PASSWD or KEY
  (values of 4 characters or more);
- the ``user:password`` part of URLs (``scheme://***@host``), which ends at the *last* ``@`` of
  the authority, so a password containing ``@`` is masked whole;
- values named like secrets: ``api_key=X``, ``--db-password=X``, ``token: X``, ``"password": "X"``,
  ``Authorization: Bearer X``.

Redaction runs on every error message, log line and journal chunk, so it is linear in the length
of the text: names are only matched from a name boundary (a run of n name characters is read once),
no pattern nests quantifiers, and the name itself is judged in Python by :func:`is_secret_name`.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any, Iterator, Mapping

SECRET_NAMES = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY")
MASK = "***"

_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD")
_KEY_WORDS = {"APIKEY", "ACCESSKEY", "PRIVATEKEY", "AUTHKEY", "SSHKEY", "SIGNINGKEY", "LICENSEKEY", "ENCRYPTIONKEY"}
# Upper-cased, every name that is_secret_name or the Authorization rule accepts holds one of these.
_NAME_WORDS = ("TOKEN", "SECRET", "PASSW", "KEY", "AUTHORIZ")
_AUTH_SCHEMES = {"BEARER", "BASIC", "TOKEN", "DIGEST", "NEGOTIATE", "APIKEY"}

# One left-to-right scan finds both kinds of candidates:
# - `url`: a "://"; its authority runs to the first / ? # or whitespace (see _AUTHORITY).
# - `name` + `sep`: a run of name characters that starts at a name boundary (the lookbehind, so a run
#   of n characters is tried from one place only) and contains a word every secret name contains (the
#   lookahead; any non-ASCII letter also qualifies, because str.upper() can turn "ß" into "SS"), then
#   `=` or `:`, optionally after a closing quote and blanks. is_secret_name has the final word.
_SCAN = re.compile(
    r"(?P<url>://)"
    r"|(?<![\w-])(?=[\w-]*?(?:token|secret|passw|key|authoriz|[^\W\x00-\x7f]))"
    r"(?P<name>[\w-]+)(?P<sep>[\"']?[ \t]*[=:]\s*)",  # _SEP
    re.IGNORECASE,
)
_AUTHORITY = re.compile(r"[^/?#\s]*")
_BARE_VALUE = re.compile(r"[^\s&,;\"']+")
_QUOTED = {'"': re.compile(r'"([^"\n]*)"'), "'": re.compile(r"'([^'\n]*)'")}
_BLANKS = re.compile(r"[ \t]+")
_SPACES = re.compile(r"\s*")
_NAME = re.compile(r"[\w-]+")
_SEP = re.compile(r"[\"']?[ \t]*[=:]\s*")
_OPTION = re.compile(r"-{1,2}[A-Za-z][\w-]*")
# After `--flag-named-like-a-secret`, a long option is taken for the next option, not its value.
_LONG_OPTION = re.compile(r"--[A-Za-z][\w-]*(?:=.*)?", re.DOTALL)


def _secret_values_of(env: Mapping[str, str]) -> tuple[str, ...]:
    values = {v for k, v in env.items() if v and len(v) >= 4 and any(s in k.upper() for s in SECRET_NAMES)}
    return tuple(sorted(values, key=len, reverse=True))


# (copy of os.environ's underlying dict, the secret values computed from it)
_env_cache: tuple[dict, tuple[str, ...]] | None = None


def _current_secret_values() -> tuple[str, ...]:
    # Redaction runs for every error message and journal chunk, so the environment is not re-read
    # each time: os.environ keeps its items in a plain dict (`_data`, bytes on POSIX), and comparing
    # that with a copy is a C-level dict comparison (about a microsecond) that notices any change made
    # through os.environ (which is how monkeypatch.setenv and every Python program change it).
    global _env_cache
    data = getattr(os.environ, "_data", None)
    if not isinstance(data, dict):
        return _secret_values_of(os.environ)
    cached = _env_cache
    if cached is not None and cached[0] == data:
        return cached[1]
    snapshot = dict(data)
    values = _secret_values_of(os.environ)
    _env_cache = (snapshot, values)
    return values


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values (4 characters or more) of environment variables whose names contain one of
    :data:`SECRET_NAMES`, longest first. ``environ`` defaults to ``os.environ``, whose values are
    cached until it changes."""
    if environ is not None:
        return list(_secret_values_of(environ))
    return list(_current_secret_values())


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


def _masks_value(name: str) -> bool:
    # Names repeat (the same few fields on every line), so short ones have their verdict cached.
    return _masks_short_value(name) if len(name) <= 64 else _is_secret_field(name)


def _is_secret_field(name: str) -> bool:
    return is_secret_name(name) or _is_authorization(name)


_masks_short_value = lru_cache(maxsize=4096)(_is_secret_field)


def _is_authorization(name: str) -> bool:
    parts = [p for p in re.split(r"[^A-Z0-9]+", name.upper()) if p]
    return bool(parts) and parts[-1].endswith("AUTHORIZATION")  # Authorization, ProxyAuthorization


def _value_span(text: str, start: int, limit: int, name: str) -> tuple[int, int]:
    """Where the value of field ``name`` that starts at ``start`` begins and ends (not past ``limit``).

    The value is one quoted or bare word, and more in three cases, where stopping would leave a
    secret out: a URL in it (``token=https://u:p&w@h``) is masked up to the end of its authority,
    since a password may hold the & , ; and quotes that end a word; a word that is itself a name
    and a separator (``api_key= token: X``, ``token: db_password = X``) takes what follows it; and
    so does an authorization scheme (``Bearer X``). Each round reads only text it then masks, so
    this stays linear.
    """
    s, e, quoted = _one_value(text, start, limit)
    if e == s:
        return s, e
    part, first_end, before, second = s, e, s, None
    look = s - 1
    while True:
        url = text.rfind("://", look, e)
        look = e - 2
        if url >= 0:
            authority_end = _AUTHORITY.match(text, url + 3, limit).end()
            if authority_end > e:
                more = _BARE_VALUE.match(text, authority_end, limit)
                e, quoted = (more.end() if more else authority_end), False
                continue
        # Separators are looked for past `limit`: a secret name cut off by the end of a URL's
        # authority is left out of this value, to be scanned again as a name of its own.
        sep = _SEP.match(text, e)
        after = sep.end() if sep else None
        if after is None and not quoted:
            last = text[e - 1]
            if last == ":" or (last == "=" and _NAME.fullmatch(text, part, e - 1)):  # `name:`, `name=`
                after = _SPACES.match(text, e).end()
            elif e - part <= 9 and text[part:e].upper() in _AUTH_SCHEMES:
                blanks = _BLANKS.match(text, e)
                after = blanks.end() if blanks else None
        if after is None:
            break
        nxt, end, next_quoted = _one_value(text, after, limit)
        if end == nxt:
            if limit <= after and limit < len(text) and _masks_value(_trailing_name(text, part, e)):
                e = before
            break
        second = nxt if second is None else second
        before, part, e, quoted = e, nxt, end, next_quoted
    if second is not None and _is_authorization(name) and text[s:first_end].upper() in _AUTH_SCHEMES:
        return second, e  # Authorization: Bearer ***
    return s, e


def _trailing_name(text: str, start: int, end: int) -> str:
    """The run of name characters that ends ``text[start:end]`` (before a final ``:`` or ``=``)."""
    m = _NAME.match(text[start:end].rstrip(":=")[::-1])
    return m.group()[::-1] if m else ""


def _one_value(text: str, start: int, limit: int) -> tuple[int, int, bool]:
    """The span of the quoted or bare value at ``start``, and whether it was quoted."""
    if start >= limit:
        return start, start, False
    quote = text[start]
    if quote in _QUOTED:
        m = _QUOTED[quote].match(text, start, limit)
        if m is not None:  # "a value" / 'a value': mask what is inside the quotes
            return m.start(1), m.end(1), True
        start += 1  # an unclosed quote: mask the bare word after it
    m = _BARE_VALUE.match(text, start, limit)
    return (start, start, False) if m is None else (m.start(), m.end(), False)


def _spans(text: str) -> Iterator[tuple[int, int]]:
    """The spans of ``text`` to replace with :data:`MASK`, left to right, those already masked left out."""
    # Every name that can hold a secret holds one of _NAME_WORDS once upper-cased, and so does the
    # upper-case of any text it is in; most text has none, and then only its URLs need reading.
    # (A few C-level scans where the full pattern costs about 50 ns a character.)
    upper = text.upper()
    if any(word in upper for word in _NAME_WORDS):
        return _scan_spans(text)
    return _url_spans(text)


def _url_spans(text: str) -> Iterator[tuple[int, int]]:
    """:func:`_scan_spans` for text without a secret name: only URL passwords."""
    pos = text.find("://")
    while pos >= 0:
        start = pos + 3
        end = _AUTHORITY.match(text, start).end()
        at = text.rfind("@", start, end)
        if at >= 0 and text.find(":", start, at) >= 0:
            yield start, at
        pos = text.find("://", start)


def _scan_spans(text: str) -> Iterator[tuple[int, int]]:
    """The spans to mask: URL passwords and values named like secrets, in one scan."""
    pos = 0
    authority_end = -1  # of the last "://" seen
    search = _SCAN.search
    while True:
        m = search(text, pos)
        if m is None:
            return
        if m.lastgroup == "url":
            start = m.end()
            end = _AUTHORITY.match(text, start).end()
            authority_end = end
            at = text.rfind("@", start, end)  # the userinfo ends at the LAST "@" of the authority
            if at >= 0 and text.find(":", start, at) >= 0:  # user:password (MASK has no ":")
                yield start, at
                pos = at
            else:
                pos = start
            continue
        sep = m.start("sep")
        name = m.group("name")
        if _masks_value(name):
            # A value inside a URL's authority ends where the authority does: masking it then
            # cannot move the authority's end, so a second redaction finds nothing new.
            limit = authority_end if m.end() <= authority_end else len(text)
            s, e = _value_span(text, m.end(), limit, name)
            if e > s:
                if text[s:e] != MASK:
                    yield s, e
                # A value cut at an authority's end may end in the ":" of the next "://".
                pos = e - 1 if text.startswith("://", e - 1) else e
                continue
        # Not a secret: go on from the separator, which may itself start a "://".
        pos = sep


def _replace_env_values(text: str) -> str:
    for value in _current_secret_values():
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact_text(text: str) -> str:
    """``text`` with secret environment values, URL passwords and values named like secrets masked.

    >>> redact_text("GET https://bob:Zq@9xK!v@svc.example.com/x?api_key=abc&key=7")
    'GET https://***@svc.example.com/x?api_key=***&key=7'

    Linear in ``len(text)``.
    """
    if not text:
        return text
    text = _replace_env_values(text)
    if ":" not in text and "=" not in text:  # no URL and no named value can be in it
        return text
    out = []
    last = 0
    for s, e in _spans(text):
        out.append(text[last:s])
        out.append(MASK)
        last = e
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


def contains_secret(text: str) -> bool:
    """Whether :func:`redact_text` would change ``text``; much cheaper when it would not.

    Text without ``=`` or ``:`` costs one C-level scan per secret environment value, so it can be
    run over every journal chunk's keys.
    """
    if not text:
        return False
    for value in _current_secret_values():
        if value in text:
            return True
    if ":" not in text and "=" not in text:
        return False
    return next(_spans(text), None) is not None


def redact_argv(argv: list[str]) -> list[str]:
    """A command line with its secrets masked, for messages and logs (it no longer runs as it was).

    The value of an option named like a secret is masked in both spellings (``--api-token X`` and
    ``--api-token=X``), and every argument goes through :func:`redact_text` (URL passwords, secret
    environment values, ``name=value`` pairs):

    >>> redact_argv(["run", "job.py", "--api-token", "tok_live_abcdef123456", "--url", "https://admin:pw@h/x"])
    ['run', 'job.py', '--api-token', '***', '--url', 'https://***@h/x']
    """
    out = []
    mask_next = False
    for arg in argv:
        arg = str(arg)
        if mask_next and arg and not _LONG_OPTION.fullmatch(arg):
            out.append(MASK)
            mask_next = False
            continue
        mask_next = False
        option = _OPTION.match(arg)
        if option is not None and is_secret_name(option.group()):
            rest = arg[option.end():]
            if not rest:  # --api-token VALUE: the next argument is the secret
                mask_next = True
            elif rest[0] == "=" and len(rest) > 1:
                out.append(f"{option.group()}={MASK}")
                continue
        out.append(redact_text(arg))
    return out


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
