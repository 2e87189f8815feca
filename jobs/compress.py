"""Gzip old files matching a pattern under ROOT, atomically.

    batchkit run compress /var/log/app --pattern '*.log' --older-than 1d

For each file: compress into a temporary file beside it, fsync, read it back and check that it
decompresses to exactly the original bytes, rename it to NAME.gz (keeping the original's
mode and times), fsync the directory, and only then remove the original. A crash at any
moment leaves either the original, or the original and a complete NAME.gz; never neither.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import batchkit as bk

BLOCK = 1 << 20


class VerifyFailed(Exception):
    """The compressed copy did not decompress to the original bytes; the original is kept."""


@bk.job(backend="process")
def compress(path: Path, level: int = 6) -> int:
    """Gzip files under ROOT matching --pattern and older than --older-than; originals go once verified.

    Args:
        level: gzip compression level, 1 (fast) to 9 (small).
    """
    path = Path(path)
    target = path.with_name(path.name + ".gz")
    if target.exists():
        raise FileExistsError(f"{target} already exists; the original is kept")
    st = os.stat(path, follow_symlinks=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".gz.tmp", dir=path.parent)
    try:
        original = hashlib.sha256()
        with open(path, "rb") as src, os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(filename=path.name, mode="wb", compresslevel=level, fileobj=raw,
                               mtime=int(st.st_mtime)) as gz:
                while block := src.read(BLOCK):
                    original.update(block)
                    gz.write(block)
            raw.flush()
            os.fsync(raw.fileno())
        check = hashlib.sha256()
        with gzip.open(tmp, "rb") as back:
            while block := back.read(BLOCK):
                check.update(block)
        if check.digest() != original.digest():
            raise VerifyFailed(f"{tmp} does not decompress to {path}; the original is kept")
        shutil.copystat(path, tmp)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    os.unlink(path)
    _fsync_dir(path.parent)
    return os.path.getsize(target)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@compress.source
def _files(root: Path, pattern: str = "*.log", older_than: str = "1d"):
    """Files under ROOT matching the pattern and old enough (never .gz files, never symlinks).

    Args:
        pattern: Glob matched against file names (a pattern with '/' against the path under ROOT).
        older_than: Only files last modified longer ago than this (e.g. 12h, 1d, 2w).
    """
    return bk.files(root, include=pattern, exclude=("*.gz", ".*.gz.tmp"), older_than=older_than)


@compress.setup
def _check(level: int = 6, older_than: str = "1d") -> None:
    if not 1 <= level <= 9:
        raise bk.UsageError(f"--level {level}: use 1 (fast) to 9 (small)")
    from batchkit.units import parse_duration

    parse_duration(older_than)
