"""Rasterising skeleton segments (tubes) into instance labels and fluorescence, any box at a time.

Every skeleton edge is a segment from ``p0`` to ``p1`` with a radius interpolated linearly between
its end nodes. A voxel (centre ``index * voxel_size_um``, (z, y, x) µm) is *covered* by a segment's
tube when its Euclidean distance ``d`` to the segment is at most the radius ``r(t)`` at its nearest
point ``t``, or -- so that tubes thinner than a voxel stay connected -- when the segment passes
through the voxel's box.

Overlap rule (labels)
    A covered voxel gets the label of the covering segment whose **centreline is nearest** (smallest
    ``d``); on an exact tie, the **lower label**. Segments of one object share its label, so the rule
    only matters where tubes of different objects overlap (crossings, fascicles, voxels a thin tube
    claims by the box rule). Label 0 segments (background puncta) never label a voxel.

Fluorescence
    A covered voxel's fluorescence is the **largest brightness** of the segments covering it, where a
    segment is dark (0) at the voxels whose nearest centreline point lies in one of its dropout gaps;
    so a voxel is dark only if every tube covering it is in a gap there.

Each voxel's value is a pure function of its global index and of the segments near it, computed with
the same elementwise IEEE operations whatever box is being rendered, and independent of the order of
the segments, so rendering a volume block by block gives bit-identical results to rendering it whole.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import networkx as nx
import numpy as np

__all__ = ["SegmentTable", "rasterize", "segment_table"]

#: SWC structure type of soma nodes.
_SWC_SOMA = 1


@dataclass(frozen=True, eq=False)
class SegmentTable:
    """All tube segments of a phantom, as arrays (one row per skeleton edge).

    Attributes
    ----------
    p0, p1 : (n, 3) float64
        Segment ends, (z, y, x) µm.
    r0, r1 : (n,) float64
        Radii at the ends, µm.
    label : (n,) uint32
        Instance label (0: fluorescent but unlabelled, e.g. a background punctum).
    brightness : (n,) float64
        Relative fluorescence.
    gaps : (n, k, 2) float64
        Dark intervals ``[t0, t1]`` of each segment's parameter (NaN where unused).
    index_lo, index_hi : (n, 3) int64
        Global voxel index box ``[lo, hi)`` that contains every voxel the segment can touch.
    """

    p0: np.ndarray
    p1: np.ndarray
    r0: np.ndarray
    r1: np.ndarray
    label: np.ndarray
    brightness: np.ndarray
    gaps: np.ndarray
    index_lo: np.ndarray
    index_hi: np.ndarray
    voxel_size_um: tuple[float, float, float]

    def __len__(self) -> int:
        return len(self.r0)

    @cached_property
    def _rows(self) -> list[tuple]:
        """Per-segment Python scalars for the render loop (cheaper than numpy scalars)."""
        rows = []
        d = self.p1 - self.p0
        half = np.asarray(self.voxel_size_um) / 2
        half_diag = float(np.sqrt(np.sum(half**2)))
        for i in range(len(self)):
            l2 = float(np.dot(d[i], d[i]))
            gaps = [(float(a), float(b)) for a, b in self.gaps[i] if not np.isnan(a)]
            rows.append(
                (
                    tuple(float(x) for x in self.p0[i]),
                    tuple(float(x) for x in d[i]),
                    (1.0 / l2) if l2 > 0 else 0.0,
                    float(self.r0[i]),
                    float(self.r1[i] - self.r0[i]),
                    int(self.label[i]),
                    float(self.brightness[i]),
                    gaps,
                    min(float(self.r0[i]), float(self.r1[i])) < half_diag,
                    tuple(int(x) for x in self.index_lo[i]),
                    tuple(int(x) for x in self.index_hi[i]),
                )
            )
        return rows


def segment_table(
    objects: Iterable[tuple[int, str, nx.Graph]],
    *,
    voxel_size_um: Sequence[float],
    brightness: Mapping[str, float],
    gaps: Iterable[tuple[int, Hashable, Hashable, float, float]] = (),
    puncta: np.ndarray | None = None,
) -> SegmentTable:
    """Build the segment table of a set of skeletons.

    Parameters
    ----------
    objects : iterable of (label, kind, graph)
        Skeleton forests with ``pos_um`` and ``radius_um`` nodes (optional ``swc_type`` and
        ``brightness``). Every edge becomes a segment (in the graph's edge order, oriented as
        ``graph.edges`` yields it); every isolated node a ball.
    voxel_size_um : (3,) float
        (z, y, x) voxel size, µm.
    brightness : mapping
        Relative fluorescence of ``"ais"`` (every segment of a kind ``"ais"`` object), ``"soma"``
        (segments whose ends are both SWC type 1) and ``"neurite"`` (all other segments). It is
        multiplied by the mean of the end nodes' ``brightness`` attribute (default 1).
    gaps : iterable of (label, u, v, t0, t1)
        Dark parts of edges, ``t`` measured from ``u`` to ``v``.
    puncta : (m, 5) float array, optional
        Unlabelled fluorescent balls: (z, y, x) centre µm, radius µm, brightness; label 0.
    """
    vs = np.asarray(voxel_size_um, dtype=float)
    edge_row: dict[tuple[int, Hashable, Hashable], int] = {}
    p0, p1, r0, r1, lab, bri = [], [], [], [], [], []

    def part_brightness(kind: str, *nodes: dict) -> float:
        factor = sum(float(d.get("brightness", 1.0)) for d in nodes) / len(nodes)
        if kind == "ais":
            return brightness["ais"] * factor
        if all(d.get("swc_type") == _SWC_SOMA for d in nodes):
            return brightness["soma"] * factor
        return brightness["neurite"] * factor

    for label, kind, graph in objects:
        for u, v in graph.edges:
            edge_row[(label, u, v)] = len(r0)
            du, dv = graph.nodes[u], graph.nodes[v]
            p0.append(du["pos_um"])
            p1.append(dv["pos_um"])
            r0.append(du["radius_um"])
            r1.append(dv["radius_um"])
            lab.append(label)
            bri.append(part_brightness(kind, du, dv))
        for node in graph.nodes:
            if graph.degree(node) == 0:
                d = graph.nodes[node]
                p0.append(d["pos_um"])
                p1.append(d["pos_um"])
                r0.append(d["radius_um"])
                r1.append(d["radius_um"])
                lab.append(label)
                bri.append(part_brightness(kind, d))
    if puncta is not None:
        for z, y, x, radius, b in np.asarray(puncta, dtype=float).reshape(-1, 5):
            p0.append((z, y, x))
            p1.append((z, y, x))
            r0.append(radius)
            r1.append(radius)
            lab.append(0)
            bri.append(b)
    n = len(r0)
    gap_lists: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    for label, u, v, t0, t1 in gaps:
        if (label, u, v) in edge_row:
            gap_lists[edge_row[(label, u, v)]].append((float(t0), float(t1)))
        elif (label, v, u) in edge_row:
            gap_lists[edge_row[(label, v, u)]].append((1.0 - float(t1), 1.0 - float(t0)))
        else:
            raise ValueError(f"gap on edge ({u!r}, {v!r}) of label {label}, which has no such edge")
    k = max((len(g) for g in gap_lists), default=0)
    gap_arr = np.full((n, k, 2), np.nan)
    for i, g in enumerate(gap_lists):
        for j, interval in enumerate(g):
            gap_arr[i, j] = interval
    a = np.asarray(p0, dtype=float).reshape(n, 3)
    b = np.asarray(p1, dtype=float).reshape(n, 3)
    ra = np.asarray(r0, dtype=float)
    rb = np.asarray(r1, dtype=float)
    # Conservative voxel box: radius or half a voxel (box-hit rule), plus a hair for rounding.
    reach = np.maximum(np.maximum(ra, rb)[:, None], vs[None, :] / 2) * (1 + 1e-9) + 1e-9
    lo_um = np.minimum(a, b) - reach
    hi_um = np.maximum(a, b) + reach
    index_lo = np.ceil(lo_um / vs).astype(np.int64)
    index_hi = np.floor(hi_um / vs).astype(np.int64) + 1
    return SegmentTable(
        p0=a, p1=b, r0=ra, r1=rb,
        label=np.asarray(lab, dtype=np.uint32),
        brightness=np.asarray(bri, dtype=float), gaps=gap_arr, index_lo=index_lo, index_hi=index_hi,
        voxel_size_um=(float(vs[0]), float(vs[1]), float(vs[2])),
    )


def rasterize(
    segments: SegmentTable, lo: Sequence[int], hi: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Instance labels and fluorescence of the voxel box ``[lo, hi)`` (global (z, y, x) indices).

    The box may extend beyond the volume (negative indices are fine): the geometry is defined
    everywhere, which is what the PSF halo of a border block needs.

    Returns
    -------
    labels : (Z, Y, X) uint32
        0 = background; elsewhere the label of the nearest covering centreline (ties: lower label).
    fluorescence : (Z, Y, X) float32
        Largest brightness of the segments covering each voxel (0 in background and where every
        covering segment is in a dropout gap).
    """
    lo_t = tuple(int(x) for x in lo)
    hi_t = tuple(int(x) for x in hi)
    shape = tuple(h - l_ for l_, h in zip(lo_t, hi_t, strict=True))
    if min(shape) < 0:
        raise ValueError(f"empty box: lo={lo_t}, hi={hi_t}")
    labels = np.zeros(shape, dtype=np.uint32)
    fluo = np.zeros(shape, dtype=np.float32)
    if len(segments) == 0 or min(shape) == 0:
        return labels, fluo
    best = np.full(shape, np.inf)
    cand = np.flatnonzero(
        np.all(segments.index_lo < np.asarray(hi_t), axis=1)
        & np.all(segments.index_hi > np.asarray(lo_t), axis=1)
    )
    vz, vy, vx = segments.voxel_size_um
    hz, hy, hx = vz / 2, vy / 2, vx / 2
    rows = segments._rows
    for i in cand.tolist():
        (az, ay, ax), (dz_, dy_, dx_), inv_l2, r0, dr, lab, bri, gaps, boxhit, ilo, ihi = rows[i]
        z0, y0, x0 = max(ilo[0], lo_t[0]), max(ilo[1], lo_t[1]), max(ilo[2], lo_t[2])
        z1, y1, x1 = min(ihi[0], hi_t[0]), min(ihi[1], hi_t[1]), min(ihi[2], hi_t[2])
        if z1 <= z0 or y1 <= y0 or x1 <= x0:
            continue
        cz = (np.arange(z0, z1) * vz - az)[:, None, None]
        cy = (np.arange(y0, y1) * vy - ay)[None, :, None]
        cx = (np.arange(x0, x1) * vx - ax)[None, None, :]
        if inv_l2 > 0:
            t = (cz * dz_ + cy * dy_ + cx * dx_) * inv_l2
            np.clip(t, 0.0, 1.0, out=t)
            ez = cz - t * dz_
            ey = cy - t * dy_
            ex = cx - t * dx_
            d2 = ez * ez + ey * ey + ex * ex
            r = r0 + t * dr if dr != 0.0 else r0
        else:
            t = np.zeros((z1 - z0, y1 - y0, x1 - x0))
            d2 = (cz * cz + cy * cy) + cx * cx
            r = r0
        d = np.sqrt(d2)
        inside = d <= r
        if boxhit:
            inside |= _box_hit(cz, cy, cx, (dz_, dy_, dx_), (hz, hy, hx))
        if not inside.any():
            continue
        sl = (
            slice(z0 - lo_t[0], z1 - lo_t[0]),
            slice(y0 - lo_t[1], y1 - lo_t[1]),
            slice(x0 - lo_t[2], x1 - lo_t[2]),
        )
        f_view = fluo[sl]
        if gaps:
            dark = np.zeros(inside.shape, dtype=bool)
            for g0, g1 in gaps:
                dark |= (t >= g0) & (t <= g1)
            value = np.where(dark[inside], np.float32(0.0), np.float32(bri))
        else:
            value = np.float32(bri)
        f_view[inside] = np.maximum(f_view[inside], value)
        if lab == 0:
            continue
        b_view = best[sl]
        l_view = labels[sl]
        win = inside & ((d < b_view) | ((d == b_view) & (l_view > lab)))
        if not win.any():
            continue
        l_view[win] = lab
        b_view[win] = d[win]
    return labels, fluo


def _box_hit(
    cz: np.ndarray,
    cy: np.ndarray,
    cx: np.ndarray,
    d: tuple[float, float, float],
    half: tuple[float, float, float],
) -> np.ndarray:
    """Whether the segment a + t d, t in [0, 1], passes through each voxel's box (slab test).

    ``cz, cy, cx`` are the voxel centres minus ``a`` along each axis (broadcastable 1-D arrays).
    """
    lows, highs = [], []
    for c, dv, h in zip((cz, cy, cx), d, half, strict=True):
        if dv != 0.0:
            ta = (c - h) / dv
            tb = (c + h) / dv
            lows.append(np.minimum(ta, tb))
            highs.append(np.maximum(ta, tb))
        else:
            ok = np.abs(c) <= h
            lows.append(np.where(ok, -math.inf, math.inf))
            highs.append(np.where(ok, math.inf, -math.inf))
    tmin = np.maximum(np.maximum(np.maximum(lows[0], lows[1]), lows[2]), 0.0)
    tmax = np.minimum(np.minimum(np.minimum(highs[0], highs[1]), highs[2]), 1.0)
    return tmin <= tmax
