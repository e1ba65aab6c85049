"""Simplified Topology Loss (AIS paper, Algorithm 3): hand-built masks, a slow reference, exact values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from pipeline.losses import (
    SimplifiedTopologyLoss,
    find_regions,
    simplified_topology_loss,
    simplified_topology_mask,
)
from tests.pipeline.losses.helpers import as_target, logits_from_mask

CROSS2 = ndimage.generate_binary_structure(2, 1)


def reference_regions(pred: np.ndarray, target: np.ndarray, connectivity: int) -> np.ndarray:
    """Slow reference from section 2.2, one region at a time, with scipy instead of cc3d."""
    ndim = pred.ndim
    structure = ndimage.generate_binary_structure(ndim, {4: 1, 6: 1, 8: 2, 18: 2, 26: 3}[connectivity])
    pred_labels, n_pred = ndimage.label(pred, structure)
    missing_labels, n_missing = ndimage.label(target & ~pred, structure)
    selected = np.zeros(pred.shape, bool)
    for d in range(1, n_missing + 1):
        region = missing_labels == d
        touched = set(np.unique(pred_labels[ndimage.binary_dilation(region, structure)])) - {0}
        if len(touched) >= 2:  # a gap between two or more prediction regions
            selected |= region
    for p in range(1, n_pred + 1):
        region = pred_labels == p
        if not (region & target).any():  # a prediction region overlapping no label
            selected |= region
    return ndimage.binary_dilation(selected, ndimage.generate_binary_structure(ndim, 1))


def broken_line_with_blob():
    target = np.zeros((11, 20), bool)
    target[5, 2:18] = True
    pred = target.copy()
    pred[5, 9:11] = False  # a two-voxel gap
    pred[1:3, 15:17] = True  # a spurious blob far from the label
    gap = np.zeros_like(target)
    gap[5, 9:11] = True
    blob = np.zeros_like(target)
    blob[1:3, 15:17] = True
    return pred, target, gap, blob


def test_broken_line_marks_the_dilated_gap_and_the_spurious_blob():
    pred, target, gap, blob = broken_line_with_blob()
    expected = ndimage.binary_dilation(gap, CROSS2) | ndimage.binary_dilation(blob, CROSS2)
    assert np.array_equal(find_regions(pred, target), expected)
    # by hand: the 2 gap voxels, their 2 side neighbours on the line and 4 above/below; the blob's 4
    # voxels and 8 face neighbours
    assert expected.sum() == 8 + 12


@pytest.mark.parametrize("gap_length", [1, 2, 3])
def test_short_gaps_are_found(gap_length):
    # Dilating the prediction before labelling (as Algorithm 3 is written) joins the two sides of a gap
    # of 1 or 2 voxels into one region, and the gap would never be selected.
    target = np.zeros((5, 16), bool)
    target[2, 1:15] = True
    pred = target.copy()
    pred[2, 7 : 7 + gap_length] = False
    expected = ndimage.binary_dilation(target & ~pred, CROSS2)
    assert np.array_equal(find_regions(pred, target), expected)


def test_the_highest_numbered_regions_are_included():
    # Two label lines. Top line: the prediction misses its right end -> a missing region that touches one
    # prediction region (not selected), labelled 1 in raster order. Bottom line: a gap -> the only
    # qualifying missing region, labelled 2, the highest. The only spurious prediction region is the
    # last one in raster order, the highest prediction label.
    target = np.zeros((12, 20), bool)
    target[2, 2:18] = True
    target[7, 2:18] = True
    pred = target.copy()
    pred[2, 15:18] = False
    pred[7, 9:11] = False
    pred[10:12, 17:19] = True
    missing_labels, n_missing = ndimage.label(target & ~pred, np.ones((3, 3)))
    pred_labels, n_pred = ndimage.label(pred, np.ones((3, 3)))
    assert n_missing == 2 and missing_labels[7, 9] == n_missing
    assert n_pred == 4 and pred_labels[10, 17] == n_pred
    expected = np.zeros_like(target)
    expected[7, 9:11] = True
    expected[10:12, 17:19] = True
    assert np.array_equal(find_regions(pred, target), ndimage.binary_dilation(expected, CROSS2))


def test_diagonal_line_gap_is_found_with_full_connectivity():
    target = np.eye(12, dtype=bool)
    pred = target.copy()
    pred[5, 5] = pred[6, 6] = False
    gap = target & ~pred
    assert np.array_equal(find_regions(pred, target), ndimage.binary_dilation(gap, CROSS2))
    # With 4-connectivity every diagonal voxel is its own region and nothing touches: no gap is found,
    # but each diagonal voxel of the prediction is still a region that overlaps the label.
    assert not find_regions(pred, target, connectivity=4).any()


def test_bending_prediction_costs_nothing():
    # The paper's Figure 2b: label and prediction overlap and are both one component.
    target = np.zeros((12, 12), bool)
    target[5:7, 1:11] = True
    pred = np.zeros_like(target)
    pred[5:7, 1:6] = True
    pred[3:7, 5:7] = True
    pred[3:5, 6:11] = True
    assert not find_regions(pred, target).any()


@pytest.mark.parametrize("case", ["perfect", "missing_object", "both_empty"])
def test_no_regions(case):
    # A wholly missed object touches no prediction region, so it is not a gap (by the paper's design).
    target = np.zeros((8, 8), bool)
    target[4, 1:7] = True
    pred = target.copy() if case == "perfect" else np.zeros_like(target)
    if case == "both_empty":
        target = np.zeros_like(target)
    assert not find_regions(pred, target).any()


def test_everything_predicted_on_an_empty_label_is_spurious():
    pred = np.zeros((6, 6), bool)
    pred[1:3, 1:3] = True
    assert np.array_equal(find_regions(pred, np.zeros_like(pred)), ndimage.binary_dilation(pred, CROSS2))


def test_3d_tube_with_gap():
    z, y, x = np.mgrid[:7, :7, :16]
    target = ((z - 3) ** 2 + (y - 3) ** 2 <= 2) & (x >= 1) & (x <= 14)
    pred = target & ~((x >= 7) & (x <= 8))
    expected = ndimage.binary_dilation(target & ~pred, ndimage.generate_binary_structure(3, 1))
    assert np.array_equal(find_regions(pred, target), expected)


@pytest.mark.parametrize(
    ("ndim", "connectivity"), [(2, 4), (2, 8), (3, 6), (3, 18), (3, 26)]
)
def test_matches_slow_reference_on_random_cases(ndim, connectivity):
    rng = np.random.default_rng(1000 + connectivity)
    shape = (24, 24) if ndim == 2 else (10, 12, 12)
    for _ in range(20 if ndim == 2 else 8):
        target = ndimage.gaussian_filter(rng.random(shape), 1.0) > 0.52
        pred = (ndimage.gaussian_filter(rng.random(shape), 1.0) > 0.52) | (target & (rng.random(shape) > 0.3))
        pred &= rng.random(shape) > 0.05
        got = find_regions(pred, target, connectivity=connectivity)
        assert np.array_equal(got, reference_regions(pred, target, connectivity))


def test_integer_inputs_and_argument_checks():
    pred, target, _, _ = broken_line_with_blob()
    assert np.array_equal(find_regions(pred.astype(np.uint8) * 7, target.astype(np.int32)),
                          find_regions(pred, target))
    with pytest.raises(TypeError, match="pred has dtype float64"):
        find_regions(pred.astype(float), target)
    with pytest.raises(ValueError, match=r"pred has shape \(11, 20\) but target has shape \(11, 19\)"):
        find_regions(pred, target[:, :19])
    with pytest.raises(ValueError, match="pred has ndim=1"):
        find_regions(pred[0], target[0])
    with pytest.raises(ValueError, match="connectivity=6 is not valid for 2-D images"):
        find_regions(pred, target, connectivity=6)


def test_torch_mask_is_find_regions_per_item_and_channel(device):
    pred, target, _, _ = broken_line_with_blob()
    logits = torch.stack([logits_from_mask(pred)[0], logits_from_mask(target)[0]])  # (2, 1, 11, 20)
    logits = torch.cat([logits, logits.flip(0)], dim=1).to(device)  # (2, 2, 11, 20)
    targets = torch.as_tensor(np.broadcast_to(target, (2, 2, 11, 20)).copy(), device=device)
    mask = simplified_topology_mask(logits, targets)
    assert mask.device.type == device.type and mask.dtype == torch.bool
    found = find_regions(pred, target)
    assert np.array_equal(mask[0, 0].cpu().numpy(), found)
    assert np.array_equal(mask[1, 1].cpu().numpy(), found)
    assert not mask[0, 1].any() and not mask[1, 0].any()


def test_loss_value_by_hand():
    # One-voxel gap in a line, logits ±3: the mask is the gap voxel (target 1, logit -3) and its four
    # face neighbours (two line voxels with target 1, logit +3; two background voxels, target 0, logit -3).
    target = np.zeros((3, 9), bool)
    target[1, 1:8] = True
    pred = target.copy()
    pred[1, 4] = False
    logits = logits_from_mask(pred, value=3.0)
    t = as_target(target)
    miss, hit = math.log1p(math.exp(3.0)), math.log1p(math.exp(-3.0))
    assert simplified_topology_loss(logits, t).item() == pytest.approx((miss + 4 * hit) / 5)
    assert simplified_topology_loss(logits, t, normalization="volume").item() == pytest.approx(
        (miss + 4 * hit) / 27
    )
    assert SimplifiedTopologyLoss()(logits, t).item() == pytest.approx((miss + 4 * hit) / 5)


def test_no_regions_gives_zero_loss_and_zero_gradient():
    target = torch.zeros(1, 1, 8, 8)
    target[0, 0, 4, 1:7] = 1
    logits = logits_from_mask(target[0, 0].numpy(), value=2.0).requires_grad_()
    value = simplified_topology_loss(logits, target)
    value.backward()
    assert value.item() == 0.0
    assert torch.count_nonzero(logits.grad) == 0


@pytest.mark.parametrize("normalization", ["mask", "volume"])
def test_gradcheck_with_the_mask_held_fixed(normalization):
    gen = torch.Generator().manual_seed(11)
    logits = torch.randn(2, 1, 6, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    target = (torch.rand(2, 1, 6, 7, generator=gen) > 0.5).double()
    mask = simplified_topology_mask(logits, target)
    assert mask.any()
    assert torch.autograd.gradcheck(
        lambda x: simplified_topology_loss(x, target, mask=mask, normalization=normalization), (logits,)
    )
