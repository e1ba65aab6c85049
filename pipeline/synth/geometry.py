"""Skeleton graphs in micrometres: lengths, unbranched stretches, cropping to a box.

A skeleton is a ``networkx.Graph`` forest whose nodes carry ``pos_um`` ((z, y, x) µm) and
``radius_um`` (µm). Edges are straight segments between node positions; the rendered tube is the
union of the segments, each with its radius interpolated linearly between its end nodes.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np

__all__ = [
    "SkeletonLengths",
    "check_skeleton",
    "crop_graph",
    "edge_length_um",
    "skeleton_lengths",
    "unbranched_paths",
]


@dataclass(frozen=True)
class SkeletonLengths:
    """Lengths of one skeleton.

    Attributes
    ----------
    cable_length_um : float
        Sum of all edge lengths, µm.
    path_length_um : float
        Graph diameter: the longest shortest path with edges weighted by their length in µm (for a
        forest, the longest over its trees). For an unbranched AIS this is its length.
    n_nodes : int
        Number of nodes.
    """

    cable_length_um: float
    path_length_um: float
    n_nodes: int


def check_skeleton(graph: object, name: str = "graph") -> nx.Graph:
    """Raise unless ``graph`` is a networkx forest whose nodes have finite ``pos_um`` and ``radius_um``.

    Raises
    ------
    TypeError
        If ``graph`` is not a ``networkx.Graph``.
    ValueError
        If it has a cycle, or a node lacks a finite (z, y, x) ``pos_um`` or a positive ``radius_um``.
    """
    if not isinstance(graph, nx.Graph) or graph.is_directed():
        raise TypeError(f"{name} must be an undirected networkx.Graph; got {type(graph).__name__}")
    if graph.number_of_nodes() and not nx.is_forest(graph):
        raise ValueError(f"{name} has a cycle; a skeleton must be a tree or a forest")
    for node, data in graph.nodes(data=True):
        pos = data.get("pos_um")
        if pos is None or np.shape(pos) != (3,) or not np.all(np.isfinite(pos)):
            raise ValueError(
                f"{name} node {node!r} has pos_um={pos!r}; expected a finite (z, y, x) triple in µm"
            )
        r = data.get("radius_um")
        if r is None or not np.isfinite(r) or r <= 0:
            raise ValueError(f"{name} node {node!r} has radius_um={r!r}; expected a positive radius in µm")
    return graph


def edge_length_um(graph: nx.Graph, u: Hashable, v: Hashable) -> float:
    """Euclidean length in µm of the edge (u, v)."""
    a = np.asarray(graph.nodes[u]["pos_um"], dtype=float)
    b = np.asarray(graph.nodes[v]["pos_um"], dtype=float)
    return float(np.sqrt(np.sum((b - a) ** 2)))


def skeleton_lengths(graph: nx.Graph) -> SkeletonLengths:
    """Cable length, path length (weighted diameter) and node count of a skeleton forest.

    Examples
    --------
    >>> g = nx.Graph()
    >>> g.add_node(0, pos_um=(0.0, 0.0, 0.0), radius_um=1.0)
    >>> g.add_node(1, pos_um=(0.0, 3.0, 4.0), radius_um=1.0)
    >>> g.add_edge(0, 1)
    >>> skeleton_lengths(g)
    SkeletonLengths(cable_length_um=5.0, path_length_um=5.0, n_nodes=2)
    """
    weighted = nx.Graph()
    weighted.add_nodes_from(graph.nodes)
    cable = 0.0
    for u, v in graph.edges:
        w = edge_length_um(graph, u, v)
        weighted.add_edge(u, v, w=w)
        cable += w
    diameter = 0.0
    for component in nx.connected_components(weighted):
        start = next(iter(component))
        # Two sweeps give the exact diameter of a tree.
        dist = nx.single_source_dijkstra_path_length(weighted, start, weight="w")
        far = max(dist, key=dist.__getitem__)
        dist = nx.single_source_dijkstra_path_length(weighted, far, weight="w")
        diameter = max(diameter, max(dist.values()))
    return SkeletonLengths(float(cable), float(diameter), graph.number_of_nodes())


def unbranched_paths(graph: nx.Graph) -> list[list[Hashable]]:
    """Split a forest into maximal unbranched paths between branch points and ends.

    Each edge belongs to exactly one path; paths are node lists, in a deterministic order (that of
    the graph's nodes and adjacency).
    """
    paths: list[list[Hashable]] = []
    seen: set[frozenset] = set()
    stops = [n for n in graph.nodes if graph.degree(n) != 2]
    for start in stops:
        for nbr in graph.neighbors(start):
            key = frozenset((start, nbr))
            if key in seen:
                continue
            path = [start, nbr]
            seen.add(key)
            while graph.degree(path[-1]) == 2:
                a, b = graph.neighbors(path[-1])
                nxt = b if a == path[-2] else a
                seen.add(frozenset((path[-1], nxt)))
                path.append(nxt)
            paths.append(path)
    return paths


def crop_graph(graph: nx.Graph, lo_um: Sequence[float], hi_um: Sequence[float]) -> nx.Graph:
    """The part of a skeleton inside the box ``lo_um <= pos <= hi_um`` ((z, y, x) µm).

    Edges crossing the box are cut at its faces, with a new node there (radius and other numeric
    attributes interpolated, ``swc_type`` taken from the inner end). Nodes are renumbered 0..n-1: first
    the kept nodes in graph order, then the cut points in order of creation. The result may be a forest
    even when the input is a tree.
    """
    lo = np.asarray(lo_um, dtype=float)
    hi = np.asarray(hi_um, dtype=float)
    out = nx.Graph(**graph.graph)
    ids: dict[Hashable, int] = {}
    pos = {n: np.asarray(d["pos_um"], dtype=float) for n, d in graph.nodes(data=True)}
    inside = {n: bool(np.all(p >= lo) and np.all(p <= hi)) for n, p in pos.items()}
    for n, d in graph.nodes(data=True):
        if inside[n]:
            ids[n] = len(ids)
            out.add_node(ids[n], **d)
    next_id = len(ids)
    for u, v in graph.edges:
        if inside[u] and inside[v]:
            out.add_edge(ids[u], ids[v])
            continue
        interval = clip_segment(pos[u], pos[v], lo, hi)
        if interval is None:
            continue
        t0, t1 = interval
        if t1 <= t0:
            continue  # touches the box at a single point
        ends = []
        for t, node in ((t0, u), (t1, v)):
            if inside[node] and t in (0.0, 1.0):
                ends.append(ids[node])
                continue
            du, dv = graph.nodes[u], graph.nodes[v]
            attrs = {"pos_um": tuple(float(x) for x in pos[u] + t * (pos[v] - pos[u]))}
            attrs["radius_um"] = float(du["radius_um"] + t * (dv["radius_um"] - du["radius_um"]))
            inner = du if inside[u] else dv
            for key, value in inner.items():
                if key not in attrs:
                    attrs[key] = value
            out.add_node(next_id, **attrs)
            ends.append(next_id)
            next_id += 1
        if ends[0] != ends[1]:
            out.add_edge(ends[0], ends[1])
    return out


def clip_segment(
    a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[float, float] | None:
    """Parameter interval [t0, t1] of the segment a + t (b - a), 0 <= t <= 1, inside the box [lo, hi].

    Returns None when the segment misses the box (Liang-Barsky clipping).
    """
    t0, t1 = 0.0, 1.0
    d = b - a
    for i in range(3):
        if d[i] == 0.0:
            if a[i] < lo[i] or a[i] > hi[i]:
                return None
            continue
        ta = (lo[i] - a[i]) / d[i]
        tb = (hi[i] - a[i]) / d[i]
        if ta > tb:
            ta, tb = tb, ta
        t0, t1 = max(t0, ta), min(t1, tb)
        if t0 > t1:
            return None
    return float(t0), float(t1)
