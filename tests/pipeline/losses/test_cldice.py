"""clDice and the soft morphology it is built on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from pipeline.losses import ClDiceLoss, cldice_loss, soft_dilate, soft_erode, soft_skeleton
from tests.pipeline.losses.helpers import BIG, as_target, logits_from_mask


def bar(shape=(9, 16)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[3:6, 2:14] = True
    return m


@pytest.mark.parametrize("ndim", [2, 3])
def test_soft_erode_and_dilate_match_binary_morphology_inside_the_image(ndim):
    rng = np.random.default_rng(0)
    mask = rng.random((7,) * ndim) > 0.4
    x = torch.as_tensor(mask, dtype=torch.float32)[None, None]
    cross = ndimage.generate_binary_structure(ndim, 1)
    full = np.ones((3,) * ndim, bool)
    # Pooling leaves the border neutral, which scipy does with border_value=1 for erosion.
    eroded = ndimage.binary_erosion(mask, cross, border_value=1)
    assert np.array_equal(soft_erode(x)[0, 0].numpy() > 0, eroded)
    assert np.array_equal(soft_dilate(x)[0, 0].numpy() > 0, ndimage.binary_dilation(mask, full))


def test_soft_skeleton_of_a_bar_is_its_middle_row():
    skel = soft_skeleton(as_target(bar()), 3)[0, 0].numpy()
    expected = np.zeros_like(skel)
    expected[4, 3:13] = 1
    assert np.array_equal(skel, expected)


def test_perfect_prediction_is_zero():
    target = as_target(bar())
    assert cldice_loss(logits_from_mask(bar()), target).item() == pytest.approx(0.0, abs=1e-6)


def test_empty_prediction_by_hand():
    # Predicted skeleton empty: Tprec = (0 + 1) / (0 + 1) = 1. Label skeleton 10 voxels, none covered:
    # Tsens = 1 / 11. clDice = 1 - 2 * (1/11) / (1 + 1/11) = 5/6.
    value = cldice_loss(torch.full((1, 1, 9, 16), -BIG), as_target(bar()), iterations=3)
    assert value.item() == pytest.approx(5 / 6)


def test_argument_order_is_logits_then_target():
    # Swapping the arguments of the reference implementation silently changes the value; here the
    # target must be binary, so passing probabilities as target is refused.
    probs = torch.full((1, 1, 9, 16), 0.3)
    with pytest.raises(ValueError, match="target has .* values other than 0 and 1"):
        cldice_loss(as_target(bar()), probs)


def test_takes_logits_not_probabilities():
    # logits 0 everywhere means P = 0.5, not P = 0.
    target = as_target(bar())
    half = cldice_loss(torch.zeros_like(target), target).item()
    assert 0.0 < half < 5 / 6


def test_module_matches_function():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 6, 12, 12, generator=gen)
    target = (torch.rand(2, 2, 6, 12, 12, generator=gen) > 0.5).float()
    assert ClDiceLoss(iterations=4, smooth=2.0)(logits, target).item() == pytest.approx(
        cldice_loss(logits, target, iterations=4, smooth=2.0).item()
    )


@pytest.mark.parametrize("shape", [(2, 1, 7, 8), (1, 2, 5, 6, 7)], ids=["2d", "3d"])
def test_gradcheck(shape):
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    target = (torch.rand(shape, generator=gen) > 0.5).double()
    assert torch.autograd.gradcheck(lambda x: cldice_loss(x, target, iterations=2), (logits,))


def test_precomputed_target_skeleton():
    target = as_target(bar())
    logits = torch.randn(1, 1, 9, 16)
    skeleton = soft_skeleton(target, 4)
    expected = cldice_loss(logits, target, iterations=4).item()
    value = cldice_loss(logits, target, iterations=4, target_skeleton=skeleton)
    assert value.item() == pytest.approx(expected)
    assert ClDiceLoss(iterations=4)(logits, target, skeleton).item() == pytest.approx(expected)
    with pytest.raises(TypeError, match="target_skeleton must be a torch.Tensor; got ndarray"):
        cldice_loss(logits, target, target_skeleton=skeleton.numpy())


@pytest.mark.parametrize("shape", [(2, 3, 9, 11), (1, 2, 5, 7, 9)], ids=["2d", "3d"])
def test_pooling_and_shifted_morphology_agree_exactly(shape):
    # With autograd the operators run as pooling; without, as minima/maxima of shifted views.
    x = torch.rand(shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    xg = x.clone().requires_grad_()
    for op in (soft_erode, soft_dilate):
        assert torch.equal(op(x), op(xg).detach())
    assert torch.equal(soft_skeleton(x, 3), soft_skeleton(xg, 3).detach())
