"""Instance-level supervoxel loss of affinity logits: critical edges found on decoded segments.

:func:`~pipeline.losses.affinity_supervoxel_loss` applies Definition 1 of Gornet et al. to each affinity
channel as its own binary image, which barely sees the mistakes that matter: two touching objects form
one component in every channel, so a merge at their interface is a few extra positive pixels of that
component, and a split of a neurite (a sheet of low affinities) rarely changes a channel's binary
topology. The paper's section "Extension to Affinity Models" asks instead that the affinities first be
transformed into a voxel-based (instance) representation, the critical components found there, and
then mapped back to the edges. This module does that, with the single-linkage decoding at 0.5.

Affinities follow the waterz convention: channel ``d`` at voxel ``p`` is the edge between ``p`` and
``p - e_d`` (for (B, 3, Z, Y, X): channel 0 links (z, y, x) with (z-1, y, x), channel 1 with
(z, y-1, x), channel 2 with (z, y, x-1)). The first slice along ``d`` links to a voxel outside the patch;
it is no edge of the voxel graph below and is never critical (its target is 0 by convention).

Definition
----------
Per batch item, on the voxel graph of the patch:

1. *Decode.* The predicted segments are the connected components of the predicted-positive edges
   (``logit > 0``, probability > 0.5): single-linkage agglomeration at threshold 0.5. The ground-truth
   components are those of the target-positive edges. A voxel's ground-truth instance is its component
   if that has at least 2 voxels, else 0 (background: a voxel with no positive target edge). The target
   alone thus gives the instances, up to objects of a single voxel, which count as background.
2. *Negatively critical edges* (splits and deletions): target 1 and the two voxels in different
   predicted segments (hence predicted 0). A false-negative edge inside one predicted segment changes
   no topology and is not critical; a deleted object (all its voxels singletons) has all its edges
   negatively critical, a split object all the target edges between its pieces.
3. *Positively critical edges* (merges and spurious objects): the false-positive edges (target 0,
   predicted 1) form a graph of their own; a connected component of it (a set of voxels joined by
   false-positive edges) is critical if the non-zero ground-truth instances among its voxels number 2 or
   more (it joins two objects: a merge) or 0 (a spurious object made only of background). A component
   touching exactly one object only fattens it and is not critical, as in Definition 1, where a
   false-positive component adjacent to exactly one object is not critical. Every edge of a critical
   component is positively critical.

*Every predicted merge contains a critical component.* Take a path of predicted-positive edges from a
voxel of object A to a voxel of object B ≠ A (both non-zero). Each edge is a true positive (target 1:
both ends in one ground-truth object) or a false positive. Cut the path into maximal runs of
false-positive edges; each run lies in one false-positive component. A run starts at the path's first
voxel or at the end of a true-positive edge, and ends at its last voxel or at the start of one, so both
ends of a run are voxels of non-zero objects. If no component on the path were critical, each would
touch exactly one object, so each run would start and end in the same object; true-positive edges stay
in one object too, so the object would be the same along the whole path and A = B, a contradiction.
Hence some false-positive component on the path touches 2 or more objects and is penalized; setting
all positively critical edges to 0 leaves no merge, and setting all negatively critical edges to 1
rejoins every split and deleted object.

Loss value
----------
As :func:`~pipeline.losses.supervoxel_loss` with ``dice=False``, per channel::

    (1 - α) mean BCE + α [ β Σ_{positive critical} BCE + (1 - β) Σ_{negative critical} BCE ] / N

with ``N`` the voxels of the channel (``normalization="volume"``; ``"mask"`` divides by the number of
critical edges of each kind instead), then the mean over channels. The critical masks are computed per
batch item on CPU numpy from detached tensors (``scipy.sparse.csgraph.connected_components``, three
calls per item); they are moved to the device of ``logits`` and carry no gradient.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from torch import nn

from pipeline.losses._validation import (
    Normalization,
    check_logits_target,
    check_normalization,
    check_unit_interval,
)
from pipeline.losses.supervoxel import CriticalMasks, _check_critical
from pipeline.losses.voxelwise import masked_mean_per_channel

__all__ = ["AffinityInstanceLoss", "affinity_instance_loss", "instance_critical_edges"]


def _check_affinities(logits: torch.Tensor) -> None:
    """Raise ValueError unless ``logits`` has one nearest-neighbour affinity channel per spatial axis."""
    spatial = logits.ndim - 2
    if logits.shape[1] != spatial:
        axes = "(B, 3, Z, Y, X)" if spatial == 3 else "(B, 2, Y, X)"
        raise ValueError(
            f"logits has {logits.shape[1]} channels for {spatial} spatial dims (shape "
            f"{tuple(logits.shape)}); expected {spatial} nearest-neighbour affinity channels, {axes}"
        )


def _components(n: int, heads: np.ndarray, tails: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Connected-component label (0..k-1) of each of ``n`` voxels under the edges selected by ``edges``."""
    rows, cols = heads[edges], tails[edges]
    graph = csr_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _critical_edges(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Negatively and positively critical edges of one item; ``pred``, ``target`` (D, *S) bool."""
    spatial = pred.shape[1:]
    n = int(np.prod(spatial))
    voxels = np.arange(n).reshape(spatial)
    strides = [int(np.prod(spatial[d + 1 :])) for d in range(len(spatial))]
    heads = np.broadcast_to(voxels, pred.shape).ravel()
    tails = np.stack([voxels - s for s in strides]).ravel()  # p - e_d; wraps on the first slice
    inside = np.zeros(pred.shape, dtype=bool)
    for d in range(len(spatial)):
        inside[(d, *(slice(1, None) if a == d else slice(None) for a in range(len(spatial))))] = True
    pred_e = pred.ravel() & inside.ravel()
    true_e = target.ravel() & inside.ravel()

    negative = np.zeros(pred_e.shape, dtype=bool)
    segment = _components(n, heads, tails, pred_e)
    negative[true_e] = segment[heads[true_e]] != segment[tails[true_e]]

    truth = _components(n, heads, tails, true_e)
    instance = np.where(np.bincount(truth)[truth] >= 2, truth + 1, 0)

    positive = np.zeros(pred_e.shape, dtype=bool)
    false_e = pred_e & ~true_e
    if false_e.any():
        component = _components(n, heads, tails, false_e)
        ends = np.concatenate([heads[false_e], tails[false_e]])
        touched = instance[ends]
        keep = touched != 0
        pairs = np.unique(component[ends[keep]].astype(np.int64) * (n + 1) + touched[keep])
        objects = np.bincount(pairs // (n + 1), minlength=n)
        positive[false_e] = objects[component[heads[false_e]]] != 1
    return negative.reshape(pred.shape), positive.reshape(pred.shape)


def instance_critical_edges(logits: torch.Tensor, target: torch.Tensor) -> CriticalMasks:
    """Critical edges of affinity logits against affinity targets, found on decoded instances.

    See the module docstring for the definition (steps 1-3).

    Parameters
    ----------
    logits : torch.Tensor
        (B, 3, Z, Y, X) or (B, 2, Y, X) nearest-neighbour affinity logits, waterz convention; an edge is
        predicted positive where ``logits > 0``.
    target : torch.Tensor
        Same shape, binary affinities: 1 iff both voxels belong to the same non-zero object.

    Returns
    -------
    CriticalMasks
        ``negative`` (target-positive edges between different predicted segments) and ``positive``
        (edges of false-positive components touching 0 or >= 2 objects): ``torch.bool`` tensors of the
        shape of ``logits`` on its device, no gradient.

    Raises
    ------
    ValueError
        For mismatched shapes, a wrong ndim, a channel count other than the spatial ndim, or a
        non-binary target.

    Examples
    --------
    >>> target = torch.zeros(1, 2, 1, 4); target[0, 1, 0, 1:] = 1   # one object of 4 voxels along x
    >>> logits = torch.where(target > 0, 5.0, -5.0); logits[0, 1, 0, 2] = -5.0   # split in the middle
    >>> instance_critical_edges(logits, target).negative[0, 1, 0].tolist()
    [False, False, True, False]
    """
    t = check_logits_target(logits, target)
    _check_affinities(logits)
    pred = (logits.detach() > 0).cpu().numpy()
    tgt = (t.detach() != 0).cpu().numpy()
    negative = np.zeros(pred.shape, dtype=bool)
    positive = np.zeros(pred.shape, dtype=bool)
    for b in range(pred.shape[0]):
        negative[b], positive[b] = _critical_edges(pred[b], tgt[b])
    device = logits.device
    return CriticalMasks(torch.from_numpy(negative).to(device), torch.from_numpy(positive).to(device))


def affinity_instance_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    alpha: float = 0.5,
    beta: float = 0.5,
    normalization: Normalization = "volume",
    critical: CriticalMasks | None = None,
) -> torch.Tensor:
    """Supervoxel loss of affinity logits with instance-level critical edges, mean over channels.

    Parameters
    ----------
    logits : torch.Tensor
        (B, 3, Z, Y, X) or (B, 2, Y, X) nearest-neighbour affinity logits, waterz convention.
    target : torch.Tensor
        Same shape, binary affinities.
    alpha : float
        Weight in [0, 1] of the critical-edge terms against the edge-wise BCE.
    beta : float
        Weight in [0, 1] of positively critical (merge) against negatively critical (split) edges.
    normalization : {"volume", "mask"}
        How a critical term is normalized (see :func:`~pipeline.losses.supervoxel_loss`).
    critical : CriticalMasks, optional
        Precomputed :func:`instance_critical_edges`, computed here when None (and α > 0).

    Returns
    -------
    torch.Tensor
        Scalar. Equals ``(1 - α)`` times the mean BCE when no edge is critical.

    Raises
    ------
    ValueError
        For mismatched shapes, a wrong ndim, a channel count other than the spatial ndim, a non-binary
        target, or α or β outside [0, 1].
    """
    t = check_logits_target(logits, target)
    _check_affinities(logits)
    a = check_unit_interval(alpha, "alpha")
    b = check_unit_interval(beta, "beta")
    norm = check_normalization(normalization)
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    total = torch.zeros(logits.shape[1], dtype=logits.dtype, device=logits.device)
    if a < 1.0:
        total = total + (1.0 - a) * bce.mean((0, *range(2, logits.ndim)))
    if a > 0.0:
        critical = (
            instance_critical_edges(logits, t) if critical is None else _check_critical(critical, logits)
        )
        positive = masked_mean_per_channel(bce, critical.positive, norm)
        negative = masked_mean_per_channel(bce, critical.negative, norm)
        total = total + a * (b * positive + (1.0 - b) * negative)
    return total.mean()


class AffinityInstanceLoss(nn.Module):
    """Module form of :func:`affinity_instance_loss`; called as ``loss(logits, target)``.

    Examples
    --------
    >>> loss = AffinityInstanceLoss(alpha=1.0, beta=0.5)
    >>> loss
    AffinityInstanceLoss(alpha=1.0, beta=0.5, normalization='volume')
    """

    def __init__(
        self, alpha: float = 0.5, beta: float = 0.5, *, normalization: Normalization = "volume"
    ) -> None:
        super().__init__()
        self.alpha = check_unit_interval(alpha, "alpha")
        self.beta = check_unit_interval(beta, "beta")
        self.normalization = check_normalization(normalization)

    def _kwargs(self) -> dict:
        return {"alpha": self.alpha, "beta": self.beta, "normalization": self.normalization}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return affinity_instance_loss(logits, target, **self._kwargs())

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._kwargs().items())
