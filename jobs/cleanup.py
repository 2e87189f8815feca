"""Delete old files matching a pattern under ROOT; never follows a symlink out of ROOT.

    batchkit run cleanup /var/tmp/app --pattern 'temp_*' --older-than 7d --dry-run
    batchkit run cleanup /var/tmp/app --pattern 'temp_*' --older-than 7d

Symlinks are never followed and never deleted: the walk does not descend into a linked
directory, and just before deleting, the file is checked again (still a regular file, still
old enough, its directory still inside ROOT once every link is resolved), so a directory
swapped for a symlink mid-run cannot redirect a deletion elsewhere.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import batchkit as bk
from batchkit.jobs.sinks import write_stdout
from batchkit.units import parse_duration


class Refused(Exception):
    """The file no longer qualifies for deletion (moved out of ROOT, replaced, or touched)."""


@bk.job(backend="thread", writes_stdout=lambda o: bool(o.get("dry_run")))
def cleanup(path: Path, root: Path, older_than: str = "7d", dry_run: bool = False) -> int:
    """Delete files under ROOT matching --pattern and older than --older-than.

    Args:
        older_than: Only files last modified longer ago than this (e.g. 12h, 7d, 2w).
        dry_run: Only list what would be deleted (on stdout), delete nothing.
    """
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise Refused(f"{path}: no longer a regular file")
    if st.st_mtime >= time.time() - parse_duration(older_than):
        raise Refused(f"{path}: modified since the walk")
    real_root = os.path.realpath(root)
    real_dir = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    if real_dir != real_root and not real_dir.startswith(real_root.rstrip(os.sep) + os.sep):
        raise Refused(f"{path}: resolves to {real_dir}, outside {real_root}")
    if not dry_run:
        os.unlink(path)
    return st.st_size


@cleanup.source
def _files(root: Path, pattern: str = "temp_*", older_than: str = "7d"):
    """Files under ROOT matching the pattern and old enough, without following symlinks.

    Args:
        pattern: Glob matched against file names (a pattern with '/' against the path under ROOT).
    """
    return bk.files(root, include=pattern, older_than=older_than, follow_symlinks=False)


@cleanup.setup
def _check(older_than: str = "7d") -> None:
    parse_duration(older_than)  # a malformed age is refused before any file is touched


@cleanup.finish
def _report(outcomes, dry_run: bool = False) -> None:
    if dry_run:
        write_stdout("".join(f"{o.item}\n" for o in outcomes if o.ok))
    freed = sum(o.value or 0 for o in outcomes if o.ok)
    verb = "would free" if dry_run else "freed"
    count = sum(1 for o in outcomes if o.ok)
    print(f"cleanup: {verb} {freed:,} bytes in {count} files", file=sys.stderr)
