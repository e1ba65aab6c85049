from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.blocks import block_grid
from pipeline.inference import plan_tiles, predict_region, read_with_context
from pipeline.inference.predict import for_inference
from pipeline.model import UNet

torch.set_num_threads(1)


def net(padding: str, norm=None) -> UNet:
    torch.manual_seed(0)
    m = UNet(1, 3, ndim=3, depth=2, base_features=4, downsample_factors=[(1, 2, 2), (2, 2, 2)],
             padding=padding, norm=norm)
    return m.eval()


def raw_volume(shape=(20, 40, 44), seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def whole(model, raw, tile=(8, 16, 16), **kw):
    full = tuple(slice(0, s) for s in raw.shape)
    return predict_region(model, raw.__getitem__, volume_shape=raw.shape, region=full, tile_shape=tile, **kw)


def test_plan_tiles_are_on_a_global_grid():
    tiles = plan_tiles((slice(5, 20), slice(0, 8), slice(3, 4)), tile_shape=(9, 8, 5), stride_multiple=(2, 4, 4))
    zs = sorted({t[0].start for t in tiles})
    assert zs == [0, 8, 16] and {t[0].stop - t[0].start for t in tiles} == {8}
    assert {t[2].start for t in tiles} == {0}


def test_read_with_context_mirrors_outside_the_volume():
    vol = np.arange(10, dtype=np.float32).reshape(1, 1, 10)
    out = read_with_context(vol.__getitem__, vol.shape, (slice(0, 1), slice(0, 1), slice(0, 3)), (0, 0, 2))
    np.testing.assert_array_equal(out[0, 0], [2, 1, 0, 1, 2, 3, 4])


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_blockwise_equals_whole_volume_exactly(padding):
    model = net(padding)
    raw = raw_volume()
    ref = whole(model, raw)
    assert ref.shape == (3, *raw.shape) and 0 <= ref.min() and ref.max() <= 1
    out = np.zeros_like(ref)
    for b in block_grid(raw.shape, block_shape=(10, 16, 24)):
        out[(slice(None), *b.write)] = predict_region(model, raw.__getitem__, volume_shape=raw.shape,
                                                      region=b.write, tile_shape=(8, 16, 16))
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_channels_last_inference_gives_the_same_affinities_and_stays_blockwise_exact(padding):
    raw = raw_volume()
    ref = whole(net(padding), raw)
    fast = for_inference(net(padding))
    assert all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in fast.parameters() if p.dim() == 5)
    assert not all(p.is_contiguous() for p in fast.parameters() if p.dim() == 5)  # the layout did change
    out = whole(fast, raw)
    np.testing.assert_allclose(out, ref, atol=1e-5)  # summation order only
    assert out.flags.c_contiguous
    blocks = np.zeros_like(out)
    for b in block_grid(raw.shape, block_shape=(10, 16, 24)):
        blocks[(slice(None), *b.write)] = predict_region(fast, raw.__getitem__, volume_shape=raw.shape,
                                                         region=b.write, tile_shape=(8, 16, 16))
    np.testing.assert_array_equal(blocks, out)


def test_tile_size_and_batching_change_the_result_only_by_rounding():
    # Tile inputs start at the same phase of the pooling grid whatever their size; other input shapes
    # only change the order of floating-point sums inside the convolutions.
    model = net("valid")
    raw = raw_volume()
    ref = whole(model, raw)
    np.testing.assert_allclose(whole(model, raw, tile=(4, 8, 8), batch_size=3), ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(whole(model, raw, tile=(12, 24, 32)), ref, rtol=0, atol=1e-6)


def test_downscale_xy_predicts_at_coarse_resolution():
    model = net("valid")
    raw = raw_volume((8, 30, 33))
    out = whole(model, raw, downscale_xy=3)
    assert out.shape == (3, 8, 30, 33)
    # Each 3x3 x/y box carries one coarse prediction.
    np.testing.assert_array_equal(out[:, :, 0:3, 0:3], np.broadcast_to(out[:, :, :1, :1], (3, 8, 3, 3)))
    with pytest.raises(ValueError, match="multiples of 3"):
        predict_region(model, raw.__getitem__, volume_shape=raw.shape, region=(slice(0, 8), slice(1, 4), slice(0, 3)),
                       tile_shape=(8, 16, 16), downscale_xy=3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_with_amp_matches_cpu_closely():
    model = net("valid")
    raw = raw_volume()
    ref = whole(model, raw)
    got = whole(model.cuda(), raw, device="cuda", amp=True)
    np.testing.assert_allclose(got, ref, atol=0.02)
