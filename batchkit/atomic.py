"""Replacing a file atomically: :func:`write_atomic`.

Readers (``sha256sum -c``, cron, a Prometheus collector) see the old file or the new one, never
half of one, and a crash leaves at most a hidden temp file beside the target.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike, data: bytes | str, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data``: a hidden temp file in the same directory, fsync, rename.

    ``mode``: the new file's permissions; by default the old file's, or 0644 for a new file
    (mkstemp's 0600 would hide a manifest or a metrics file from the other users who read it).
    Text is written as UTF-8 (undecodable path bytes kept with surrogateescape).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
    payload = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    # A dot name with a .tmp suffix: globs such as *.prom or *.sha256 never pick it up.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
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
