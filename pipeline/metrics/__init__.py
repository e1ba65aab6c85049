"""Segmentation metrics: voxel-wise, skeleton-based and length-distribution metrics.

Stable entry points other stages rely on:

* ``skeleton_metrics(skeletons, segmentation, *, voxel_size_um, min_label_nodes=10)`` — splits per
  neuron, omit / merged edge percentages, edge accuracy and (normalized) expected run length against
  ground-truth skeletons, with one ``NeuronRecord`` per skeleton (the per-neuron table);
* ``gaps_bridged(skeletons, gaps, segmentation, *, voxel_size_um, min_label_nodes=10)`` — the fraction
  of ground-truth signal-dropout gaps whose two sides lie in one predicted segment;
* ``length_metrics(pred_labels, true_labels, *, voxel_size_um)`` — instance precision / recall,
  overlapping instances and Wasserstein / SSMD distances between length distributions;
* ``discontinuities(pred_labels, true_labels)`` — predicted pieces per true instance, minus one;
* ``evaluate_arrays(segmentation, gt_labels, *, voxel_size_um, gt_skeletons)`` — all of them, as the
  sections of ``metrics.json``.

Arrays are (z, y, x); lengths are in µm. Every function states its definition in its docstring. The
``evaluate:`` config section is :class:`pipeline.metrics.config.EvaluateConfig`. Names are imported
from their submodule on first use (:mod:`pipeline.lazy`).
"""

from pipeline.lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "evaluate": ["evaluate_arrays"],
    "gaps": ["GapOutcome", "GapsBridged", "gaps_bridged"],
    "length": [
        "Discontinuities", "LengthMetrics", "MatchedPair", "connected_instances", "discontinuities",
        "instance_overlaps", "length_metrics", "length_metrics_from_overlaps", "match_instances",
    ],
    "skeleton": [
        "MIN_LABEL_NODES", "NeuronRecord", "SkeletonMetrics", "correct_misalignment", "resolve_node_labels",
        "sample_node_labels", "skeleton_metrics", "skeleton_metrics_from_node_labels",
    ],
    "voxel": [
        "BettiError", "BettiNumbers", "VariationOfInformation", "accuracy", "adjusted_rand_index",
        "betti_error", "betti_numbers", "contingency_table", "dice", "euler_characteristic",
        "patchwise_betti_error", "variation_of_information",
    ],
})
