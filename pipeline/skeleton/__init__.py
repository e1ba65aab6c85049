"""Skeletons of label volumes and the lengths measured on them.

All positions are (z, y, x) in µm. ``object_lengths(labels, *, voxel_size_um)`` is the stable entry
point other stages rely on: the skeleton-graph-diameter length of every object, in µm.

Modules: :mod:`~pipeline.skeleton.params` (:class:`TeasarParams`), :mod:`~pipeline.skeleton.teasar`
(kimimaro on a volume), :mod:`~pipeline.skeleton.lengths` (lengths and per-object tables), and the
block-wise skeletonization of volumes larger than memory — :mod:`~pipeline.skeleton.grid` (blocks and
halo), :mod:`~pipeline.skeleton.plan` (label statistics, one-piece objects), :mod:`~pipeline.skeleton.block`
(one block), :mod:`~pipeline.skeleton.fuse` (fusion across blocks) and :mod:`~pipeline.skeleton.blockwise`
(the algorithm, tables and serial drivers); :mod:`~pipeline.skeleton.join` finds pieces to join across
short signal-dropout gaps. The ``skeletonize:`` config section is
:class:`pipeline.skeleton.config.SkeletonizeConfig`. Names are imported from their submodule on first
use (:mod:`pipeline.lazy`).
"""

from pipeline.lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "block": ["BlockSkeletons", "skeletonize_block", "skeletonize_block_with_plan", "skeletonize_objects"],
    "blockwise": ["object_rows", "object_table_blocks", "skeletonize_blocks", "without_dust"],
    "fuse": ["fuse_block_skeletons", "label_shards", "split_by_shard"],
    "join": [
        "EndTable", "GapJoin", "SkeletonEnd", "concat_end_tables", "end_table", "gap_joins", "join_graphs",
        "join_table", "match_ends", "skeleton_ends",
    ],
    "config": ["DEFAULT_DUST_THRESHOLD_UM3", "DEFAULT_HALO_UM", "SkeletonizeConfig"],
    "grid": ["halo_voxels", "skeleton_grid"],
    "lengths": [
        "ObjectRow", "cable_length_um", "graph_diameter_um", "object_lengths", "object_table",
        "smooth_skeleton",
    ],
    "params": ["TeasarParams"],
    "plan": [
        "BlockLabels", "LabelStatistics", "OnePiecePlan", "block_labels", "check_max_voxels",
        "label_statistics", "plan_one_piece",
    ],
    "teasar": ["dust_threshold_voxels", "graph_to_skeleton", "skeleton_to_graph", "skeletonize"],
})
