"""The command line as a user meets it: help texts, clear errors, exit codes (run as subprocesses)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    full_env = {**os.environ, "COLUMNS": "120", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, cwd=cwd or REPO, env=full_env,
        timeout=600,
    )


def commands() -> list[str]:
    from flows.cli import app

    return sorted(c.name or c.callback.__name__ for c in app.registered_commands)


def test_top_level_help_lists_every_command():
    out = run_cli("--help")
    assert out.returncode == 0, out.stderr
    for name in commands():
        assert name in out.stdout


@pytest.mark.parametrize("name", commands())
def test_every_command_has_help(name):
    out = run_cli(name, "--help")
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout and len(out.stdout) > 200


def test_bad_config_key_is_one_clear_message_without_traceback(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("synth:\n  seeed: 1\n")
    out = run_cli("synth", "--config", str(cfg), "--out", str(tmp_path / "x.zarr"))
    assert out.returncode == 2
    assert "unknown key 'synth.seeed'" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "x.zarr").exists()


def test_bad_env_override_is_reported():
    out = run_cli("synth", "--out", "/tmp/never.zarr", env={"NEURORECON__SYNTH__SHAPE": "[0, 1, 1]"})
    assert out.returncode == 2
    assert "synth.shape" in out.stderr and "Traceback" not in out.stderr


def test_bad_option_value_is_a_usage_error(tmp_path):
    out = run_cli("synth", "--out", str(tmp_path / "x.zarr"), "--shape", "1,2")
    assert out.returncode == 2
    assert "--shape" in out.stderr


@pytest.mark.parametrize("kind", ["neurons", "ais"])
def test_synth_kind_flag_writes_that_kind(tmp_path, kind):
    import json

    out = run_cli("synth", "--out", str(tmp_path / "v.zarr"), "--kind", kind, "--shape", "32,128,128",
                  "--seed", "3")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "v_gt" / "params.json").read_text())["kind"] == kind
    assert (tmp_path / "v_gt" / "ais.csv").is_file()
    assert (tmp_path / "v.zarr" / "labels" / "ground_truth").is_dir()


def test_an_invalid_option_value_names_the_option_and_what_it_takes(tmp_path):
    out = run_cli("synth", "--out", str(tmp_path / "v.zarr"), "--kind", "axons")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    expected = "error: invalid command-line option --kind: Input should be 'neurons' or 'ais' (got 'axons')"
    assert expected in out.stderr
    assert not (tmp_path / "v.zarr").exists()
