"""Voxel-wise losses: binary cross-entropy, soft Dice, and BCE restricted to a mask.

All functions take ``(logits, target)``: raw network outputs and a binary target of the same shape,
(B, C, Y, X) or (B, C, Z, Y, X). They apply the sigmoid themselves. Ratio losses (Dice) sum over the
batch and the spatial axes separately for each channel ("batch Dice") and average over channels, so an
empty patch in a batch does not produce 0/0.

The masked BCE is the building block of the topology losses that re-weight critical regions
(:mod:`pipeline.losses.supervoxel`, :mod:`pipeline.losses.simplified_topology`). Two normalizations exist:

``"volume"``
    sum of the voxel BCE over the mask divided by the number of voxels in the channel. The term is a
    re-weighting of the plain mean BCE: a masked voxel gets ``weight`` times the gradient an ordinary
    voxel gets from the mean BCE, whatever the patch size or the number of masked voxels, and the term
    goes to 0 continuously as the mask shrinks.
``"mask"``
    mean of the voxel BCE over the masked voxels (0 where the mask is empty): "BCE computed within the
    mask". Its value has the magnitude of a BCE whatever the mask size, so a small mask gets a strong
    per-voxel gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.losses._validation import (
    Normalization,
    check_logits_target,
    check_mask,
    check_normalization,
    check_positive,
)

__all__ = [
    "BCEDiceLoss",
    "BCELoss",
    "SoftDiceLoss",
    "bce_dice_loss",
    "bce_loss",
    "masked_bce_loss",
    "soft_dice_loss",
]


def _reduce_dims(x: torch.Tensor) -> tuple[int, ...]:
    """All axes except the channel axis: (0, 2, 3[, 4])."""
    return (0, *range(2, x.ndim))


def masked_mean_per_channel(
    values: torch.Tensor, mask: torch.Tensor, normalization: Normalization
) -> torch.Tensor:
    """Per-channel reduction of voxel-wise ``values`` over ``mask``; returns a (C,) tensor.

    ``"volume"``: sum over the mask / voxels per channel. ``"mask"``: sum over the mask / masked voxels
    (0 for an empty mask).
    """
    dims = _reduce_dims(values)
    m = mask.to(values.dtype)
    total = (values * m).sum(dims)
    if normalization == "volume":
        return total / (values.numel() // values.shape[1])
    return total / m.sum(dims).clamp_min(1.0)


def soft_dice_per_channel(
    probs: torch.Tensor, target: torch.Tensor, smooth: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Soft Dice loss ``1 - (2 Σ p y + s) / (Σ p + Σ y + s)`` per channel (sums over batch and space)."""
    if mask is not None:
        m = mask.to(probs.dtype)
        probs = probs * m
        target = target * m
    dims = _reduce_dims(probs)
    intersection = (probs * target).sum(dims)
    denominator = probs.sum(dims) + target.sum(dims)
    return 1.0 - (2.0 * intersection + smooth) / (denominator + smooth)


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy with logits over all voxels and channels.

    Parameters
    ----------
    logits : torch.Tensor
        (B, C, [Z,] Y, X) floating point, raw network outputs.
    target : torch.Tensor
        Same shape, binary (bool, or 0/1 integers or floats).

    Returns
    -------
    torch.Tensor
        Scalar in the dtype of ``logits``.
    """
    t = check_logits_target(logits, target)
    return F.binary_cross_entropy_with_logits(logits, t)


def masked_bce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    *,
    normalization: Normalization = "volume",
) -> torch.Tensor:
    """Binary cross-entropy with logits restricted to ``mask``, averaged over channels.

    Parameters
    ----------
    logits : torch.Tensor
        (B, C, [Z,] Y, X) floating point.
    target : torch.Tensor
        Same shape, binary.
    mask : torch.Tensor
        Same shape, ``torch.bool``; voxels where the BCE counts. It is a constant: no gradient flows
        through it.
    normalization : {"volume", "mask"}
        ``"volume"``: Σ_mask BCE / voxels per channel; ``"mask"``: Σ_mask BCE / Σ mask (0 if empty).

    Returns
    -------
    torch.Tensor
        Scalar, the mean over channels of the per-channel value.

    Examples
    --------
    >>> logits = torch.zeros(1, 1, 2, 2)
    >>> mask = torch.tensor([[[[True, False], [False, False]]]])
    >>> float(masked_bce_loss(logits, torch.ones(1, 1, 2, 2), mask, normalization="mask"))  # log 2
    0.6931471824645996
    """
    t = check_logits_target(logits, target)
    check_mask(mask, "mask", logits)
    norm = check_normalization(normalization)
    values = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    return masked_mean_per_channel(values, mask, norm).mean()


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, *, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss of ``sigmoid(logits)``, batch Dice per channel, mean over channels.

    ``1 - (2 Σ p·y + smooth) / (Σ p + Σ y + smooth)`` with sums over the batch and spatial axes.
    An empty target gives ``1 - smooth / (Σ p + smooth)``, which is 0 for an empty prediction; never NaN.

    Raises
    ------
    ValueError
        If ``smooth`` is not positive (a zero smooth term makes empty patches 0/0).
    """
    t = check_logits_target(logits, target)
    s = check_positive(smooth, "smooth")
    return soft_dice_per_channel(torch.sigmoid(logits), t, s).mean()


def bce_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    bce_weight: float = 1.0,
    dice_weight: float = 1.0,
    smooth: float = 1.0,
) -> torch.Tensor:
    """``bce_weight · BCE + dice_weight · soft Dice``, the nnU-Net baseline (weights 1 and 1)."""
    t = check_logits_target(logits, target)
    s = check_positive(smooth, "smooth")
    bce = F.binary_cross_entropy_with_logits(logits, t)
    dice = soft_dice_per_channel(torch.sigmoid(logits), t, s).mean()
    return bce_weight * bce + dice_weight * dice


class BCELoss(nn.Module):
    """Module form of :func:`bce_loss`; called as ``loss(logits, target)``."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return bce_loss(logits, target)


class SoftDiceLoss(nn.Module):
    """Module form of :func:`soft_dice_loss`; called as ``loss(logits, target)``."""

    def __init__(self, *, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = check_positive(smooth, "smooth")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_dice_loss(logits, target, smooth=self.smooth)

    def extra_repr(self) -> str:
        return f"smooth={self.smooth}"


class BCEDiceLoss(nn.Module):
    """Module form of :func:`bce_dice_loss`; called as ``loss(logits, target)``."""

    def __init__(self, *, bce_weight: float = 1.0, dice_weight: float = 1.0, smooth: float = 1.0) -> None:
        super().__init__()
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        self.smooth = check_positive(smooth, "smooth")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return bce_dice_loss(
            logits, target, bce_weight=self.bce_weight, dice_weight=self.dice_weight, smooth=self.smooth
        )

    def extra_repr(self) -> str:
        return f"bce_weight={self.bce_weight}, dice_weight={self.dice_weight}, smooth={self.smooth}"
