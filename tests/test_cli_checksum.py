"""The checksum job end to end: manifests that real `sha256sum -c` accepts, --verify, --algorithm."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchkit.cli.main import cli

from conftest import PY, python_env

pytestmark = pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs coreutils sha256sum")

NAMES = ["plain", "with space", "back\\slash", "new\nline", "both\\and\nnewline", "quote'\"s", "ünïcödé",
         "-leading-dash", "sub/dir/deep.txt", "star*"]


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "data"
    for i, name in enumerate(NAMES):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"content {i}\n".encode() * (i + 1))
    return root


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_manifest_on_stdout_passes_a_real_sha256sum_check_with_escaped_names(tree, tmp_path):
    # A real shell pipeline, as a user would type it, run from the tree's parent directory.
    cmd = f"{PY} -m batchkit run checksum data --workers 2 > manifest && sha256sum -c --strict manifest"
    run = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=python_env(), capture_output=True, timeout=90)
    assert run.returncode == 0, run.stderr.decode()
    manifest = (tmp_path / "manifest").read_bytes()
    assert manifest.count(b"\n") == len(NAMES)
    # coreutils' escaping, byte for byte: a leading backslash, then \\ and \n in the name.
    assert b"  data/back\\\\slash\n" in manifest and b"  data/new\\nline\n" in manifest
    assert run.stdout.decode().count(": OK") == len(NAMES)
    # The same digests as sha256sum computes itself.
    ours = sorted(manifest.splitlines())
    theirs = subprocess.run(["bash", "-c", "find data -type f -print0 | xargs -0 sha256sum"], cwd=tmp_path,
                            capture_output=True, timeout=60).stdout
    assert ours == sorted(theirs.splitlines())
    # The summary went to stderr, not into the manifest.
    assert b"checksum: 10 succeeded, 0 failed" in run.stderr


def test_manifest_file_and_verify_find_mismatches_and_missing_files(tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = invoke("run", "checksum", "data", "--manifest", "data.sha256", "--backend", "thread")
    assert first.exit_code == 0, first.output
    assert "checksum: 10 succeeded" in first.stdout  # stdout is free: the summary goes there
    assert subprocess.run(["sha256sum", "-c", "--quiet", "data.sha256"], capture_output=True).returncode == 0

    ok = invoke("run", "checksum", "data", "--verify", "data.sha256", "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["succeeded"] == 10

    (tree / "new\nline").write_text("tampered")
    (tree / "plain").unlink()
    bad = invoke("run", "checksum", "data", "--verify", "data.sha256", "--json")
    assert bad.exit_code == 1
    summary = json.loads(bad.stdout)
    failures = {f["key"]: f["type"] for f in summary["failures"]}
    assert failures == {"data/new\nline": "ChecksumMismatch", "data/plain": "FileNotFoundError"}
    assert summary["succeeded"] == 8


def test_other_algorithms_write_manifests_their_coreutils_tool_accepts(tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for algorithm, tool in (("md5", "md5sum"), ("sha512", "sha512sum")):
        result = invoke("run", "checksum", "data", "--algorithm", algorithm, "--manifest", f"m.{algorithm}",
                        "--backend", "serial")
        assert result.exit_code == 0, result.output
        check = subprocess.run([tool, "-c", "--strict", f"m.{algorithm}"], capture_output=True)
        assert check.returncode == 0, check.stderr


def test_unknown_algorithm_is_refused_before_any_item_runs(tree, tmp_path):
    result = invoke("run", "checksum", str(tree), "--algorithm", "sha999")
    assert result.exit_code == 2
    assert "unknown --algorithm 'sha999'" in result.stderr
    db = Path(tmp_path / "bkhome" / "batchkit.db")
    if db.exists():  # no run was even recorded
        assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_a_file_that_cannot_be_read_fails_its_item_and_stays_out_of_the_manifest(tree, tmp_path):
    from batchkit.jobs.find import find_job

    checksum = find_job("checksum")
    manifest = tmp_path / "m"
    # The same job object from Python: explicit items, one of which cannot be opened.
    report = checksum.run([tree / "plain", tree / "gone", tree / "sub"], manifest=manifest, backend="serial",
                          progress=False)
    assert [(o.item.name, o.ok) for o in report.outcomes] == [("plain", True), ("gone", False), ("sub", False)]
    assert manifest.read_bytes().count(b"\n") == 1 and manifest.read_bytes().endswith(b"/data/plain\n")


def test_the_readme_cron_example_twice_keeps_its_manifest_out_of_itself(tmp_path):
    """README: `checksum /data --manifest /data/SHA256SUMS` (the manifest inside the tree it hashes),
    run nightly: from the second run on it must not list itself, and `sha256sum -c` must pass."""
    import subprocess

    from conftest import PY, python_env

    data = tmp_path / "data"
    data.mkdir()
    for i in range(20):
        (data / f"f{i}.txt").write_text(f"file {i}\n")
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    manifest = data / "SHA256SUMS"
    for night in (1, 2):
        run = subprocess.run([PY, "-m", "batchkit", "run", "checksum", str(data), "--manifest", str(manifest),
                              "--quiet"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, (night, run.stderr)
        lines = manifest.read_text().splitlines()
        assert len(lines) == 20 and not any(line.endswith("SHA256SUMS") for line in lines)
        check = subprocess.run(["sha256sum", "-c", "--quiet", str(manifest)], cwd="/", capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    verify = subprocess.run([PY, "-m", "batchkit", "run", "checksum", str(data), "--verify", str(manifest), "--json"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stderr


def test_a_manifest_cut_short_by_a_closed_pipe_fails_the_run(tmp_path):
    """`batchkit run checksum ROOT | head -c 100`: the manifest (bigger than a pipe's buffer) is
    truncated, so the run must not exit 0; it stops like SIGPIPE (141) and stays resumable."""
    import subprocess
    import sys

    from conftest import python_env

    tree = tmp_path / "big"
    tree.mkdir()
    for i in range(2000):  # ~250 KB of manifest: more than the 64 KB a pipe holds
        (tree / f"{i:05d}-{'x' * 60}.dat").write_text(str(i))
    env = python_env()
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    pipeline = f"{sys.executable} -m batchkit run checksum {tree} | head -c 100"
    res = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert len(res.stdout) == 100
    assert res.returncode == 141, res.stderr
    assert "Traceback" not in res.stderr and "error" not in res.stderr.lower()
    import sqlite3

    con = sqlite3.connect(tmp_path / "home" / "batchkit.db")
    assert con.execute("SELECT state FROM runs").fetchall() == [("interrupted",)]
