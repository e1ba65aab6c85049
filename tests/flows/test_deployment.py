"""Integration: a real Prefect server (SQLite) on 127.0.0.1, the prefect.yaml deployment, a worker.

Starts ``prefect server start`` in a temporary PREFECT_HOME, creates the ``neurorecon`` process work pool,
registers every deployment of prefect.yaml with ``prefect deploy --all``, triggers the nightly batch
deployment on a folder holding one small phantom, lets ``prefect worker start --run-once`` execute it,
checks the run completed and its outputs exist, triggers it again (nothing left to do: the finished
volume is skipped), and stops the server by its PID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prefect(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    out = subprocess.run([str(BIN / "prefect"), *args], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, f"prefect {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out


def flow_runs(api: str) -> list[dict]:
    req = urllib.request.Request(f"{api}/flow_runs/filter", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def server(tmp_path):
    port = free_port()
    home = tmp_path / "prefect_home"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("prefect server did not start") from None
                time.sleep(1)
        yield env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # stop the server by its PID (and its process group)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_deployment_registers_runs_on_a_worker_and_skips_finished_volumes(server, tmp_path):
    from pipeline.io.phantom import write_phantom
    from pipeline.synth import PhantomParams

    incoming, runs = tmp_path / "incoming", tmp_path / "runs"
    write_phantom(incoming / "tiny.zarr", PhantomParams(shape=(16, 64, 64), chunks=(16, 64, 64), seed=4,
                                                       n_neurons=1, n_ais=1), progress=False)
    config = tmp_path / "batch.yaml"
    # no raw or out: the batch sets them per volume
    config.write_text("segment:\n  block_shape: [16, 64, 64]\ndask:\n  n_workers: 1\n  memory_limit: 4GiB\n")
    env = server
    prefect("work-pool", "create", "neurorecon", "--type", "process", env=env)
    prefect("--no-prompt", "deploy", "--all", env=env)
    params = ["-p", f"input_dir={incoming}", "-p", f"output_root={runs}", "-p", f"config={config}"]
    marks = []
    for attempt in range(2):
        prefect("deployment", "run", "batch/nightly-batch", *params, env=env)
        prefect("worker", "start", "--pool", "neurorecon", "--run-once", env=env, timeout=600)
        states = [r["state"]["type"] for r in flow_runs(env["PREFECT_API_URL"]) if r.get("deployment_id")]
        assert states.count("COMPLETED") == attempt + 1, states
        marks.append((runs / "tiny" / "COMPLETE").stat().st_mtime_ns)
    assert marks[0] == marks[1], "the finished volume was processed again"
    assert (runs / "tiny" / "report.html").is_file()
    assert (runs / "tiny" / "segmentation.zarr" / "zarr.json").is_file()
