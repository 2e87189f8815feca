"""bk.files: a lazy scandir walk with filters; unreadable directories and symlink loops are survived."""

from __future__ import annotations

import os
import time

import pytest

import batchkit as bk


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for rel in ["top.txt", "a/one.log", "a/two.txt", "a/b/three.txt", ".hidden/secret.txt", ".dot.txt"]:
        (tmp_path / rel).write_text(rel)
    return tmp_path


def rels(walk, root):
    return [os.path.relpath(p, root) for p in walk]


def test_walks_depth_first_in_name_order(tree):
    assert rels(bk.files(tree), tree) == [".dot.txt", ".hidden/secret.txt", "a/b/three.txt",
                                          "a/one.log", "a/two.txt", "top.txt"]


def test_include_exclude_hidden_and_recursive(tree):
    assert rels(bk.files(tree, include="*.txt", hidden=False), tree) == ["a/b/three.txt", "a/two.txt", "top.txt"]
    assert rels(bk.files(tree, exclude=["b", "*.log"], hidden=False), tree) == ["a/two.txt", "top.txt"]
    assert rels(bk.files(tree, include="a/*.txt"), tree) == ["a/two.txt"]
    assert rels(bk.files(tree, include="a/**/*.txt"), tree) == ["a/b/three.txt", "a/two.txt"]
    assert rels(bk.files(tree, recursive=False), tree) == [".dot.txt", "top.txt"]


def test_size_and_age_filters(tree):
    (tree / "big.bin").write_bytes(b"x" * 5000)
    old = tree / "old.txt"
    old.write_text("o")
    past = time.time() - 10 * 86400
    os.utime(old, (past, past))
    assert rels(bk.files(tree, min_size="4k"), tree) == ["big.bin"]
    assert "big.bin" not in rels(bk.files(tree, max_size=100), tree)
    assert rels(bk.files(tree, older_than="7d"), tree) == ["old.txt"]
    assert "old.txt" not in rels(bk.files(tree, newer_than="1d"), tree)


def test_is_lazy(tree):
    walk = iter(bk.files(tree))
    assert next(walk).name == ".dot.txt"


def test_missing_root_is_a_usage_error(tmp_path):
    with pytest.raises(bk.UsageError, match="no such file or directory"):
        bk.files(tmp_path / "nope")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 directory")
def test_unreadable_directory_is_logged_counted_and_skipped(tree):
    locked = tree / "a" / "b"
    locked.chmod(0)
    try:
        walk = bk.files(tree)
        assert "a/b/three.txt" not in rels(walk, tree)
        assert [os.path.relpath(p, tree) for p, _ in walk.errors] == ["a/b"]
    finally:
        locked.chmod(0o755)


WALK_AS_NOBODY = """
import json, os, sys
import batchkit as bk
import batchkit.backends.serial  # import everything first: the interpreter lives under /root
os.setgid(65534); os.setuid(65534)
walk = bk.files(sys.argv[1])
report = bk.run(lambda p: p.name, walk, backend="serial", progress=False)
print(json.dumps([report.succeeded, report.ok, report.input_errors]))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to the 'nobody' user")
def test_unreadable_directory_reaches_the_report_as_another_user():
    # As root nothing is unreadable, so walk as 'nobody' over a tree with a chmod 000 directory.
    import json
    import shutil
    import subprocess
    import sys
    import tempfile

    from conftest import python_env

    root = tempfile.mkdtemp(prefix="bk-perm-", dir="/tmp")
    try:
        os.chmod(root, 0o755)
        for d in ("ok", "locked"):
            os.mkdir(os.path.join(root, d), 0o755)
            with open(os.path.join(root, d, "f.txt"), "w") as f:
                f.write(d)
        os.chmod(os.path.join(root, "locked"), 0)
        env = python_env()
        out = subprocess.run([sys.executable, "-c", WALK_AS_NOBODY, root], capture_output=True, text=True,
                             env=env, cwd="/", timeout=60)
        assert out.returncode == 0, out.stderr
        succeeded, ok, errors = json.loads(out.stdout)
        assert succeeded == 1 and ok is False
        assert errors == [[os.path.join(root, "locked"), "Permission denied"]]
        assert "cannot read" in out.stderr  # logged as a warning
    finally:
        os.chmod(os.path.join(root, "locked"), 0o755)
        shutil.rmtree(root)


def test_symlink_loop_terminates(tree):
    os.symlink(tree / "a", tree / "a" / "b" / "loop")
    os.symlink(tree / "top.txt", tree / "link.txt")
    assert "link.txt" not in rels(bk.files(tree), tree)  # symlinks not followed by default
    found = rels(bk.files(tree, follow_symlinks=True), tree)
    assert "link.txt" in found
    # The loop points back at a/, already walked: nothing under it is yielded a second time.
    assert not [f for f in found if f.startswith("a/b/loop")]
    assert sorted(found) == sorted([".dot.txt", ".hidden/secret.txt", "a/b/three.txt", "a/one.log",
                                    "a/two.txt", "link.txt", "top.txt"])
