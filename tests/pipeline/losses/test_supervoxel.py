"""Supervoxel loss (Definition 1) and its affinity form (Definition 4) on hand-built cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import pipeline.losses.supervoxel as supervoxel_module
from pipeline.losses import (
    AffinitySupervoxelLoss,
    CriticalMasks,
    SupervoxelLoss,
    affinity_supervoxel_loss,
    critical_masks,
    soft_dice_loss,
    supervoxel_loss,
)
from tests.pipeline.losses.helpers import affinities, as_target, logits_from_mask, manual_bce


def bar_case():
    """A 3-voxel-thick bar with a full-width gap (critical) and a nicked corner (not critical); a spurious
    blob (critical) and a bump on the bar (not critical)."""
    target = np.zeros((7, 12), bool)
    target[1:4, 1:11] = True
    pred = target.copy()
    pred[1:4, 5] = False  # splits the bar: negatively critical
    pred[1, 8] = False  # a nick on the border: not critical
    pred[5:7, 9:11] = True  # a separate blob: positively critical
    pred[0, 3] = True  # a bump attached to the bar: not critical
    negative = np.zeros_like(target)
    negative[1:4, 5] = True
    positive = np.zeros_like(target)
    positive[5:7, 9:11] = True
    return pred, target, negative, positive


def test_critical_masks_of_the_bar_case(device):
    pred, target, negative, positive = bar_case()
    masks = critical_masks(logits_from_mask(pred).to(device), as_target(target).to(device))
    assert isinstance(masks, CriticalMasks)
    assert masks.negative.device.type == device.type and masks.negative.dtype == torch.bool
    assert np.array_equal(masks.negative[0, 0].cpu().numpy(), negative)
    assert np.array_equal(masks.positive[0, 0].cpu().numpy(), positive)


def test_critical_masks_per_item_and_channel():
    pred, target, negative, positive = bar_case()
    logits = torch.zeros(2, 2, 7, 12)
    logits[0, 1] = logits_from_mask(pred)[0, 0]
    logits[1, 0] = logits_from_mask(target)[0, 0]
    logits[0, 0] = logits[1, 1] = -5.0
    targets = as_target(target).expand(2, 2, 7, 12)
    masks = critical_masks(logits, targets)
    assert np.array_equal(masks.negative[0, 1].numpy(), negative)
    assert np.array_equal(masks.positive[0, 1].numpy(), positive)
    assert not masks.negative[1, 0].any() and not masks.positive[1, 0].any()
    # an empty prediction: the whole bar is one missing object, hence negatively critical
    assert np.array_equal(masks.negative[0, 0].numpy(), target)
    assert np.array_equal(masks.negative[1, 1].numpy(), target)


@pytest.mark.parametrize(("alpha", "beta"), [(0.5, 0.5), (0.3, 0.8), (1.0, 0.0), (0.0, 0.5)])
def test_volume_normalized_value_by_hand(alpha, beta):
    pred, target, negative, positive = bar_case()
    rng = np.random.default_rng(0)
    logits = np.where(pred, 1.0, -1.0) * rng.uniform(0.5, 3.0, pred.shape)
    bce = manual_bce(logits, target)
    weights = (1 - alpha) + alpha * (beta * positive + (1 - beta) * negative)
    expected = float((bce * weights).sum() / bce.size)
    x, t = torch.tensor(logits)[None, None], as_target(target, torch.float64)
    value = supervoxel_loss(x, t, alpha=alpha, beta=beta)
    assert value.item() == pytest.approx(expected, rel=1e-12)


def test_mask_normalized_value_by_hand():
    pred, target, negative, positive = bar_case()
    logits = np.where(pred, 2.0, -2.0)
    bce = manual_bce(logits, target)
    expected = 0.5 * bce.mean() + 0.5 * (0.5 * bce[positive].mean() + 0.5 * bce[negative].mean())
    value = supervoxel_loss(
        torch.tensor(logits)[None, None], as_target(target, torch.float64), normalization="mask"
    )
    assert value.item() == pytest.approx(expected, rel=1e-12)


def test_dice_variant_by_hand():
    pred, target, negative, positive = bar_case()
    logits = np.where(pred, 2.0, -2.0)
    p = 1 / (1 + np.exp(-logits))
    bce = manual_bce(logits, target)

    def dice(mask):
        return 1 - (2 * (p * target)[mask].sum() + 1) / (p[mask].sum() + target[mask].sum() + 1)

    everywhere = np.ones_like(target)
    expected = 0.5 * (bce.mean() + dice(everywhere)) + 0.5 * (
        0.5 * (bce[positive].sum() / bce.size + dice(positive))
        + 0.5 * (bce[negative].sum() / bce.size + dice(negative))
    )
    x, t = torch.tensor(logits)[None, None], as_target(target, torch.float64)
    assert supervoxel_loss(x, t, dice=True).item() == pytest.approx(expected, rel=1e-12)
    assert dice(everywhere) == pytest.approx(soft_dice_loss(x, t).item())


def test_no_mistakes_gives_the_plain_bce():
    _, target, _, _ = bar_case()
    logits = logits_from_mask(target, value=1.5)
    bce = manual_bce(np.where(target, 1.5, -1.5), target).mean()
    assert supervoxel_loss(logits, as_target(target), alpha=0.5).item() == pytest.approx(0.5 * bce)


def test_alpha_zero_skips_the_critical_components(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("critical_components must not run when alpha == 0")

    monkeypatch.setattr(supervoxel_module, "critical_components", fail)
    pred, target, _, _ = bar_case()
    bce = manual_bce(np.where(pred, 2.0, -2.0), target).mean()
    value = supervoxel_loss(logits_from_mask(pred, value=2.0), as_target(target), alpha=0.0)
    assert value.item() == pytest.approx(bce)


def test_precomputed_masks_give_the_same_value_and_are_checked():
    pred, target, _, _ = bar_case()
    logits, t = logits_from_mask(pred, value=2.0), as_target(target)
    masks = critical_masks(logits, t)
    assert supervoxel_loss(logits, t, critical=masks).item() == supervoxel_loss(logits, t).item()
    with pytest.raises(ValueError, match=r"critical.negative has shape \(1, 1, 7, 11\)"):
        supervoxel_loss(logits, t, critical=CriticalMasks(masks.negative[..., :11], masks.positive))
    with pytest.raises(TypeError, match="critical.positive has dtype torch.float32"):
        supervoxel_loss(logits, t, critical=CriticalMasks(masks.negative, masks.positive.float()))


def test_module_matches_function_and_checks_options():
    pred, target, _, _ = bar_case()
    logits, t = logits_from_mask(pred, value=2.0), as_target(target)
    loss = SupervoxelLoss(0.7, 0.2, connectivity=4, dice=True, normalization="mask")
    expected = supervoxel_loss(
        logits, t, alpha=0.7, beta=0.2, connectivity=4, dice=True, normalization="mask"
    )
    assert loss(logits, t).item() == pytest.approx(expected.item())
    assert "alpha=0.7" in repr(loss)
    with pytest.raises(ValueError, match=r"alpha=2 is outside \[0, 1\]"):
        SupervoxelLoss(alpha=2)
    with pytest.raises(ValueError, match="connectivity=5"):
        SupervoxelLoss(connectivity=5)


@pytest.mark.parametrize("dice", [False, True])
@pytest.mark.parametrize("normalization", ["volume", "mask"])
def test_gradcheck_with_the_masks_held_fixed(dice, normalization):
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(1, 2, 3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    target = (torch.rand(1, 2, 3, 4, 5, generator=gen) > 0.5).double()
    masks = critical_masks(logits, target)
    assert masks.negative.any() and masks.positive.any()
    for loss in (supervoxel_loss, affinity_supervoxel_loss):
        assert torch.autograd.gradcheck(
            lambda x, f=loss: f(x, target, critical=masks, dice=dice, normalization=normalization), (logits,)
        )


# ---------------------------------------------------------------------------------------------------------
# Definition 4: affinities


def neurite_3d(thickness: int = 3):
    """A straight neurite along x in a (7, 7, 18) volume: label 1, cross-section thickness² voxels."""
    seg = np.zeros((7, 7, 18), np.uint32)
    lo = 3 - thickness // 2
    seg[lo : lo + thickness, lo : lo + thickness, 1:17] = 1
    return seg


def affinity_critical(pred_aff: np.ndarray, target_aff: np.ndarray) -> CriticalMasks:
    return critical_masks(logits_from_mask(pred_aff)[0], as_target(target_aff)[0])


@pytest.mark.parametrize("thickness", [1, 3])
def test_affinity_split_marks_exactly_the_edges_across_the_gap(thickness):
    target_aff = affinities(neurite_3d(thickness))
    pred_aff = target_aff.copy()
    pred_aff[2, :, :, 9] = False  # every x-edge between x = 8 and x = 9: the neurite is cut in two
    masks = affinity_critical(pred_aff, target_aff)
    expected = np.zeros_like(target_aff)
    expected[2, :, :, 9] = target_aff[2, :, :, 9]
    assert expected.sum() == thickness**2
    assert np.array_equal(masks.negative[0].numpy(), expected)
    assert not masks.positive.any()


def test_affinity_voxel_gap_marks_every_edge_into_the_gap_but_not_a_nick():
    seg = neurite_3d(3)
    pred_seg = seg.copy()
    pred_seg[:, :, 8] = 0  # the predicted segmentation misses a slab: two pieces
    target_aff = affinities(seg)
    pred_aff = affinities(pred_seg)
    gap_edges = target_aff & ~pred_aff  # x-edges into and out of the slab, y/z edges inside it
    pred_aff[2, 2, 2, 12] = False  # one edge on the neurite's surface: not a split
    masks = affinity_critical(pred_aff, target_aff)
    assert np.array_equal(masks.negative[0].numpy(), gap_edges)
    assert gap_edges[2].sum() == 2 * 9 and gap_edges[0].sum() == gap_edges[1].sum() == 6
    assert not masks.positive.any()


def test_affinity_merge_of_touching_neurites_is_positively_critical():
    seg = np.zeros((5, 8, 16), np.uint32)
    seg[1:4, 1:4, 1:15] = 1
    seg[1:4, 4:7, 1:15] = 2  # touches neurite 1 along y: no y-edge between rows 3 and 4
    target_aff = affinities(seg)
    pred_aff = target_aff.copy()
    pred_aff[1, 1:4, 4, 6:8] = True  # y-edges across the interface: a merge
    pred_aff[2, 2, 2, 15] = True  # a spurious x-edge sticking out of neurite 1: not a merge
    masks = affinity_critical(pred_aff, target_aff)
    expected = np.zeros_like(target_aff)
    expected[1, 1:4, 4, 6:8] = True
    assert np.array_equal(masks.positive[0].numpy(), expected)
    assert not masks.negative.any()


def test_affinity_loss_is_the_sum_over_channels():
    gen = torch.Generator().manual_seed(8)
    logits = torch.randn(2, 3, 5, 8, 8, generator=gen)
    target = torch.rand(2, 3, 5, 8, 8, generator=gen) > 0.5
    per_channel = [supervoxel_loss(logits[:, d : d + 1], target[:, d : d + 1]) for d in range(3)]
    assert affinity_supervoxel_loss(logits, target).item() == pytest.approx(sum(per_channel).item(), rel=1e-6)
    assert AffinitySupervoxelLoss()(logits, target).item() == pytest.approx(
        affinity_supervoxel_loss(logits, target).item()
    )
    assert supervoxel_loss(logits, target).item() == pytest.approx(sum(per_channel).item() / 3, rel=1e-6)


def test_affinity_loss_value_on_a_split():
    # Hand value: logits ±2 from binary affinities; the 9 cut edges weigh 0.5 + 0.5·0.5.
    target_aff = affinities(neurite_3d(3))
    pred_aff = target_aff.copy()
    pred_aff[2, :, :, 9] = False
    x = np.where(pred_aff, 2.0, -2.0)
    bce = manual_bce(x, target_aff)
    cut = np.zeros_like(target_aff)
    cut[2, :, :, 9] = target_aff[2, :, :, 9]
    per_channel = [(bce[d] * (0.5 + 0.25 * cut[d])).mean() for d in range(3)]
    value = affinity_supervoxel_loss(torch.tensor(x)[None], torch.tensor(target_aff)[None])
    assert value.item() == pytest.approx(sum(per_channel), rel=1e-12)
    assert math.isfinite(value.item())
