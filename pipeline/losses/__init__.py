"""Training losses for binary foreground and affinity U-Nets, all called as ``loss(logits, target)``.

``logits`` are raw network outputs, (B, C, Y, X) or (B, C, Z, Y, X); ``target`` has the same shape, is
binary (bool, or 0/1 integers or floats) and lies on the same device. Every loss applies the sigmoid
itself, takes its device and dtype from ``logits``, and is a pure tensor function with a thin
``nn.Module`` around it.

============================  ==========================================================================
voxel-wise                    :func:`bce_loss`, :func:`soft_dice_loss`, :func:`bce_dice_loss`,
                              :func:`masked_bce_loss`
clDice (Shit et al.)          :func:`cldice_loss` / :class:`ClDiceLoss`
AIS paper (Szustakowski)      :func:`negative_centerline_loss` / :class:`NegativeCenterlineLoss`,
                              :func:`simplified_topology_loss` / :class:`SimplifiedTopologyLoss`
supervoxel (Gornet et al.)    :func:`supervoxel_loss` / :class:`SupervoxelLoss`,
                              :func:`affinity_supervoxel_loss` / :class:`AffinitySupervoxelLoss`,
                              :func:`affinity_instance_loss` / :class:`AffinityInstanceLoss`
                              (critical edges of decoded instances: :func:`instance_critical_edges`)
combinations                  :func:`compound_loss` / :class:`CompoundLoss` (AIS paper Table 1 weights)
============================  ==========================================================================
"""

from pipeline.losses.affinity_supervoxel import (
    AffinityInstanceLoss,
    affinity_instance_loss,
    instance_critical_edges,
)
from pipeline.losses.centerline import NegativeCenterlineLoss, negative_centerline_loss
from pipeline.losses.cldice import ClDiceLoss, cldice_loss
from pipeline.losses.compound import LOSS_KINDS, LOSS_WEIGHTS, CompoundLoss, compound_loss
from pipeline.losses.simplified_topology import (
    SimplifiedTopologyLoss,
    find_regions,
    simplified_topology_loss,
    simplified_topology_mask,
)
from pipeline.losses.skeleton import (
    soft_close,
    soft_dilate,
    soft_erode,
    soft_open,
    soft_skeleton,
    soft_skeleton_until_empty,
)
from pipeline.losses.supervoxel import (
    AffinitySupervoxelLoss,
    CriticalMasks,
    SupervoxelLoss,
    affinity_supervoxel_loss,
    critical_masks,
    supervoxel_loss,
)
from pipeline.losses.voxelwise import (
    BCEDiceLoss,
    BCELoss,
    SoftDiceLoss,
    bce_dice_loss,
    bce_loss,
    masked_bce_loss,
    soft_dice_loss,
)

__all__ = [
    "LOSS_KINDS",
    "LOSS_WEIGHTS",
    "AffinityInstanceLoss",
    "AffinitySupervoxelLoss",
    "BCEDiceLoss",
    "BCELoss",
    "ClDiceLoss",
    "CompoundLoss",
    "CriticalMasks",
    "NegativeCenterlineLoss",
    "SimplifiedTopologyLoss",
    "SoftDiceLoss",
    "SupervoxelLoss",
    "affinity_instance_loss",
    "affinity_supervoxel_loss",
    "bce_dice_loss",
    "bce_loss",
    "cldice_loss",
    "compound_loss",
    "critical_masks",
    "find_regions",
    "instance_critical_edges",
    "masked_bce_loss",
    "negative_centerline_loss",
    "simplified_topology_loss",
    "simplified_topology_mask",
    "soft_close",
    "soft_dice_loss",
    "soft_dilate",
    "soft_erode",
    "soft_open",
    "soft_skeleton",
    "soft_skeleton_until_empty",
    "supervoxel_loss",
]
