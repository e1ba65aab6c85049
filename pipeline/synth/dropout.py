"""Signal dropout: short stretches of centreline where the raw image shows only background.

A gap is an interval of arc length inside one unbranched stretch of a skeleton. Rendering darkens the
voxels whose nearest centreline point lies in a gap (so the dark part is bounded by planes
perpendicular to the centreline at the gap ends); the labels are not affected.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np

from pipeline.synth.geometry import edge_length_um, unbranched_paths

__all__ = ["DropoutGap", "place_gaps"]


@dataclass(frozen=True, eq=False)
class DropoutGap:
    """One dropout gap.

    Attributes
    ----------
    label : int
        The object (instance label) it lies on.
    kind : str
        That object's kind (``"ais"``, ``"neurite"`` or ``"swc"``).
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
