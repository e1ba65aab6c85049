"""The batch flow fails a volume with the error that failed it, and goes on with the others."""

from __future__ import annotations

import numpy as np
import pytest

from flows.batch import batch_flow, pending_volumes
from pipeline.errors import BlockFailure, InputDataError, OutputError
from pipeline.io.omezarr import write_image


def test_a_bad_volume_fails_the_batch_as_bad_input_not_as_failed_blocks(prefect_api, tmp_path, monkeypatch):
    monkeypatch.setenv("NEURORECON__OUTPUT__ROOT", str(tmp_path))
    incoming, runs = tmp_path / "incoming", tmp_path / "runs"
    # two channels: refused by the preflight of that volume (exit status 2), before any block runs
    write_image(incoming / "a_two_channel.zarr", np.zeros((2, 8, 16, 16), np.uint16),
                voxel_size_um=(1.5, 0.5, 0.5))
    write_image(incoming / "b_too_coarse.zarr", np.zeros((8, 16, 16), np.uint16),
                voxel_size_um=(6.0, 2.0, 2.0))
    assert [p.name for p in pending_volumes(incoming, runs)] == ["a_two_channel.zarr", "b_too_coarse.zarr"]
    with pytest.raises(InputDataError) as info:
        batch_flow(incoming, runs)
    message = str(info.value)
    assert not isinstance(info.value, BlockFailure)
    assert message.startswith("2 of 2 volume(s) failed: a_two_channel.zarr: segment.raw ")
    assert "b_too_coarse.zarr: segment.raw" in message and "differs from the model's training data" in message
    assert not (runs / "a_two_channel" / "COMPLETE").exists()


def test_the_error_class_of_the_first_failure_is_kept():
    from flows.batch import _like

    blocks = _like(BlockFailure("x", stage="predict", errors={3: "trace"}), "1 of 2 volume(s) failed")
    assert isinstance(blocks, BlockFailure) and blocks.stage == "predict" and blocks.errors == {3: "trace"}
    assert type(_like(OutputError("locked"), "m")) is OutputError and str(_like(OutputError("l"), "m")) == "m"
