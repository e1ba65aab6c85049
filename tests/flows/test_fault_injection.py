"""Kill -9 or Ctrl-C during ``neurorecon segment`` (issues 8, 18): the run, or one Dask worker; the result
is unchanged.

A reduced version of ``benchmarks/bench_fault_injection.py`` (whose functions it uses): the real
command line as subprocesses in their own process group, a 2-block phantom, one uninterrupted
reference run, then (1) the whole run killed as soon as the first block is predicted and rerun, and
(2) one Dask worker killed at the same point, (3) a Ctrl-C (SIGINT to the process group) at a random
time. All must end bit-identical to the reference, with every chunk of every output array readable; the
Ctrl-C must also stop the run within 10 s (exit 130, one ``interrupted`` line, nothing left running), as
must SIGTERM to the group and SIGINT to the main process (no rerun).
A kill that lands after the run ended still has to pass.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def segment_run(bench, tmp_path_factory):
    """The workspace of ``neurorecon segment`` on a (32, 64, 128) phantom, with its reference run."""
    work = tmp_path_factory.mktemp("faults")
    raw = bench.make_phantom(work, shape=(32, 64, 128), seed=3)
    ws = bench.Workspace(work, "segment")
    bench.write_config(ws.config, raw=raw, out=ws.out, root=work, block_shape=(32, 64, 64))
    rc, seconds, leftovers = bench.run_to_completion(ws, timeout=600)
    assert rc == 0, (work / "logs" / "segment-01.log").read_text()[-3000:]
    assert leftovers == []
    ws.out.rename(ws.reference)
    return ws, seconds


@pytest.mark.parametrize("fault", ["run", "worker"])
def test_segment_survives_a_kill(bench, segment_run, fault):
    ws, seconds = segment_run
    trial = bench.run_trial(ws, index=1, fault=fault, kill_at_s=seconds, rng=random.Random(0), n_blocks=2,
                            timeout=max(300.0, 8 * seconds), after_marker="predict")
    logs = sorted((ws.work / "logs").glob("*.log"))
    assert trial.completed, f"{trial}\n{logs[-1].read_text()[-3000:]}"
    if fault == "run" and trial.killed.startswith("process group"):
        assert trial.first_rc == -9 and trial.reruns == 1
    assert trial.diffs == [], trial
    # every chunk of the reference's arrays (3 arrays of 16 level-0 chunks, plus the label pyramids' levels)
    n_reference, _ = bench.unreadable_chunks(ws.reference)
    assert n_reference > 3 * 16
    assert trial.chunk_problems == [] and trial.chunks_read == n_reference, trial
    assert trial.leftovers == [], trial  # no process of the run outlives it


def test_segment_stopped_by_ctrl_c_resumes_bit_identically(bench, segment_run):
    ws, seconds = segment_run
    rng = random.Random(18)
    at = rng.uniform(0.2, 0.6) * seconds  # inside the work: the reference run had a cold start
    trial = bench.run_trial(ws, index=2, fault="SIGINT-group", kill_at_s=at, rng=rng, n_blocks=2,
                            timeout=max(300.0, 8 * seconds))
    logs = sorted((ws.work / "logs").glob("*.log"))
    where = f"Ctrl-C at {at:.1f} s of {seconds:.1f} s, during [{trial.at_kill}]"
    assert trial.stopped_cleanly, f"{where}: {trial}\n{logs[-2].read_text()[-3000:]}"
    assert trial.completed, f"{where}: {trial}\n{logs[-1].read_text()[-3000:]}"
    assert trial.diffs == [] and trial.chunk_problems == [], f"{where}: {trial}"
    assert trial.leftovers == [], trial


@pytest.mark.parametrize("fault", ["SIGTERM-group", "SIGINT-main"])
def test_segment_stops_within_10_s_on_the_other_signals(bench, segment_run, fault):
    """``scancel`` (SIGTERM to the group) and SIGINT to the main process alone; with ``run``, the other
    two combinations are in ``test_signals.py``."""
    ws, seconds = segment_run
    rng = random.Random(fault)
    at = rng.uniform(0.2, 0.6) * seconds  # inside the work: the reference run had a cold start
    trial = bench.run_trial(ws, index=3, fault=fault, kill_at_s=at, rng=rng, n_blocks=2,
                            timeout=max(300.0, 8 * seconds), rerun=False)
    log = sorted((ws.work / "logs").glob("*.log"))[-1].read_text()[-3000:]
    assert trial.killed != "nothing (run had ended)", f"the run ended before {at:.1f} s"
    assert trial.stopped_cleanly, f"{fault} at {at:.1f} s, during [{trial.at_kill}]: {trial}\n{log}"



@pytest.mark.parametrize(("rc", "last_line", "clean"), [
    (130, "interrupted (SIGINT): stopped neurorecon segment x.yaml; finished blocks are kept", True),
    (130, "predict: 1/2 blocks", False),  # exit code right, but no word of the interruption
    (-2, "segmentation: out/segmentation.zarr", True),  # during interpreter exit, all written
    (0, "segmentation: out/segmentation.zarr", True),
    (-2, "predict: 1/2 blocks", False),  # killed by the signal in the middle of the work
    (1, "segmentation: out/segmentation.zarr", False),
])
def test_a_signal_after_the_last_output_line_counts_as_a_clean_stop(bench, rc, last_line, clean):
    """Python puts back the default handlers while the interpreter shuts down, so a Ctrl-C in that last
    instant ends the process with -2: clean only if the command had printed its final line."""
    trial = bench.Trial(3, "segment", "SIGINT-main", 30.0, killed="SIGINT to main process 1",
                        at_kill="closing", first_rc=rc, exit_s=0.1, last_line=last_line)
    assert trial.stopped_cleanly is clean
    slow = bench.Trial(3, "segment", "SIGINT-main", 30.0, killed="SIGINT to main process 1",
                       at_kill="closing", first_rc=rc, exit_s=bench.SIGNAL_EXIT_S + 1, last_line=last_line)
    assert not slow.stopped_cleanly
