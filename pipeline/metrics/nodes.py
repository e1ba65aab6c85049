"""Labels of ground-truth skeleton nodes: sampling, the coverage rule, the misalignment correction.

Steps 1-3 of the definitions in :mod:`pipeline.metrics.skeleton` (where they are stated), shared by the
skeleton metrics and :mod:`pipeline.metrics.gaps`: a node takes the segmentation label at its voxel
(:func:`sample_node_labels`); a label counts on a skeleton only where it covers at least
``min_label_nodes`` of its nodes, stray nodes being absorbed by their one neighbouring label or set to 0
(:func:`resolve_node_labels`); then label-0 runs between two nodes of one label take that label
(:func:`correct_misalignment`). The array functions (:func:`skeleton_arrays`, :func:`sample_at`,
:func:`resolve_labels`) are what the metrics run on many skeletons at once.
"""

from __future__ import annotations

import itertools
import warnings
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from fractions import Fraction

import networkx as nx
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pipeline._checks import as_voxel_size, check_array
from pipeline.metrics.config import MIN_LABEL_NODES

__all__ = [
    "MIN_LABEL_NODES",
    "OUTSIDE_WARNING",
    "check_min_label_nodes",
    "check_skeletons",
    "connected_labels",
    "correct_misalignment",
    "labelled_arrays",
    "nodes_outside",
    "resolve_labels",
    "resolve_node_labels",
    "sample_at",
    "sample_node_labels",
    "skeleton_arrays",
    "skeleton_topology",
]




def check_skeletons(skeletons) -> tuple[list[nx.Graph], list[int | None], list[str]]:
    """Graphs, their ground-truth labels (or None) and their names for messages."""
    if isinstance(skeletons, Mapping):
        graphs, labels, names = [], [], []
        for key, g in skeletons.items():
            if isinstance(key, bool) or not isinstance(key, int | np.integer):
                raise TypeError(
                    f"skeletons is a mapping, so its keys must be integer ground-truth labels; got {key!r}"
                )
            graphs.append(g)
            labels.append(int(key))
            names.append(f"skeletons[{int(key)}]")
    elif isinstance(skeletons, nx.Graph) or not isinstance(skeletons, Sequence):
        raise TypeError(
            f"skeletons must be a list of networkx.Graph or a mapping label -> networkx.Graph; got "
            f"{type(skeletons).__name__} (wrap a single skeleton in a list)"
        )
    else:
        graphs = list(skeletons)
        labels = [_graph_label(g) for g in graphs]
        names = [f"skeletons[{i}]" for i in range(len(graphs))]
    if len(graphs) == 0:
        raise ValueError("skeletons is empty; expected at least one ground-truth skeleton")
    for g, name in zip(graphs, names, strict=True):
        if not isinstance(g, nx.Graph) or g.is_directed() or g.is_multigraph():
            raise TypeError(f"{name} must be an undirected networkx.Graph; got {type(g).__name__}")
    return graphs, labels, names


def _graph_label(g) -> int | None:
    label = getattr(g, "graph", {}).get("label")
    if isinstance(label, bool) or not isinstance(label, int | np.integer):
        return None
    return int(label)


def check_min_label_nodes(min_label_nodes) -> int:
    if isinstance(min_label_nodes, bool) or not isinstance(min_label_nodes, int | np.integer):
        raise TypeError(f"min_label_nodes must be an int; got {type(min_label_nodes).__name__}")
    if min_label_nodes < 1:
        raise ValueError(
            f"min_label_nodes must be >= 1 (1 lets every label count, as in the paper); got {min_label_nodes}"
        )
    return int(min_label_nodes)


def skeleton_topology(graph: nx.Graph) -> tuple[list, np.ndarray]:
    """Node list and edges (M, 2) as node indices (self-loops dropped) of one skeleton."""
    nodes = list(graph.nodes)
    index = {n: k for k, n in enumerate(nodes)}
    edges = np.array([(index[a], index[b]) for a, b in graph.edges if a != b], dtype=np.int64).reshape(-1, 2)
    return nodes, edges


def skeleton_arrays(graph: nx.Graph, name: str) -> tuple[list, np.ndarray, np.ndarray]:
    """Node list, positions (N, 3) µm and edges (M, 2) (self-loops dropped) of one skeleton."""
    nodes, edges = skeleton_topology(graph)
    pos = np.empty((len(nodes), 3))
    for k, n in enumerate(nodes):
        p = graph.nodes[n].get("pos_um")
        if p is None:
            raise ValueError(f"{name} node {n!r} has no 'pos_um'; expected (z, y, x) in µm")
        p = np.asarray(p, dtype=np.float64)
        if p.shape != (3,) or not np.isfinite(p).all():
            raise ValueError(f"{name} node {n!r} has pos_um={tuple(np.ravel(p))}; expected 3 finite floats")
        pos[k] = p
    return nodes, pos, edges


def sample_node_labels(
    skeleton: nx.Graph, segmentation: np.ndarray, *, voxel_size_um: Sequence[float]
) -> dict[Hashable, int]:
    """Segmentation label at each skeleton node's voxel (step 1 of :mod:`pipeline.metrics.skeleton`).

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
    nodes, pos, _ = skeleton_arrays(skeleton, "skeleton")
    return dict(zip(nodes, sample_at(pos, seg, np.asarray(vs)).tolist(), strict=True))


#: The warning :func:`sample_at` gives for skeleton nodes outside the volume (callers that count them
#: themselves filter it by this message).
OUTSIDE_WARNING = "skeleton node(s) lie outside the segmentation volume"


def nodes_outside(
    skeletons: Sequence[nx.Graph] | Mapping[int, nx.Graph],
    shape: Sequence[int],
    *,
    voxel_size_um: Sequence[float],
) -> int:
    """How many nodes of the skeletons lie outside a volume of ``shape`` voxels (their voxel, as
    :func:`sample_node_labels` finds it, is outside; they are sampled at the nearest border voxel)."""
    graphs, _, names = check_skeletons(skeletons)
    vs = np.asarray(as_voxel_size(voxel_size_um))
    hi = np.asarray(tuple(shape), dtype=np.int64) - 1
    count = 0
    for g, name in zip(graphs, names, strict=True):
        _, pos, _ = skeleton_arrays(g, name)
        idx = np.floor(pos / vs + 0.5).astype(np.int64)
        count += int(((idx < 0) | (idx > hi)).any(axis=1).sum())
    return count


def sample_at(pos: np.ndarray, seg: np.ndarray, vs: np.ndarray) -> np.ndarray:
    if len(pos) == 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.floor(pos / vs + 0.5).astype(np.int64)
    hi = np.asarray(seg.shape) - 1
    outside = ((idx < 0) | (idx > hi)).any(axis=1)
    if outside.any():
        warnings.warn(
            f"{int(outside.sum())} {OUTSIDE_WARNING} {seg.shape} "
            "(voxel_size_um applied); they are clipped to the nearest border voxel",
            UserWarning,
            stacklevel=3,
        )
    idx = np.clip(idx, 0, hi)
    values = seg[idx[:, 0], idx[:, 1], idx[:, 2]]
    return values.astype(np.int64) if values.dtype != np.uint64 else values


def correct_misalignment(skeleton: nx.Graph, node_labels: Mapping[Hashable, int]) -> dict[Hashable, int]:
    """Apply the misalignment correction (step 3 of :mod:`pipeline.metrics.skeleton`) to one
    skeleton's labels.

    This is the paper's step alone; :func:`resolve_node_labels` applies the coverage rule first.

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


def _counted_labels(raws: Sequence[np.ndarray], k: int) -> list[np.ndarray]:
    """Step 2, first half: per skeleton, the sorted non-zero labels that count on it."""
    uniq = [np.unique(raw[raw != 0], return_counts=True) for raw in raws]
    short = [i for i, raw in enumerate(raws) if len(raw) < 2 * k]
    best: dict[int, tuple[int, Fraction]] = {}  # label -> best (count, fraction) over all skeletons
    if short:
        wanted = set(itertools.chain.from_iterable(uniq[i][0].tolist() for i in short))
        for (labs, counts), raw in zip(uniq, raws, strict=True):
            for lab, cnt in zip(labs.tolist(), counts.tolist(), strict=True):
                if lab in wanted:
                    key = (cnt, Fraction(cnt, len(raw)))
                    if lab not in best or key > best[lab]:
                        best[lab] = key
    out = []
    for (labs, counts), raw in zip(uniq, raws, strict=True):
        keep = counts >= k
        if len(raw) < 2 * k:
            pairs = zip(labs.tolist(), counts.tolist(), strict=True)
            home = [best[lab] == (cnt, Fraction(cnt, len(raw))) for lab, cnt in pairs]
            keep |= np.array(home, dtype=bool).reshape(-1)
        out.append(labs[keep])
    return out


def _absorb_stray(raw: np.ndarray, edges: np.ndarray, counted: np.ndarray) -> tuple[np.ndarray, int]:
    """Step 2, second half: stray runs take their one neighbouring counted label, else 0."""
    stray = (raw != 0) & ~np.isin(raw, counted)
    n_stray = int(stray.sum())
    out = raw.copy()
    if n_stray == 0:
        return out, 0
    out[stray] = 0
    if len(edges) == 0:
        return out, n_stray
    a, b = edges[:, 0], edges[:, 1]
    same = stray[a] & stray[b] & (raw[a] == raw[b])
    run = connected_labels(len(raw), a[same], b[same])
    fwd = stray[a] & ~stray[b] & (raw[b] != 0)
    bwd = stray[b] & ~stray[a] & (raw[a] != 0)
    s_end = np.concatenate([a[fwd], b[bwd]])
    t_end = np.concatenate([b[fwd], a[bwd]])
    neighbours: dict[int, set[int]] = defaultdict(set)
    for r, lab in zip(run[s_end].tolist(), raw[t_end].tolist(), strict=True):
        neighbours[r].add(lab)
    take = {r: next(iter(labs)) for r, labs in neighbours.items() if len(labs) == 1}
    if take:
        idx = np.flatnonzero(stray)
        for node, r in zip(idx.tolist(), run[idx].tolist(), strict=True):
            if r in take:
                out[node] = take[r]
    return out, n_stray


def resolve_labels(
    raws: Sequence[np.ndarray], edges: Sequence[np.ndarray], k: int
) -> list[tuple[np.ndarray, int]]:
    """Steps 2 and 3 on index arrays: (labels, number of stray nodes) per skeleton."""
    counted = _counted_labels(raws, k)
    out = []
    for raw, e, c in zip(raws, edges, counted, strict=True):
        labels, n_stray = _absorb_stray(raw, e, c)
        out.append((_correct(labels, e), n_stray))
    return out


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
    run = connected_labels(n, a[zz], b[zz])
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


def connected_labels(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def labelled_arrays(
    graphs, names, node_labels, *, positions: bool = True
) -> list[tuple[np.ndarray | None, np.ndarray, np.ndarray]]:
    if isinstance(node_labels, Mapping) or not isinstance(node_labels, Sequence):
        raise TypeError(
            f"node_labels must be a list of mappings node -> label; got {type(node_labels).__name__}"
        )
    if len(node_labels) != len(graphs):
        raise ValueError(f"node_labels has {len(node_labels)} entries but skeletons has {len(graphs)}")
    data = []
    for i, (g, name, labels) in enumerate(zip(graphs, names, node_labels, strict=True)):
        if positions:
            nodes, pos, edges = skeleton_arrays(g, name)
        else:
            (nodes, edges), pos = skeleton_topology(g), None
        missing = [n for n in nodes if n not in labels]
        if missing:
            raise ValueError(f"node_labels[{i}] has no label for node {missing[0]!r} of {name}")
        data.append((pos, edges, _label_array([labels[n] for n in nodes])))
    return data


def resolve_node_labels(
    skeletons: Sequence[nx.Graph] | Mapping[int, nx.Graph],
    node_labels: Sequence[Mapping[Hashable, int]],
    *,
    min_label_nodes: int = MIN_LABEL_NODES,
) -> list[dict[Hashable, int]]:
    """The labels :func:`skeleton_metrics` scores: sampled labels after steps 2 (coverage) and 3.

    Parameters
    ----------
    skeletons : list of networkx.Graph, or mapping of int to networkx.Graph
        All ground-truth skeletons (the coverage rule of short skeletons looks at every skeleton).
    node_labels : list of mapping
        Sampled labels per skeleton, as :func:`sample_node_labels` returns them.
    min_label_nodes : int, default 10
        As :func:`skeleton_metrics`.

    Returns
    -------
    list of dict
        Node → label per skeleton, in input order. Every non-zero label on a skeleton counts on it.

    Examples
    --------
    >>> g = nx.path_graph(12)  # a stray tip node (label 9) next to a run of label 4
    >>> resolve_node_labels([g], [dict(enumerate([4] * 11 + [9]))], min_label_nodes=5)[0][11]
    4
    """
    graphs, _, names = check_skeletons(skeletons)
    k = check_min_label_nodes(min_label_nodes)
    data = labelled_arrays(graphs, names, node_labels, positions=False)
    resolved = resolve_labels([raw for _, _, raw in data], [e for _, e, _ in data], k)
    return [
        {n: int(v) for n, v in zip(g.nodes, labels.tolist(), strict=True)}
        for g, (labels, _) in zip(graphs, resolved, strict=True)
    ]
