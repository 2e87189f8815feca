"""Replacing a file atomically: :func:`write_atomic`, or in pieces with :func:`atomic_writer`.

Readers (``sha256sum -c``, cron, a Prometheus collector) see the old file or the new one, never
half of one, and a crash leaves at most a hidden temp file beside the target.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator


@contextmanager
def atomic_writer(path: str | os.PathLike, *, mode: int | None = None) -> Iterator[BinaryIO]:
    """A binary file whose contents replace ``path`` when the ``with`` block ends without an
    exception (a hidden temp file in the same directory, fsync, rename); on an exception the
    temp file is removed and ``path`` is untouched. For data written in pieces (a manifest of
    millions of lines), where :func:`write_atomic` would need it all in memory at once.

    ``mode``: the new file's permissions; by default the old file's, or 0644 for a new file
    (mkstemp's 0600 would hide a manifest or a metrics file from the other users who read it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
    # A dot name with a .tmp suffix: globs such as *.prom or *.sha256 never pick it up.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_atomic(path: str | os.PathLike, data: bytes | str, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_writer`).

    Text is written as UTF-8 (undecodable path bytes kept with surrogateescape).
    """
    payload = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    with atomic_writer(path, mode=mode) as f:
        f.write(payload)
