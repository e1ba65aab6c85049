"""Small synthetic light-sheet-like volumes for data and training tests (no phantom generator needed).

``tube_volume`` draws straight tubes (one instance label each) through a (z, y, x) volume and renders
raw = offset + signal · blur(foreground) + noise as uint16. ``GuardedArray`` wraps an array, records
every read and refuses reads larger than a limit, to check that samplers never read whole volumes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage


def tube_volume(
    shape: tuple[int, int, int] = (16, 64, 64),
    *,
    n_tubes: int = 4,
    radius: float = 1.5,
    seed: int = 0,
    noise: float = 10.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(raw uint16, labels uint32) with ``n_tubes`` straight tubes of ``radius`` voxels (in y/x)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint32)
    zz, yy, xx = np.indices(shape, dtype=np.float64)
    pts = np.stack([zz * 3.0, yy, xx], -1)  # z voxels are 3x larger
    for i in range(n_tubes):
        a = rng.uniform(0, 1, 3) * np.asarray(shape) * [3.0, 1, 1]
        b = rng.uniform(0, 1, 3) * np.asarray(shape) * [3.0, 1, 1]
        d = b - a
        t = np.clip(((pts - a) @ d) / (d @ d), 0, 1)
        dist = np.linalg.norm(pts - (a + t[..., None] * d), axis=-1)
        labels[(dist <= radius) & (labels == 0)] = i + 1
    fg = ndimage.gaussian_filter((labels > 0).astype(np.float64), sigma=(0.5, 0.8, 0.8))
    raw = 100 + 600 * fg + rng.normal(0, noise, shape)
    return np.clip(raw, 0, 65535).astype(np.uint16), labels


def sparse_volume(
    shape: tuple[int, int, int] = (8, 64, 64), *, n_points: int = 20, seed: int = 0
) -> np.ndarray:
    """uint32 labels with ``n_points`` isolated labelled voxels (very sparse foreground)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint32)
    flat = rng.choice(labels.size, size=n_points, replace=False)
    labels.reshape(-1)[flat] = np.arange(1, n_points + 1)
    return labels


class GuardedArray:
    """An array-like that records the boxes read and refuses any read of more than ``max_voxels``."""

    def __init__(self, data: np.ndarray, *, max_voxels: int, chunks: tuple[int, ...] | None = None) -> None:
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.max_voxels = max_voxels
        self.reads: list[tuple[slice, ...]] = []
        if chunks is not None:
            self.chunks = chunks

    def __getitem__(self, key: Any) -> np.ndarray:
        slices = isinstance(key, tuple) and all(isinstance(k, slice) for k in key)
        if not slices or len(key) != len(self.shape):
            raise AssertionError(f"unexpected index {key!r}; expected a tuple of slices")
        size = 1
        for k, n in zip(key, self.shape, strict=True):
            a, b, step = k.indices(n)
            assert step == 1
            size *= max(0, b - a)
        if size > self.max_voxels:
            raise AssertionError(f"read of {size} voxels ({key}) exceeds the guard's {self.max_voxels}")
        self.reads.append(key)
        return self._data[key]
