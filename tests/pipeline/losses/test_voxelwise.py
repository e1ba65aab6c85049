"""BCE, soft Dice and masked BCE against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.losses import BCEDiceLoss, bce_dice_loss, bce_loss, masked_bce_loss, soft_dice_loss


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def test_masked_bce_by_hand():
    # BCE with logits for target 1 is softplus(-x), for target 0 softplus(x).
    logits = torch.tensor([[[[2.0, -1.0], [0.5, 3.0]]]])
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    mask = torch.tensor([[[[False, True], [True, False]]]])
    inside = softplus(1.0) + softplus(0.5)
    assert masked_bce_loss(logits, target, mask, normalization="volume").item() == pytest.approx(inside / 4)
    assert masked_bce_loss(logits, target, mask, normalization="mask").item() == pytest.approx(inside / 2)
    everywhere = torch.ones_like(mask)
    assert masked_bce_loss(logits, target, everywhere).item() == pytest.approx(
        bce_loss(logits, target).item()
    )


def test_masked_bce_empty_mask_is_zero_with_zero_gradient():
    logits = torch.randn(2, 3, 5, 5, requires_grad=True)
    for normalization in ("volume", "mask"):
        value = masked_bce_loss(logits, torch.ones(2, 3, 5, 5), torch.zeros(2, 3, 5, 5, dtype=torch.bool),
                                normalization=normalization)
        value.backward()
        assert value.item() == 0.0
        assert torch.count_nonzero(logits.grad) == 0


def test_masked_bce_is_a_mean_over_channels():
    logits = torch.zeros(1, 2, 2, 2)
    target = torch.ones(1, 2, 2, 2)
    mask = torch.zeros(1, 2, 2, 2, dtype=torch.bool)
    mask[0, 0, 0, 0] = True  # one voxel in channel 0, all four in channel 1
    mask[0, 1] = True
    log2 = math.log(2)
    assert masked_bce_loss(logits, target, mask, normalization="mask").item() == pytest.approx(log2)
    assert masked_bce_loss(logits, target, mask, normalization="volume").item() == pytest.approx(
        (log2 / 4 + log2) / 2
    )


def test_masked_bce_rejects_a_float_mask():
    with pytest.raises(TypeError, match="mask has dtype torch.float32; expected torch.bool"):
        masked_bce_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2))


def test_soft_dice_by_hand():
    logits = torch.tensor([[[[0.0, 0.0], [100.0, -100.0]]]])  # p = 0.5, 0.5, 1, 0
    target = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    inter, sum_p, sum_y = 0.5 + 1.0, 2.0, 2.0
    assert soft_dice_loss(logits, target, smooth=1.0).item() == pytest.approx(
        1 - (2 * inter + 1) / (sum_p + sum_y + 1)
    )


def test_soft_dice_is_batch_dice_per_channel():
    # Channel 0: perfect (loss 0); channel 1: all wrong with one foreground voxel (loss 1 - 1/3).
    logits = torch.full((2, 2, 1, 2), -100.0)
    target = torch.zeros(2, 2, 1, 2)
    logits[0, 0, 0, 0] = 100.0
    target[0, 0, 0, 0] = 1.0
    target[1, 1, 0, 1] = 1.0
    assert soft_dice_loss(logits, target).item() == pytest.approx((0.0 + (1 - 1 / 2)) / 2)


def test_bce_dice_weights():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, generator=gen)
    target = (torch.rand(2, 1, 8, 8, generator=gen) > 0.5).float()
    expected = 2.0 * F.binary_cross_entropy_with_logits(logits, target) + 0.5 * soft_dice_loss(logits, target)
    value = bce_dice_loss(logits, target, bce_weight=2.0, dice_weight=0.5)
    assert value.item() == pytest.approx(expected.item())
    assert BCEDiceLoss()(logits, target).item() == pytest.approx(bce_dice_loss(logits, target).item())


@pytest.mark.parametrize("shape", [(2, 1, 5, 6), (1, 2, 3, 4, 5)], ids=["2d", "3d"])
def test_gradcheck(shape):
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    target = (torch.rand(shape, generator=gen) > 0.5).double()
    mask = torch.rand(shape, generator=gen) > 0.4
    assert torch.autograd.gradcheck(lambda x: soft_dice_loss(x, target), (logits,))
    assert torch.autograd.gradcheck(lambda x: bce_dice_loss(x, target), (logits,))
    for normalization in ("volume", "mask"):
        assert torch.autograd.gradcheck(
            lambda x, n=normalization: masked_bce_loss(x, target, mask, normalization=n), (logits,)
        )
