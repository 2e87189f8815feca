"""--help of every command and every ready-made job; help and listing stay light (no dask, no joblib)."""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

from batchkit.cli.main import COMMANDS, cli
from batchkit.jobs.find import list_jobs, readymade_dir

from conftest import PY, python_env

READY_MADE = sorted(p.stem for p in readymade_dir().glob("*.py") if not p.name.startswith("_"))
HEAVY = ("dask", "distributed", "joblib", "loky")


def test_the_ready_made_jobs_are_all_there():
    assert READY_MADE == ["checksum", "cleanup", "compress", "fetch", "shout", "system_status"]
    assert {j.name for j in list_jobs() if j.where == "ready-made"} == set(READY_MADE)


def test_top_level_help_lists_every_command_and_the_exit_codes():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.output
    for code in ("0", "1", "2", "3", "75", "130", "143"):
        assert f"\n    {code} " in result.output


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command):
    result = CliRunner().invoke(cli, [command, "--help"], prog_name="batchkit")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: batchkit {command}")


@pytest.mark.parametrize("job", READY_MADE)
def test_every_ready_made_job_has_help_with_its_own_options(job):
    result = CliRunner().invoke(cli, ["run", job, "--help"], prog_name="batchkit")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: batchkit run {job} [OPTIONS]")
    assert "--workers" in result.output and "--resume" in result.output and "Exit codes:" in result.output
    own = {"checksum": "--algorithm", "cleanup": "--older-than", "compress": "--level", "fetch": "--dest",
           "shout": "--suffix", "system_status": "--max-disk"}[job]
    assert own in result.output


PROBE = """
import sys
from batchkit.cli import main
try:
    main({args!r})
except SystemExit:
    pass
print("\\nLOADED=" + __import__("json").dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})))
"""


@pytest.mark.parametrize("args", [["--help"], ["jobs"], ["run", "checksum", "--help"], ["run", "--help"],
                                  ["exec", "--help"], ["run", "shout", "--help"]])
def test_help_and_listing_do_not_import_dask_distributed_or_joblib(args, tmp_path):
    run = subprocess.run([PY, "-c", PROBE.format(args=args, heavy=HEAVY)], capture_output=True, text=True,
                         env=python_env(), cwd=tmp_path, timeout=60)
    assert run.returncode == 0, run.stderr
    loaded = json.loads(run.stdout.rsplit("LOADED=", 1)[1])
    assert loaded == [], f"batchkit {' '.join(args)} imported {loaded}"
    assert "Usage:" in run.stdout or "checksum" in run.stdout


def test_importtime_confirms_the_console_script_stays_light(tmp_path):
    run = subprocess.run([PY, "-X", "importtime", "-m", "batchkit", "run", "checksum", "--help"],
                         capture_output=True, text=True, env=python_env(), cwd=tmp_path, timeout=60)
    assert run.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if "|" in line}
    assert "batchkit.cli.options" in imported  # (modules loaded by importlib.import_module are not listed)
    assert not [m for m in imported if m.split(".")[0] in HEAVY]
