"""Negative Centerline Loss (AIS paper, Algorithms 1-2) on hand-built cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from pipeline.losses import NegativeCenterlineLoss, negative_centerline_loss, soft_skeleton_until_empty
from tests.pipeline.losses.helpers import BIG, as_target, logits_from_mask


def bar(shape=(9, 16)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[3:6, 2:14] = True  # 3 voxels thick, 12 long
    return m


def test_label_centerline_of_a_bar():
    centerline = soft_skeleton_until_empty(as_target(bar()))[0, 0].numpy()
    expected = np.zeros_like(centerline)
    expected[4, 3:13] = 1
    assert np.array_equal(centerline, expected)


def test_centerline_of_a_thick_tube_in_3d_is_one_voxel_line():
    z, y, x = np.mgrid[:11, :11, :20]
    tube = (z - 5) ** 2 + (y - 5) ** 2 <= 9
    tube[..., :2] = tube[..., -2:] = False
    centerline = soft_skeleton_until_empty(as_target(tube))[0, 0].numpy() > 0
    expected = np.zeros_like(centerline)
    expected[5, 5, 5:15] = True  # the axis, shortened by the erosions from the tube's ends
    assert np.array_equal(centerline, expected)


def test_perfect_prediction_is_zero_and_empty_prediction_is_one():
    target = as_target(bar())
    assert negative_centerline_loss(logits_from_mask(bar()), target).item() == 0.0
    assert negative_centerline_loss(torch.full_like(target, -BIG), target).item() == 1.0
    assert negative_centerline_loss(torch.zeros_like(target), target).item() == pytest.approx(0.5)


def test_a_gap_costs_its_share_of_the_centerline():
    pred = bar()
    pred[:, 7:9] = False  # cuts 2 of the 10 centerline voxels
    assert negative_centerline_loss(logits_from_mask(pred), as_target(bar())).item() == pytest.approx(0.2)


def test_false_positives_cost_nothing():
    pred = np.ones((9, 16), bool)
    assert negative_centerline_loss(logits_from_mask(pred), as_target(bar())).item() == 0.0


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_empty_and_full_labels_give_zero_without_warning(fill):
    target = torch.full((2, 1, 12, 12), fill)
    logits = torch.randn(2, 1, 12, 12, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = negative_centerline_loss(logits, target)
    value.backward()
    assert value.item() == 0.0
    assert torch.count_nonzero(logits.grad) == 0


def test_iteration_cap_warns():
    big = np.zeros((40, 40), bool)
    big[2:38, 2:38] = True  # radius 18: needs ~18 erosions
    with pytest.warns(RuntimeWarning, match="stopped after max_iterations=3"):
        value = negative_centerline_loss(torch.zeros(1, 1, 40, 40), as_target(big), max_iterations=3)
    assert torch.isfinite(value)


def test_batch_sums_then_divides_per_channel():
    # Algorithm 1 sums over the whole batch: an item with a 10-voxel centerline fully missed and an
    # item with a fully covered 10-voxel centerline give 10 / 20.
    target = torch.cat([as_target(bar()), as_target(bar())])
    logits = torch.cat([torch.full((1, 1, 9, 16), -BIG), logits_from_mask(bar())])
    assert negative_centerline_loss(logits, target).item() == pytest.approx(0.5)


def test_module_matches_function():
    target = as_target(bar())
    logits = torch.randn(1, 1, 9, 16)
    assert NegativeCenterlineLoss(max_iterations=10)(logits, target).item() == pytest.approx(
        negative_centerline_loss(logits, target, max_iterations=10).item()
    )


@pytest.mark.parametrize("shape", [(2, 1, 9, 10), (1, 2, 6, 7, 8)], ids=["2d", "3d"])
def test_gradcheck(shape):
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    target = (torch.rand(shape, generator=gen) > 0.4).double()
    assert torch.autograd.gradcheck(lambda x: negative_centerline_loss(x, target), (logits,))


def test_precomputed_centerline():
    target = torch.cat([as_target(bar()), torch.zeros(1, 1, 9, 16)])
    logits = torch.randn(2, 1, 9, 16)
    centerline = soft_skeleton_until_empty(target)
    assert negative_centerline_loss(logits, target, centerline=centerline).item() == pytest.approx(
        negative_centerline_loss(logits, target).item()
    )
    assert NegativeCenterlineLoss()(logits, target, centerline).item() == pytest.approx(
        negative_centerline_loss(logits, target).item()
    )
    message = r"centerline has shape \(1, 1, 9, 16\) but logits has shape \(2, 1, 9, 16\)"
    with pytest.raises(ValueError, match=message):
        negative_centerline_loss(logits, target, centerline=centerline[:1])
