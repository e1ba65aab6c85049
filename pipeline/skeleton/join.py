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
  ``d · (1 + (θ_a + θ_b) / max_angle_deg)`` (ties: by labels, then position in the end table), and a
  candidate is kept when neither of its ends is already used (greedy, hence mutual: two ends pointing at
  each other from 2 µm win over a third end 5 µm away) and its labels are not already joined through
  earlier pairs (a second bridge between two pieces would add nothing but a loop).
* The **joins** merge the labels of every kept pair; :func:`join_table` turns them into a relabelling
  table (each merged group takes its smallest label), and :func:`join_graphs` the skeletons into one
  tree per group, each join a straight edge between its two ends.

The ends of a large volume are gathered shard by shard as :class:`EndTable` records
(:func:`end_table`), matched at once by :func:`match_ends`: the matching needs only the ends, never the
skeletons.

Positions are (z, y, x) µm, as every skeleton here holds them (``pos_um``); so distances and angles are
physical on anisotropic voxels.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

import networkx as nx
import numpy as np

from pipeline.skeleton.config import (
    DEFAULT_JOIN_MAX_ANGLE_DEG,
    DEFAULT_JOIN_MAX_GAP_UM,
    DEFAULT_JOIN_MIN_GAP_UM,
    DEFAULT_JOIN_TANGENT_UM,
)

__all__ = [
    "EndTable", "GapJoin", "SkeletonEnd", "concat_end_tables", "end_table", "gap_joins", "join_graphs",
    "join_table", "match_ends", "skeleton_ends",
]


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


def skeleton_ends(
    graph: nx.Graph, *, label: int, tangent_um: float = DEFAULT_JOIN_TANGENT_UM
) -> list[SkeletonEnd]:
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
    max_gap_um: float = DEFAULT_JOIN_MAX_GAP_UM,
    max_angle_deg: float = DEFAULT_JOIN_MAX_ANGLE_DEG,
    min_gap_um: float = DEFAULT_JOIN_MIN_GAP_UM,
    tangent_um: float = DEFAULT_JOIN_TANGENT_UM,
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
    ends = [e for label in sorted(skeletons) for e in skeleton_ends(
        skeletons[label], label=label, tangent_um=tangent_um)]
    table = _table(ends)
    joins = []
    for a, b, d, angle_a, angle_b in match_ends(table, max_gap_um=max_gap_um, max_angle_deg=max_angle_deg,
                                                min_gap_um=min_gap_um):
        first, second = ends[a], ends[b]
        if (second.label, str(second.node)) < (first.label, str(first.node)):
            first, second, angle_a, angle_b = second, first, angle_b, angle_a
        joins.append(GapJoin(first, second, d, angle_a, angle_b))
    return joins


@dataclass(frozen=True)
class EndTable:
    """The ends of many skeletons as arrays (a record: shards of objects save theirs, a driver matches
    them all).

    Attributes
    ----------
    labels : ndarray of uint64, shape (n,)
        Label of each end's skeleton.
    pos_um : ndarray of float64, shape (n, 3)
        (z, y, x) position of each end, µm.
    direction : ndarray of float64, shape (n, 3)
        Unit (z, y, x) vector of each end (see :func:`skeleton_ends`).
    """

    labels: np.ndarray
    pos_um: np.ndarray
    direction: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def end_table(skeletons: Mapping[int, nx.Graph], *, tangent_um: float = DEFAULT_JOIN_TANGENT_UM) -> EndTable:
    """The ends of every skeleton of ``skeletons`` (in label order, then node order) as one table.

    Raises
    ------
    ValueError
        As :func:`skeleton_ends`.
    """
    return _table([e for label in sorted(skeletons) for e in skeleton_ends(
        skeletons[label], label=label, tangent_um=tangent_um)])


def concat_end_tables(tables: list[EndTable]) -> EndTable:
    """One table of the ends of ``tables``, in their order."""
    if not tables:
        return _table([])
    return EndTable(np.concatenate([t.labels for t in tables]).astype(np.uint64),
                    np.concatenate([t.pos_um for t in tables]).reshape(-1, 3).astype(np.float64),
                    np.concatenate([t.direction for t in tables]).reshape(-1, 3).astype(np.float64))


def match_ends(
    ends: EndTable,
    *,
    max_gap_um: float = DEFAULT_JOIN_MAX_GAP_UM,
    max_angle_deg: float = DEFAULT_JOIN_MAX_ANGLE_DEG,
    min_gap_um: float = DEFAULT_JOIN_MIN_GAP_UM,
) -> list[tuple[int, int, float, float, float]]:
    """The pairs of ``ends`` to join (see the module docstring for the rules).

    Parameters
    ----------
    ends : EndTable
        Ends of the skeletons of a segmentation.
    max_gap_um, max_angle_deg, min_gap_um
        As :func:`gap_joins`.

    Returns
    -------
    list of (int, int, float, float, float)
        For each join in the order accepted (increasing cost): the rows of its two ends in ``ends``
        (``i < j``), their distance (µm) and the angle at each (degrees).

    Raises
    ------
    ValueError
        For a parameter outside its range (named in the message).
    """
    if not max_gap_um > 0:
        raise ValueError(f"max_gap_um={max_gap_um!r}; expected a positive length in µm")
    if not 0 < max_angle_deg <= 90:
        raise ValueError(f"max_angle_deg={max_angle_deg!r}; expected an angle in (0, 90] degrees")
    if not 0 <= min_gap_um < max_gap_um:
        raise ValueError(f"min_gap_um={min_gap_um!r}; expected 0 <= min_gap_um < max_gap_um={max_gap_um}")
    if len(ends) < 2:
        return []
    from scipy.spatial import cKDTree

    pos, direction, labels = ends.pos_um, ends.direction, ends.labels
    pairs = cKDTree(pos).query_pairs(max_gap_um, output_type="ndarray")
    if len(pairs) == 0:
        return []
    i, j = pairs.min(axis=1), pairs.max(axis=1)
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
    order = np.lexsort((j, i, np.minimum(labels[i], labels[j]), cost))
    used = np.zeros(len(ends), bool)
    groups = nx.utils.UnionFind()
    out = []
    for k in order:
        a, b = int(i[k]), int(j[k])
        if used[a] or used[b] or groups[int(labels[a])] == groups[int(labels[b])]:
            continue
        used[a] = used[b] = True
        groups.union(int(labels[a]), int(labels[b]))
        out.append((a, b, float(d[k]), float(angle_i[k]), float(angle_j[k])))
    return out


def join_graphs(
    skeletons: Mapping[int, nx.Graph], joins: list[tuple[int, tuple[float, float, float], int,
                                                          tuple[float, float, float]]],
) -> dict[int, nx.Graph]:
    """The skeleton of each group of joined labels: its members' skeletons and one edge per join.

    Parameters
    ----------
    skeletons : mapping of int to networkx.Graph
        The skeleton of every label in a join (nodes with ``pos_um``).
    joins : list of (label_a, pos_a, label_b, pos_b)
        Each join: the labels and the (z, y, x) µm positions of its two ends; the edge goes between the
        node of each skeleton nearest to its end (the end itself, up to the precision of a file).

    Returns
    -------
    dict of int to networkx.Graph
        Group label (its smallest) → skeleton, nodes numbered 0..n-1 in member order, with
        ``pos_um`` and the other attributes of the members' nodes.

    Raises
    ------
    KeyError
        If a label in ``joins`` has no skeleton.
    ValueError
        If the joins between labels form a loop (:func:`match_ends` never returns one).
    """
    table = join_table([(a, b) for a, _, b, _ in joins])
    links = nx.Graph()
    links.add_edges_from((int(a), int(b)) for a, _, b, _ in joins)
    if links.number_of_edges() != len(joins) or not nx.is_forest(links):
        raise ValueError("the joins between labels form a loop; a group of pieces must join as a tree")
    merged: dict[int, nx.Graph] = {}
    offset: dict[int, int] = {}
    for label in sorted(table):
        group = table[label]
        graph = merged.setdefault(group, nx.Graph())
        piece = nx.convert_node_labels_to_integers(skeletons[label], first_label=graph.number_of_nodes(),
                                                   ordering="sorted")
        offset[label] = graph.number_of_nodes()
        graph.update(piece)
    for a, pa, b, pb in joins:
        group = merged[table[int(a)]]
        group.add_edge(_nearest(group, int(a), pa, skeletons, offset),
                       _nearest(group, int(b), pb, skeletons, offset))
    return merged


def _nearest(group: nx.Graph, label: int, pos: tuple[float, float, float],
             skeletons: Mapping[int, nx.Graph], offset: Mapping[int, int]) -> int:
    start, n = offset[label], skeletons[label].number_of_nodes()
    nodes = range(start, start + n)
    where = np.asarray([group.nodes[k]["pos_um"] for k in nodes], np.float64).reshape(-1, 3)
    return start + int(np.argmin(np.linalg.norm(where - np.asarray(pos, np.float64), axis=1)))


def _table(ends: list[SkeletonEnd]) -> EndTable:
    return EndTable(np.asarray([e.label for e in ends], np.uint64),
                    np.asarray([e.pos_um for e in ends], np.float64).reshape(-1, 3),
                    np.asarray([e.direction for e in ends], np.float64).reshape(-1, 3))


def join_table(joins: Iterable[GapJoin | tuple[int, int]]) -> dict[int, int]:
    """Relabelling table of ``joins`` (:class:`GapJoin` or ``(label_a, label_b)`` pairs): every label of
    a merged group → the group's smallest label.

    Labels in no join are left out (they keep their value).

    Examples
    --------
    >>> e = lambda label: SkeletonEnd(label, 0, (0.0, 0.0, 0.0), (1.0, 0.0, 0.0))
    >>> join_table([GapJoin(e(3), e(5), 1.0, 0.0, 0.0), GapJoin(e(5), e(9), 1.0, 0.0, 0.0)])
    {3: 3, 5: 3, 9: 3}
    >>> join_table([(8, 2), (4, 6)])
    {2: 2, 4: 4, 6: 4, 8: 2}
    """
    graph = nx.Graph()
    graph.add_edges_from((j.a.label, j.b.label) if isinstance(j, GapJoin) else (int(j[0]), int(j[1]))
                         for j in joins)
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

