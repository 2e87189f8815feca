"""A job's paths on the command line: "" is never a path (an unset "$ROOT" must not mean "here")."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from conftest import PY, python_env


def batchkit(*args, cwd):
    return subprocess.run([PY, "-m", "batchkit", *args], cwd=cwd, env=python_env(), capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def old_files(tmp_path):
    """A directory of files two days old: what `cleanup --older-than 1d` would delete."""
    root = tmp_path / "spool"
    root.mkdir()
    for name in ("a.log", "b.tmp", "temp_c"):
        path = root / name
        path.write_text(name)
        old = time.time() - 2 * 86400
        os.utime(path, (old, old))
    return root


def test_cleanup_with_an_empty_root_deletes_nothing_and_exits_2(old_files):
    result = batchkit("run", "cleanup", "", "--pattern", "*", "--older-than", "1d", cwd=old_files)
    assert result.returncode == 2
    assert result.stderr == ("batchkit: error: Invalid value for 'ROOT': '' is not a path; give a file or "
                             "directory (is a shell variable unset?) (see 'batchkit run cleanup --help')\n")
    assert sorted(p.name for p in old_files.iterdir()) == ["a.log", "b.tmp", "temp_c"]
    # The same root given for real does delete: the refusal above is about "" alone.
    done = batchkit("run", "cleanup", ".", "--pattern", "*.tmp", "--older-than", "1d", "--quiet", cwd=old_files)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in old_files.iterdir()) == ["a.log", "temp_c"]


@pytest.mark.parametrize("args, message", [
    (["checksum", ""], "Invalid value for 'ROOT': '' is not a path"),
    (["checksum", "no-such-dir"], "Invalid value for 'ROOT': no-such-dir: no such file or directory"),
    (["checksum", ".", "--manifest", ""], "Invalid value for '--manifest': '' is not a path"),
    (["checksum", ".", "--manifest="], "Invalid value for '--manifest': '' is not a path"),
    (["checksum", ".", "--verify", ""], "Invalid value for '--verify': '' is not a path"),
    (["cleanup", "no-such-dir", "--older-than", "1d"], "'ROOT': no-such-dir: no such file or directory"),
])
def test_empty_or_missing_paths_are_one_line_exit_2(old_files, args, message):
    result = batchkit("run", *args, cwd=old_files)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1 and result.stdout == ""


def test_a_path_option_may_name_a_file_the_job_creates(old_files):
    result = batchkit("run", "checksum", ".", "--manifest", "new.sha256", "--quiet", cwd=old_files)
    assert result.returncode == 0, result.stderr
    assert "  ./a.log\n" in (old_files / "new.sha256").read_text()


REPEATED = '''import batchkit as bk
from pathlib import Path


@bk.job(backend="serial")
def touch(item: str, also: list[Path] = ()) -> str:
    """Echo the item."""
    return item
'''


def test_every_value_of_a_repeatable_path_option_refuses_empty(tmp_path):
    (tmp_path / "touch.py").write_text(REPEATED)
    (tmp_path / "items.txt").write_text("x\n")
    result = batchkit("run", "touch.py", "--input", "items.txt", "--also", "a", "--also", "", cwd=tmp_path)
    assert result.returncode == 2 and "Invalid value for '--also': '' is not a path" in result.stderr
