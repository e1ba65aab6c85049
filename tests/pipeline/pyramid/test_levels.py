"""The levels of a pyramid: near-isotropic steps, when to stop, scale and translation per level."""

from __future__ import annotations

import pytest

from pipeline.pyramid import level_factors, plan_pyramid


def test_anisotropic_voxels_are_halved_in_y_x_until_near_isotropic():
    levels = plan_pyramid((128, 2048, 2048), chunks=(32, 128, 128), voxel_size_um=(2.0, 0.5, 0.5))
    assert [lv.factor for lv in levels] == [(1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)]
    assert [lv.scale_um for lv in levels] == [(2, 1, 1), (2, 2, 2), (4, 4, 4), (8, 8, 8)]
    assert levels[-1].shape == (32, 128, 128)  # one chunk: the last level
    # voxel (0, 0, 0) of a level averages level-0 voxels 0 .. F - 1: its centre is (F - 1) / 2 voxels in
    assert levels[0].translation_um == (0.0, 0.25, 0.25)
    assert levels[2].translation_um == pytest.approx((1.0, 1.75, 1.75))


def test_levels_stop_at_one_chunk_or_below_64_voxels():
    assert plan_pyramid((16, 64, 64), chunks=(16, 64, 64), voxel_size_um=(1.5, 0.5, 0.5)) == ()
    assert plan_pyramid((32, 100, 100), chunks=(8, 32, 32), voxel_size_um=(1.5, 0.5, 0.5)) == ()
    shapes = [lv.shape for lv in plan_pyramid((40, 300, 200), chunks=(8, 32, 32),
                                              voxel_size_um=(1.5, 0.5, 0.5))]
    assert shapes == [(40, 150, 100), (20, 75, 50)]  # odd extents round up


def test_an_axis_of_one_voxel_is_never_halved():
    assert level_factors((1.0, 1.0, 1.0), (1, 512, 512)) == (1, 2, 2)
    levels = plan_pyramid((1, 1024, 1024), chunks=(1, 256, 256), voxel_size_um=(1.0, 1.0, 1.0))
    assert all(lv.factor == (1, 2, 2) for lv in levels) and levels[-1].shape == (1, 256, 256)


def test_invalid_input_is_refused():
    with pytest.raises(ValueError, match="chunks must be three positive integers"):
        plan_pyramid((8, 8, 8), chunks=(0, 8, 8), voxel_size_um=(1, 1, 1))
    with pytest.raises(ValueError, match="voxel"):
        plan_pyramid((8, 8, 8), chunks=(8, 8, 8), voxel_size_um=(1, -1, 1))
