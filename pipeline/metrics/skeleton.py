"""Skeleton-based metrics of a segmentation against ground-truth skeletons (splits, omits, merges, ERL).

Definitions (supervoxel critical-components paper, appendix "Skeleton-Based Metrics", Figs. 9–10), for
ground-truth skeletons G_i = (V_i, E_i) whose nodes carry ``pos_um`` = (z, y, x) in µm. Lengths are in
µm along skeleton edges: len(e) = Euclidean distance between its end nodes, len(G_i) = Σ len(e).
Step 2 is ours (the paper has no such step; ``min_label_nodes=1`` switches it off); the others are the
paper's.

1. **Node labels.** Each node takes the segmentation label at its voxel,
   ``index = floor(pos_um / voxel_size_um + 0.5)`` (round half up) clipped to the volume.
2. **Coverage** (``min_label_nodes`` = k, default :data:`MIN_LABEL_NODES` = 10). Let n_i(L) be the
   number of nodes of G_i whose label is L ≠ 0. L *counts* on G_i if n_i(L) >= k. On a *short*
   skeleton, |V_i| < 2k (too short for two labels to reach k, so the count alone could never show a
   split on it), L also counts if G_i is a *home* of L: no skeleton has more nodes labelled L, and of
   those with as many none has a larger fraction n_j(L) / |V_j| (all skeletons still tied are homes).
   A node whose non-zero label does not count on its skeleton is *stray*. Each *stray run* (a
   connected set of stray nodes of one label) takes label M if M is the only label on the non-stray,
   non-zero nodes adjacent to it; otherwise its nodes become 0. So a stray tip node, or a stray node
   between two runs of L, joins its neighbours' label L; a stray run between L and M, or next to
   nothing but background and other stray runs, is treated as background (then step 3 applies).
   After this step every non-zero label on G_i counts on G_i.
3. **Misalignment correction** (per skeleton, one pass on the labels of step 2). If two nodes u, v
   carry the same non-zero label L and a path between them has only label-0 interior nodes, those
   interior nodes take label L. Implementation: for each connected run Z of label-0 nodes and each
   label L, the *terminals* are the label-L nodes adjacent to Z; for every pair of terminals the
   interior of a shortest path (edge count) through Z gets L — in a tree this is *the* path. A node
   that two different labels would claim (two label pairs around one branched 0-run) stays 0.
4. **Edges.** An edge is *omit* if either end has label 0. A *piece* is a connected set of edges
   whose ends all carry the same non-zero label (connected components of the graph of such edges).
   A piece is *merged* if its label also occurs on another ground-truth skeleton after steps 2–3,
   i.e. if its label counts on another skeleton. Edges joining two different non-zero labels are
   neither omit nor merged (they are splits); like the paper, edge accuracy counts them as correct.
5. **Splits.** splits_i = (number of connected components of the graph on the non-zero nodes with
   only the edges whose ends carry the same label) − 1, floored at 0 for a skeleton without non-zero
   nodes. splits_per_neuron = Σ_i w_i · splits_i, w_i = |E_i| / Σ_j |E_j| (edge counts, as the paper).
6. **Percentages.** omit_pct = 100 · Σ_i #omit edges / Σ_i |E_i|; merged_pct = 100 · Σ_i #edges of
   merged pieces / Σ_i |E_i|; edge_accuracy = 100 − omit_pct − merged_pct.
7. **Run length.** ERL_i = Σ_{non-merged pieces P of G_i} len(P)² / len(G_i) (µm; 0 if len(G_i) = 0);
   erl_um = Σ_i len(G_i) · ERL_i / Σ_i len(G_i); normalized_erl = Σ_i len(G_i) · (ERL_i / len(G_i)) /
   Σ_i len(G_i) (the length-weighted mean of the per-skeleton fraction, in [0, 1]). Both are NaN if
   every skeleton has zero length.
8. **Per skeleton** (:class:`NeuronRecord`): merges_i = number of *other* skeletons that share a label
   with G_i after steps 2–3; the *matched label* is the label whose same-label edges cover the most
   cable of G_i (ties: the smallest label), and matched_cable_um is that cable (merged or not).

Why k = 10. In the exact ground truth of the phantom (compartments of a neuron are separate objects
touching end to end), the stray samples come in runs of 1–2 nodes: end nodes inside the parent
compartment or the touching neighbour (6 seeds of a 48 x 192 x 192 phantom with 3 neurons and 5 AIS
each). A skeleton crossing a touching tube of radius r with node spacing h puts about 2r/h nodes in it
(<= 4 for r = 2 µm, h = 1 µm). k = 10 keeps a margin of 2.5x over that, while 10 nodes (10–15 µm of
cable at the 1–1.5 µm node spacing of the phantom's skeletons) is short next to the objects scored
(AIS 20–60 µm, neurites longer), so a real split piece or merge along >= 10 nodes still counts. The
price: on a skeleton of >= 2k nodes a wrong fragment or a merge over fewer than k nodes is not scored
as a split or merge (it is absorbed, or omitted), and a short skeleton lying wholly in a longer
skeleton's label is omitted, not merged.

**segmentation-skeleton-metrics** (AllenNeuralDynamics; ``skeleton_metrics.py``, ``graph_classes.py``)
has no coverage rule for splits: every non-zero label sampled on a skeleton is a segment (``# Splits``
= distinct labels − 1; ``% Split Edges`` counts every edge joining two labels). For merges, a label
shared by two ground-truth skeletons is a merge only if it lies on *more than 50* nodes of *each*
(``MergedEdgePercentMetric.detect_label_intersections``), and its merge-site search ignores a node
whose same-label component on the skeleton has fewer than 50 nodes (``is_nonmerge_pass_thru``). Its
misalignment fix gives any label-0 run touched by exactly one label that label, tips included. Ours
differs: one per-skeleton threshold (k = 10 nodes, not > 50) decides both which labels are segments
(splits, ERL) and which shared labels are merges (the label must count on both skeletons); stray
nodes are absorbed into the one neighbouring label or become background instead of being scored as
segments; label-0 runs keep the paper's rule (an omitted tip stays omitted); skeletons of fewer than
2k nodes use the home rule instead of never being merged.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np

from pipeline._checks import as_voxel_size, check_array
from pipeline.metrics.nodes import (
    MIN_LABEL_NODES,
    check_min_label_nodes,
    check_skeletons,
    connected_labels,
    correct_misalignment,
    labelled_arrays,
    resolve_labels,
    resolve_node_labels,
    sample_at,
    sample_node_labels,
    skeleton_arrays,
)

__all__ = [
    "MIN_LABEL_NODES",
    "NeuronRecord",
    "SkeletonMetrics",
    "correct_misalignment",
    "resolve_node_labels",
    "sample_node_labels",
    "skeleton_metrics",
    "skeleton_metrics_from_node_labels",
    "skeleton_metrics_from_samples",
]



@dataclass(frozen=True)
class NeuronRecord:
    """Per-skeleton details of :func:`skeleton_metrics` (one row of a per-neuron table).

    Attributes
    ----------
    index : int
        Position of the skeleton in the input (list order, or mapping iteration order).
    n_edges : int
        |E_i|.
    length_um : float
        len(G_i), the ground-truth cable length, µm.
    splits : int
        splits_i.
    omit_edges, merged_edges : int
        Number of omit edges and of edges in merged pieces.
    erl_um : float
        ERL_i, µm.
    normalized_erl : float
        ERL_i / len(G_i) (0.0 if the skeleton has zero length).
    labels : tuple of int
        The distinct non-zero segment labels on the skeleton after steps 2–3 (the labels that count
        on it), sorted.
    label : int or None
        The skeleton's ground-truth label: the mapping key when ``skeletons`` is a mapping, else
        ``graph.graph["label"]`` (as :func:`pipeline.skeleton.skeleton_to_graph` and the SWC
        readers set it), else None.
    merges : int
        Number of *other* skeletons that share a label with this one after steps 2–3.
    merged_with : tuple of int
        Their indices, sorted.
    matched_label : int
        The predicted label whose same-label edges cover the most cable of this skeleton (ties: the
        smallest label); 0 if no edge has the same non-zero label at both ends.
    matched_cable_um : float
        That cable, µm (counted whether or not its piece is merged).
    stray_nodes : int
        Nodes whose sampled non-zero label does not count on this skeleton (step 2).
    """

    index: int
    n_edges: int
    length_um: float
    splits: int
    omit_edges: int
    merged_edges: int
    erl_um: float
    normalized_erl: float
    labels: tuple[int, ...]
    label: int | None
    merges: int
    merged_with: tuple[int, ...]
    matched_label: int
    matched_cable_um: float
    stray_nodes: int


@dataclass(frozen=True)
class SkeletonMetrics:
    """Skeleton-based metrics of a segmentation (see the module docstring for the definitions).

    Attributes
    ----------
    splits_per_neuron : float
        Edge-count-weighted mean number of splits per skeleton.
    omit_pct, merged_pct, edge_accuracy : float
        Percentages of all ground-truth edges (0–100).
    erl_um : float
        Length-weighted expected run length, µm.
    normalized_erl : float
        Length-weighted mean of ERL_i / len(G_i), in [0, 1].
    per_neuron : tuple of NeuronRecord
        One record per input skeleton, in input order.
    """

    splits_per_neuron: float
    omit_pct: float
    merged_pct: float
    edge_accuracy: float
    erl_um: float
    normalized_erl: float
    per_neuron: tuple[NeuronRecord, ...]


# --------------------------------------------------------------------------------------------------------
# metrics


def skeleton_metrics(
    skeletons: Sequence[nx.Graph] | Mapping[int, nx.Graph],
    segmentation: np.ndarray,
    *,
    voxel_size_um: Sequence[float],
    min_label_nodes: int = MIN_LABEL_NODES,
) -> SkeletonMetrics:
    """Splits, omits, merges and expected run length of a segmentation against ground-truth skeletons.

    See the module docstring for the exact definitions (node sampling, coverage rule, misalignment
    correction, omit/merged edges, pieces, splits, ERL).

    Parameters
    ----------
    skeletons : list of networkx.Graph, or mapping of int to networkx.Graph
        Ground-truth skeletons, one per true object; nodes carry ``pos_um`` = (z, y, x) in µm. A
        mapping's keys are the ground-truth labels (``NeuronRecord.label``), e.g. the result of
        :func:`pipeline.io.skeletons.read_swc_folder`.
    segmentation : ndarray, shape (Z, Y, X), integer or bool
        Predicted segmentation; 0 is background.
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x), mapping ``pos_um`` to voxels.
    min_label_nodes : int, default :data:`MIN_LABEL_NODES` (10)
        Nodes a predicted label must cover on a skeleton to count there (step 2; the module
        docstring says why 10). 1 gives the paper's definitions exactly.

    Returns
    -------
    SkeletonMetrics
        ``splits_per_neuron``, ``omit_pct``, ``merged_pct``, ``edge_accuracy``, ``erl_um``,
        ``normalized_erl`` and one ``NeuronRecord`` per skeleton.

    Raises
    ------
    TypeError
        If ``skeletons`` is not a list (or label mapping) of undirected graphs, ``segmentation`` is
        not integer/bool or ``min_label_nodes`` is not an int.
    ValueError
        If ``segmentation`` is not 3-D, ``voxel_size_um`` is invalid, a node lacks ``pos_um``,
        ``skeletons`` is empty, no skeleton has an edge or ``min_label_nodes`` < 1.

    Examples
    --------
    >>> seg = np.zeros((1, 1, 4), np.uint8); seg[0, 0, :2] = 1; seg[0, 0, 2:] = 2
    >>> g = nx.path_graph(4)
    >>> for i in g: g.nodes[i]["pos_um"] = (0.0, 0.0, float(i))
    >>> m = skeleton_metrics([g], seg, voxel_size_um=(1, 1, 1))
    >>> m.splits_per_neuron, m.edge_accuracy, round(m.erl_um, 3)  # two pieces of 1 µm, 3 µm skeleton
    (1.0, 100.0, 0.667)
    """
    graphs, labels, names = check_skeletons(skeletons)
    seg = check_array(segmentation, "segmentation", ndim=3, kinds="biu")
    vs = np.asarray(as_voxel_size(voxel_size_um))
    k = check_min_label_nodes(min_label_nodes)
    data = []
    for g, name in zip(graphs, names, strict=True):
        _, pos, edges = skeleton_arrays(g, name)
        data.append((pos, edges, sample_at(pos, seg, vs)))
    return _metrics(data, labels, k)


def skeleton_metrics_from_samples(
    skeletons: Sequence[nx.Graph] | Mapping[int, nx.Graph],
    sampled: Sequence[np.ndarray],
    *,
    min_label_nodes: int = MIN_LABEL_NODES,
) -> SkeletonMetrics:
    """:func:`skeleton_metrics` from the labels sampled at the nodes (step 1) elsewhere, e.g. block by block.

    ``sampled[i]`` holds the predicted label at each node of the i-th skeleton, in the order of
    :func:`pipeline.metrics.nodes.skeleton_arrays`, as :func:`pipeline.metrics.nodes.sample_at` gives it;
    the result is :func:`skeleton_metrics`'s on the segmentation sampled.
    """
    graphs, labels, names = check_skeletons(skeletons)
    k = check_min_label_nodes(min_label_nodes)
    if len(sampled) != len(graphs):
        raise ValueError(f"sampled has {len(sampled)} arrays for {len(graphs)} skeletons; expected one each")
    data = []
    for g, name, raw in zip(graphs, names, sampled, strict=True):
        _, pos, edges = skeleton_arrays(g, name)
        if len(raw) != len(pos):
            raise ValueError(f"sampled holds {len(raw)} labels for the {len(pos)} nodes of {name}")
        data.append((pos, edges, np.asarray(raw)))
    return _metrics(data, labels, k)


def skeleton_metrics_from_node_labels(
    skeletons: Sequence[nx.Graph] | Mapping[int, nx.Graph],
    node_labels: Sequence[Mapping[Hashable, int]],
    *,
    min_label_nodes: int = MIN_LABEL_NODES,
) -> SkeletonMetrics:
    """:func:`skeleton_metrics` from labels already sampled at the nodes (before steps 2–3).

    Parameters
    ----------
    skeletons : list of networkx.Graph, or mapping of int to networkx.Graph
        Ground-truth skeletons; nodes carry ``pos_um`` (for edge lengths).
    node_labels : list of mapping
        ``node_labels[i][node]`` = predicted label at that node of the i-th skeleton (0 =
        background). The coverage rule and the misalignment correction are applied here.
    min_label_nodes : int, default 10
        As :func:`skeleton_metrics`.

    Returns
    -------
    SkeletonMetrics

    Raises
    ------
    TypeError, ValueError
        As :func:`skeleton_metrics`; ValueError if the lists differ in length or a label is missing.
    """
    graphs, labels, names = check_skeletons(skeletons)
    k = check_min_label_nodes(min_label_nodes)
    return _metrics(labelled_arrays(graphs, names, node_labels), labels, k)


def _metrics(
    data: list[tuple[np.ndarray, np.ndarray, np.ndarray]], gt_labels: list[int | None], k: int
) -> SkeletonMetrics:
    per = []
    total_edges = sum(len(edges) for _, edges, _ in data)
    if total_edges == 0:
        raise ValueError("no skeleton has an edge; skeleton metrics are undefined")
    # steps 2-3: coverage rule and misalignment correction; who carries which label
    resolved = resolve_labels([raw for _, _, raw in data], [edges for _, edges, _ in data], k)
    label_owners: dict[int, set[int]] = defaultdict(set)
    for i, (labels, _) in enumerate(resolved):
        for lab in np.unique(labels[labels != 0]).tolist():
            label_owners[int(lab)].add(i)

    for i, ((pos, edges, _), (labels, n_stray)) in enumerate(zip(data, resolved, strict=True)):
        n = len(labels)
        a, b = edges[:, 0], edges[:, 1]
        length = np.linalg.norm(pos[a] - pos[b], axis=1)
        # summed like the pieces below (bincount, in edge order): one whole piece then equals the total
        # exactly, and its normalized ERL is exactly 1
        total_len = float(np.bincount(np.zeros(len(length), np.intp), weights=length, minlength=1)[0])
        la, lb = labels[a], labels[b]
        omit = (la == 0) | (lb == 0)
        same = (la == lb) & (la != 0)
        comp = connected_labels(n, a[same], b[same])
        nonzero = labels != 0
        present = sorted(int(v) for v in np.unique(labels[nonzero]).tolist())
        splits = max(0, len(np.unique(comp[nonzero])) - 1)
        others = sorted(set().union(*(label_owners[lab] for lab in present)) - {i})
        merged_labels = {lab for lab in present if len(label_owners[lab]) > 1}
        is_merged = np.array([int(v) in merged_labels for v in la[same].tolist()], dtype=bool)
        # piece lengths of non-merged pieces
        piece = comp[a[same]][~is_merged]
        piece_len = np.bincount(piece, weights=length[same][~is_merged], minlength=n) if n else np.zeros(0)
        normalized_i = float(((piece_len / total_len) ** 2).sum()) if total_len > 0 else 0.0
        erl = normalized_i * total_len
        # matched label: the label with the most same-label cable (np.unique sorts: ties -> smallest)
        matched_label, matched_cable = 0, 0.0
        if same.any():
            ids, inverse = np.unique(la[same], return_inverse=True)
            cable = np.bincount(inverse.reshape(-1), weights=length[same])
            best = int(np.argmax(cable))
            matched_label, matched_cable = int(ids[best]), float(cable[best])
        per.append(
            NeuronRecord(
                index=i,
                n_edges=len(edges),
                length_um=total_len,
                splits=int(splits),
                omit_edges=int(omit.sum()),
                merged_edges=int(is_merged.sum()),
                erl_um=erl,
                normalized_erl=normalized_i,
                labels=tuple(present),
                label=gt_labels[i],
                merges=len(others),
                merged_with=tuple(others),
                matched_label=matched_label,
                matched_cable_um=matched_cable,
                stray_nodes=n_stray,
            )
        )

    w = np.array([r.n_edges for r in per], dtype=np.float64) / total_edges
    splits_per_neuron = float(np.dot(w, [r.splits for r in per]))
    omit_pct = 100.0 * sum(r.omit_edges for r in per) / total_edges
    merged_pct = 100.0 * sum(r.merged_edges for r in per) / total_edges
    lengths = np.array([r.length_um for r in per])
    total_length = float(np.dot(lengths, np.ones_like(lengths)))  # the same sum as the weighted ones below
    if total_length > 0:
        erl_um = float(np.dot(lengths, [r.erl_um for r in per]) / total_length)
        normalized = float(np.dot(lengths, [r.normalized_erl for r in per]) / total_length)
    else:
        erl_um = normalized = math.nan
    return SkeletonMetrics(
        splits_per_neuron=splits_per_neuron,
        omit_pct=float(omit_pct),
        merged_pct=float(merged_pct),
        edge_accuracy=float(100.0 - omit_pct - merged_pct),
        erl_um=erl_um,
        normalized_erl=normalized,
        per_neuron=tuple(per),
    )
