"""The walks' polylines as skeleton graphs (one path, or a forest of pieces); cropping to a box.

A polyline is its (n, 3) node positions ((z, y, x) µm), their radii (µm) and, where cropping needs
it, their arc length along it (µm). The graphs have the node attributes of a phantom skeleton
(``pos_um``, ``radius_um``, ``swc_type``, optionally ``brightness``; see
:mod:`pipeline.synth.geometry`). The walks are grown by :mod:`pipeline.synth.growth` and assembled
into neurons by :mod:`pipeline.synth.neurons`.
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx
import numpy as np

from pipeline.synth.geometry import clip_segment

__all__ = ["crop_polyline", "forest_graph", "path_graph"]


def path_graph(pts: Sequence[np.ndarray], radii: Sequence[float], swc_type: int) -> nx.Graph:
    """One polyline as a path graph, nodes numbered 0..n-1 from its start."""
    g = nx.Graph()
    for k, (p, r) in enumerate(zip(pts, radii, strict=True)):
        g.add_node(k, pos_um=tuple(float(x) for x in p), radius_um=float(r), swc_type=swc_type)
        if k:
            g.add_edge(k - 1, k)
    return g


def forest_graph(
    pieces: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    swc_type: int,
    *,
    brightness: float | None = None,
) -> nx.Graph:
    """One graph of several polylines (each (points, radii, arc length)), nodes numbered 0..n-1."""
    g = nx.Graph()
    for pts, radii, _ in pieces:
        first = g.number_of_nodes()
        for k, (p, r) in enumerate(zip(pts, radii, strict=True)):
            attrs = {"pos_um": tuple(float(x) for x in p), "radius_um": float(r), "swc_type": swc_type}
            if brightness is not None:
                attrs["brightness"] = brightness
            g.add_node(first + k, **attrs)
            if k:
                g.add_edge(first + k - 1, first + k)
    return g


def crop_polyline(
    pts: np.ndarray, radii: np.ndarray, path_um: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The parts of a polyline inside the box [lo, hi]: (points, radii, arc length) each, >= 2 nodes.

    Edges crossing a face are cut there, with a new node (radius and arc length interpolated).
    """
    pts = np.asarray(pts, float)
    radii = np.asarray(radii, float)
    path_um = np.asarray(path_um, float)
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    cur: list[int | tuple[int, float]] = []  # node index, or (edge index, t) for a cut point

    def close() -> None:
        if len(cur) >= 2:
            p, r, s = [], [], []
            for item in cur:
                if isinstance(item, tuple):
                    j, t = item
                    p.append(pts[j] + t * (pts[j + 1] - pts[j]))
                    r.append(radii[j] + t * (radii[j + 1] - radii[j]))
                    s.append(path_um[j] + t * (path_um[j + 1] - path_um[j]))
                else:
                    p.append(pts[item])
                    r.append(radii[item])
                    s.append(path_um[item])
            out.append((np.asarray(p), np.asarray(r), np.asarray(s)))
        cur.clear()

    for j in range(len(pts) - 1):
        interval = clip_segment(pts[j], pts[j + 1], lo, hi)
        if interval is None or interval[1] <= interval[0]:
            close()
            continue
        t0, t1 = interval
        if not cur:
            cur.append(j if t0 == 0.0 else (j, t0))
        elif t0 > 0.0:
            close()
            cur.append((j, t0))
        cur.append(j + 1 if t1 == 1.0 else (j, t1))
        if t1 < 1.0:
            close()
    close()
    return out
