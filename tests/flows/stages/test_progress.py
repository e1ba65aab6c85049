"""Watchable stages (issue 19): resumed blocks are reported, then blocks done / total with rate and time
left, and one summary line; inside a Prefect task the lines go to the run's log and the percentage to a
progress artifact."""

from __future__ import annotations

import logging
import re

import pytest

from flows.stages import progress as progress_module
from flows.stages.progress import BlockProgress, eta_text
from flows.stages.runner import run_blocks
from pipeline.blocks import block_grid
from pipeline.io.blockstate import BlockState

BLOCKS = block_grid((2, 2, 10), block_shape=(2, 2, 2))  # five blocks, ids 0-4


def _nothing(block):
    return {"id": block.id}


def test_eta_is_written_for_people():
    assert [eta_text(s) for s in (0.4, 59, 89, 90, 3599, 5400, 7500)] == [
        "0 s", "59 s", "89 s", "2 min", "60 min", "1 h 30 min", "2 h 05 min"]


def test_a_resumed_stage_reports_what_it_resumed_its_progress_and_one_summary(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(progress_module, "LOG_EVERY_S", 0.0)  # a line after every block
    state = BlockState(tmp_path, "demo")
    for b in BLOCKS[:2]:
        state.mark_done(b.id, {})
    with caplog.at_level(logging.INFO, logger="flows.stages.progress"):
        report = run_blocks("demo", BLOCKS, _nothing, state=state, client=None, max_retries=0, progress=True)
    assert report.done == 3 and report.skipped == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "flows.stages.progress"]
    assert lines[0] == "demo: 2 of 5 blocks already done (resumed)"
    middle = lines[1:-1]
    assert [m.split(" blocks")[0] for m in middle] == ["demo: 3/5", "demo: 4/5"]
    assert all(re.fullmatch(r"demo: \d/5 blocks, [\d.e+]+ blocks/s, \d+ s left", m) for m in middle), middle
    assert re.fullmatch(r"demo: 5 blocks done \(3 in \d+ s, 2 resumed\)", lines[-1]), lines[-1]


def test_quiet_stages_log_only_at_debug(tmp_path, caplog):
    with caplog.at_level(logging.DEBUG, logger="flows.stages.progress"):
        run_blocks("quiet", BLOCKS, _nothing, state=BlockState(tmp_path, "quiet"), client=None, max_retries=0,
                   progress=False)
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "flows.stages.progress"] == [
        (logging.DEBUG, "quiet: 5 blocks done (5 in 0 s)")]


def test_a_failed_block_is_counted_in_the_summary(tmp_path, caplog):
    def fail_on_three(block):
        if block.id == 3:
            raise ValueError("bad block")
        return {}

    with caplog.at_level(logging.INFO, logger="flows.stages.progress"):
        report = run_blocks("f", BLOCKS, fail_on_three, state=BlockState(tmp_path, "f"), client=None,
                            max_retries=0, progress=True)
    assert list(report.failed) == [3]
    assert caplog.records[-1].getMessage().startswith("f: 4 of 5 blocks done, 1 failed")


@pytest.mark.usefixtures("prefect_api")
def test_inside_a_prefect_task_progress_goes_to_the_run_log_and_a_progress_artifact(tmp_path):
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    @task
    def stage() -> str:
        run_blocks("watched stage", BLOCKS, _nothing, state=BlockState(tmp_path, "w"), client=None,
                   max_retries=0, progress=True)
        return str(BlockProgress("probe", 1, 0).logger)  # which logger a stage uses inside a task

    @flow
    def watched() -> str:
        return stage()

    logger = watched()
    assert "prefect.task_runs" in logger
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["watched-stage-progress"])))
    assert artifacts and artifacts[0].type == "progress"
    assert float(artifacts[-1].data) == 100.0
