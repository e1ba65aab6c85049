"""Gap bridging: whether a segmentation joins the two sides of each ground-truth signal-dropout gap.

A *dropout gap* is a stretch of a ground-truth skeleton where the raw image lost its signal (the
labels and skeletons stay continuous). It is given by the ground-truth label of the skeleton it lies on
and its two ends ``start_um``, ``end_um`` ((z, y, x) µm points on the skeleton or within
``max_offset_um`` of it), as :class:`pipeline.synth.DropoutGap` holds them.

Definitions
-----------
1. **End points.** Each end is projected onto the nearest point of its skeleton (nearest over all
   edges, as line segments; a node without edges counts as a point). A projection within 1e-6 µm of a
   node *is* that node.
2. **Gap stretch.** The skeleton path (fewest edges) between the two projected points. Its nodes,
   the projected points themselves included when they are nodes, are *inside* the gap.
3. **Sides.** The node *before* the gap is the neighbour of the start point that is off the stretch:
   the other end of the edge the start point lies on, or, if the start point is a node, its neighbour
   off the stretch (the nearest in µm if it is a branch node; ties: the first in the graph's
   adjacency order). The node *after* the gap is the same for the end point. Both are the skeleton
   nodes one step outside the gap.
4. **Labels.** Side nodes carry the labels :func:`pipeline.metrics.skeleton_metrics` scores: the
   segmentation sampled at the node's voxel, then the coverage rule and the misalignment correction
   (steps 1–3 of :mod:`pipeline.metrics.skeleton`, over all given skeletons), so a side node that
   lies on a touching neighbour's voxels is judged like in the skeleton metrics.
5. **Bridged.** A gap is bridged when both side nodes carry the same non-zero label (one segment).
   fraction = bridged gaps / gaps; NaN when there are no gaps.

Labels are taken as segments: a label in several pieces counts as one segment (label the connected
components first, e.g. with :func:`pipeline.metrics.connected_instances`, to require connection).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from pipeline._checks import as_voxel_size, check_array
from pipeline.metrics.nodes import (
    MIN_LABEL_NODES,
    check_min_label_nodes,
    check_skeletons,
    resolve_labels,
    sample_at,
    skeleton_arrays,
)

__all__ = ["GapOutcome", "GapsBridged", "UnscorableGap", "gaps_bridged", "gaps_bridged_from_samples"]

_SNAP_UM = 1e-6


class UnscorableGap(ValueError):
    """A gap that cannot be judged on its skeleton: an end off the skeleton or at one of its ends, both ends
    at one point, or on unconnected pieces (e.g. a gap the volume border cut)."""


@dataclass(frozen=True)
class GapOutcome:
    """One gap of :func:`gaps_bridged`.

    Attributes
    ----------
    index : int
        Position of the gap in the input.
    label : int
        Ground-truth label of the skeleton it lies on.
    before_node, after_node : hashable
        The skeleton nodes one step outside the gap, on the start and on the end side.
    before_label, after_label : int
        Their predicted labels (after the coverage rule and the misalignment correction).
    bridged : bool
        ``before_label == after_label != 0``.
    length_um : float
        Length of the gap along the skeleton, between the projected end points, µm.
    """

    index: int
    label: int
    before_node: Hashable
    after_node: Hashable
    before_label: int
    after_label: int
    bridged: bool
    length_um: float


@dataclass(frozen=True)
class GapsBridged:
    """Result of :func:`gaps_bridged`.

    Attributes
    ----------
    fraction : float
        n_bridged / n_gaps, in [0, 1]; NaN if there are no gaps.
    n_gaps, n_bridged : int
        Numbers of gaps scored and of bridged gaps.
    gaps : tuple of GapOutcome
        One per scored gap, in input order.
    n_skipped : int
        Gaps left out as unscorable (only with ``skip_unscorable``).
    """

    fraction: float
    n_gaps: int
    n_bridged: int
    gaps: tuple[GapOutcome, ...]
    n_skipped: int = 0


def _gap_fields(gap: Any, k: int) -> tuple[int, np.ndarray, np.ndarray]:
    def get(name: str) -> Any:
        if isinstance(gap, Mapping):
            if name not in gap:
                raise ValueError(f"gaps[{k}] has no {name!r}; expected label, start_um and end_um")
            return gap[name]
        if not hasattr(gap, name):
            raise ValueError(f"gaps[{k}] has no attribute {name!r}; expected label, start_um and end_um")
        return getattr(gap, name)

    label = get("label")
    if isinstance(label, bool) or not isinstance(label, int | np.integer):
        raise TypeError(f"gaps[{k}].label must be an integer ground-truth label; got {label!r}")
    points = []
    for name in ("start_um", "end_um"):
        p = np.asarray(get(name), dtype=np.float64)
        if p.shape != (3,) or not np.isfinite(p).all():
            raise ValueError(f"gaps[{k}].{name} is {get(name)!r}; expected 3 finite floats (z, y, x) in µm")
        points.append(p)
    return int(label), points[0], points[1]


def _project(point: np.ndarray, pos: np.ndarray, edges: np.ndarray) -> tuple[float, int, int, float]:
    """Nearest point of the skeleton: (distance µm, node u, node v, t) with point ≈ u + t (v - u)."""
    best = (math.inf, -1, -1, 0.0)
    if len(edges):
        a, b = pos[edges[:, 0]], pos[edges[:, 1]]
        d = b - a
        dd = (d * d).sum(axis=1)
        t = np.where(dd > 0, ((point - a) * d).sum(axis=1) / np.where(dd > 0, dd, 1.0), 0.0)
        t = np.clip(t, 0.0, 1.0)
        dist = np.linalg.norm(a + t[:, None] * d - point, axis=1)
        j = int(np.argmin(dist))
        best = (float(dist[j]), int(edges[j, 0]), int(edges[j, 1]), float(t[j]))
    node_dist = np.linalg.norm(pos - point, axis=1)
    j = int(np.argmin(node_dist))
    if node_dist[j] < best[0]:  # only for nodes without edges
        best = (float(node_dist[j]), j, j, 0.0)
    return best


def _insert(h: nx.Graph, pos: dict, key: Hashable, proj: tuple[float, int, int, float]) -> Hashable:
    """Put a projected point into graph ``h`` (indices as nodes); return the node standing for it."""
    _, u, v, t = proj
    seg = float(np.linalg.norm(pos[v] - pos[u]))
    if t * seg <= _SNAP_UM:
        return u
    if (1.0 - t) * seg <= _SNAP_UM:
        return v
    h.remove_edge(u, v)
    h.add_edge(u, key)
    h.add_edge(key, v)
    pos[key] = pos[u] + t * (pos[v] - pos[u])
    return key


def _side(h: nx.Graph, pos: dict, end: Hashable, inner: Hashable, what: str) -> int:
    """The neighbour of ``end`` off the stretch (``inner`` is its neighbour on the stretch)."""
    outside = [w for w in h.neighbors(end) if w != inner]
    if not outside:
        raise UnscorableGap(f"{what} lies at an end of its skeleton; a gap needs skeleton on both sides")
    dist = [float(np.linalg.norm(pos[w] - pos[end])) for w in outside]
    return outside[int(np.argmin(dist))]


def gaps_bridged(
    skeletons: Sequence[nx.Graph] | Mapping[int, nx.Graph],
    gaps: Sequence[Any],
    segmentation: np.ndarray,
    *,
    voxel_size_um: Sequence[float],
    min_label_nodes: int = MIN_LABEL_NODES,
    max_offset_um: float | None = None,
    skip_unscorable: bool = False,
) -> GapsBridged:
    """Fraction of ground-truth dropout gaps whose two sides lie in one predicted segment.

    See the module docstring for the definitions.

    Parameters
    ----------
    skeletons : mapping of int to networkx.Graph, or list of networkx.Graph
        All ground-truth skeletons (nodes carry ``pos_um`` = (z, y, x) µm), keyed by ground-truth
        label; a list is keyed by ``graph.graph["label"]``.
    gaps : sequence
        Each with ``label`` (int, the skeleton it lies on), ``start_um`` and ``end_um`` ((z, y, x)
        µm), as attributes (e.g. :class:`pipeline.synth.DropoutGap`) or mapping keys.
    segmentation : ndarray, shape (Z, Y, X), integer or bool
        Predicted segmentation; 0 is background.
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x).
    min_label_nodes : int, default 10
        Coverage rule of :func:`pipeline.metrics.skeleton_metrics` (used for the side labels).
    max_offset_um : float, optional
        Largest allowed distance from a gap end to its skeleton, µm; default: the voxel diagonal
        ``sqrt(sum(voxel_size_um**2))`` (about one voxel).
    skip_unscorable : bool
        Leave out, and count, gaps that cannot be judged on their skeleton (:class:`UnscorableGap`)
        instead of raising.

    Returns
    -------
    GapsBridged
        ``fraction`` (NaN without gaps), ``n_gaps``, ``n_bridged`` and one ``GapOutcome`` per gap.

    Raises
    ------
    TypeError
        If ``skeletons`` or ``segmentation`` have the wrong type, or a gap's label is not an int.
    ValueError
        If a gap refers to a label without a skeleton (or skeletons have no labels), or an input is
        invalid as in ``skeleton_metrics``.
    UnscorableGap
        (A ``ValueError``; not with ``skip_unscorable``) if an end lies farther than ``max_offset_um``
        from the skeleton or at one of its ends, or both ends project to the same point or onto
        unconnected pieces.

    Examples
    --------
    >>> g = nx.path_graph(20)
    >>> for i in g: g.nodes[i]["pos_um"] = (0.0, 0.0, float(i))
    >>> seg = np.zeros((1, 1, 20), np.uint8); seg[0, 0, :10] = 1; seg[0, 0, 10:] = 2
    >>> gaps = [{"label": 5, "start_um": (0, 0, 4.5), "end_um": (0, 0, 6.5)},    # sides 4, 7: label 1
    ...         {"label": 5, "start_um": (0, 0, 8.5), "end_um": (0, 0, 11.5)}]  # sides 8, 12: 1 vs 2
    >>> r = gaps_bridged({5: g}, gaps, seg, voxel_size_um=(1, 1, 1), min_label_nodes=3)
    >>> r.fraction, [o.bridged for o in r.gaps]
    (0.5, [True, False])
    """
    graphs, _, names = check_skeletons(skeletons)
    seg = check_array(segmentation, "segmentation", ndim=3, kinds="biu")
    vs = np.asarray(as_voxel_size(voxel_size_um))
    sampled = []
    for g, name in zip(graphs, names, strict=True):  # a loop, not a comprehension: the warning's stack
        sampled.append(sample_at(skeleton_arrays(g, name)[1], seg, vs))  # warns at the caller (outside nodes)
    return gaps_bridged_from_samples(skeletons, gaps, sampled, voxel_size_um=vs,
                                     min_label_nodes=min_label_nodes, max_offset_um=max_offset_um,
                                     skip_unscorable=skip_unscorable)


def gaps_bridged_from_samples(
    skeletons: Sequence[nx.Graph] | Mapping[int, nx.Graph],
    gaps: Sequence[Any],
    sampled: Sequence[np.ndarray],
    *,
    voxel_size_um: Sequence[float],
    min_label_nodes: int = MIN_LABEL_NODES,
    max_offset_um: float | None = None,
    skip_unscorable: bool = False,
) -> GapsBridged:
    """:func:`gaps_bridged` from the predicted labels already sampled at the skeletons' nodes.

    ``sampled[i]`` holds the label at each node of the i-th skeleton, in the order of
    :func:`pipeline.metrics.nodes.skeleton_arrays` (what :func:`pipeline.metrics.nodes.sample_at` gives,
    e.g. gathered block by block); the other parameters and the result are :func:`gaps_bridged`'s.
    """
    graphs, gt_labels, names = check_skeletons(skeletons)
    vs = np.asarray(as_voxel_size(voxel_size_um))
    k = check_min_label_nodes(min_label_nodes)
    if len(sampled) != len(graphs):
        raise ValueError(f"sampled has {len(sampled)} arrays for {len(graphs)} skeletons; expected one each")
    if max_offset_um is None:
        max_offset = float(np.linalg.norm(vs))
    else:
        max_offset = float(max_offset_um)
        if not (math.isfinite(max_offset) and max_offset >= 0):
            raise ValueError(f"max_offset_um must be a finite distance >= 0 µm; got {max_offset_um!r}")
    if isinstance(gaps, Mapping) or not isinstance(gaps, Sequence):
        raise TypeError(f"gaps must be a sequence of gaps; got {type(gaps).__name__}")
    parsed = [_gap_fields(gap, k_) for k_, gap in enumerate(gaps)]
    if not parsed:
        return GapsBridged(fraction=math.nan, n_gaps=0, n_bridged=0, gaps=())

    where: dict[int, int] = {}
    for i, lab in enumerate(gt_labels):
        if lab is not None:
            if lab in where:
                raise ValueError(f"two skeletons have ground-truth label {lab}; labels must be unique")
            where[lab] = i
    for k_, (lab, _, _) in enumerate(parsed):
        if lab not in where:
            hint = "" if where else " (pass a mapping label -> skeleton, or set graph.graph['label'])"
            raise ValueError(f"gaps[{k_}].label is {lab}, but no skeleton has that label{hint}")

    arrays = [skeleton_arrays(g, name) for g, name in zip(graphs, names, strict=True)]
    resolved = resolve_labels(list(sampled), [e for _, _, e in arrays], k)

    outcomes, skipped = [], 0
    for k_, (lab, start, end) in enumerate(parsed):
        try:
            outcomes.append(_score_gap(k_, lab, start, end, arrays[where[lab]], resolved[where[lab]][0],
                                       max_offset))
        except UnscorableGap:
            if not skip_unscorable:
                raise
            skipped += 1
    n_bridged = sum(o.bridged for o in outcomes)
    return GapsBridged(
        fraction=n_bridged / len(outcomes) if outcomes else math.nan, n_gaps=len(outcomes),
        n_bridged=n_bridged, gaps=tuple(outcomes), n_skipped=skipped,
    )


def _score_gap(
    k_: int, lab: int, start: np.ndarray, end: np.ndarray, arrays: tuple, labels: np.ndarray,
    max_offset: float,
) -> GapOutcome:
    """One gap's outcome (definitions 1-5 of the module docstring); raises :class:`UnscorableGap`."""
    nodes, pos, edges = arrays
    what = f"gaps[{k_}] (label {lab})"
    projections = []
    for name, point in (("start_um", start), ("end_um", end)):
        proj = _project(point, pos, edges)
        if proj[0] > max_offset:
            raise UnscorableGap(
                f"{what}.{name} = {tuple(point.tolist())} lies {proj[0]:.3g} µm from skeleton {lab}; "
                f"expected within max_offset_um = {max_offset:.3g} µm"
            )
        projections.append(proj)
    h = nx.Graph()
    h.add_nodes_from(range(len(nodes)))
    h.add_edges_from(edges.tolist())
    pos_h = dict(enumerate(pos))
    s = _insert(h, pos_h, "start", projections[0])
    # the end point is projected again on h: its edge may have been split by the start point
    h_nodes = list(h.nodes)
    h_index = {n: j for j, n in enumerate(h_nodes)}
    h_pos = np.array([pos_h[n] for n in h_nodes])
    h_edges = np.array([(h_index[a], h_index[b]) for a, b in h.edges], dtype=np.int64).reshape(-1, 2)
    _, u, v, t = _project(end, h_pos, h_edges)
    e = _insert(h, pos_h, "end", (0.0, h_nodes[u], h_nodes[v], t))
    if e == s:
        raise UnscorableGap(f"{what} has start_um and end_um at the same point of the skeleton")
    try:
        path = nx.shortest_path(h, s, e)
    except nx.NetworkXNoPath:
        raise UnscorableGap(
            f"{what}: start_um and end_um lie on unconnected pieces of the skeleton"
        ) from None
    before = _side(h, pos_h, s, path[1], f"{what}.start_um")
    after = _side(h, pos_h, e, path[-2], f"{what}.end_um")
    steps = zip(path[:-1], path[1:], strict=True)
    length = float(sum(np.linalg.norm(pos_h[p] - pos_h[q]) for p, q in steps))
    bl, al = int(labels[before]), int(labels[after])
    return GapOutcome(
        index=k_,
        label=lab,
        before_node=nodes[before],
        after_node=nodes[after],
        before_label=bl,
        after_label=al,
        bridged=bl == al != 0,
        length_um=length,
    )

