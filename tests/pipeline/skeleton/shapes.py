"""Analytic test shapes rasterized on anisotropic (z, y, x) grids, with their exact lengths."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree


def densify(points_um: Sequence[Sequence[float]], step_um: float = 0.02) -> np.ndarray:
    """Points along a polyline, at most ``step_um`` apart (including all vertices)."""
    pts = np.asarray(points_um, dtype=float)
    out = [pts[:1]]
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / step_um)))
        t = np.linspace(0, 1, n + 1)[1:, None]
        out.append(a + t * (b - a))
    return np.concatenate(out)


def polyline_length(points_um: Sequence[Sequence[float]]) -> float:
    pts = np.asarray(points_um, dtype=float)
    return float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())


def tubes(
    shape: Sequence[int],
    voxel_size_um: Sequence[float],
    polylines: Sequence[Sequence[Sequence[float]]],
    radius_um: float,
) -> np.ndarray:
    """Binary (uint32 0/1) volume: voxel centres within ``radius_um`` of any polyline (rounded caps)."""
    vs = np.asarray(voxel_size_um, float)
    pts = np.concatenate([densify(p) for p in polylines])
    lo = np.maximum(np.floor((pts.min(0) - radius_um) / vs).astype(int), 0)
    hi = np.minimum(np.ceil((pts.max(0) + radius_um) / vs).astype(int) + 1, shape)
    grids = np.meshgrid(*[np.arange(a, b) * v for a, b, v in zip(lo, hi, vs, strict=True)], indexing="ij")
    coords = np.stack([g.ravel() for g in grids], axis=1)
    d, _ = cKDTree(pts).query(coords, distance_upper_bound=radius_um + 1e-6)
    out = np.zeros(shape, np.uint32)
    out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = (d <= radius_um).reshape(grids[0].shape)
    return out


def helix(
    radius_um: float, pitch_um: float, turns: float, start_um: Sequence[float], n: int = 2000
) -> np.ndarray:
    """Helix around the z axis starting at ``start_um`` + (0, radius, 0); (n, 3) points (z, y, x) µm."""
    t = np.linspace(0, 2 * np.pi * turns, n)
    z0, y0, x0 = start_um
    z = z0 + pitch_um * t / (2 * np.pi)
    return np.stack([z, y0 + radius_um * np.cos(t), x0 + radius_um * np.sin(t)], axis=1)


def helix_length(radius_um: float, pitch_um: float, turns: float) -> float:
    return float(turns * np.hypot(2 * np.pi * radius_um, pitch_um))
