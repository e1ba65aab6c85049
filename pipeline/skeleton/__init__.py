"""Skeletons of label volumes and the lengths measured on them.

All positions are (z, y, x) in µm. ``object_lengths(labels, *, voxel_size_um)`` is the stable entry
point other stages rely on: the skeleton-graph-diameter length of every object, in µm.
"""

from pipeline.skeleton.lengths import (
    ObjectRow,
    cable_length_um,
    graph_diameter_um,
    object_lengths,
    object_table,
    smooth_skeleton,
)
from pipeline.skeleton.skeletonize import (
    dust_threshold_voxels,
    graph_to_skeleton,
    skeleton_to_graph,
    skeletonize,
)

__all__ = [
    "ObjectRow",
    "cable_length_um",
    "dust_threshold_voxels",
    "graph_diameter_um",
    "graph_to_skeleton",
    "object_lengths",
    "object_table",
    "skeleton_to_graph",
    "skeletonize",
    "smooth_skeleton",
]
