"""Every loss checks its inputs the same way and stays finite on empty and full targets, on every device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.losses import (
    affinity_supervoxel_loss,
    bce_dice_loss,
    bce_loss,
    cldice_loss,
    compound_loss,
    negative_centerline_loss,
    simplified_topology_loss,
    soft_dice_loss,
    supervoxel_loss,
)

LOSSES = {
    "bce": bce_loss,
    "soft_dice": soft_dice_loss,
    "bce_dice": bce_dice_loss,
    "cldice": cldice_loss,
    "negative_centerline": negative_centerline_loss,
    "simplified_topology": simplified_topology_loss,
    "supervoxel": supervoxel_loss,
    "supervoxel_dice_mask": lambda x, y: supervoxel_loss(x, y, dice=True, normalization="mask"),
    "affinity_supervoxel": affinity_supervoxel_loss,
    "compound_supervoxel": compound_loss("supervoxel"),
    "compound_cldice": compound_loss("cldice"),
}
ALL = pytest.mark.parametrize("loss", LOSSES.values(), ids=LOSSES.keys())
SHAPES = pytest.mark.parametrize("shape", [(2, 1, 16, 16), (2, 3, 6, 10, 12)], ids=["2d", "3d"])


@ALL
def test_shape_mismatch_names_both_shapes(loss):
    message = r"logits has shape \(1, 1, 8, 8\) but target has shape \(1, 1, 8, 9\); they must match"
    with pytest.raises(ValueError, match=message):
        loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))


@ALL
@pytest.mark.parametrize("shape", [(8, 8), (1, 8, 8), (1, 1, 2, 4, 4, 4)])
def test_wrong_ndim(loss, shape):
    with pytest.raises(ValueError, match=rf"logits has ndim={len(shape)} .*expected a 4-D \(B, C, Y, X\)"):
        loss(torch.zeros(shape), torch.zeros(shape))


@ALL
def test_non_binary_target(loss):
    target = torch.zeros(1, 1, 8, 8)
    target[0, 0, 2, 3] = 0.5
    with pytest.raises(ValueError, match="target has 1 values other than 0 and 1"):
        loss(torch.zeros(1, 1, 8, 8), target)


@ALL
def test_integer_logits_are_a_type_error(loss):
    with pytest.raises(TypeError, match="logits has dtype torch.int64; expected a floating-point tensor"):
        loss(torch.zeros(1, 1, 8, 8, dtype=torch.int64), torch.zeros(1, 1, 8, 8))


@ALL
def test_numpy_input_is_a_type_error(loss):
    with pytest.raises(TypeError, match="logits must be a torch.Tensor; got ndarray"):
        loss(np.zeros((1, 1, 8, 8)), torch.zeros(1, 1, 8, 8))


@ALL
def test_target_on_another_device(loss):
    with pytest.raises(ValueError, match="target is on meta but logits is on cpu"):
        loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8, device="meta"))


@ALL
@SHAPES
@pytest.mark.parametrize("fill", [0.0, 1.0], ids=["empty", "full"])
def test_empty_and_full_targets_are_finite(loss, shape, fill, device):
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device).requires_grad_()
    target = torch.full(shape, fill, device=device)
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(logits.grad).all()


@ALL
@SHAPES
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_and_dtype_follow_the_logits(loss, shape, dtype, device):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(shape, generator=gen, dtype=dtype).to(device).requires_grad_()
    target = (torch.rand(shape, generator=gen) > 0.7).to(device)  # bool target
    value = loss(logits, target)
    assert value.shape == ()
    assert value.device.type == device.type
    assert value.dtype == dtype
    value.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("target_dtype", [torch.bool, torch.uint8, torch.int64, torch.float16, torch.float32])
def test_target_dtypes_give_the_same_value(target_dtype):
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 1, 16, 16, generator=gen)
    target = torch.rand(2, 1, 16, 16, generator=gen) > 0.6
    reference = supervoxel_loss(logits, target.float())
    assert torch.equal(supervoxel_loss(logits, target.to(target_dtype)), reference)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x, y: supervoxel_loss(x, y, alpha=1.5), r"alpha=1.5 is outside \[0, 1\]"),
        (lambda x, y: supervoxel_loss(x, y, beta=-0.1), r"beta=-0.1 is outside \[0, 1\]"),
        (lambda x, y: supervoxel_loss(x, y, connectivity=6), "connectivity=6 is not valid for 2-D images"),
        (lambda x, y: supervoxel_loss(x, y, normalization="sum"), "normalization='sum'"),
        (lambda x, y: simplified_topology_loss(x, y, connectivity=26), "connectivity=26 is not valid"),
        (lambda x, y: cldice_loss(x, y, iterations=-1), "iterations=-1; expected a non-negative integer"),
        (lambda x, y: cldice_loss(x, y, smooth=0), "smooth=0 must be positive"),
        (lambda x, y: soft_dice_loss(x, y, smooth=-1), "smooth=-1 must be positive"),
        (lambda x, y: negative_centerline_loss(x, y, max_iterations=0), "max_iterations=0; expected"),
    ],
)
def test_bad_options(call, message):
    with pytest.raises(ValueError, match=message):
        call(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
