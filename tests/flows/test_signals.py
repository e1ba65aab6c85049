"""Ctrl-C and SIGTERM during ``neurorecon run`` (issue 18): prompt exit, nothing left running, resumable.

The real command line on a 2-block phantom, as subprocesses in their own session (the functions of
``benchmarks/bench_fault_injection.py``): one uninterrupted reference run, then SIGINT and SIGTERM, each
to the run's process group (a Ctrl-C in a terminal, ``scancel``) and to its main process alone, at a
random time of the run (seeded; the stage it was in is in the failure message). Each run must exit
within 10 s with status 130 / 143 and one ``interrupted`` line last, leave no process behind (its Dask
workers and its temporary Prefect API server included) and mark its Prefect flow run Crashed; after
one of them (a Ctrl-C to the group) one rerun must end bit-identical to the reference.
``benchmarks/bench_fault_injection.py --faults SIGINT-group ...`` reruns after every trial.
"""

from __future__ import annotations

import importlib.util
import random
import sqlite3
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_fault_injection",
                                                  REPO / "benchmarks" / "bench_fault_injection.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reconstruct_run(bench, tmp_path_factory):
    """The workspace of ``neurorecon run`` on a (32, 64, 128) phantom, with its reference run."""
    work = tmp_path_factory.mktemp("signals")
    raw = bench.make_phantom(work, shape=(32, 64, 128), seed=3)
    ws = bench.Workspace(work, "run")
    bench.write_config(ws.config, raw=raw, out=ws.out, root=work, block_shape=(32, 64, 64))
    rc, seconds, leftovers = bench.run_to_completion(ws, timeout=600)
    assert rc == 0, (work / "logs" / "run-01.log").read_text()[-3000:]
    assert leftovers == []
    ws.out.rename(ws.reference)
    return ws, seconds


def flow_run_states(home: Path) -> list[str]:
    """The state of every flow run in the database of one invocation's ``PREFECT_HOME`` (none if the
    run was stopped before its Prefect server had created the database)."""
    if not (home / "prefect.db").is_file():
        return []
    with sqlite3.connect(home / "prefect.db") as db:
        try:
            return [row[0] for row in db.execute("SELECT state_type FROM flow_run")]
        except sqlite3.OperationalError:  # no such table yet
            return []


@pytest.mark.parametrize(("fault", "rerun"), [("SIGINT-group", True), ("SIGTERM-main", False),
                                             ("SIGTERM-group", False), ("SIGINT-main", False)])
def test_a_signal_stops_the_run_within_10_s_and_a_rerun_resumes(bench, reconstruct_run, fault, rerun):
    ws, seconds = reconstruct_run
    rng = random.Random(f"signals-{fault}")
    # from once the flow has started (the Prefect server's start takes the first seconds) to near the end
    at = rng.uniform(0.25, 0.85) * seconds
    first = ws.n_invocations + 1
    trial = bench.run_trial(ws, index=1, fault=fault, kill_at_s=at, rng=rng, n_blocks=2,
                            timeout=max(300.0, 8 * seconds), rerun=rerun)
    log = sorted((ws.work / "logs").glob("*.log"))[-1].read_text()[-3000:]
    assert trial.killed != "nothing (run had ended)", f"the run ended before {at:.1f} s"
    where = f"{fault} at {at:.1f} s of {seconds:.1f} s, during [{trial.at_kill}]"
    assert trial.stopped_cleanly, f"{where}: {trial}\n{log}"
    states = flow_run_states(ws.work / "prefect" / f"run-{first:02d}")
    assert states in ([], ["CRASHED"]), f"{where}: flow run states {states}"  # [] if before the flow began
    if rerun:  # resuming does not depend on which signal stopped the run: one is rerun (the benchmark
        # reruns every trial)
        assert trial.reruns == 1 and trial.completed, f"{where}: {trial}\n{log}"
        assert trial.diffs == [] and trial.chunk_problems == [], f"{where}: {trial}"
