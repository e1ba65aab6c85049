"""Every metric of a segmentation against ground truth, as the sections of ``metrics.json``.

:func:`evaluate_arrays` is the pure compute behind ``neurorecon evaluate`` (:mod:`flows.stages.evaluate`):
voxel metrics (:mod:`pipeline.metrics.voxel`), skeleton metrics against ground-truth skeletons
(:mod:`pipeline.metrics.skeleton`) and the length-distribution metrics (:mod:`pipeline.metrics.length`).
:func:`sweep_row` is the smaller set that compares the segmentations of a threshold sweep.

Both read the volumes whole, as one block of :mod:`pipeline.metrics.blocks`, whose sums give the metrics:
what ``neurorecon evaluate`` computes block by block is the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np

from pipeline._checks import as_voxel_size, check_array, check_same_shape
from pipeline.metrics.blocks import (
    KINDS,
    assemble,
    block_counts,
    node_voxels,
    object_summary,
    objects_of,
    sweep_row_of,
)
from pipeline.metrics.config import MIN_LABEL_NODES
from pipeline.metrics.length import _border_labels, object_boxes
from pipeline.metrics.nodes import check_min_label_nodes
from pipeline.skeleton.config import DEFAULT_DUST_THRESHOLD_UM3

__all__ = ["KINDS", "evaluate_arrays", "sweep_row"]


def evaluate_arrays(
    segmentation: np.ndarray,
    gt_labels: np.ndarray,
    *,
    voxel_size_um: Sequence[float],
    kind: str = "neurons",
    gt_skeletons: Mapping[int, nx.Graph] | Sequence[nx.Graph] | None = None,
    gaps: Sequence[Any] | None = None,
    min_label_nodes: int = MIN_LABEL_NODES,
    dust_threshold_um3: float = DEFAULT_DUST_THRESHOLD_UM3,
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
    dust_threshold_um3 : float
        Labels of at most this total volume (µm³), in either image, are not objects of the ``length``
        section, as ``skeletonize`` reports none of them (``skeletonize.dust_threshold_um3``; 0: every
        label is an object, the paper's definition).

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
    pred = check_array(segmentation, "pred", ndim=3, kinds="iu")
    true = check_array(gt_labels, "true", ndim=3, kinds="iu")
    check_same_shape(pred, "pred", true, "true")
    vs = as_voxel_size(voxel_size_um)
    if gt_skeletons:
        check_min_label_nodes(min_label_nodes)
    nodes = node_voxels(gt_skeletons, pred.shape, voxel_size_um=vs)
    counts = block_counts(pred, true, origin=(0, 0, 0), nodes=nodes)
    pred_border = set(_border_labels(pred).tolist())
    true_border = set(_border_labels(true).tolist())
    overlapping = set(counts.table.pred[(counts.table.pred != 0) & (counts.table.true != 0)].tolist())
    objects = objects_of(counts.table, voxel_size_um=vs, dust_threshold_um3=dust_threshold_um3)
    pred_kept, true_kept = set(objects.pred.tolist()), set(objects.true.tolist())
    pred_lengths, pieces = {}, []
    for label, box in object_boxes(pred).items():
        if label not in pred_kept:
            continue
        raster, where = _voxels(pred, box, label)
        summary = object_summary(raster, label, volume_shape=pred.shape, voxel_size_um=vs,
                                 length=label not in pred_border,
                                 true_values=true[where] if label in overlapping else None)
        if summary.length_um is not None:
            pred_lengths[label] = summary.length_um
        pieces.append(summary.pieces)
    true_lengths = {label: object_summary(_voxels(true, box, label)[0], label, volume_shape=true.shape,
                                          voxel_size_um=vs, length=True).length_um
                    for label, box in object_boxes(true).items()
                    if label not in true_border and label in true_kept}
    return assemble(
        counts.table, kind=kind, voxel_size_um=vs, volume_shape=pred.shape, gt_skeletons=gt_skeletons,
        node_labels=counts.node_labels, nodes=nodes, gaps=gaps, min_label_nodes=min_label_nodes,
        pred_lengths_um=pred_lengths, true_lengths_um=true_lengths,
        piece_overlaps=np.concatenate(pieces) if pieces else np.zeros((0, 3), np.int64), objects=objects,
    )


def _voxels(
    labels: np.ndarray, box: tuple[slice, ...], label: int
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """An object's voxels, found in its box: raster indices (ascending) and the index arrays."""
    local = np.nonzero(labels[box] == label)
    where = tuple(w + b.start for w, b in zip(local, box, strict=True))
    return np.ravel_multi_index(where, labels.shape).astype(np.int64), where


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
    pred = check_array(segmentation, "pred", ndim=3, kinds="biu")
    true = check_array(gt_labels, "true", ndim=3, kinds="biu")
    check_same_shape(pred, "pred", true, "true")
    nodes = node_voxels(gt_skeletons, pred.shape, voxel_size_um=voxel_size_um)
    counts = block_counts(pred, true, origin=(0, 0, 0), nodes=nodes)
    return sweep_row_of(counts.table, gt_skeletons=gt_skeletons, node_labels=counts.node_labels, nodes=nodes,
                        min_label_nodes=min_label_nodes)
