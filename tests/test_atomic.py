"""write_atomic: all or nothing, sensible permissions, no temp file left behind."""

from __future__ import annotations

import os

import pytest

from batchkit.atomic import write_atomic


def test_new_file_is_readable_by_others_and_existing_mode_is_kept(tmp_path):
    new = tmp_path / "sub" / "manifest.sha256"
    write_atomic(new, "abc  file\n")
    assert new.read_text() == "abc  file\n"
    assert new.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    private = tmp_path / "crontab"
    private.write_text("old\n")
    private.chmod(0o600)
    write_atomic(private, b"new\n")
    assert private.read_bytes() == b"new\n" and private.stat().st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == ["crontab", "sub"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "metrics.prom"
    target.write_text("old\n")
    with pytest.raises(TypeError):
        write_atomic(target, 12345)  # type: ignore[arg-type]
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["metrics.prom"]
