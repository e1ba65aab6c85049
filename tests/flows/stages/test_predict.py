"""Zarr/Dask inference: for a given tile shape the block shape does not change the affinities; resume is
bit-identical."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flows.stages.predict import predict_volume
from pipeline.errors import InputDataError
from pipeline.io.blockstate import BlockState
from pipeline.io.checkpoint import export_model, load_model, save_checkpoint
from pipeline.io.omezarr import open_image, write_image
from pipeline.model import UNet

VS = (1.5, 0.5, 0.5)
SETTINGS = {"batch_size": 1, "device": "cpu", "dtype": "uint8", "max_retries": 2, "progress": False}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    arch = {"in_channels": 1, "out_channels": 3, "ndim": 3, "depth": 1, "base_features": 4,
            "downsample_factors": [[1, 2, 2]], "padding": "same", "norm": "group"}
    model = UNet(**{**arch, "downsample_factors": [(1, 2, 2)]})
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, {
        "architecture": arch, "model": model.state_dict(), "step": 0, "optimizer": {"state": {}},
        "metadata": {"target": "affinities", "normalization": "dtype", "voxel_size_um": list(VS),
                     "patch_shape": [8, 16, 16], "downscale_xy": 1},
    })
    return path


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    path = tmp_path_factory.mktemp("raw") / "raw.zarr"
    data = np.random.default_rng(0).integers(0, 4000, (16, 32, 48)).astype(np.uint16)
    write_image(path, data, voxel_size_um=VS, chunks=(8, 16, 16), name="raw")
    return path


def test_affinities_do_not_depend_on_the_block_shape_and_resume_identically(tmp_path, raw, checkpoint):
    outs = {}
    for block in [(8, 16, 16), (16, 32, 48)]:
        out = tmp_path / f"aff{block[0]}.zarr"
        predict_volume(raw, checkpoint, out, state_dir=tmp_path / f"state{block[0]}", block_shape=block,
                       tile_shape=(8, 16, 16), **SETTINGS)
        img = open_image(out)
        assert img.axes == ("c", "z", "y", "x") and img.dtype == np.uint8 and img.voxel_size_um == VS
        # read up to 27 times by the segmentation's halos: fast to decode
        assert [c.cname.value for c in img.array.compressors] == ["lz4"]
        outs[block] = img.array[...]
    np.testing.assert_array_equal(outs[(8, 16, 16)], outs[(16, 32, 48)])
    # Forget half of the blocks and rerun: the same bits.
    state = BlockState(tmp_path / "state8", "predict")
    for bid in sorted(state.done_ids())[::2]:
        state.forget(bid)
    predict_volume(raw, checkpoint, tmp_path / "aff8.zarr", state_dir=tmp_path / "state8",
                   block_shape=(8, 16, 16), tile_shape=(8, 16, 16), **SETTINGS)
    np.testing.assert_array_equal(open_image(tmp_path / "aff8.zarr").array[...], outs[(8, 16, 16)])


def test_the_default_tile_does_not_follow_the_block_shape(tmp_path, raw, checkpoint):
    """Issue 18: the tile defaulted to the block shape, and with this GroupNorm network (any network, in
    float rounding) 0.8 % of the affinities and every skeleton changed with block_shape."""
    from pipeline.segment.config import default_tile_shape

    assert default_tile_shape((16, 32, 48), (1, 2, 2)) == (16, 32, 48)  # the default, clipped to the volume
    outs = []
    for block in [(8, 16, 16), (16, 32, 32)]:
        name = "x".join(map(str, block))
        aff = predict_volume(raw, checkpoint, tmp_path / f"aff{name}.zarr", state_dir=tmp_path / name,
                             block_shape=block, tile_shape=None, **SETTINGS)
        outs.append(open_image(aff).array[...])
    np.testing.assert_array_equal(*outs)


def test_exported_model_is_smaller_and_predicts_the_same(tmp_path, checkpoint):
    small = export_model(checkpoint, tmp_path / "small.pt")
    a, meta_a = load_model(checkpoint)
    b, meta_b = load_model(small)
    assert meta_a.input == meta_b.input
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), k
    assert "optimizer" not in torch.load(small, weights_only=True)


def test_voxel_size_far_from_training_is_refused(tmp_path, checkpoint):
    other = tmp_path / "coarse.zarr"
    write_image(other, np.zeros((8, 16, 16), np.uint16), voxel_size_um=(3.0, 1.0, 1.0))
    with pytest.raises(InputDataError, match="differs from the model's training data"):
        predict_volume(other, checkpoint, tmp_path / "x.zarr", state_dir=tmp_path / "s",
                       block_shape=(8, 16, 16), tile_shape=None, **SETTINGS)
    assert not (tmp_path / "x.zarr").exists()


def test_a_run_checks_and_loads_the_checkpoint_once_before_its_blocks(tmp_path, raw, checkpoint, monkeypatch):
    import pipeline.io.checkpoint as ckpt
    from flows.preflight import check_run
    from flows.stages import predict as stage
    from pipeline.config import NeuroreconConfig, OutputConfig
    from pipeline.segment.config import SegmentConfig

    calls = []
    real = ckpt.load_model

    def counting(path, **kwargs):
        calls.append(str(path))
        return real(path, **kwargs)

    monkeypatch.setattr(ckpt, "load_model", counting)
    stage._cached_model.cache_clear()
    config = NeuroreconConfig(
        segment=SegmentConfig(raw=raw, out=tmp_path / "run", model=checkpoint, block_shape=(8, 16, 16)),
        output=OutputConfig(root=tmp_path),
    )
    inputs = check_run(config, evaluate=False)
    assert calls == [str(checkpoint)]  # the preflight
    stage.predict_run(config.segment, inputs=inputs, max_retries=0, progress=False)  # serial: 6 blocks here
    # + one load for all the blocks of this process (a worker: likewise)
    assert calls == [str(checkpoint)] * 2
