"""Ctrl-C and SIGTERM during ``neurorecon run`` (issue 18): prompt exit, nothing left running, a crashed
flow run.

The real command line on a small 2-block phantom, as subprocesses in their own session (the functions of
``benchmarks/bench_fault_injection.py``): SIGINT to the run's process group (a Ctrl-C in a terminal)
and SIGTERM to its main process alone (Prefect's engine takes SIGTERM over while a flow runs), as soon
as the first block of a stage drawn at random (seeded) is done; SIGTERM to the group (``scancel``) and
SIGINT to the main process are sent to ``neurorecon segment`` in ``test_fault_injection.py``. Each run
must exit within 10 s with status 130 / 143 and one ``interrupted`` line last, leave no process behind
(its Dask workers and its temporary Prefect API server included) and leave its Prefect flow run
Crashed. That a rerun after a signal ends bit-identical to an uninterrupted run is tested in
``test_fault_injection.py`` (and by the benchmark's signal faults, which rerun every trial).
"""

from __future__ import annotations

import random
import re
import sqlite3
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
#: Stages of ``neurorecon run`` whose first finished block can trigger the signal.
STAGES = ("predict", "blocks", "relabel", "skeletonize")


@pytest.fixture(scope="module")
def workspace(bench, tmp_path_factory):
    """The workspace of ``neurorecon run`` on a (32, 64, 96) phantom (2 blocks)."""
    work = tmp_path_factory.mktemp("signals")
    raw = bench.make_phantom(work, shape=(32, 64, 96), seed=3)
    ws = bench.Workspace(work, "run")
    bench.write_config(ws.config, raw=raw, out=ws.out, root=work, block_shape=(32, 32, 96))
    return ws


def flow_run_states(home: Path) -> list[str]:
    """The state of every flow run in the database of one invocation's ``PREFECT_HOME``."""
    with sqlite3.connect(home / "prefect.db") as db:
        return [row[0] for row in db.execute("SELECT state_type FROM flow_run")]


@pytest.mark.parametrize("fault", ["SIGINT-group", "SIGTERM-main"])  # the others: test_fault_injection.py
def test_a_signal_stops_the_run_within_10_s(bench, workspace, fault):
    ws = workspace
    rng = random.Random(f"signals-{fault}")
    stage = rng.choice(STAGES)
    invocation = ws.n_invocations + 1
    trial = bench.run_trial(ws, index=1, fault=fault, kill_at_s=0.0, rng=rng, n_blocks=2, timeout=600,
                            after_marker=stage, rerun=False)
    full_log = sorted((ws.work / "logs").glob("*.log"))[-1].read_text()
    log = full_log[-3000:]
    where = f"{fault} after the 1st {stage} block, at {trial.kill_at_s:.1f} s, during [{trial.at_kill}]"
    assert trial.killed != "nothing (run had ended)", f"{where}: the run had ended"
    assert trial.stopped_cleanly, f"{where}: {trial}\n{log}"
    states = flow_run_states(ws.work / "prefect" / f"run-{invocation:02d}")
    assert states == ["CRASHED"], f"{where}: flow run states {states}"
    assert trial.strays == [], f"{where}: temporary files left: {trial.strays}"
    # quiet logs (issue 19): Dask's routine INFO lines (in either format) stay out, and so do the task
    # runner's ("dashboard is available": there is none). A worker the signal reached before it was
    # stopped may log one ERROR on its way out (a missed heartbeat); that is no routine chatter.
    chatter = [line for line in full_log.splitlines()
               if "| INFO    | distributed." in line
               or re.match(r"\d{4}-\d\d-\d\d [\d:,]+ - distributed\.\S+ - INFO - ", line)
               or "| INFO    | prefect.task_runner.dask" in line]
    assert not chatter, chatter[:5]
