"""Integration: a real Prefect server (SQLite) on 127.0.0.1, the prefect.yaml deployment, a worker.

Starts ``prefect server start`` in a temporary PREFECT_HOME with its scheduler service looping every
2 s and its log kept; creates the ``neurorecon`` process work pool and registers prefect.yaml with
``prefect deploy --all``. Then:

1. the scheduler service creates SCHEDULED runs for the shipped ``0 2 * * *`` cron schedule;
2. the same deployment, redeployed with a ``* * * * *`` cron schedule and parameters pointing at a folder
   holding one small phantom, gets a run *from the scheduler*; when it is due, ``prefect worker start
   --run-once`` executes it and it completes with its outputs;
3. a run triggered by hand finds nothing left to do (the finished volume is skipped);
4. the server's log holds no error of any service (Prefect 3.8 with SQLAlchemy 2.1 logged one on every
   scheduler loop and never created a run).
"""

from __future__ import annotations

import datetime as dt
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
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEPLOYMENT = "batch/nightly-batch"

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


def wait_for_scheduled_runs(api: str, *, after: dt.datetime, timeout_s: float = 60) -> list[dict]:
    """The SCHEDULED runs the scheduler service created (auto-scheduled) starting after ``after``."""
    deadline = time.time() + timeout_s
    while True:
        runs = [r for r in flow_runs(api)
                if r["state"]["type"] == "SCHEDULED" and r.get("auto_scheduled")
                and dt.datetime.fromisoformat(r["expected_start_time"]) >= after]
        if runs or time.time() > deadline:
            return sorted(runs, key=lambda r: r["expected_start_time"])
        time.sleep(1)


def server_errors(log: Path) -> list[str]:
    text = log.read_text(errors="replace")
    return [line for line in text.splitlines() if "Traceback" in line or "| ERROR" in line
            or " ERROR " in line or "Error:" in line]


@pytest.fixture
def server(tmp_path):
    port = free_port()
    home = tmp_path / "prefect_home"
    log = tmp_path / "server.log"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path, env={**env, "PREFECT_LOGGING_LEVEL": "INFO"}, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"prefect server did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(1)
        yield env, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # stop the server by its PID (and its process group)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_the_scheduler_creates_the_nightly_runs_a_worker_executes_them_and_finished_volumes_are_skipped(
        server, tmp_path):
    from pipeline.io.phantom import write_phantom
    from pipeline.synth import PhantomParams

    env, log = server
    api = env["PREFECT_API_URL"]
    incoming, runs = tmp_path / "incoming", tmp_path / "runs"
    write_phantom(incoming / "tiny.zarr", PhantomParams(shape=(16, 64, 64), chunks=(16, 64, 64), seed=4,
                                                       n_neurons=1, n_ais=1), progress=False)
    config = tmp_path / "batch.yaml"
    # no raw or out: the batch sets them per volume
    config.write_text("segment:\n  block_shape: [16, 64, 64]\ndask:\n  n_workers: 1\n")
    prefect("work-pool", "create", "neurorecon", "--type", "process", env=env)

    # 1. the shipped file and its nightly cron schedule
    shipped = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert shipped["deployments"][0]["schedules"][0]["cron"] == "0 2 * * *"
    now = dt.datetime.now(dt.UTC)
    prefect("--no-prompt", "deploy", "--all", env=env)
    nightly = wait_for_scheduled_runs(api, after=now)
    assert nightly, f"the scheduler created no run in 60 s; server log:\n{log.read_text()[-4000:]}"
    assert all(dt.datetime.fromisoformat(r["expected_start_time"]).hour == 2 for r in nightly)

    # 2. every minute, on the test's folder: the scheduler creates the run, the worker executes it
    params = {"input_dir": str(incoming), "output_root": str(runs), "config": str(config)}
    nightly_batch = shipped["deployments"][0]
    minutely = {**shipped, "deployments": [{
        **nightly_batch, "parameters": {**nightly_batch["parameters"], **params},
        "schedules": [{"cron": "* * * * *", "timezone": "UTC", "active": True}],
    }]}
    test_file = tmp_path / "prefect.yaml"
    test_file.write_text(yaml.safe_dump(minutely))
    now = dt.datetime.now(dt.UTC)
    prefect("--no-prompt", "deploy", "--all", "--prefect-file", str(test_file), env=env)
    deployed = dt.datetime.now(dt.UTC)
    scheduled = wait_for_scheduled_runs(api, after=now)
    assert scheduled, f"the scheduler created no run in 60 s; server log:\n{log.read_text()[-4000:]}"
    first = scheduled[0]
    due = dt.datetime.fromisoformat(first["expected_start_time"])
    assert due - deployed <= dt.timedelta(seconds=61)  # the next minute after the deployment
    time.sleep(max(0.0, (due - dt.datetime.now(dt.UTC)).total_seconds()))
    prefect("worker", "start", "--pool", "neurorecon", "--run-once", env=env, timeout=600)
    done = {r["id"]: r for r in flow_runs(api)}
    assert done[first["id"]]["state"]["type"] == "COMPLETED", done[first["id"]]["state"]
    assert done[first["id"]]["parameters"]["input_dir"] == str(incoming)
    assert (runs / "tiny" / "report.html").is_file()
    assert (runs / "tiny" / "segmentation.zarr" / "zarr.json").is_file()
    mark = (runs / "tiny" / "COMPLETE").stat().st_mtime_ns

    # 3. by hand: nothing left to do
    before = {r["id"] for r in flow_runs(api)}
    prefect("deployment", "run", DEPLOYMENT, env=env)
    prefect("worker", "start", "--pool", "neurorecon", "--run-once", env=env, timeout=600)
    manual = [r for r in flow_runs(api) if r["id"] not in before and not r.get("auto_scheduled")]
    assert [r["state"]["type"] for r in manual] == ["COMPLETED"], manual
    assert (runs / "tiny" / "COMPLETE").stat().st_mtime_ns == mark, "the finished volume was processed again"

    # 4. no service failed on the way
    assert not server_errors(log), "\n".join(server_errors(log)[:20])
