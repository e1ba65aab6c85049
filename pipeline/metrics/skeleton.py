"""Skeleton-based metrics of a segmentation against ground-truth skeletons (splits, omits, merges, ERL).

Definitions (supervoxel critical-components paper, appendix "Skeleton-Based Metrics", Figs. 9–10), for
ground-truth skeletons G_i = (V_i, E_i) whose nodes carry ``pos_um`` = (z, y, x) in µm. Lengths are in
µm along skeleton edges: len(e) = Euclidean distance between its end nodes, len(G_i) = Σ len(e).

1. **Node labels.** Each node takes the segmentation label at its voxel,
   ``index = floor(pos_um / voxel_size_um + 0.5)`` (round half up) clipped to the volume.
2. **Misalignment correction** (per skeleton, one pass on the sampled labels). If two nodes u, v
   carry the same non-zero label L and a path between them has only label-0 interior nodes, those
   interior nodes take label L. Implementation: for each connected run Z of label-0 nodes and each
   label L, the *terminals* are the label-L nodes adjacent to Z; for every pair of terminals the
   interior of a shortest path (edge count) through Z gets L — in a tree this is *the* path. A node
   that two different labels would claim (two label pairs around one branched 0-run) stays 0.
3. **Edges.** An edge is *omit* if either end has label 0. A *piece* is a connected set of edges
   whose ends all carry the same non-zero label (connected components of the graph of such edges).
   A piece is *merged* if its label also occurs on another ground-truth skeleton (after correction).
   Edges joining two different non-zero labels are neither omit nor merged (they are splits); like
   the paper, edge accuracy counts them as correct.
4. **Splits.** splits_i = (number of connected components of the graph on the non-zero nodes with
   only the edges whose ends carry the same label) − 1, floored at 0 for a skeleton without non-zero
   nodes. splits_per_neuron = Σ_i w_i · splits_i, w_i = |E_i| / Σ_j |E_j| (edge counts, as the paper).
5. **Percentages.** omit_pct = 100 · Σ_i #omit edges / Σ_i |E_i|; merged_pct = 100 · Σ_i #edges of
   merged pieces / Σ_i |E_i|; edge_accuracy = 100 − omit_pct − merged_pct.
6. **Run length.** ERL_i = Σ_{non-merged pieces P of G_i} len(P)² / len(G_i) (µm; 0 if len(G_i) = 0);
   erl_um = Σ_i len(G_i) · ERL_i / Σ_i len(G_i); normalized_erl = Σ_i len(G_i) · (ERL_i / len(G_i)) /
   Σ_i len(G_i) (the length-weighted mean of the per-skeleton fraction, in [0, 1]). Both are NaN if
   every skeleton has zero length.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pipeline._checks import as_voxel_size, check_array

__all__ = [
    "NeuronRecord",
    "SkeletonMetrics",
    "correct_misalignment",
    "sample_node_labels",
    "skeleton_metrics",
    "skeleton_metrics_from_node_labels",
]


@dataclass(frozen=True)
class NeuronRecord:
    """Per-skeleton details of :func:`skeleton_metrics`.

    Attributes
    ----------
    index : int
        Position of the skeleton in the input list.
    n_edges : int
        |E_i|.
    length_um : float
        len(G_i), µm.
    splits : int
        splits_i.
    omit_edges, merged_edges : int
        Number of omit edges and of edges in merged pieces.
    erl_um : float
        ERL_i, µm.
    normalized_erl : float
        ERL_i / len(G_i) (0.0 if the skeleton has zero length).
    labels : tuple of int
        The distinct non-zero segment labels on the skeleton after correction, sorted.
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
# helpers


def _check_skeletons(skeletons) -> list[nx.Graph]:
    if isinstance(skeletons, nx.Graph) or not isinstance(skeletons, Sequence):
        raise TypeError(
            f"skeletons must be a list of networkx.Graph; got {type(skeletons).__name__} "
            "(wrap a single skeleton in a list)"
        )
    if len(skeletons) == 0:
        raise ValueError("skeletons is empty; expected at least one ground-truth skeleton")
    for i, g in enumerate(skeletons):
        if not isinstance(g, nx.Graph) or g.is_directed() or g.is_multigraph():
            raise TypeError(f"skeletons[{i}] must be an undirected networkx.Graph; got {type(g).__name__}")
    return list(skeletons)


def _arrays(graph: nx.Graph, i: int) -> tuple[list, np.ndarray, np.ndarray]:
    """Node list, positions (N, 3) µm and edges (M, 2) (self-loops dropped) of skeleton ``i``."""
    nodes = list(graph.nodes)
    index = {n: k for k, n in enumerate(nodes)}
    pos = np.empty((len(nodes), 3))
    for k, n in enumerate(nodes):
        p = graph.nodes[n].get("pos_um")
        if p is None:
            raise ValueError(f"skeletons[{i}] node {n!r} has no 'pos_um'; expected (z, y, x) in µm")
        p = np.asarray(p, dtype=np.float64)
        if p.shape != (3,) or not np.isfinite(p).all():
            raise ValueError(
                f"skeletons[{i}] node {n!r} has pos_um={tuple(np.ravel(p))}; expected 3 finite floats"
            )
        pos[k] = p
    edges = np.array([(index[a], index[b]) for a, b in graph.edges if a != b], dtype=np.int64).reshape(-1, 2)
    return nodes, pos, edges


def sample_node_labels(
    skeleton: nx.Graph, segmentation: np.ndarray, *, voxel_size_um: Sequence[float]
) -> dict[Hashable, int]:
    """Segmentation label at each skeleton node's voxel.

    Parameters
    ----------
    skeleton : networkx.Graph
        Nodes carry ``pos_um`` = (z, y, x) in µm.
    segmentation : ndarray, shape (Z, Y, X), integer or bool
        Predicted labels; 0 is background.
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x).

    Returns
    -------
    dict
        Node → label, with voxel index ``floor(pos_um / voxel_size_um + 0.5)`` clipped to the volume.
        A ``UserWarning`` is issued if nodes lie more than half a voxel outside the volume.
    """
    seg = check_array(segmentation, "segmentation", ndim=3, kinds="biu")
    vs = as_voxel_size(voxel_size_um)
    nodes, pos, _ = _arrays(skeleton, 0)
    return dict(zip(nodes, _sample(pos, seg, np.asarray(vs)).tolist(), strict=True))


def _sample(pos: np.ndarray, seg: np.ndarray, vs: np.ndarray) -> np.ndarray:
    if len(pos) == 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.floor(pos / vs + 0.5).astype(np.int64)
    hi = np.asarray(seg.shape) - 1
    outside = ((idx < 0) | (idx > hi)).any(axis=1)
    if outside.any():
        warnings.warn(
            f"{int(outside.sum())} skeleton node(s) lie outside the segmentation volume {seg.shape} "
            "(voxel_size_um applied); they are clipped to the nearest border voxel",
            UserWarning,
            stacklevel=3,
        )
    idx = np.clip(idx, 0, hi)
    values = seg[idx[:, 0], idx[:, 1], idx[:, 2]]
    return values.astype(np.int64) if values.dtype != np.uint64 else values


def correct_misalignment(skeleton: nx.Graph, node_labels: Mapping[Hashable, int]) -> dict[Hashable, int]:
    """Apply the misalignment correction (step 2 of the module docstring) to one skeleton's labels.

    Parameters
    ----------
    skeleton : networkx.Graph
        The ground-truth skeleton (positions are not used).
    node_labels : mapping
        Node → sampled label (0 = background) for every node.

    Returns
    -------
    dict
        Node → corrected label. Only label-0 nodes change.

    Raises
    ------
    ValueError
        If a node has no label.

    Examples
    --------
    >>> g = nx.path_graph(5)
    >>> correct_misalignment(g, {0: 7, 1: 0, 2: 0, 3: 7, 4: 0})
    {0: 7, 1: 7, 2: 7, 3: 7, 4: 0}
    """
    nodes = list(skeleton.nodes)
    missing = [n for n in nodes if n not in node_labels]
    if missing:
        raise ValueError(f"node_labels has no label for {len(missing)} node(s), e.g. {missing[0]!r}")
    index = {n: k for k, n in enumerate(nodes)}
    pairs = [(index[a], index[b]) for a, b in skeleton.edges if a != b]
    edges = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    labels = _label_array([node_labels[n] for n in nodes])
    fixed = _correct(labels, edges)
    return {n: int(v) for n, v in zip(nodes, fixed, strict=True)}


def _label_array(values: list) -> np.ndarray:
    """Labels as int64, or uint64 when a value does not fit int64."""
    ints = [int(v) for v in values]
    dtype = np.uint64 if ints and max(ints) > np.iinfo(np.int64).max else np.int64
    return np.array(ints, dtype=dtype).reshape(-1)


def _correct(labels: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Vectorized driver of the misalignment correction on index arrays."""
    n = len(labels)
    out = labels.copy()
    if n == 0 or len(edges) == 0:
        return out
    zero = labels == 0
    a, b = edges[:, 0], edges[:, 1]
    # label-0 runs: components of the graph of 0-0 edges
    zz = zero[a] & zero[b]
    run = _components(n, a[zz], b[zz])
    # terminals: non-zero nodes adjacent to a run, grouped by (run, label)
    cross = zero[a] ^ zero[b]
    z_end = np.where(zero[a], a, b)[cross]
    t_end = np.where(zero[a], b, a)[cross]
    groups: dict[tuple[int, int], set[int]] = defaultdict(set)
    for r, t in zip(run[z_end].tolist(), t_end.tolist(), strict=True):
        groups[(r, int(labels[t]))].add(t)
    candidates = {key: sorted(ts) for key, ts in groups.items() if len(ts) >= 2}
    if not candidates:
        return out
    adjacency: list[list[int]] = [[] for _ in range(n)]
    for u, v in edges.tolist():
        adjacency[u].append(v)
        adjacency[v].append(u)
    claims: dict[int, set[int]] = defaultdict(set)
    for (r, label), terminals in candidates.items():
        for u, v in itertools.combinations(terminals, 2):
            path = _shortest_path_through(u, v, run, r, zero, adjacency)
            for w in path:
                claims[w].add(label)
    for w, labs in claims.items():
        if len(labs) == 1:
            out[w] = next(iter(labs))
    return out


def _shortest_path_through(u: int, v: int, run: np.ndarray, r: int, zero: np.ndarray, adjacency) -> list[int]:
    """Interior nodes of a shortest u–v path whose interior lies in 0-run ``r`` (BFS, edge count)."""
    parent = {u: -1}
    frontier = [u]
    while frontier:
        nxt = []
        for x in frontier:
            for y in adjacency[x]:
                if y in parent:
                    continue
                if y == v and x != u:
                    path = []
                    while x != u:
                        path.append(x)
                        x = parent[x]
                    return path[::-1]
                if zero[y] and run[y] == r:
                    parent[y] = x
                    nxt.append(y)
        frontier = nxt
    return []


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


# --------------------------------------------------------------------------------------------------------
# metrics


def skeleton_metrics(
    skeletons: Sequence[nx.Graph],
    segmentation: np.ndarray,
    *,
    voxel_size_um: Sequence[float],
) -> SkeletonMetrics:
    """Splits, omits, merges and expected run length of a segmentation against ground-truth skeletons.

    See the module docstring for the exact definitions (node sampling, misalignment correction,
    omit/merged edges, pieces, splits, ERL).

    Parameters
    ----------
    skeletons : list of networkx.Graph
        Ground-truth skeletons, one per true object; nodes carry ``pos_um`` = (z, y, x) in µm.
    segmentation : ndarray, shape (Z, Y, X), integer or bool
        Predicted segmentation; 0 is background.
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x), mapping ``pos_um`` to voxels.

    Returns
    -------
    SkeletonMetrics
        ``splits_per_neuron``, ``omit_pct``, ``merged_pct``, ``edge_accuracy``, ``erl_um``,
        ``normalized_erl`` and one ``NeuronRecord`` per skeleton.

    Raises
    ------
    TypeError
        If ``skeletons`` is not a list of undirected graphs or ``segmentation`` is not integer/bool.
    ValueError
        If ``segmentation`` is not 3-D, ``voxel_size_um`` is invalid, a node lacks ``pos_um``,
        ``skeletons`` is empty or no skeleton has an edge.

    Examples
    --------
    >>> seg = np.zeros((1, 1, 4), np.uint8); seg[0, 0, :2] = 1; seg[0, 0, 2:] = 2
    >>> g = nx.path_graph(4)
    >>> for i in g: g.nodes[i]["pos_um"] = (0.0, 0.0, float(i))
    >>> m = skeleton_metrics([g], seg, voxel_size_um=(1, 1, 1))
    >>> m.splits_per_neuron, m.edge_accuracy, round(m.erl_um, 3)  # two pieces of 1 µm, 3 µm skeleton
    (1.0, 100.0, 0.667)
    """
    graphs = _check_skeletons(skeletons)
    seg = check_array(segmentation, "segmentation", ndim=3, kinds="biu")
    vs = np.asarray(as_voxel_size(voxel_size_um))
    data = []
    for i, g in enumerate(graphs):
        nodes, pos, edges = _arrays(g, i)
        data.append((pos, edges, _sample(pos, seg, vs)))
    return _metrics(data)


def skeleton_metrics_from_node_labels(
    skeletons: Sequence[nx.Graph],
    node_labels: Sequence[Mapping[Hashable, int]],
) -> SkeletonMetrics:
    """:func:`skeleton_metrics` from labels already sampled at the nodes (before correction).

    Parameters
    ----------
    skeletons : list of networkx.Graph
        Ground-truth skeletons; nodes carry ``pos_um`` (for edge lengths).
    node_labels : list of mapping
        ``node_labels[i][node]`` = predicted label at that node of ``skeletons[i]`` (0 = background).
        The misalignment correction is applied here.

    Returns
    -------
    SkeletonMetrics

    Raises
    ------
    TypeError, ValueError
        As :func:`skeleton_metrics`; ValueError if the lists differ in length or a label is missing.
    """
    graphs = _check_skeletons(skeletons)
    if len(node_labels) != len(graphs):
        raise ValueError(f"node_labels has {len(node_labels)} entries but skeletons has {len(graphs)}")
    data = []
    for i, (g, labels) in enumerate(zip(graphs, node_labels, strict=True)):
        nodes, pos, edges = _arrays(g, i)
        missing = [n for n in nodes if n not in labels]
        if missing:
            raise ValueError(f"node_labels[{i}] has no label for node {missing[0]!r}")
        data.append((pos, edges, _label_array([labels[n] for n in nodes])))
    return _metrics(data)


def _metrics(data: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> SkeletonMetrics:
    per = []
    total_edges = sum(len(edges) for _, edges, _ in data)
    if total_edges == 0:
        raise ValueError("no skeleton has an edge; skeleton metrics are undefined")
    # pass 1: correct labels, pieces
    prepared = []
    label_owners: dict[int, set[int]] = defaultdict(set)
    for i, (pos, edges, raw) in enumerate(data):
        labels = _correct(raw, edges)
        for lab in np.unique(labels[labels != 0]).tolist():
            label_owners[int(lab)].add(i)
        prepared.append((pos, edges, labels))
    merged_labels = {lab for lab, owners in label_owners.items() if len(owners) > 1}

    for i, (pos, edges, labels) in enumerate(prepared):
        n = len(labels)
        a, b = edges[:, 0], edges[:, 1]
        length = np.linalg.norm(pos[a] - pos[b], axis=1)
        total_len = float(length.sum())
        la, lb = labels[a], labels[b]
        omit = (la == 0) | (lb == 0)
        same = (la == lb) & (la != 0)
        comp = _components(n, a[same], b[same])
        nonzero = labels != 0
        n_comp = len(np.unique(comp[nonzero]))
        splits = max(0, n_comp - 1)
        is_merged = np.array([int(v) in merged_labels for v in la[same].tolist()], dtype=bool)
        merged_edges = int(is_merged.sum())
        # piece lengths of non-merged pieces
        piece = comp[a[same]][~is_merged]
        piece_len = np.bincount(piece, weights=length[same][~is_merged], minlength=n) if n else np.zeros(0)
        erl = float((piece_len**2).sum() / total_len) if total_len > 0 else 0.0
        per.append(
            NeuronRecord(
                index=i,
                n_edges=len(edges),
                length_um=total_len,
                splits=int(splits),
                omit_edges=int(omit.sum()),
                merged_edges=merged_edges,
                erl_um=erl,
                normalized_erl=erl / total_len if total_len > 0 else 0.0,
                labels=tuple(sorted(int(v) for v in np.unique(labels[nonzero]).tolist())),
            )
        )

    w = np.array([r.n_edges for r in per], dtype=np.float64) / total_edges
    splits_per_neuron = float(np.dot(w, [r.splits for r in per]))
    omit_pct = 100.0 * sum(r.omit_edges for r in per) / total_edges
    merged_pct = 100.0 * sum(r.merged_edges for r in per) / total_edges
    lengths = np.array([r.length_um for r in per])
    total_length = lengths.sum()
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
