"""Negative Centerline Loss (Szustakowski et al., AIS continuity paper, Algorithm 1).

The fraction of the label's centerline that the prediction misses:
``|(1 - P) ∘ L_CL| / |L_CL|`` with ``P = sigmoid(logits)`` and ``L_CL`` the soft skeleton of the label
eroded until empty (Algorithm 2, :func:`pipeline.losses.skeleton.soft_skeleton_until_empty`). The loss
is linear in ``P``; its gradient is largest where the centerline crosses a gap in the prediction.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.losses._validation import check_logits_target, check_precomputed
from pipeline.losses.skeleton import soft_skeleton_until_empty

__all__ = ["NegativeCenterlineLoss", "negative_centerline_loss"]


def _check_max_iterations(max_iterations: int) -> int:
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
        raise ValueError(f"max_iterations={max_iterations!r}; expected a positive integer")
    return max_iterations


def negative_centerline_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    max_iterations: int = 100,
    centerline: torch.Tensor | None = None,
) -> torch.Tensor:
    """Negative Centerline Loss: the share of the label centerline not covered by ``sigmoid(logits)``.

    Sums run over the batch and spatial axes per channel, as in Algorithm 1 (``|A|`` is the sum of all
    elements); the result is the mean over channels. A channel whose label has no centerline (empty
    target, or foreground filling the patch, which the border-neutral erosion never thins) contributes 0,
    never NaN.

    Parameters
    ----------
    logits : torch.Tensor
        (B, C, Y, X) or (B, C, Z, Y, X), floating point.
    target : torch.Tensor
        Same shape, binary.
    max_iterations : int
        Safety cap on the erosions of the label skeleton (Algorithm 2 runs until the label is empty,
        which takes about the largest object radius in voxels).
    centerline : torch.Tensor, optional
        The label centerline ``soft_skeleton_until_empty(target)``, precomputed (e.g. in a data-loader
        worker: it depends on the label only, and it is the whole cost of this loss). Computed here when
        None. Shape, device and dtype of ``logits``.

    Returns
    -------
    torch.Tensor
        Scalar in [0, 1]: 0 when ``P = 1`` on the whole centerline, 1 when ``P = 0`` there.

    Examples
    --------
    >>> target = torch.zeros(1, 1, 9, 16); target[..., 3:6, 2:14] = 1
    >>> float(negative_centerline_loss(torch.full_like(target, -1e4), target))
    1.0
    """
    t = check_logits_target(logits, target)
    its = _check_max_iterations(max_iterations)
    if centerline is None:
        with torch.no_grad():
            centerline = soft_skeleton_until_empty(t, max_iterations=its)
    else:
        centerline = check_precomputed(centerline, "centerline", logits)
    dims = (0, *range(2, logits.ndim))
    missed = ((1.0 - torch.sigmoid(logits)) * centerline).sum(dims)
    length = centerline.sum(dims)
    # A channel without centerline has missed == 0 exactly, so 0 / tiny == 0 and its gradient is 0.
    return (missed / length.clamp_min(torch.finfo(length.dtype).tiny)).mean()


class NegativeCenterlineLoss(nn.Module):
    """Module form of :func:`negative_centerline_loss`; called as ``loss(logits, target)``."""

    def __init__(self, *, max_iterations: int = 100) -> None:
        super().__init__()
        self.max_iterations = _check_max_iterations(max_iterations)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, centerline: torch.Tensor | None = None
    ) -> torch.Tensor:
        return negative_centerline_loss(
            logits, target, max_iterations=self.max_iterations, centerline=centerline
        )

    def extra_repr(self) -> str:
        return f"max_iterations={self.max_iterations}"
