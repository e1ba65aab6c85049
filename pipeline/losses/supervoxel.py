"""Supervoxel (critical-component) loss (Gornet et al., Definition 1) and its affinity form (Definition 4).

Definition 1::

    L(y, ŷ) = (1 - α) L0(y, ŷ) + α [ β Σ_{C ∈ P(ŷ+)} L0(y_C, ŷ_C) + (1 - β) Σ_{C ∈ N(ŷ-)} L0(y_C, ŷ_C) ]

with ``N(ŷ-)`` the negatively critical components (false negatives whose absence deletes or splits an
object) and ``P(ŷ+)`` the positively critical ones (false positives that create or merge objects), found
by :func:`pipeline.topology.critical_components` on ``ŷ = logits > 0`` (probability > 0.5). ``L0`` is the
binary cross-entropy with logits, plus the soft Dice loss when ``dice=True``.

Normalization of "L0 on the critical components"
------------------------------------------------
The paper sums ``L0`` over components without fixing a normalization. Here the voxel BCE is summed
over the union of the components of one kind and divided by the number of voxels of the channel,
the same denominator as the mean BCE of the first term (``normalization="volume"``, the default). The
whole loss is then a re-weighted mean BCE: an ordinary voxel has weight ``1 - α``, a positively critical
voxel ``1 - α + α β``, a negatively critical one ``1 - α + α (1 - β)``. This keeps exactly the ratios α
and β of Definition 1, does not depend on the patch size or on how many components a mistake breaks into,
goes to 0 continuously as the critical set shrinks (no 0/0, no jump when the last critical voxel is
fixed), and bounds every voxel's gradient by that of the plain BCE — so fine-tuning a baseline model with
it (the paper's recipe) does not shock the optimizer. ``normalization="mask"`` instead takes the mean
BCE over the critical voxels of each kind (0 if there are none): a "structure-level" term of BCE
magnitude whose per-voxel gradient grows as the critical set shrinks.

With ``dice=True`` the critical terms add the soft Dice loss computed on the critical voxels only
(``1 - (2 Σ_C p y + 1) / (Σ_C p + Σ_C y + 1)``), which is 0 on an empty set.

The critical components are computed per batch item and channel on CPU numpy from detached tensors;
the masks are moved to the device of ``logits`` and carry no gradient.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.losses._validation import (
    Normalization,
    check_connectivity,
    check_connectivity_option,
    check_logits_target,
    check_mask,
    check_normalization,
    check_positive,
    check_unit_interval,
)
from pipeline.losses.voxelwise import masked_mean_per_channel, soft_dice_per_channel
from pipeline.topology import critical_components

__all__ = [
    "AffinitySupervoxelLoss",
    "CriticalMasks",
    "SupervoxelLoss",
    "affinity_supervoxel_loss",
    "critical_masks",
    "supervoxel_loss",
]


class CriticalMasks(NamedTuple):
    """Critical voxels (or affinity edges) of a batch, as two ``torch.bool`` tensors shaped like the logits.

    Attributes
    ----------
    negative : torch.Tensor
        Negatively critical false negatives (splits and missing objects).
    positive : torch.Tensor
        Positively critical false positives (merges and spurious objects).
    """

    negative: torch.Tensor
    positive: torch.Tensor


def critical_masks(
    logits: torch.Tensor, target: torch.Tensor, *, connectivity: int | None = None
) -> CriticalMasks:
    """Critical components of ``logits > 0`` against ``target``, per batch item and channel.

    Parameters
    ----------
    logits : torch.Tensor
        (B, C, Y, X) or (B, C, Z, Y, X), floating point. Each channel is treated as its own binary image.
    target : torch.Tensor
        Same shape, binary.
    connectivity : int, optional
        4 or 8 (2-D), 6, 18 or 26 (3-D); None (default) is full connectivity (8 or 26), so that thin
        diagonal neurites count as one object.

    Returns
    -------
    CriticalMasks
        Boolean tensors of the shape of ``logits`` on its device.
    """
    t = check_logits_target(logits, target)
    conn = check_connectivity(connectivity, logits.ndim - 2)
    pred = (logits.detach() > 0).cpu().numpy()
    tgt = (t.detach() != 0).cpu().numpy()
    negative = np.zeros(pred.shape, dtype=bool)
    positive = np.zeros(pred.shape, dtype=bool)
    for b, c in np.ndindex(*pred.shape[:2]):
        found = critical_components(pred[b, c], tgt[b, c], connectivity=conn)
        negative[b, c] = found.negative
        positive[b, c] = found.positive
    device = logits.device
    return CriticalMasks(torch.from_numpy(negative).to(device), torch.from_numpy(positive).to(device))


def _check_critical(critical: CriticalMasks, logits: torch.Tensor) -> CriticalMasks:
    if not isinstance(critical, tuple) or len(critical) != 2:
        raise TypeError(
            f"critical must be a CriticalMasks(negative, positive); got {type(critical).__name__}"
        )
    return CriticalMasks(
        check_mask(critical[0], "critical.negative", logits),
        check_mask(critical[1], "critical.positive", logits),
    )


def _per_channel(
    logits: torch.Tensor,
    target: torch.Tensor,
    critical: CriticalMasks | None,
    *,
    alpha: float,
    beta: float,
    dice: bool,
    smooth: float,
    normalization: Normalization,
) -> torch.Tensor:
    """Definition 1 for every channel; returns a (C,) tensor."""
    dims = (0, *range(2, logits.ndim))
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    probs = torch.sigmoid(logits) if dice else None
    total = torch.zeros(logits.shape[1], dtype=logits.dtype, device=logits.device)
    if alpha < 1.0:
        base = bce.mean(dims)
        if probs is not None:
            base = base + soft_dice_per_channel(probs, target, smooth)
        total = total + (1.0 - alpha) * base
    if alpha > 0.0:
        assert critical is not None  # computed by the caller whenever alpha > 0
        terms = []
        for mask in (critical.positive, critical.negative):
            term = masked_mean_per_channel(bce, mask, normalization)
            if probs is not None:
                term = term + soft_dice_per_channel(probs, target, smooth, mask=mask)
            terms.append(term)
        total = total + alpha * (beta * terms[0] + (1.0 - beta) * terms[1])
    return total


def _loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    alpha: float,
    beta: float,
    connectivity: int | None,
    dice: bool,
    smooth: float,
    normalization: str,
    critical: CriticalMasks | None,
) -> torch.Tensor:
    t = check_logits_target(logits, target)
    a = check_unit_interval(alpha, "alpha")
    b = check_unit_interval(beta, "beta")
    s = check_positive(smooth, "smooth")
    norm = check_normalization(normalization)
    check_connectivity(connectivity, logits.ndim - 2)
    if a > 0.0:
        critical = (
            critical_masks(logits, t, connectivity=connectivity)
            if critical is None
            else _check_critical(critical, logits)
        )
    return _per_channel(logits, t, critical, alpha=a, beta=b, dice=bool(dice), smooth=s, normalization=norm)


def supervoxel_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    alpha: float = 0.5,
    beta: float = 0.5,
    connectivity: int | None = None,
    dice: bool = False,
    smooth: float = 1.0,
    normalization: Normalization = "volume",
    critical: CriticalMasks | None = None,
) -> torch.Tensor:
    """Supervoxel loss (Definition 1) of binary foreground logits, mean over channels.

    Parameters
    ----------
    logits : torch.Tensor
        (B, C, Y, X) or (B, C, Z, Y, X), floating point; the prediction is ``logits > 0``.
    target : torch.Tensor
        Same shape, binary.
    alpha : float
        Weight in [0, 1] of the critical-component terms against the voxel-wise term.
    beta : float
        Weight in [0, 1] of positively critical (merge) against negatively critical (split) components.
    connectivity : int, optional
        Connectivity of the critical components (see :func:`critical_masks`).
    dice : bool
        If True, ``L0`` is BCE + soft Dice instead of BCE.
    smooth : float
        Smoothing term of the soft Dice (used when ``dice``).
    normalization : {"volume", "mask"}
        How a critical term is normalized; see the module docstring. Default ``"volume"``.
    critical : CriticalMasks, optional
        Precomputed masks, computed here when None. They depend on the prediction, so precomputed ones
        are stale: e.g. made in a background thread from the previous step's logits, or reused for k
        steps, to take the CPU work off the critical path.

    Returns
    -------
    torch.Tensor
        Scalar. Equals the mean BCE (+ Dice) when there are no critical components and α < 1.

    Raises
    ------
    ValueError
        For mismatched shapes, a wrong ndim, a non-binary target, α or β outside [0, 1], or a
        connectivity that does not fit the ndim.
    """
    return _loss(
        logits,
        target,
        alpha=alpha,
        beta=beta,
        connectivity=connectivity,
        dice=dice,
        smooth=smooth,
        normalization=normalization,
        critical=critical,
    ).mean()


def affinity_supervoxel_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    alpha: float = 0.5,
    beta: float = 0.5,
    connectivity: int | None = None,
    dice: bool = False,
    smooth: float = 1.0,
    normalization: Normalization = "volume",
    critical: CriticalMasks | None = None,
) -> torch.Tensor:
    """Supervoxel loss of affinity logits (Definition 4): Definition 1 summed over affinity channels.

    Affinities follow the waterz convention: channel ``d`` at voxel ``p`` is the edge between ``p`` and
    ``p - e_d`` (for (B, 3, Z, Y, X): channel 0 links (z, y, x) with (z-1, y, x), channel 1 with
    (z, y-1, x), channel 2 with (z, y, x-1)); target affinities are 1 where both voxels belong to the same
    object, 0 elsewhere (and on the first slice along ``d``, whose partner lies outside the patch).

    Mapping between edges and voxels: channel ``d`` is read as a binary image in which voxel ``p``
    stands for the edge (p, p - e_d) -- a bijection, so no edge is lost or shared. The predicted
    (``logits[:, d] > 0``) and target affinity images are compared, critical components are computed on
    that image, and the critical "voxels" are the critical edges. This is Definition 4 taken literally
    (Definition 1 applied to the binary affinities of each channel), and it sees the mistakes that
    matter for affinity models: a split is a sheet of low affinities across a neurite, which removes no
    voxel from a voxel mask derived from affinities (its voxels keep their other edges), and a merge
    between touching objects is a sheet of high affinities at their interface, which a derived voxel
    mask cannot show at all (both objects are already foreground). Two objects that touch are separated
    only in the channel orthogonal to their interface, which is where their merge edges live.

    Parameters and return value are those of :func:`supervoxel_loss`; any number of channels works (e.g.
    long-range affinities), as channels are independent. The sum over channels means a 3-channel loss is
    three times the mean-over-channels value.
    """
    return _loss(
        logits,
        target,
        alpha=alpha,
        beta=beta,
        connectivity=connectivity,
        dice=dice,
        smooth=smooth,
        normalization=normalization,
        critical=critical,
    ).sum()


class SupervoxelLoss(nn.Module):
    """Module form of :func:`supervoxel_loss`; called as ``loss(logits, target)``.

    Examples
    --------
    >>> loss = SupervoxelLoss(alpha=0.5, beta=0.5)
    >>> target = torch.zeros(1, 1, 3, 7); target[0, 0, 1] = 1
    >>> logits = torch.where(target > 0, 2.0, -2.0); logits[0, 0, 1, 3] = -2.0   # a split
    >>> value = loss(logits, target)   # the gap voxel weighs 0.5 + 0.5 * 0.5 instead of 0.5
    """

    def __init__(
        self,
        alpha: float = 0.5,
        beta: float = 0.5,
        *,
        connectivity: int | None = None,
        dice: bool = False,
        smooth: float = 1.0,
        normalization: Normalization = "volume",
    ) -> None:
        super().__init__()
        self.alpha = check_unit_interval(alpha, "alpha")
        self.beta = check_unit_interval(beta, "beta")
        self.connectivity = check_connectivity_option(connectivity)
        self.dice = bool(dice)
        self.smooth = check_positive(smooth, "smooth")
        self.normalization = check_normalization(normalization)

    def _kwargs(self) -> dict:
        return {
            "alpha": self.alpha,
            "beta": self.beta,
            "connectivity": self.connectivity,
            "dice": self.dice,
            "smooth": self.smooth,
            "normalization": self.normalization,
        }

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return supervoxel_loss(logits, target, **self._kwargs())

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._kwargs().items())


class AffinitySupervoxelLoss(SupervoxelLoss):
    """Module form of :func:`affinity_supervoxel_loss` (Definition 4); called as ``loss(logits, target)``.

    ``logits`` and ``target`` are (B, D, [Z,] Y, X) affinities in the waterz convention (channel ``d``
    links ``p`` and ``p - e_d``); see :func:`affinity_supervoxel_loss` for the edge ↔ voxel mapping.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return affinity_supervoxel_loss(logits, target, **self._kwargs())
