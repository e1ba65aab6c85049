"""Signal dropout: short stretches of centreline where the raw image shows only background.

A gap is an interval of arc length inside one unbranched stretch of a skeleton. Rendering darkens the
voxels whose nearest centreline point lies in a gap (so the dark part is bounded by planes
perpendicular to the centreline at the gap ends), unless another tube covers them; the labels are
not affected. :func:`split_at_gaps` makes both ends of every gap nodes of the skeleton, so the gap
is a run of whole edges between two nodes that the ground-truth SWC file holds.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np

from pipeline.synth.geometry import edge_length_um, unbranched_paths

__all__ = ["DropoutGap", "place_gaps", "split_at_gaps"]


@dataclass(frozen=True, eq=False)
class DropoutGap:
    """One dropout gap.

    Attributes
    ----------
    label : int
        The object (instance label) it lies on: the neuron, the AIS or the SWC file.
    kind : str
        That object's kind (``"neuron"``, ``"ais"`` or ``"swc"``).
    length_um : float
        Length along the centreline, µm.
    path_um : (n, 3) float64 array
        The centreline inside the gap, (z, y, x) µm, from its start to its end (n >= 2).
    edges : tuple of (u, v, t0, t1)
        The dark part of each skeleton edge: the points ``pos[u] + t (pos[v] - pos[u])``,
        ``t0 <= t <= t1``.
    """

    label: int
    kind: str
    length_um: float
    path_um: np.ndarray
    edges: tuple[tuple[Hashable, Hashable, float, float], ...]

    @property
    def start_um(self) -> tuple[float, float, float]:
        """(z, y, x) start of the gap, µm."""
        return tuple(float(x) for x in self.path_um[0])  # type: ignore[return-value]

    @property
    def end_um(self) -> tuple[float, float, float]:
        """(z, y, x) end of the gap, µm."""
        return tuple(float(x) for x in self.path_um[-1])  # type: ignore[return-value]


def place_gaps(
    graph: nx.Graph,
    *,
    label: int,
    kind: str,
    rate_per_100um: float,
    length_um: Sequence[float],
    end_margin_um: float,
    rng: np.random.Generator,
) -> list[DropoutGap]:
    """Draw dropout gaps along a skeleton.

    The number of gaps is Poisson with mean ``rate_per_100um * cable / 100``; each gets a length
    uniform in ``length_um`` and a start uniform over all positions that keep it inside one
    unbranched stretch, at least ``end_margin_um`` from the stretch's ends. A gap that would overlap
    (or come within ``end_margin_um`` of) an earlier one is dropped, so the realised rate can be a
    little lower on short, crowded skeletons.

    Returns
    -------
    list of DropoutGap
        In the order drawn.
    """
    paths = unbranched_paths(graph)
    cums = []
    for path in paths:
        lengths = [edge_length_um(graph, a, b) for a, b in zip(path[:-1], path[1:], strict=True)]
        cums.append(np.concatenate([[0.0], np.cumsum(lengths)]))
    cable = float(sum(c[-1] for c in cums))
    n = int(rng.poisson(rate_per_100um * cable / 100.0)) if cable > 0 and rate_per_100um > 0 else 0
    taken: dict[int, list[tuple[float, float]]] = {}
    gaps: list[DropoutGap] = []
    lo, hi = float(length_um[0]), float(length_um[1])
    for _ in range(n):
        gap_len = float(rng.uniform(lo, hi))
        pick = float(rng.random())
        spans = np.array([max(c[-1] - gap_len - 2 * end_margin_um, 0.0) for c in cums])
        total = float(spans.sum())
        if total <= 0:
            continue
        x = pick * total
        k = int(np.searchsorted(np.cumsum(spans), x, side="right"))
        k = min(k, len(spans) - 1)
        s0 = end_margin_um + x - float(np.sum(spans[:k]))
        s0 = min(max(s0, end_margin_um), cums[k][-1] - end_margin_um - gap_len)
        s1 = s0 + gap_len
        if any(s0 < e1 + end_margin_um and s1 > e0 - end_margin_um for e0, e1 in taken.get(k, [])):
            continue
        taken.setdefault(k, []).append((s0, s1))
        gaps.append(_make_gap(graph, paths[k], cums[k], s0, s1, label=label, kind=kind))
    return gaps


def _make_gap(
    graph: nx.Graph, path: list[Hashable], cum: np.ndarray, s0: float, s1: float, *, label: int, kind: str
) -> DropoutGap:
    pos = [np.asarray(graph.nodes[n]["pos_um"], float) for n in path]
    edges = []
    points = []
    for j in range(len(path) - 1):
        c0, c1 = float(cum[j]), float(cum[j + 1])
        seg_len = c1 - c0
        a, b = max(s0, c0), min(s1, c1)
        if seg_len <= 0 or b <= a:
            continue
        t0, t1 = (a - c0) / seg_len, (b - c0) / seg_len
        edges.append((path[j], path[j + 1], t0, t1))
        p_start = pos[j] + t0 * (pos[j + 1] - pos[j])
        p_end = pos[j] + t1 * (pos[j + 1] - pos[j])
        if not points:
            points.append(p_start)
        points.append(p_end)
    return DropoutGap(label, kind, float(s1 - s0), np.array(points), tuple(edges))


def split_at_gaps(graph: nx.Graph, gaps: Sequence[DropoutGap]) -> tuple[nx.Graph, list[DropoutGap]]:
    """Insert a skeleton node at both ends of every gap (where an end is not a node already).

    An edge ``(u, v)`` cut at ``t`` becomes ``u - w - v`` with ``w`` at ``pos[u] + t (pos[v] -
    pos[u])``; ``radius_um`` and ``brightness`` are interpolated, other attributes copied from
    ``u``. The rendered tube is the same (up to rounding, and exactly for constant radii). New nodes
    are numbered after the largest integer node.

    Parameters
    ----------
    graph : networkx.Graph
        The skeleton the gaps were placed on (by :func:`place_gaps`, on it or on a subgraph).
    gaps : sequence of DropoutGap
        Non-overlapping gaps on ``graph``.

    Returns
    -------
    graph : networkx.Graph
        A new graph with the gap ends as nodes.
    gaps : list of DropoutGap
        The same gaps, in the same order, now covering whole edges (``t0 = 0``, ``t1 = 1``): their
        ``path_um`` runs from the start node to the end node through every node between.
    """
    out = graph.copy()
    ints = [n for n in out.nodes if isinstance(n, int | np.integer)]
    next_id = (max(ints) + 1) if ints else 0
    eps = 1e-9
    cuts: dict[tuple[Hashable, Hashable], set[float]] = {}
    ends = []
    for gap in gaps:
        u0, v0, t0, _ = gap.edges[0]
        u1, v1, _, t1 = gap.edges[-1]
        ends.append(((u0, v0, t0), (u1, v1, t1)))
        for u, v, t in ((u0, v0, t0), (u1, v1, t1)):
            if eps < t < 1 - eps:
                cuts.setdefault((u, v), set()).add(float(t))
    new_node: dict[tuple[Hashable, Hashable, float], Hashable] = {}
    for (u, v), ts in cuts.items():
        du, dv = out.nodes[u], out.nodes[v]
        pu, pv = np.asarray(du["pos_um"], float), np.asarray(dv["pos_um"], float)
        out.remove_edge(u, v)
        prev = u
        for t in sorted(ts):
            attrs = dict(du)
            attrs["pos_um"] = tuple(float(x) for x in pu + t * (pv - pu))
            for key in ("radius_um", "brightness"):
                if key in du and key in dv:
                    attrs[key] = float(du[key] + t * (dv[key] - du[key]))
            out.add_node(next_id, **attrs)
            out.add_edge(prev, next_id)
            new_node[(u, v, t)] = next_id
            prev = next_id
            next_id += 1
        out.add_edge(prev, v)

    def node_at(u: Hashable, v: Hashable, t: float) -> Hashable:
        if t <= eps:
            return u
        if t >= 1 - eps:
            return v
        return new_node[(u, v, float(t))]

    split = []
    for gap, (start, end) in zip(gaps, ends, strict=True):
        path = nx.shortest_path(out, node_at(*start), node_at(*end))
        edges = tuple((a, b, 0.0, 1.0) for a, b in zip(path[:-1], path[1:], strict=True))
        length = float(sum(edge_length_um(out, a, b) for a, b, _, _ in edges))
        points = np.array([out.nodes[n]["pos_um"] for n in path], dtype=float)
        split.append(DropoutGap(gap.label, gap.kind, length, points, edges))
    return out, split
