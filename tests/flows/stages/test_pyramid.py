"""The pyramid step on Dask's block runner: equals the serial build, resumes, starts over after a reset."""

from __future__ import annotations

import numpy as np
import zarr

from flows.stages.pyramid import pyramid_volume, reset_pyramid_state
from pipeline.io.blockstate import BlockState
from pipeline.io.omezarr import create_label_image
from pipeline.io.pyramid import build_pyramid

SHAPE = (8, 256, 128)


def label_image(path):
    rng = np.random.default_rng(1)
    create_label_image(path, shape=SHAPE, chunks=(8, 32, 32), voxel_size_um=(1.5, 0.5, 0.5),
                       pyramid=True)[...] = rng.integers(0, 6, SHAPE).astype(np.uint64)
    return path


def test_blocks_equal_the_serial_build_and_a_rerun_redoes_only_missing_blocks(tmp_path):
    run = tmp_path / "run"
    seg = label_image(run / "segmentation.zarr")
    ref = build_pyramid(label_image(tmp_path / "ref.zarr"))
    assert ref == 2
    state = run / "state"
    assert pyramid_volume(seg, name="segmentation", state_dir=state, block_shape=(8, 64, 64), max_retries=0,
                          progress=False) == 2
    for level in ("1", "2"):
        np.testing.assert_array_equal(zarr.open_group(str(seg))[level][...],
                                      zarr.open_group(str(tmp_path / "ref.zarr"))[level][...])
    level1 = BlockState(state, "pyramid/segmentation/1")
    assert len(level1.done_ids()) == 8  # (8, 128, 64) in blocks of (8, 64, 64) // (1, 2, 2)
    zarr.open_group(str(seg), mode="r+")["1"][...] = 0
    level1.forget(7)
    pyramid_volume(seg, name="segmentation", state_dir=state, block_shape=(8, 64, 64), max_retries=0,
                   progress=False)
    redone = zarr.open_group(str(seg))["1"][...]
    written = np.zeros(redone.shape, bool)
    written[:, 96:, 32:] = True
    assert redone[written].any() and not redone[~written].any()  # only the forgotten block was written
    reset_pyramid_state(state)
    assert not (state / "pyramid").exists()
    pyramid_volume(seg, name="segmentation", state_dir=state, block_shape=(8, 64, 64), max_retries=0,
                   progress=False)
    np.testing.assert_array_equal(zarr.open_group(str(seg))["1"][...],
                                  zarr.open_group(str(tmp_path / "ref.zarr"))["1"][...])
