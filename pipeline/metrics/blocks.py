"""Every metric of ``metrics.json`` from what the blocks of the two label images contribute.

``neurorecon evaluate`` reads the segmentation and the ground truth block by block
(:mod:`flows.stages.evaluate`); nothing here needs either image whole. Two passes:

1. **Blocks** (:func:`block_counts`): each block gives its contingency table — every (predicted, true)
   label pair and its voxel count, background included — and the predicted label at the ground-truth
   skeleton nodes whose voxel lies in it (:func:`node_voxels`). Summed (:func:`merge_contingency`),
   these give the voxel metrics, the instance overlaps and the skeleton metrics exactly.
2. **Objects** (:func:`object_summary`): what needs one object whole — the overlaps of its
   connected pieces with the true instances (:func:`pipeline.metrics.length.voxel_pieces`) and, for an
   object that does not touch the volume border, its length
   (:func:`pipeline.metrics.length.object_length`) — from its voxels, gathered from the blocks that hold it
   (found by the blocks' :func:`pipeline.skeleton.plan.block_labels`).

:func:`assemble` turns the sums into the sections of ``metrics.json``; :func:`sweep_row_of` into one row
of a threshold sweep. :func:`pipeline.metrics.evaluate.evaluate_arrays` is the same with the whole volume as
one block, so block-wise and whole-volume results are the same numbers.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from pipeline._checks import as_voxel_size
from pipeline.metrics.gaps import gaps_bridged_from_samples
from pipeline.metrics.length import (
    discontinuities_from_overlaps,
    length_metrics_from_overlaps,
    object_length,
    overlap_array,
    voxel_piece_overlaps,
)
from pipeline.metrics.nodes import OUTSIDE_WARNING, check_skeletons, nodes_outside, skeleton_arrays
from pipeline.metrics.skeleton import skeleton_metrics_from_samples
from pipeline.metrics.voxel import contingency_table, partition_scores
from pipeline.skeleton.teasar import dust_threshold_voxels

__all__ = [
    "KINDS",
    "BlockCounts",
    "Contingency",
    "NodeVoxels",
    "ObjectSummary",
    "Objects",
    "assemble",
    "block_counts",
    "merge_contingency",
    "node_voxels",
    "object_summary",
    "objects_of",
    "overlap_rows",
    "sweep_row_of",
]

KINDS = ("neurons", "ais")

@dataclass(frozen=True)
class Contingency:
    """A contingency table of two label images: label pairs and voxel counts, sorted by (true, pred).

    Attributes
    ----------
    pred, true : ndarray, shape (K,), uint64
        The label pairs that co-occur, background (0) included.
    counts : ndarray, shape (K,), int64
        Voxels carrying each pair.
    """

    pred: np.ndarray
    true: np.ndarray
    counts: np.ndarray


@dataclass(frozen=True)
class NodeVoxels:
    """The voxel of every ground-truth skeleton node, skeleton after skeleton.

    Attributes
    ----------
    voxels : ndarray, shape (N, 3), int64
        ``floor(pos_um / voxel_size_um + 0.5)`` clipped to the volume, as
        :func:`pipeline.metrics.nodes.sample_at` samples it; the nodes in the order of
        :func:`pipeline.metrics.nodes.skeleton_arrays`.
    starts : ndarray, shape (S + 1,), int64
        Skeleton ``i``'s nodes are ``voxels[starts[i]:starts[i + 1]]``.
    """

    voxels: np.ndarray
    starts: np.ndarray


@dataclass(frozen=True)
class BlockCounts:
    """What one block contributes to the metrics of a segmentation (:func:`block_counts`).

    Attributes
    ----------
    table : Contingency
        The block's contingency table.
    node_index : ndarray, shape (M,), int64
        The nodes (rows of :attr:`NodeVoxels.voxels`) whose voxel lies in the block.
    node_labels : ndarray, shape (M,)
        The predicted label there (uint64 for a uint64 segmentation, else int64, as ``sample_at``).
    """

    table: Contingency
    node_index: np.ndarray
    node_labels: np.ndarray


@dataclass(frozen=True)
class ObjectSummary:
    """What one object contributes (:func:`object_summary`).

    Attributes
    ----------
    label : int
    length_um : float or None
        Its length (µm), None if not asked for (it touches the volume border).
    pieces : ndarray, shape (K, 3)
        ``(true_label, piece_id, n_voxels)`` rows of its connected pieces' overlaps with the true
        instances (empty if not asked for).
    """

    label: int
    length_um: float | None
    pieces: np.ndarray


def node_voxels(
    skeletons: Sequence[nx.Graph] | Mapping[int, nx.Graph] | None,
    shape: Sequence[int],
    *,
    voxel_size_um: Sequence[float],
) -> NodeVoxels:
    """The voxel each ground-truth skeleton node samples (see :class:`NodeVoxels`); none without skeletons."""
    if not skeletons:
        return NodeVoxels(np.zeros((0, 3), np.int64), np.zeros(1, np.int64))
    graphs, _, names = check_skeletons(skeletons)
    vs = np.asarray(as_voxel_size(voxel_size_um))
    hi = np.asarray(tuple(shape), dtype=np.int64) - 1
    parts = [np.clip(np.floor(skeleton_arrays(g, n)[1] / vs + 0.5).astype(np.int64), 0, hi)
             for g, n in zip(graphs, names, strict=True)]
    starts = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    return NodeVoxels(np.concatenate(parts).reshape(-1, 3), starts)


def _ids(ids: np.ndarray) -> np.ndarray:
    return np.asarray(ids).astype(np.uint64)


def block_counts(
    pred: np.ndarray, true: np.ndarray, *, origin: Sequence[int], nodes: NodeVoxels
) -> BlockCounts:
    """The contingency table of a block of both images and the predicted labels at the nodes in it.

    Parameters
    ----------
    pred, true : ndarray, same shape (z, y, x), integer
        The predicted and true labels of one block (e.g. a write region of
        :func:`pipeline.blocks.block_grid`: the blocks must tile the volume, each voxel in one block).
    origin : sequence of 3 int
        The block's first voxel in the volume.
    nodes : NodeVoxels
        The skeleton nodes' voxels (:func:`node_voxels`).

    Returns
    -------
    BlockCounts
    """
    p_ids, t_ids, counts = contingency_table(pred, true)
    lo = np.asarray(tuple(origin), dtype=np.int64)
    inside = np.all((nodes.voxels >= lo) & (nodes.voxels < lo + np.asarray(pred.shape)), axis=1)
    index = np.flatnonzero(inside).astype(np.int64)
    local = nodes.voxels[index] - lo
    values = pred[local[:, 0], local[:, 1], local[:, 2]]
    values = values.astype(np.int64) if values.dtype != np.uint64 else values
    return BlockCounts(Contingency(_ids(p_ids), _ids(t_ids), counts.astype(np.int64)), index, values)


def merge_contingency(tables: Iterable[Contingency]) -> Contingency:
    """Sum contingency tables (of the blocks of one pair of images) into one, sorted by (true, pred).

    Tables are summed as they come, so that at most about twice the merged table is held at once.
    """
    merged = Contingency(np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.int64))
    pending: list[Contingency] = []
    rows = 0
    for table in tables:
        pending.append(table)
        rows += len(table.counts)
        if rows > max(len(merged.counts), 1 << 20):
            merged, pending, rows = _sum([merged, *pending]), [], 0
    return _sum([merged, *pending])


def _sum(tables: list[Contingency]) -> Contingency:
    p = np.concatenate([t.pred for t in tables]).astype(np.uint64)
    t = np.concatenate([t.true for t in tables]).astype(np.uint64)
    c = np.concatenate([t.counts for t in tables]).astype(np.int64)
    if len(c) == 0:
        return Contingency(p, t, c)
    order = np.lexsort((p, t))
    p, t, c = p[order], t[order], c[order]
    first = np.flatnonzero(np.r_[True, (p[1:] != p[:-1]) | (t[1:] != t[:-1])])
    return Contingency(p[first], t[first], np.add.reduceat(c, first))


@dataclass(frozen=True)
class Objects:
    """The objects the length metrics count in each image: the non-zero labels that are not dust.

    ``pred`` and ``true`` are sorted label arrays; ``n_dust_pred`` and ``n_dust_true`` count the labels left
    out as dust."""

    pred: np.ndarray
    true: np.ndarray
    n_dust_pred: int
    n_dust_true: int


def objects_of(table: Contingency, *, voxel_size_um: Sequence[float], dust_threshold_um3: float) -> Objects:
    """The objects of both images in a contingency table, without the dust: a label whose *total* volume is
    at most ``dust_threshold_um3`` (µm³; 0 keeps every label) is no object, as ``skeletonize`` drops it
    (:func:`pipeline.skeleton.blockwise.without_dust`, the same rule).

    >>> t = Contingency(np.array([0, 1, 2], np.uint64), np.array([0, 5, 5], np.uint64), np.array([9, 2, 6]))
    >>> o = objects_of(t, voxel_size_um=(1.5, 0.5, 0.5), dust_threshold_um3=1.0)  # 2 voxels: dust
    >>> o.pred.tolist(), o.true.tolist(), o.n_dust_pred
    ([2], [5], 1)
    """
    dust = dust_threshold_voxels(dust_threshold_um3, as_voxel_size(voxel_size_um))

    def kept(labels: np.ndarray) -> tuple[np.ndarray, int]:
        ids, first = np.unique(labels, return_inverse=True)
        sizes = np.bincount(first, weights=table.counts, minlength=len(ids))
        keep = (ids != 0) & (sizes > dust)
        return ids[keep], int(np.count_nonzero(ids != 0) - np.count_nonzero(keep))

    pred, n_pred = kept(table.pred)
    true, n_true = kept(table.true)
    return Objects(pred, true, n_pred, n_true)


def overlap_rows(table: Contingency) -> np.ndarray:
    """``(true, pred, n_voxels)`` rows of the pairs of non-zero labels, as
    :func:`pipeline.metrics.length.instance_overlaps` gives them (int64 unless a label is >= 2**63)."""
    both = (table.pred != 0) & (table.true != 0)
    return overlap_array(table.true[both], table.pred[both], table.counts[both])


def object_summary(
    raster: np.ndarray,
    label: int,
    *,
    volume_shape: Sequence[int],
    voxel_size_um: Sequence[float],
    length: bool,
    true_values: np.ndarray | None = None,
) -> ObjectSummary:
    """One object's length and (with ``true_values``) its pieces' overlaps with the true instances, from
    its voxels alone (gathered block by block, or from a whole volume).

    Parameters
    ----------
    raster : ndarray, shape (N,), int64
        The object's voxels, as raster indices in the volume, ascending.
    label : int
        The object.
    volume_shape : sequence of 3 int
        The volume's shape.
    voxel_size_um : sequence of 3 float
        Voxel size, µm.
    length : bool
        Measure its length: on a mask of its bounding box grown by one voxel (bytes per voxel of the box).
    true_values : ndarray, shape (N,), optional
        The true labels at its voxels: its connected pieces (:func:`pipeline.metrics.length.voxel_pieces`)
        are overlapped with them; memory in proportion to its voxels.

    Returns
    -------
    ObjectSummary
    """
    raster = np.asarray(raster, dtype=np.int64)
    length_um = None
    if length:
        coords = np.stack(np.unravel_index(raster, tuple(volume_shape)), axis=1)
        lo = np.maximum(coords.min(axis=0) - 1, 0)
        hi = np.minimum(coords.max(axis=0) + 2, np.asarray(tuple(volume_shape)))
        mask = np.zeros(tuple(hi - lo), np.uint8)
        mask[tuple((coords - lo).T)] = 1
        length_um = object_length(mask, 1, voxel_size_um=voxel_size_um)
    if true_values is None:
        pieces = np.zeros((0, 3), np.int64)
    else:
        pieces = voxel_piece_overlaps(raster, true_values, volume_shape)
    return ObjectSummary(int(label), length_um, pieces)


def _sampled(node_labels: np.ndarray, nodes: NodeVoxels) -> list[np.ndarray]:
    return [node_labels[a:b] for a, b in zip(nodes.starts[:-1], nodes.starts[1:], strict=True)]


def assemble(
    table: Contingency,
    *,
    kind: str,
    voxel_size_um: Sequence[float],
    volume_shape: Sequence[int],
    gt_skeletons: Mapping[int, nx.Graph] | Sequence[nx.Graph] | None,
    node_labels: np.ndarray | None,
    nodes: NodeVoxels,
    gaps: Sequence[Any] | None,
    min_label_nodes: int,
    pred_lengths_um: Mapping[int, float],
    true_lengths_um: Mapping[int, float],
    piece_overlaps: np.ndarray,
    objects: Objects,
) -> dict[str, Any]:
    """The sections of ``metrics.json`` from the summed contributions of the blocks and objects.

    Parameters
    ----------
    table : Contingency
        The whole volume's contingency table (:func:`merge_contingency`).
    kind, voxel_size_um, gt_skeletons, gaps, min_label_nodes
        As :func:`pipeline.metrics.evaluate.evaluate_arrays`.
    volume_shape : sequence of 3 int
        The volume's shape (to count skeleton nodes outside it).
    node_labels : ndarray, shape (N,), or None
        The predicted label at every node of :func:`node_voxels` (None without skeletons).
    nodes : NodeVoxels
        The nodes' voxels.
    pred_lengths_um, true_lengths_um : mapping of int to float
        Lengths of the objects that do not touch the volume border.
    piece_overlaps : ndarray, shape (K, 3)
        ``(true_label, piece_id, n_voxels)`` rows of the pieces of every predicted object that is not dust
        (:func:`object_summary`, :func:`objects_of`).
    objects : Objects
        The objects of ``table`` without the dust (:func:`objects_of`): the ``length`` section counts only
        these, as ``skeletonize`` gives dust no skeleton and no row in ``lengths.csv``.

    Returns
    -------
    dict
        What :func:`pipeline.metrics.evaluate.evaluate_arrays` returns.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    acc, d, ari, voi = partition_scores(table.pred, table.true, table.counts)
    result: dict[str, Any] = {
        "kind": kind,
        "voxel": {
            "accuracy": acc,
            "dice": d,
            "adjusted_rand_index": ari,
            "voi_split_bits": voi.split,
            "voi_merge_bits": voi.merge,
            "voi_total_bits": voi.total,
        },
    }
    if gt_skeletons:
        if node_labels is None:
            raise ValueError("node_labels is required with gt_skeletons")
        outside = nodes_outside(gt_skeletons, volume_shape, voxel_size_um=voxel_size_um)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*" + re.escape(OUTSIDE_WARNING))
            section = _skeleton_section(gt_skeletons, _sampled(node_labels, nodes), gaps, voxel_size_um,
                                        min_label_nodes)
        section["n_nodes_outside_volume"] = outside
        result["skeleton"] = section
    rows = overlap_rows(table)
    rows = rows[_among(rows[:, 0], objects.true) & _among(rows[:, 1], objects.pred)]
    pred_set, true_set = set(objects.pred.tolist()), set(objects.true.tolist())
    lm = length_metrics_from_overlaps(
        pred_ids=objects.pred.tolist(), true_ids=objects.true.tolist(), overlap_pairs=rows,
        pred_lengths_um={k: v for k, v in pred_lengths_um.items() if k in pred_set},
        true_lengths_um={k: v for k, v in true_lengths_um.items() if k in true_set})
    pieces = np.asarray(piece_overlaps).reshape(-1, 3)
    pieces = pieces[_among(pieces[:, 0], objects.true)]
    pieces = pieces[np.lexsort((pieces[:, 1], pieces[:, 0]))]
    result["length"] = {
        "precision": lm.precision,
        "recall": lm.recall,
        "overlapping_instances": lm.overlapping_instances,
        "discontinuities_per_instance": discontinuities_from_overlaps(pieces).per_instance,
        "wasserstein_um": lm.wasserstein_um,
        "ssmd": lm.ssmd,
        "ssmd_signed": lm.ssmd_signed,
        "n_pred": lm.n_pred,
        "n_true": lm.n_true,
        "n_matched": len(lm.matches),
        "n_dust_pred": objects.n_dust_pred,
        "n_dust_true": objects.n_dust_true,
        "pred_lengths_um": {str(k): v for k, v in lm.pred_lengths_um.items()},
        "true_lengths_um": {str(k): v for k, v in lm.true_lengths_um.items()},
    }
    return result


def _among(labels: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Which of ``labels`` (non-negative, any integer type) are in ``kept`` (uint64), exactly for any id."""
    return np.isin(np.asarray(labels).astype(np.uint64), np.asarray(kept, dtype=np.uint64))


def _skeleton_section(
    gt_skeletons: Mapping[int, nx.Graph] | Sequence[nx.Graph],
    sampled: list[np.ndarray],
    gaps: Sequence[Any] | None,
    voxel_size_um: Sequence[float],
    min_label_nodes: int,
) -> dict[str, Any]:
    """The ``skeleton`` section: skeleton metrics, the per-neuron rows and (with gaps) the gaps bridged."""
    sk = skeleton_metrics_from_samples(gt_skeletons, sampled, min_label_nodes=min_label_nodes)
    section: dict[str, Any] = {
        "splits_per_neuron": sk.splits_per_neuron,
        "merges_per_neuron": float(np.mean([r.merges for r in sk.per_neuron])),
        "omit_pct": sk.omit_pct,
        "merged_pct": sk.merged_pct,
        "edge_accuracy_pct": sk.edge_accuracy,
        "erl_um": sk.erl_um,
        "normalized_erl": sk.normalized_erl,
        "n_skeletons": len(sk.per_neuron),
        "per_neuron": [{
            "label": r.label,
            "cable_um": r.length_um,
            "matched_cable_um": r.matched_cable_um,
            "erl_um": r.erl_um,
            "normalized_erl": r.normalized_erl,
            "splits": r.splits,
            "merges": r.merges,
        } for r in sk.per_neuron],
    }
    if gaps:
        gb = gaps_bridged_from_samples(gt_skeletons, gaps, sampled, voxel_size_um=voxel_size_um,
                                       min_label_nodes=min_label_nodes, skip_unscorable=True)
        section.update(gaps_bridged=gb.fraction, n_gaps=gb.n_gaps, n_gaps_bridged=gb.n_bridged,
                       n_gaps_unscorable=gb.n_skipped)
    return section


def sweep_row_of(
    table: Contingency,
    *,
    gt_skeletons: Mapping[int, nx.Graph] | Sequence[nx.Graph] | None,
    node_labels: np.ndarray | None,
    nodes: NodeVoxels,
    min_label_nodes: int,
) -> dict[str, Any]:
    """One row of a threshold sweep (:func:`pipeline.metrics.evaluate.sweep_row`) from the summed blocks."""
    _, _, ari, voi = partition_scores(table.pred, table.true, table.counts)
    labels = np.unique(table.pred)
    row: dict[str, Any] = {
        "n_segments": int(np.count_nonzero(labels)),
        "voi_split_bits": voi.split,
        "voi_merge_bits": voi.merge,
        "adjusted_rand_index": ari,
    }
    if gt_skeletons:
        if node_labels is None:
            raise ValueError("node_labels is required with gt_skeletons")
        sk = skeleton_metrics_from_samples(gt_skeletons, _sampled(node_labels, nodes),
                                           min_label_nodes=min_label_nodes)
        row.update(erl_um=sk.erl_um, normalized_erl=sk.normalized_erl, splits_per_neuron=sk.splits_per_neuron,
                   merges_per_neuron=float(np.mean([r.merges for r in sk.per_neuron])))
    return row
