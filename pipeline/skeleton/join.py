"""Joining skeleton pieces across short gaps: what tracing and proofreading tools do at signal dropout.

A stretch of neurite without signal splits one neuron into pieces whose skeletons end on either side of
the gap, facing each other. This module finds such pairs of ends on the skeletons of a segmentation and
says which labels to merge; it never looks at the image.

Definitions
-----------
* An **end** of a skeleton is a node of degree 1. Its **direction** is the unit vector from the point
  reached by walking back along the skeleton from the end for ``tangent_um`` of cable (or to the first
  branch node, or the other end, if nearer) to the end itself: the way the neurite was heading when it
  stopped. An end with no cable behind it (a single node) has no direction and is never joined.
* Two ends ``a`` and ``b`` of **different labels** are a **candidate** when their distance ``d`` is at
  most ``max_gap_um`` and the neurite, continued straight, crosses the gap from both sides: the angle
  between ``a``'s direction and ``b - a`` and the angle between ``b``'s direction and ``a - b`` are both
  at most ``max_angle_deg``. Ends closer than ``min_gap_um`` (touching pieces, which the segmentation
  chose to keep apart) are not candidates.
* **Matching**: each end joins at most one other end. Candidates are taken in order of increasing cost
  ``d · (1 + (θ_a + θ_b) / max_angle_deg)`` (ties: by labels, then node ids), and a candidate is kept
  when neither of its ends is already used (greedy, hence mutual: two ends pointing at each other from
  2 µm win over a third end 5 µm away).
* The **joins** merge the labels of every kept pair; :func:`join_table` turns them into a relabelling
  table (each merged group takes its smallest label).

Positions are (z, y, x) µm, as every skeleton here holds them (``pos_um``); so distances and angles are
physical on anisotropic voxels.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import networkx as nx
import numpy as np

__all__ = ["GapJoin", "SkeletonEnd", "gap_joins", "join_table", "skeleton_ends"]


@dataclass(frozen=True)
class SkeletonEnd:
    """One end of a skeleton.

    Attributes
    ----------
    label : int
        Label of the skeleton.
    node : hashable
        The end node.
    pos_um : tuple of float
        (z, y, x) position, µm.
    direction : tuple of float
        Unit (z, y, x) vector: the way the cable runs into the end.
    """

    label: int
    node: Hashable
    pos_um: tuple[float, float, float]
    direction: tuple[float, float, float]


@dataclass(frozen=True)
class GapJoin:
    """Two ends of different labels joined across a gap.

    Attributes
    ----------
    a, b : SkeletonEnd
        The ends (``a.label < b.label``, or equal labels ordered by node).
    distance_um : float
        Distance between the ends, µm.
    angle_a_deg, angle_b_deg : float
        Angle between each end's direction and the line to the other end, degrees.
    """

    a: SkeletonEnd
    b: SkeletonEnd
    distance_um: float
    angle_a_deg: float
    angle_b_deg: float


def skeleton_ends(graph: nx.Graph, *, label: int, tangent_um: float = 3.0) -> list[SkeletonEnd]:
    """The ends of one skeleton with their directions (see the module docstring).

    Parameters
    ----------
    graph : networkx.Graph
        A skeleton whose nodes have ``pos_um`` ((z, y, x) µm).
    label : int
        Its label.
    tangent_um : float
        Cable length behind an end over which its direction is measured, µm (> 0).

    Returns
    -------
    list of SkeletonEnd
        In the order of the graph's nodes; ends without cable behind them are left out.

    Raises
    ------
    ValueError
        If ``tangent_um`` is not positive or a node has no ``pos_um``.
    """
    if not tangent_um > 0:
        raise ValueError(f"tangent_um={tangent_um!r}; expected a positive length in µm")
    ends = []
    for node in graph.nodes:
        if graph.degree(node) != 1:
            continue
        tip = _pos(graph, node)
        prev, here = node, next(iter(graph.neighbors(node)))
        walked = float(np.linalg.norm(_pos(graph, here) - tip))
        while walked < tangent_um and graph.degree(here) == 2:
            nxt = next(n for n in graph.neighbors(here) if n != prev)
            step = float(np.linalg.norm(_pos(graph, nxt) - _pos(graph, here)))
            prev, here, walked = here, nxt, walked + step
        vector = tip - _pos(graph, here)
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            continue
        ends.append(SkeletonEnd(int(label), node, _tuple(tip), _tuple(vector / norm)))
    return ends


def gap_joins(
    skeletons: Mapping[int, nx.Graph],
    *,
    max_gap_um: float = 6.0,
    max_angle_deg: float = 60.0,
    min_gap_um: float = 0.0,
    tangent_um: float = 3.0,
) -> list[GapJoin]:
    """Pairs of skeleton ends of different labels that face each other across a short gap.

    Parameters
    ----------
    skeletons : mapping of int to networkx.Graph
        Skeleton of each label (nodes with ``pos_um``, µm).
    max_gap_um : float
        Longest gap bridged, µm (> 0).
    max_angle_deg : float
        Largest angle, at each end, between its direction and the line to the other end, degrees
        (in (0, 90]).
    min_gap_um : float
        Ends closer than this are not joined, µm (>= 0, < ``max_gap_um``).
    tangent_um : float
        Cable behind an end over which its direction is measured, µm (> 0).

    Returns
    -------
    list of GapJoin
        The kept pairs, in the order they were accepted (increasing cost).

    Raises
    ------
    ValueError
        For a parameter outside its range (named in the message).

    Examples
    --------
    >>> def line(z0, z1):
    ...     g = nx.path_graph(z1 - z0 + 1)
    ...     nx.set_node_attributes(g, {i: (float(z0 + i), 0.0, 0.0) for i in g}, "pos_um")
    ...     return g
    >>> joins = gap_joins({1: line(0, 10), 2: line(14, 24)}, max_gap_um=6.0)
    >>> [(j.a.label, j.b.label, j.distance_um) for j in joins]
    [(1, 2, 4.0)]
    """
    if not max_gap_um > 0:
        raise ValueError(f"max_gap_um={max_gap_um!r}; expected a positive length in µm")
    if not 0 < max_angle_deg <= 90:
        raise ValueError(f"max_angle_deg={max_angle_deg!r}; expected an angle in (0, 90] degrees")
    if not 0 <= min_gap_um < max_gap_um:
        raise ValueError(f"min_gap_um={min_gap_um!r}; expected 0 <= min_gap_um < max_gap_um={max_gap_um}")
    ends = [e for label in sorted(skeletons) for e in skeleton_ends(
        skeletons[label], label=label, tangent_um=tangent_um)]
    if len(ends) < 2:
        return []
    pos = np.asarray([e.pos_um for e in ends], np.float64)
    direction = np.asarray([e.direction for e in ends], np.float64)
    labels = np.asarray([e.label for e in ends], np.int64)
    from scipy.spatial import cKDTree

    pairs = cKDTree(pos).query_pairs(max_gap_um, output_type="ndarray")
    if len(pairs) == 0:
        return []
    i, j = pairs[:, 0], pairs[:, 1]
    keep = labels[i] != labels[j]
    i, j = i[keep], j[keep]
    gap = pos[j] - pos[i]
    d = np.linalg.norm(gap, axis=1)
    ok = d >= max(min_gap_um, 1e-9)
    i, j, gap, d = i[ok], j[ok], gap[ok], d[ok]
    u = gap / d[:, None]
    angle_i = np.degrees(np.arccos(np.clip(np.einsum("nk,nk->n", direction[i], u), -1.0, 1.0)))
    angle_j = np.degrees(np.arccos(np.clip(np.einsum("nk,nk->n", direction[j], -u), -1.0, 1.0)))
    ok = (angle_i <= max_angle_deg) & (angle_j <= max_angle_deg)
    i, j, d, angle_i, angle_j = i[ok], j[ok], d[ok], angle_i[ok], angle_j[ok]
    cost = d * (1.0 + (angle_i + angle_j) / max_angle_deg)
    order = np.lexsort((j, i, cost))
    used = np.zeros(len(ends), bool)
    joins = []
    for k in order:
        a, b = int(i[k]), int(j[k])
        if used[a] or used[b]:
            continue
        used[a] = used[b] = True
        if (labels[b], str(ends[b].node)) < (labels[a], str(ends[a].node)):
            a, b = b, a
            angle_a, angle_b = float(angle_j[k]), float(angle_i[k])
        else:
            angle_a, angle_b = float(angle_i[k]), float(angle_j[k])
        joins.append(GapJoin(ends[a], ends[b], float(d[k]), angle_a, angle_b))
    return joins


def join_table(joins: list[GapJoin]) -> dict[int, int]:
    """Relabelling table of ``joins``: every label of a merged group → the group's smallest label.

    Labels in no join are left out (they keep their value).

    Examples
    --------
    >>> e = lambda label: SkeletonEnd(label, 0, (0.0, 0.0, 0.0), (1.0, 0.0, 0.0))
    >>> join_table([GapJoin(e(3), e(5), 1.0, 0.0, 0.0), GapJoin(e(5), e(9), 1.0, 0.0, 0.0)])
    {3: 3, 5: 3, 9: 3}
    """
    graph = nx.Graph()
    graph.add_edges_from((j.a.label, j.b.label) for j in joins)
    table = {}
    for group in nx.connected_components(graph):
        first = min(group)
        table.update({int(label): int(first) for label in group})
    return dict(sorted(table.items()))


def _pos(graph: nx.Graph, node: Hashable) -> np.ndarray:
    try:
        return np.asarray(graph.nodes[node]["pos_um"], np.float64)
    except KeyError:
        raise ValueError(f"skeleton node {node!r} has no 'pos_um' attribute ((z, y, x) µm)") from None


def _tuple(v: np.ndarray) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))

