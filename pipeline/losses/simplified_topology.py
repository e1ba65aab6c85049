"""Simplified Topology Loss (Szustakowski et al., AIS continuity paper, section 2.2 and Algorithm 3).

The loss finds the regions that matter for continuity and re-applies binary cross-entropy inside them:

1. ``P = logits > 0`` (probability > 0.5) and ``D = ReLU(L - P)``: label voxels the prediction misses.
2. Connected components of ``P`` and of ``D``.
3. A region of ``D`` that touches at least two distinct regions of ``P`` is a gap that splits an object.
4. A region of ``P`` that overlaps no label voxel is a spurious detection. This follows the paper's
   prose ("prediction regions that do not overlap with any region of the label"); its pseudo-code
   instead selects the prediction regions that *do* touch a region of ``D``.
5. The mask is the union of the selected regions, dilated once with the cross (face-neighbour)
   structuring element, as the paper's regions are components of dilated images. Algorithm 3 writes
   its output ``R`` inverted (0 on the selected regions, 1 elsewhere); the mask here is the selected
   set itself, i.e. ``1 - R``, and the BCE is computed on it.

Deviation from Algorithm 3, on purpose: the paper labels the *dilated* prediction. Dilating first merges
prediction pieces that are at most two voxels apart, so a gap of one or two voxels (the commonest
signal-dropout split) joins its two sides into one region and is never selected. Here regions are the
components of the undilated ``P`` and ``D`` (with ``connectivity``, full by default so that thin
diagonal neurites stay one region), and "touches" means "is a neighbour under the same connectivity" --
what the dilation was for. Every region is considered, including the highest-numbered one (the
authors' code skips it).

Runs on CPU numpy (``cc3d`` labelling); cost is linear in the number of voxels, with no per-voxel
Python loops. The mask carries no gradient.
"""

from __future__ import annotations

import itertools

import cc3d
import numpy as np
import torch
from torch import nn

from pipeline._checks import check_array, check_same_shape
from pipeline.losses._validation import (
    Normalization,
    check_connectivity,
    check_connectivity_option,
    check_logits_target,
    check_mask,
    check_normalization,
)
from pipeline.losses.voxelwise import masked_mean_per_channel

__all__ = [
    "SimplifiedTopologyLoss",
    "find_regions",
    "simplified_topology_loss",
    "simplified_topology_mask",
]


def neighbour_offsets(ndim: int, connectivity: int) -> list[tuple[int, ...]]:
    """Offsets of the neighbours of a voxel under ``connectivity`` (4/8 in 2-D, 6/18/26 in 3-D)."""
    max_hops = {4: 1, 6: 1, 18: 2, 8: 2, 26: 3}[connectivity]
    return [
        o for o in itertools.product((-1, 0, 1), repeat=ndim) if 0 < sum(abs(v) for v in o) <= max_hops
    ]


def dilate_cross(mask: np.ndarray) -> np.ndarray:
    """Binary dilation with the cross (face-neighbour) structuring element; border stays open."""
    out = mask.copy()
    for axis in range(mask.ndim):
        lo = [slice(None)] * mask.ndim
        hi = [slice(None)] * mask.ndim
        lo[axis] = slice(None, -1)
        hi[axis] = slice(1, None)
        out[tuple(hi)] |= mask[tuple(lo)]
        out[tuple(lo)] |= mask[tuple(hi)]
    return out


def _touching_pairs(
    labels_a: np.ndarray, labels_b: np.ndarray, n_b: int, offsets: list[tuple[int, ...]]
) -> np.ndarray:
    """Unique codes ``a * (n_b + 1) + b`` of regions a (of labels_a) and b (of labels_b) that are neighbours.

    Only the voxels of ``labels_a`` are visited, so the cost is |a-voxels| × |offsets|.
    """
    coords = np.nonzero(labels_a)
    if coords[0].size == 0:
        return np.zeros(0, dtype=np.int64)
    ids_a = labels_a[coords].astype(np.int64)
    shape = labels_a.shape
    codes = []
    for offset in offsets:
        neighbour = [c + o for c, o in zip(coords, offset, strict=True)]
        inside = np.ones(ids_a.shape, dtype=bool)
        for n, size in zip(neighbour, shape, strict=True):
            inside &= (n >= 0) & (n < size)
        ids_b = labels_b[tuple(n[inside] for n in neighbour)].astype(np.int64)
        hit = ids_b > 0
        codes.append(ids_a[inside][hit] * (n_b + 1) + ids_b[hit])
    return np.unique(np.concatenate(codes))


def _find_regions(pred: np.ndarray, target: np.ndarray, connectivity: int) -> np.ndarray:
    """:func:`find_regions` on checked, boolean, C-contiguous 2-D/3-D arrays."""
    pred_labels, n_pred = cc3d.connected_components(pred, connectivity=connectivity, return_N=True)
    missing = target & ~pred
    missing_labels, n_missing = cc3d.connected_components(missing, connectivity=connectivity, return_N=True)

    selected = np.zeros(pred.shape, dtype=bool)
    if n_missing and n_pred:
        offsets = neighbour_offsets(pred.ndim, connectivity)
        codes = _touching_pairs(missing_labels, pred_labels, n_pred, offsets)
        touched = np.bincount(codes // (n_pred + 1), minlength=n_missing + 1)
        gap = touched >= 2  # lookup table over labels 0..n_missing, all of them; label 0 never qualifies
        gap[0] = False
        selected |= gap[missing_labels]
    if n_pred:
        overlap = np.bincount(pred_labels[target], minlength=n_pred + 1)
        spurious = overlap == 0  # lookup table over labels 0..n_pred
        spurious[0] = False
        selected |= spurious[pred_labels]
    return dilate_cross(selected)


def find_regions(pred: np.ndarray, target: np.ndarray, *, connectivity: int | None = None) -> np.ndarray:
    """Regions that break continuity: gaps joining two prediction pieces, and spurious predictions.

    Parameters
    ----------
    pred : numpy.ndarray
        (Y, X) or (Z, Y, X) binary prediction, bool or integer (nonzero = foreground), already
        thresholded (the losses use ``logits > 0``).
    target : numpy.ndarray
        Binary label of the same shape, bool or integer (nonzero = foreground).
    connectivity : int, optional
        4 or 8 in 2-D, 6, 18 or 26 in 3-D, for both the labelling and "touches"; None (default) is full
        connectivity (8 or 26).

    Returns
    -------
    numpy.ndarray
        Boolean mask, same shape: the components of ``target & ~pred`` that neighbour two or more
        components of ``pred``, plus the components of ``pred`` with no voxel in ``target``, dilated
        once with the cross structuring element. It is ``1 - R`` for Algorithm 3's output ``R``.

    Raises
    ------
    TypeError
        If an array is not bool or integer.
    ValueError
        If an array is not 2-D or 3-D, the shapes differ, or the connectivity does not fit the ndim.

    Examples
    --------
    >>> target = np.zeros((3, 9), bool); target[1, 1:8] = True
    >>> pred = target.copy(); pred[1, 4] = False          # a one-voxel gap
    >>> find_regions(pred, target).astype(int)
    array([[0, 0, 0, 0, 1, 0, 0, 0, 0],
           [0, 0, 0, 1, 1, 1, 0, 0, 0],
           [0, 0, 0, 0, 1, 0, 0, 0, 0]])
    """
    p = check_array(pred, "pred", ndim=(2, 3), kinds="biu")
    t = check_array(target, "target", ndim=(2, 3), kinds="biu")
    check_same_shape(p, "pred", t, "target")
    conn = check_connectivity(connectivity, p.ndim)
    return _find_regions(np.ascontiguousarray(p != 0), np.ascontiguousarray(t != 0), conn)


def simplified_topology_mask(
    logits: torch.Tensor, target: torch.Tensor, *, connectivity: int | None = None
) -> torch.Tensor:
    """:func:`find_regions` for every batch item and channel of ``(logits, target)``.

    The prediction is ``logits > 0``. The mask is computed on CPU (the inputs are detached and copied)
    and returned as a ``torch.bool`` tensor of the shape of ``logits`` on its device.
    """
    t = check_logits_target(logits, target)
    conn = check_connectivity(connectivity, logits.ndim - 2)
    pred = (logits.detach() > 0).cpu().numpy()
    tgt = (t.detach() != 0).cpu().numpy()
    out = np.zeros(pred.shape, dtype=bool)
    for b, c in np.ndindex(*pred.shape[:2]):
        out[b, c] = _find_regions(pred[b, c], tgt[b, c], conn)
    return torch.from_numpy(out).to(logits.device)


def simplified_topology_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    connectivity: int | None = None,
    normalization: Normalization = "mask",
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Binary cross-entropy re-applied on the :func:`simplified_topology_mask` of ``(logits, target)``.

    Parameters
    ----------
    logits : torch.Tensor
        (B, C, Y, X) or (B, C, Z, Y, X), floating point.
    target : torch.Tensor
        Same shape, binary.
    connectivity : int, optional
        See :func:`find_regions`.
    normalization : {"mask", "volume"}
        ``"mask"`` (default): mean BCE over the masked voxels, per channel, 0 where the mask is empty --
        the paper's "re-apply the BCE within the regions"; its magnitude is that of a BCE whatever the
        mask size, which is what the paper's weight 4/5 (Table 1) was tuned against. ``"volume"``: sum
        over the mask divided by the voxel count, a mild re-weighting of the plain BCE.
    mask : torch.Tensor, optional
        A precomputed ``torch.bool`` mask, computed here when None. It depends on the prediction, so a
        precomputed one is necessarily stale: e.g. made in a background thread from the previous step's
        logits, or reused for k steps, to take the CPU labelling off the critical path.

    Returns
    -------
    torch.Tensor
        Scalar; 0 when no region qualifies. Gradients flow through ``logits`` only.
    """
    t = check_logits_target(logits, target)
    norm = check_normalization(normalization)
    if mask is None:
        mask = simplified_topology_mask(logits, t, connectivity=connectivity)
    else:
        check_mask(mask, "mask", logits)
    values = nn.functional.binary_cross_entropy_with_logits(logits, t, reduction="none")
    return masked_mean_per_channel(values, mask, norm).mean()


class SimplifiedTopologyLoss(nn.Module):
    """Module form of :func:`simplified_topology_loss`; called as ``loss(logits, target)``.

    Examples
    --------
    >>> loss = SimplifiedTopologyLoss()
    >>> target = torch.zeros(1, 1, 3, 9); target[0, 0, 1, 1:8] = 1
    >>> logits = torch.where(target > 0, 3.0, -3.0); logits[0, 0, 1, 4] = -3.0   # a one-voxel gap
    >>> round(float(loss(logits, target)), 4)  # BCE over the 5 masked voxels: (3.0486 + 4 * 0.0486) / 5
    0.6486
    """

    def __init__(self, *, connectivity: int | None = None, normalization: Normalization = "mask") -> None:
        super().__init__()
        self.connectivity = check_connectivity_option(connectivity)
        self.normalization = check_normalization(normalization)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return simplified_topology_loss(
            logits, target, connectivity=self.connectivity, normalization=self.normalization
        )

    def extra_repr(self) -> str:
        return f"connectivity={self.connectivity}, normalization={self.normalization!r}"
