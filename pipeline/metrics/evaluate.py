"""Every metric of a segmentation against ground truth, as the sections of ``metrics.json``.

:func:`evaluate_arrays` is the pure compute behind ``neurorecon evaluate`` (:mod:`flows.stages.evaluate`):
voxel metrics (:mod:`pipeline.metrics.voxel`), skeleton metrics against ground-truth skeletons
(:mod:`pipeline.metrics.skeleton`) and the length-distribution metrics (:mod:`pipeline.metrics.length`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.metrics.length import length_metrics
from pipeline.metrics.skeleton import skeleton_metrics
from pipeline.metrics.voxel import accuracy, adjusted_rand_index, dice, variation_of_information

__all__ = ["evaluate_arrays"]


def evaluate_arrays(
    segmentation: np.ndarray,
    gt_labels: np.ndarray,
    *,
    voxel_size_um: Sequence[float],
    gt_skeletons: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Voxel, skeleton (if GT skeletons are given) and length metrics, as the ``metrics.json`` sections.

    Parameters
    ----------
    segmentation, gt_labels : ndarray, shape (Z, Y, X), integer
        Predicted and true instance labels.
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x).
    gt_skeletons : sequence of networkx.Graph, optional
        Ground-truth skeletons (``pos_um`` in the volume frame).

    Returns
    -------
    dict
        ``{"voxel": {...}, "skeleton": {...}, "length": {...}}`` with the keys of
        :data:`pipeline.report.METRICS_SCHEMA`.
    """
    voi = variation_of_information(segmentation, gt_labels)
    result: dict[str, Any] = {
        "voxel": {
            "accuracy": accuracy(segmentation, gt_labels),
            "dice": dice(segmentation, gt_labels),
            "adjusted_rand_index": adjusted_rand_index(segmentation, gt_labels),
            "voi_split_bits": voi.split,
            "voi_merge_bits": voi.merge,
            "voi_total_bits": voi.total,
        }
    }
    if gt_skeletons:
        sk = skeleton_metrics(list(gt_skeletons), segmentation, voxel_size_um=voxel_size_um)
        result["skeleton"] = {
            "splits_per_neuron": sk.splits_per_neuron,
            "omit_pct": sk.omit_pct,
            "merged_pct": sk.merged_pct,
            "edge_accuracy_pct": sk.edge_accuracy,
            "erl_um": sk.erl_um,
            "normalized_erl": sk.normalized_erl,
            "n_skeletons": len(sk.per_neuron),
        }
    lm = length_metrics(segmentation, gt_labels, voxel_size_um=voxel_size_um)
    result["length"] = {
        "precision": lm.precision,
        "recall": lm.recall,
        "overlapping_instances": lm.overlapping_instances,
        "wasserstein_um": lm.wasserstein_um,
        "ssmd": lm.ssmd,
        "ssmd_signed": lm.ssmd_signed,
        "n_pred": lm.n_pred,
        "n_true": lm.n_true,
        "n_matched": len(lm.matches),
        "pred_lengths_um": {str(k): v for k, v in lm.pred_lengths_um.items()},
        "true_lengths_um": {str(k): v for k, v in lm.true_lengths_um.items()},
    }
    return result
