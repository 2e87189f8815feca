"""Download every URL listed in a file into a directory, in threads, retrying what is worth retrying.

    batchkit run fetch urls.txt --dest downloads/ --workers 8

One URL per line (blank lines and lines starting with # are skipped). Each file is named after
the last part of its URL's path; when two URLs would get the same name, each gets a short
digest of its URL in front. Timeouts, dropped connections and 5xx answers are retried with
exponential backoff (--retries N overrides the default of 3 retries); 4xx answers fail at once.
A download is written to a temporary file and renamed into place only once complete.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import socket
import tempfile
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlparse

import batchkit as bk

BLOCK = 1 << 16


class IncompleteDownload(ConnectionError):
    """The server sent fewer bytes than its Content-Length said (retried)."""


def worth_retrying(exc: BaseException) -> bool:
    """Timeouts, dropped connections and 5xx answers; not 4xx, not bad URLs."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500
    if isinstance(exc, urllib.error.URLError):
        return isinstance(exc.reason, (socket.timeout, TimeoutError, ConnectionError))
    return isinstance(exc, (socket.timeout, TimeoutError, ConnectionError))


@bk.job(backend="thread", key=lambda item: item[0],
        retry=bk.Retry(attempts=4, backoff=0.5, max_backoff=10, on=worth_retrying))
def fetch(item: tuple, dest: Path, request_timeout: float = 30.0) -> int:
    """Download each URL of URLS_FILE into --dest, retrying timeouts and 5xx answers.

    Args:
        dest: Directory to download into (created if missing).
        request_timeout: Seconds to wait for the server to connect or send data.
    """
    url, name = item
    target = Path(dest) / name
    request = urllib.request.Request(url, headers={"User-Agent": "batchkit-fetch"})
    with urllib.request.urlopen(request, timeout=request_timeout) as response:
        expected = response.headers.get("Content-Length")
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=target.parent)
        try:
            size = 0
            with os.fdopen(fd, "wb") as out:
                while block := response.read(BLOCK):
                    out.write(block)
                    size += len(block)
            if expected is not None and size != int(expected):
                raise IncompleteDownload(f"{url}: got {size} of {expected} bytes")
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return size


def file_name(url: str) -> str:
    """The file name a URL is saved under: the last part of its path."""
    name = unquote(posixpath.basename(urlparse(url).path)).replace(os.sep, "_").lstrip(".")
    return name or "index.html"


@fetch.source
def _urls(urls_file: Path):
    """The URLs, each with the file name it is saved under."""
    try:
        lines = Path(urls_file).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise bk.UsageError(f"{urls_file}: {exc.strerror or exc}") from None
    urls = [u.strip() for u in lines if u.strip() and not u.lstrip().startswith("#")]
    for u in urls:
        if urlparse(u).scheme not in ("http", "https"):
            raise bk.UsageError(f"{urls_file}: {u!r} is not an http:// or https:// URL")
    clashes = Counter(file_name(u) for u in urls)
    out = []
    for u in urls:
        name = file_name(u)
        if clashes[name] > 1:
            name = f"{hashlib.blake2b(u.encode(), digest_size=4).hexdigest()}-{name}"
        out.append((u, name))
    return out


@fetch.setup
def _make_dest(dest: Path) -> None:
    try:
        Path(dest).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise bk.UsageError(f"--dest {dest}: {exc.strerror or exc}") from None
