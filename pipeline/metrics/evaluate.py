"""Every metric of a segmentation against ground truth, as the sections of ``metrics.json``.

:func:`evaluate_arrays` is the pure compute behind ``neurorecon evaluate`` (:mod:`flows.stages.evaluate`):
voxel metrics (:mod:`pipeline.metrics.voxel`), skeleton metrics against ground-truth skeletons
(:mod:`pipeline.metrics.skeleton`) and the length-distribution metrics (:mod:`pipeline.metrics.length`).
:func:`sweep_row` is the smaller set that compares the segmentations of a threshold sweep.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np

from pipeline.metrics.config import MIN_LABEL_NODES
from pipeline.metrics.gaps import gaps_bridged
from pipeline.metrics.length import discontinuities, length_metrics
from pipeline.metrics.nodes import OUTSIDE_WARNING, nodes_outside
from pipeline.metrics.skeleton import NeuronRecord, skeleton_metrics
from pipeline.metrics.voxel import accuracy, adjusted_rand_index, dice, variation_of_information

__all__ = ["KINDS", "evaluate_arrays", "sweep_row"]


KINDS = ("neurons", "ais")


def evaluate_arrays(
    segmentation: np.ndarray,
    gt_labels: np.ndarray,
    *,
    voxel_size_um: Sequence[float],
    kind: str = "neurons",
    gt_skeletons: Mapping[int, nx.Graph] | Sequence[nx.Graph] | None = None,
    gaps: Sequence[Any] | None = None,
    min_label_nodes: int = MIN_LABEL_NODES,
) -> dict[str, Any]:
    """Every metric of a segmentation against ground truth, as the sections of ``metrics.json``.

    Parameters
    ----------
    segmentation, gt_labels : ndarray, shape (Z, Y, X), integer
        Predicted and true instance labels.
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x).
    kind : {"neurons", "ais"}
        What one true object is: a whole neuron (a cytosolic fill) or one AIS (an AIS stain). Recorded
        as ``metrics["kind"]``; the report shows what fits it. Both kinds get every section below.
    gt_skeletons : mapping of int to networkx.Graph, or sequence, optional
        Ground-truth skeletons (``pos_um`` in the volume frame), keyed by label (the SWC files' labels).
    gaps : sequence, optional
        Ground-truth signal-dropout gaps (``label``, ``start_um``, ``end_um`` on that label's skeleton),
        scored by :func:`pipeline.metrics.gaps_bridged` when skeletons are given (gaps that cannot be judged
        on their skeleton, e.g. cut by the volume border, are counted as ``n_gaps_unscorable``).
    min_label_nodes : int
        Nodes a predicted label must cover on a skeleton to count there (:mod:`pipeline.metrics.skeleton`).

    Returns
    -------
    dict
        ``kind`` and the sections ``voxel`` (Dice, accuracy, ARI, VOI), ``skeleton`` (with skeletons: ERL,
        splits, merges, omits, ``gaps_bridged`` with gaps, and ``per_neuron``: one row per true skeleton)
        and ``length`` (instance precision / recall, Wasserstein, SSMD, ``discontinuities_per_instance``),
        with the keys of :data:`pipeline.report.METRICS_SCHEMA`.

    Raises
    ------
    ValueError
        If ``kind`` is not one of :data:`KINDS`.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    voi = variation_of_information(segmentation, gt_labels)
    result: dict[str, Any] = {
        "kind": kind,
        "voxel": {
            "accuracy": accuracy(segmentation, gt_labels),
            "dice": dice(segmentation, gt_labels),
            "adjusted_rand_index": adjusted_rand_index(segmentation, gt_labels),
            "voi_split_bits": voi.split,
            "voi_merge_bits": voi.merge,
            "voi_total_bits": voi.total,
        },
    }
    if gt_skeletons:
        # nodes a little outside the volume are sampled at the border: counted here, not warned about
        outside = nodes_outside(gt_skeletons, segmentation.shape, voxel_size_um=voxel_size_um)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*" + re.escape(OUTSIDE_WARNING))
            sections = _skeleton_sections(segmentation, voxel_size_um, gt_skeletons, gaps, min_label_nodes)
        result.update(sections)
        result["skeleton"]["n_nodes_outside_volume"] = outside
    lm = length_metrics(segmentation, gt_labels, voxel_size_um=voxel_size_um)
    result["length"] = {
        "precision": lm.precision,
        "recall": lm.recall,
        "overlapping_instances": lm.overlapping_instances,
        "discontinuities_per_instance": discontinuities(segmentation, gt_labels).per_instance,
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


def _neuron_row(record: NeuronRecord) -> dict[str, Any]:
    """One row of the per-neuron table (``metrics["skeleton"]["per_neuron"]``)."""
    return {
        "label": record.label,
        "cable_um": record.length_um,
        "matched_cable_um": record.matched_cable_um,
        "erl_um": record.erl_um,
        "normalized_erl": record.normalized_erl,
        "splits": record.splits,
        "merges": record.merges,
    }


def _skeleton_sections(
    segmentation: np.ndarray,
    voxel_size_um: Sequence[float],
    gt_skeletons: Mapping[int, nx.Graph] | Sequence[nx.Graph],
    gaps: Sequence[Any] | None,
    min_label_nodes: int,
) -> dict[str, Any]:
    """The ``skeleton`` section: skeleton metrics, the per-neuron rows and (with gaps) the gaps bridged."""
    sk = skeleton_metrics(gt_skeletons, segmentation, voxel_size_um=voxel_size_um,
                          min_label_nodes=min_label_nodes)
    section: dict[str, Any] = {
        "splits_per_neuron": sk.splits_per_neuron,
        "merges_per_neuron": float(np.mean([r.merges for r in sk.per_neuron])),
        "omit_pct": sk.omit_pct,
        "merged_pct": sk.merged_pct,
        "edge_accuracy_pct": sk.edge_accuracy,
        "erl_um": sk.erl_um,
        "normalized_erl": sk.normalized_erl,
        "n_skeletons": len(sk.per_neuron),
        "per_neuron": [_neuron_row(r) for r in sk.per_neuron],
    }
    if gaps:
        gb = gaps_bridged(gt_skeletons, gaps, segmentation, voxel_size_um=voxel_size_um,
                          min_label_nodes=min_label_nodes, skip_unscorable=True)
        section.update(gaps_bridged=gb.fraction, n_gaps=gb.n_gaps, n_gaps_bridged=gb.n_bridged,
                       n_gaps_unscorable=gb.n_skipped)
    return {"skeleton": section}


def sweep_row(
    segmentation: np.ndarray,
    gt_labels: np.ndarray,
    *,
    voxel_size_um: Sequence[float],
    gt_skeletons: Mapping[int, nx.Graph] | Sequence[nx.Graph] | None = None,
    min_label_nodes: int = MIN_LABEL_NODES,
) -> dict[str, Any]:
    """What compares the segmentations of a threshold sweep: one row of ``metrics["thresholds"]``.

    The number of segments, the partition metrics (VOI, ARI) and, with skeletons, ERL, splits and merges
    per neuron, as :func:`evaluate_arrays` computes them. The length metrics are left out: they
    skeletonize every predicted object, seconds to minutes per segmentation.

    Parameters
    ----------
    segmentation, gt_labels : ndarray, shape (Z, Y, X), integer
        Predicted and true instance labels.
    voxel_size_um, gt_skeletons, min_label_nodes
        As :func:`evaluate_arrays`.

    Returns
    -------
    dict
        ``n_segments``, ``voi_split_bits``, ``voi_merge_bits``, ``adjusted_rand_index`` and, with
        skeletons, ``erl_um``, ``normalized_erl``, ``splits_per_neuron``, ``merges_per_neuron``.
    """
    labels = np.unique(segmentation)
    voi = variation_of_information(segmentation, gt_labels)
    row: dict[str, Any] = {
        "n_segments": int(np.count_nonzero(labels)),
        "voi_split_bits": voi.split,
        "voi_merge_bits": voi.merge,
        "adjusted_rand_index": adjusted_rand_index(segmentation, gt_labels),
    }
    if gt_skeletons:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*" + re.escape(OUTSIDE_WARNING))
            sk = skeleton_metrics(gt_skeletons, segmentation, voxel_size_um=voxel_size_um,
                                  min_label_nodes=min_label_nodes)
        row.update(erl_um=sk.erl_um, normalized_erl=sk.normalized_erl, splits_per_neuron=sk.splits_per_neuron,
                   merges_per_neuron=float(np.mean([r.merges for r in sk.per_neuron])))
    return row
