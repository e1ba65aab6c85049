"""clDice: centerline Dice between soft skeletons (Shit et al., CVPR 2021).

Unlike the reference implementations, this loss takes ``(logits, target)`` in that order, like every
loss in :mod:`pipeline.losses`, applies the sigmoid itself, and treats every channel as a binary
foreground (no background channel is skipped).
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.losses._validation import check_logits_target, check_positive, check_precomputed
from pipeline.losses.skeleton import soft_skeleton

__all__ = ["ClDiceLoss", "cldice_loss"]


def _check_iterations(iterations: int) -> int:
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations={iterations!r}; expected a non-negative integer")
    return iterations


def cldice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    iterations: int = 3,
    smooth: float = 1.0,
    target_skeleton: torch.Tensor | None = None,
) -> torch.Tensor:
    """clDice loss ``1 - 2·Tprec·Tsens / (Tprec + Tsens)`` of ``sigmoid(logits)`` against ``target``.

    With ``P = sigmoid(logits)``, ``S_P = soft_skeleton(P)`` and ``S_L = soft_skeleton(target)``:
    ``Tprec = (Σ S_P·target + smooth) / (Σ S_P + smooth)`` (how much of the predicted centerline lies in
    the label) and ``Tsens = (Σ S_L·P + smooth) / (Σ S_L + smooth)`` (how much of the label centerline is
    covered). Sums run over the batch and spatial axes per channel; the result is the mean over channels.

    Parameters
    ----------
    logits : torch.Tensor
        (B, C, Y, X) or (B, C, Z, Y, X), floating point.
    target : torch.Tensor
        Same shape, binary.
    iterations : int
        Erosions of the soft skeleton; should exceed the largest object radius in voxels.
    smooth : float
        Positive smoothing term; keeps empty targets and predictions finite.
    target_skeleton : torch.Tensor, optional
        ``soft_skeleton(target, iterations)``, precomputed (e.g. in a data-loader worker: it depends on
        the label only, and it is half the forward cost). Computed here when None.

    Returns
    -------
    torch.Tensor
        Scalar in [0, 1].

    Raises
    ------
    ValueError
        For mismatched shapes, a wrong ndim, non-binary targets, a negative ``iterations`` or a
        non-positive ``smooth``.

    Examples
    --------
    >>> target = torch.zeros(1, 1, 9, 9); target[..., 3:6, 1:8] = 1
    >>> float(cldice_loss(torch.where(target > 0, 20.0, -20.0), target)) < 1e-6
    True
    """
    t = check_logits_target(logits, target)
    its = _check_iterations(iterations)
    s = check_positive(smooth, "smooth")
    probs = torch.sigmoid(logits)
    skel_pred = soft_skeleton(probs, its)
    if target_skeleton is None:
        with torch.no_grad():
            skel_true = soft_skeleton(t, its)
    else:
        skel_true = check_precomputed(target_skeleton, "target_skeleton", logits)
    dims = (0, *range(2, logits.ndim))
    tprec = ((skel_pred * t).sum(dims) + s) / (skel_pred.sum(dims) + s)
    tsens = ((skel_true * probs).sum(dims) + s) / (skel_true.sum(dims) + s)
    return (1.0 - 2.0 * tprec * tsens / (tprec + tsens)).mean()


class ClDiceLoss(nn.Module):
    """Module form of :func:`cldice_loss`; called as ``loss(logits, target)``.

    Examples
    --------
    >>> loss = ClDiceLoss(iterations=5)
    >>> logits = torch.randn(2, 1, 32, 32, requires_grad=True)
    >>> loss(logits, torch.zeros(2, 1, 32, 32)).backward()
    """

    def __init__(self, *, iterations: int = 3, smooth: float = 1.0) -> None:
        super().__init__()
        self.iterations = _check_iterations(iterations)
        self.smooth = check_positive(smooth, "smooth")

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, target_skeleton: torch.Tensor | None = None
    ) -> torch.Tensor:
        return cldice_loss(
            logits, target, iterations=self.iterations, smooth=self.smooth, target_skeleton=target_skeleton
        )

    def extra_repr(self) -> str:
        return f"iterations={self.iterations}, smooth={self.smooth}"
