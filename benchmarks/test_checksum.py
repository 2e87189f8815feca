"""pytest-benchmark suite of the checksum job through the CLI, against xargs and GNU parallel."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest

from .checksum import batchkit_exe, bench_dir, cli_ready, make_tree

CASES = {
    "xargs": "find {root} -type f -print0 | xargs -0 -P2 -n500 sha256sum",
    "parallel": "find {root} -type f -print0 | parallel --will-cite -0 -j2 -X sha256sum",
    "batchkit": "{exe} run checksum {root} --workers 2",
    "batchkit --no-journal": "{exe} run checksum {root} --workers 2 --no-journal",
}


@pytest.fixture(scope="module")
def tree(sizes):
    return make_tree(sizes.files)


@pytest.mark.parametrize("name", list(CASES))
def test_checksum(benchmark, sizes, tree, tmp_path, name):
    if name == "parallel" and shutil.which("parallel") is None:
        pytest.skip("GNU parallel is not installed (Debian package `parallel`)")
    if name.startswith("batchkit"):
        why = cli_ready()
        if why:
            pytest.skip(why)
    out = tmp_path / "manifest"
    exe = shlex.quote(batchkit_exe() or "batchkit")
    cmd = CASES[name].format(root=shlex.quote(str(tree)), exe=exe) + f" > {shlex.quote(str(out))}"
    if not name.startswith("batchkit"):
        subprocess.run(cmd, shell=True, check=True)  # warm the page cache (the peers run first)

    def once() -> int:
        return subprocess.run(cmd, shell=True, stderr=subprocess.DEVNULL).returncode

    benchmark.group = "checksum"
    benchmark.extra_info["files"] = sizes.files
    code = benchmark.pedantic(once, rounds=sizes.file_rounds, iterations=1)
    assert code == 0
    with open(out, "rb") as f:
        assert sum(1 for _ in f) == sizes.files
    assert bench_dir().is_dir()
