"""run_blocks on a real Dask cluster: a resource no worker offers is refused at once, and a block that kills
its worker by using too much memory is reported by id, with the cause and the fix."""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster

from flows.stages.runner import MEMORY_HINT, BlockRunReport, run_blocks
from pipeline.blocks import block_grid
from pipeline.errors import BlockFailure, ConfigError
from pipeline.io.blockstate import BlockState

#: Four blocks, ids 0-3 (their content does not matter here).
BLOCKS = block_grid((2, 2, 8), block_shape=(2, 2, 2))


@contextlib.contextmanager
def cluster(**kwargs: Any) -> Iterator[Client]:
    """A client of a new one-worker, one-thread LocalCluster of processes (each with a nanny)."""
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                     **kwargs) as local,
        Client(local) as client,
    ):
        yield client


def within(seconds: float, fn: Callable[[], Any]) -> Any:
    """``fn()``'s result (or its error), failing the test if it takes longer than ``seconds``: without
    the resource check the run would wait forever."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"run_blocks still running after {seconds} s: it waits for a worker that never comes")
    if "error" in box:
        raise box["error"]
    return box["result"]


def _ok(block):
    return {"block": block.id}


def _hungry(block, *, big_id):
    """Block ``big_id`` allocates and touches ~1.5 GB, far past a 400 MiB worker's limit, and holds it."""
    if block.id == big_id:
        ones = np.ones(1_500_000_000 // 8)
        time.sleep(10)  # the nanny kills the worker long before
        return {"sum": float(ones.sum())}
    return {"block": block.id}


def test_a_resource_no_worker_offers_is_refused_at_once_and_runs_where_offered(tmp_path):
    state = BlockState(tmp_path, "predict")
    run = functools.partial(run_blocks, "predict", BLOCKS, _ok, state=state, max_retries=0,
                            resources={"GPU": 1}, progress=False)
    with cluster(memory_limit="1GiB") as client:
        start = time.perf_counter()
        with pytest.raises(ConfigError, match=r"resources=\{'GPU': 1\}.*none of the 1 Dask worker\(s\).* "
                                              r"offers GPU=1 \(they offer: no resources\).*"
                                              r"--resources GPU=1 --nthreads 1"):
            within(20, lambda: run(client=client))
        assert time.perf_counter() - start < 5
        with pytest.raises(ConfigError, match=r"GPU=1.*Fix: set segment\.device: cpu$"):
            within(20, lambda: run(client=client, resource_hint="set segment.device: cpu"))
        assert state.done_ids() == set()
    with cluster(memory_limit="1GiB", resources={"GPU": 1}) as client:
        report = within(20, lambda: run(client=client))
    assert report.ok and report.done == 4 and state.done_ids() == {0, 1, 2, 3}


def test_a_block_that_kills_its_worker_for_memory_is_reported_with_the_fix(tmp_path):
    state = BlockState(tmp_path, "segment")
    hint = "lower segment.tile_shape or segment.block_shape, or raise dask.memory_limit"
    # No second chance for a task whose worker died (3 by default: minutes), and one block at a time on
    # the worker, so that only the big block is on it when it dies.
    config = {"distributed.scheduler.allowed-failures": 0, "distributed.scheduler.worker-saturation": 1.0}
    with dask.config.set(config), cluster(memory_limit="400MiB") as client:
        report = within(30, lambda: run_blocks("segment", BLOCKS, functools.partial(_hungry, big_id=1),
                                               state=state, client=client, max_retries=1, progress=False,
                                               memory_hint=hint))
    assert report.killed == [1] and sorted(report.failed) == [1]
    assert report.done == 3 and state.done_ids() == {0, 2, 3}
    assert "killed for exceeding its memory limit of 0.39 GiB" in report.killed_cause
    assert "KilledWorker" in report.failed[1] and hint in report.failed[1]
    expected = r"^stage 'segment': 1 of 4 blocks \(block ids \[1\]\) were lost with their Dask worker.*memory"
    with pytest.raises(BlockFailure, match=expected + ".*" + re.escape(hint)) as info:
        report.raise_if_failed()
    assert sorted(info.value.errors) == [1]


def test_killed_blocks_lead_the_failure_message_and_other_failures_keep_theirs():
    cause = f"most likely it was killed for exceeding its memory limit; {MEMORY_HINT}"
    report = BlockRunReport("segment", 8, done=5, killed=[6], killed_cause=cause,
                            failed={2: "Traceback ...\nValueError: bad voxel size", 6: "KilledWorker ...",
                                    7: "Traceback ...\nOSError: NFS hiccup"})
    with pytest.raises(BlockFailure) as info:
        report.raise_if_failed()
    message = str(info.value)
    assert message.startswith(f"stage 'segment': 1 of 8 blocks (block ids [6]) were lost with their Dask "
                              f"worker, which died while running them: {cause}; ")
    assert ("2 of 8 blocks failed after retries (block ids [2, 7]); first error: ValueError: bad voxel size"
            in message)
    assert sorted(info.value.errors) == [2, 6, 7]


class _ClientWithoutEvents:
    """A client whose scheduler kept no memory event (it was restarted, say); a nanny may have logged one."""

    def __init__(self, nanny_logs: dict[str, list[tuple[str, str]]]) -> None:
        self.nanny_logs = nanny_logs

    def get_events(self, topic: str) -> Any:
        raise OSError("scheduler unreachable")

    def get_worker_logs(self, *, nanny: bool) -> dict[str, list[tuple[str, str]]]:
        return self.nanny_logs if nanny else {}

    def scheduler_info(self, n_workers: int) -> dict[str, Any]:
        return {"workers": {"tcp://w:2": {"memory_limit": 2**30, "resources": {}}}}


@pytest.mark.parametrize("logged", [True, False])
def test_a_killed_worker_is_blamed_on_memory_from_the_nanny_log_or_as_most_likely(logged):
    from distributed import KilledWorker

    from flows.stages.runner import _explain_killed

    line = "Worker tcp://w:1 (pid=7) exceeded 95% memory budget. Restarting..."
    client = _ClientWithoutEvents({"tcp://w:2": [("WARNING", line)]} if logged else {})
    error = KilledWorker("segment-3-0", SimpleNamespace(address="tcp://w:1", memory_limit=0), 0)
    report = BlockRunReport("segment", 4, failed={3: "KilledWorker: ...\n"})
    _explain_killed(client, report, {3: error}, hint=MEMORY_HINT)
    assert report.killed == [3]
    lead = "it was killed" if logged else "most likely it was killed"
    assert report.killed_cause.startswith(f"{lead} for exceeding its memory limit of 1.00 GiB (")
    assert (f'its nanny logged "{line}"' in report.killed_cause) == logged
    assert report.killed_cause.endswith(f"; {MEMORY_HINT}")
    assert report.failed[3].startswith("KilledWorker: ...\nblock 3: its Dask worker tcp://w:1 died")


class _Counting:
    """A real client that counts the futures of ``run_blocks`` not yet finished each time one is submitted."""

    def __init__(self, client: Client) -> None:
        self.client, self.submitted, self.most_in_flight = client, [], 0

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        fut = self.client.submit(*args, **kwargs)
        self.submitted.append(fut)
        self.most_in_flight = max(self.most_in_flight, sum(not f.done() for f in self.submitted))
        return fut

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_blocks_are_submitted_in_a_bounded_window(tmp_path, monkeypatch):
    from flows.stages import runner

    monkeypatch.setattr(runner, "MAX_IN_FLIGHT", 2)
    blocks = block_grid((2, 2, 14), block_shape=(2, 2, 2))  # seven blocks
    with cluster() as client:
        counting = _Counting(client)
        report = run_blocks("window", blocks, functools.partial(_sleepy, seconds=0.05),
                            state=BlockState(tmp_path, "window"), client=counting, max_retries=0,
                            progress=False)
    assert report.done == 7 and not report.failed
    assert len(counting.submitted) == 7
    assert counting.most_in_flight == 2


def _sleepy(block: Any, *, seconds: float) -> dict:
    time.sleep(seconds)
    return {"id": block.id}
