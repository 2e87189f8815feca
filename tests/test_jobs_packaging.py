"""The ready-made jobs install with the package: built as setuptools builds the wheel, then run
from a directory that has no jobs/ of its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PY

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The package as `pip install` would lay it out (setuptools build_py, no network)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("batchkit", "jobs"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    out = tmp_path_factory.mktemp("lib")
    subprocess.run([PY, "-c", "import setuptools; setuptools.setup()", "-q", "build_py", "--build-lib", str(out)],
                   cwd=src, check=True, capture_output=True, timeout=120)
    return out


def test_every_package_and_ready_made_job_is_in_the_build(built):
    packages = {p.parent.relative_to(REPO) for p in (REPO / "batchkit").rglob("__init__.py")}
    missing = [str(p) for p in packages if not (built / p / "__init__.py").exists()]
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"
    jobs = sorted(p.name for p in (REPO / "jobs").glob("*.py") if not p.name.startswith("_"))
    assert jobs and sorted(p.name for p in (built / "batchkit" / "_jobs").glob("*.py")) == jobs


def test_installed_checksum_runs_from_any_directory(built, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("hello")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(built)
    env["BATCHKIT_HOME"] = str(tmp_path / "home")
    where = subprocess.run([PY, "-c", "import batchkit, batchkit.jobs.find as f; print(batchkit.__file__); "
                                      "print(f.readymade_dir())"],
                           capture_output=True, text=True, env=env, cwd=elsewhere, timeout=60)
    module_file, jobs_dir = where.stdout.split()
    assert module_file.startswith(str(built)) and jobs_dir == str(built / "batchkit" / "_jobs")
    run = subprocess.run([PY, "-m", "batchkit", "run", "checksum", str(data), "--manifest", str(tmp_path / "m"),
                          "--backend", "thread", "--json"],
                         capture_output=True, text=True, env=env, cwd=elsewhere, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["succeeded"] == 1
    assert (tmp_path / "m").read_text().endswith(f"  {data / 'f'}\n")
