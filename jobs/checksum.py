"""Hash every file under ROOT into a manifest that `sha256sum -c` accepts, or verify one.

    batchkit run checksum /data > data.sha256          # manifest on stdout, summary on stderr
    batchkit run checksum /data --manifest data.sha256 --workers 2
    batchkit run checksum /data --verify data.sha256   # mismatches and missing files fail

Paths are written as `find ROOT` prints them, with coreutils' escaping: a name containing a
backslash, a newline or a carriage return gets a leading backslash on its line, and those
characters are written as \\\\, \\n and \\r.
"""

from __future__ import annotations

import hashlib
import os
import re
from itertools import repeat
from pathlib import Path
from typing import Iterator

import batchkit as bk
from batchkit.atomic import atomic_writer
from batchkit.jobs.sinks import write_stdout
from batchkit.jobs.spool import successes

# shake_* need a length, so they cannot write a coreutils-style manifest.
ALGORITHMS = sorted(a for a in hashlib.algorithms_guaranteed if not a.startswith("shake"))
BLOCK = 1 << 20
# Manifest lines built and written at a time from a plain list of outcomes (≈ 64 KB per write).
# Small on purpose: a piece's Outcome objects then die before the garbage collector's first
# generation (700 new objects) fills up, so they are never traversed again; at 10,000 per piece
# the collector took 40 % of the finish. (The CLI's spool gives paths and digests as lists instead.)
PIECE = 500


class ChecksumMismatch(Exception):
    """A file's digest differs from the one in the manifest."""


class Entry(str):
    """A manifest entry to --verify: its path, carrying the digest the manifest expects.

    A ``str``, so the path is the item's journal key as it is for a plain walk: no key
    function is called per item (for 100k small files that call is a measurable cost).
    """

    expected: str

    @classmethod
    def of(cls, path: str, expected: str) -> Entry:
        """The entry for ``path`` with the ``expected`` digest."""
        entry = cls(path)
        entry.expected = expected
        return entry


def _writes_stdout(options: dict) -> bool:
    return options.get("manifest") is None and options.get("verify") is None


@bk.job(backend="process", writes_stdout=_writes_stdout)
def checksum(item, algorithm: str = "sha256") -> str:
    """Hash every file under ROOT into a sha256sum-style manifest, or --verify one.

    Args:
        algorithm: Hash algorithm (any of Python's guaranteed ones: sha256, sha512, md5, sha1, blake2b...).
    """
    if isinstance(item, Entry):
        digest = _digest(item, algorithm)
        if digest != item.expected:
            raise ChecksumMismatch(f"{item}: {algorithm} is {digest}, the manifest says {item.expected}")
        return digest
    return _digest(item, algorithm)


def _digest(path, algorithm: str) -> str:
    # os.open/os.read rather than open(): half the per-file cost, which dominates for small files.
    h = hashlib.new(algorithm)
    fd = os.open(path, os.O_RDONLY)
    try:
        while block := os.read(fd, BLOCK):
            h.update(block)
    finally:
        os.close(fd)
    return h.hexdigest()


@checksum.source
def _items(root: Path, verify: Path | None = None, manifest: Path | None = None):
    """The files under ROOT, or with --verify the manifest's entries under ROOT. The manifest
    being written (or read) is never one of them, even when it lives inside ROOT."""
    if verify is None:
        # path strings: a Path per file costs more than hashing it
        return bk.files(root, as_str=True, leave_out=[manifest] if manifest is not None else ())
    if not Path(root).exists():
        raise bk.UsageError(f"{root}: no such file or directory")
    entries = list(read_manifest(verify))
    prefix = os.path.normpath(os.fspath(root))
    itself = os.path.realpath(verify)
    wanted = [Entry.of(p, d) for p, d in entries
              if (prefix in (".", p) or os.path.normpath(p).startswith(prefix.rstrip("/") + "/"))
              and os.path.realpath(p) != itself]
    if entries and not wanted:
        raise bk.UsageError(f"no entry of {verify} is under {root} (paths are read as written, "
                            "relative to the current directory, as sha256sum -c does)")
    return wanted


@checksum.setup
def _check(algorithm: str = "sha256", manifest: Path | None = None, verify: Path | None = None) -> None:
    if algorithm not in ALGORITHMS:
        raise bk.UsageError(f"unknown --algorithm {algorithm!r}: choose one of {', '.join(ALGORITHMS)}")
    if manifest is not None and verify is not None:
        raise bk.UsageError("--manifest writes a manifest and --verify reads one: pick one")


@checksum.finish
def _write_manifest(outcomes, manifest: Path | None = None, verify: Path | None = None) -> str | None:
    """Write the manifest (in input order: as `find` lists the tree) to --manifest or stdout.

    Args:
        manifest: Write the manifest to this file (atomically) instead of stdout.
        verify: Check the files against this manifest instead of writing one.
    """
    if verify is not None:
        return None
    if manifest is None:
        for piece, _ in manifest_pieces(outcomes):
            write_stdout(piece)  # whole, or a closed pipe (| head) stops the run like SIGPIPE: resumable
        return None
    lines = 0
    try:
        with atomic_writer(manifest) as f:
            for piece, n in manifest_pieces(outcomes):
                f.write(piece)
                lines += n
    except OSError as exc:
        raise bk.BackendError(f"cannot write --manifest {manifest}: {exc.strerror or exc}"
                              + (f" ({exc.filename})" if exc.filename else "")) from None
    return f"manifest of {lines:,} files written to {os.path.abspath(manifest)}"


def manifest_pieces(outcomes, lines: int = PIECE) -> Iterator[tuple[bytes, int]]:
    """The manifest of ``outcomes``' successful items, a piece at a time (and how many lines each
    piece holds): memory stays flat however many files there are.

    The command line hands ``finish`` a spool, which gives paths and digests a chunk at a time
    without an Outcome per file; a plain list of outcomes is read ``lines`` at a time.
    """
    for paths, digests in successes(outcomes, lines):
        if paths:
            try:
                text = manifest_text(paths, digests)
            except TypeError:  # paths as Path objects (a custom feed): as text
                text = manifest_text(list(map(str, paths)), digests)
            yield text, len(paths)


def manifest_text(paths: list[str], digests: list[str]) -> bytes:
    """The manifest's lines for ``paths`` and their ``digests``, as :func:`manifest_line` writes
    them; names that need no escaping (the common case) are formatted in one go."""
    joined = "".join(paths)
    if "\\" in joined or "\n" in joined or "\r" in joined:
        return b"".join(map(manifest_line, paths, digests))
    n = len(paths)
    pieces: list = [None] * (4 * n)  # digest, "  ", path, newline: one join (C-level copies)
    pieces[0::4] = digests
    pieces[1::4] = repeat("  ", n)
    pieces[2::4] = paths
    pieces[3::4] = repeat("\n", n)
    return os.fsencode("".join(pieces))


def manifest_line(path: str, digest: str) -> bytes:
    """One coreutils line: ``digest  path``, escaped as sha256sum escapes names."""
    name = os.fsencode(path)
    if "\\" not in path and "\n" not in path and "\r" not in path:  # the common case, checked cheaply
        return digest.encode() + b"  " + name + b"\n"
    if any(c in name for c in (b"\\", b"\n", b"\r")):
        name = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
        return b"\\" + digest.encode() + b"  " + name + b"\n"
    return digest.encode() + b"  " + name + b"\n"


_LINE = re.compile(rb"^(\\?)([0-9a-fA-F]+) [ *](.*)$", re.S)
_UNESCAPE = {b"\\\\": b"\\", b"\\n": b"\n", b"\\r": b"\r"}


def read_manifest(path: Path):
    """``(path, digest)`` for each line of a coreutils manifest (escaped names unescaped)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise bk.UsageError(f"--verify {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        match = _LINE.match(line)
        if not match:
            raise bk.UsageError(f"--verify {path}, line {number}: not a 'DIGEST  PATH' line")
        escaped, digest, name = match.groups()
        if escaped:
            name = re.sub(rb"\\[\\nr]", lambda m: _UNESCAPE[m.group(0)], name)
        yield os.fsdecode(name), digest.decode().lower()
