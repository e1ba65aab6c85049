"""Static checks of docker/Dockerfile and docker/compose.yaml.

There is no Docker engine on the CI machines; these static checks are what CI can do. hadolint and
check-jsonschema (with its vendored compose-spec schema) come with the test extra; the other tests read
the files themselves: the image installs the tested torch, its health check needs a GPU, each GPU worker
owns one GPU, and the services that need no GPU are healthy without one.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent
GPU_CHECK = ["neurorecon", "gpu-check"]


def run(tool: str, *args: str) -> subprocess.CompletedProcess:
    exe = BIN / tool
    assert exe.exists(), (
        f"{tool} is not installed in {BIN}; install the test extra (pip install -e '.[test]')"
    )
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current += " " + stripped.removesuffix("\\")
        if not stripped.endswith("\\"):
            keyword, _, args = current.strip().partition(" ")
            instructions.append((keyword.upper(), args.strip()))
            current = ""
    return instructions


def pip_installs() -> list[list[str]]:
    """The words of each `pip install` command in the Dockerfile's RUN instructions, from `install` on."""
    installs = []
    for keyword, args in dockerfile_instructions():
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;|\|\|", args):
            words = shlex.split(command)
            if "pip" in words and "install" in words[words.index("pip") :]:
                installs.append(words[words.index("install", words.index("pip")) :])
    return installs


def compose_services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]


def gpu_reservations(service: dict[str, Any]) -> list[dict[str, Any]]:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return [device for device in devices if "gpu" in device.get("capabilities", [])]


def uses_neurorecon_image(service: dict[str, Any]) -> bool:
    return "build" in service or str(service.get("image", "")).startswith("neurorecon")


def test_dockerfile_passes_hadolint():
    out = run("hadolint", str(DOCKER / "Dockerfile"))
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_file_matches_the_compose_spec():
    out = run("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(DOCKER / "compose.yaml"))
    assert out.returncode == 0, out.stdout + out.stderr


def test_image_runs_as_non_root_and_compose_keeps_secrets_out():
    users = [args for keyword, args in dockerfile_instructions() if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    password = compose_services()["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert password.startswith("${POSTGRES_PASSWORD"), "the database password must come from the environment"


def test_image_installs_the_torch_pinned_in_constraints():
    bases = [args for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert bases and all(base.startswith("python:3.11") for base in bases), (
        f"FROM {bases}: build on python:3.11 (the tested Python), not on an image with its own torch"
    )
    pins = re.findall(r"^torch==(\S+)", (ROOT / "constraints.txt").read_text(), flags=re.MULTILINE)
    assert len(pins) == 1, "constraints.txt must pin torch exactly once"
    installs = pip_installs()
    assert installs, "the Dockerfile installs nothing with pip"
    for words in installs:
        assert "constraints.txt" in words and words[words.index("constraints.txt") - 1] == "-c", (
            f"`pip {' '.join(words)}` must install with `-c constraints.txt`, the file as tested"
        )
    torch_installs = [words for words in installs if any(re.match(r"torch\b", word) for word in words)]
    assert torch_installs, "the Dockerfile must install torch itself"
    for words in torch_installs:
        assert "torch" in words and not any(re.match(r"torch\W", word) for word in words), (
            f"`pip {' '.join(words)}` must name plain `torch`, so the constraints.txt pin decides its version"
        )


def test_image_health_check_needs_a_usable_gpu():
    checks = [args for keyword, args in dockerfile_instructions() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1, f"expected one HEALTHCHECK, found {len(checks)}"
    _, _, command = checks[0].partition(" CMD ")
    assert json.loads(command) == GPU_CHECK, f"HEALTHCHECK must run {GPU_CHECK}, not {command}"


def test_each_gpu_worker_reserves_its_own_gpu_and_one_task_at_a_time():
    services = compose_services()
    gpu_services = {name: service for name, service in services.items() if gpu_reservations(service)}
    assert gpu_services, "compose.yaml has no GPU worker"
    device_ids: dict[str, str] = {}
    for name, service in gpu_services.items():
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1 and "count" not in devices[0], f"{name}: reserve one device, by id"
        assert devices[0]["driver"] == "nvidia", name
        ids = devices[0].get("device_ids", [])
        assert len(ids) == 1, f"{name} reserves devices {ids}; a GPU worker reserves exactly one"
        assert ids[0] not in device_ids, f"{name} and {device_ids.get(ids[0])} share GPU {ids[0]}"
        device_ids[ids[0]] = name
        assert service.get("deploy", {}).get("replicas", 1) == 1, f"{name}: one replica per GPU"
        command = " ".join(service["command"])
        for option in ("--resources GPU=1", "--nthreads 1", "--nworkers 1"):
            assert option in command, f"{name} must run `dask worker ... {option}`"
        assert "healthcheck" not in service, f"{name} must keep the image's health check ({GPU_CHECK})"
    for name, service in services.items():
        if "GPU=" in " ".join(service.get("command", [])):
            assert name in gpu_services, f"{name} declares GPU resources but reserves no GPU"


def test_services_without_a_gpu_are_healthy_without_one():
    services = {
        name: service
        for name, service in compose_services().items()
        if uses_neurorecon_image(service) and not gpu_reservations(service)
    }
    assert services, "compose.yaml has no neurorecon service without a GPU"
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check, f"{name} needs no GPU but inherits the image's GPU health check; override it"
        if check.get("disable") is True:
            continue
        test = check["test"]
        test = test if isinstance(test, str) else " ".join(test)
        for gpu_word in ("gpu-check", "cuda", "nvidia-smi"):
            assert gpu_word not in test, f"{name}'s health check `{test}` needs a GPU"
