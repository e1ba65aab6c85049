"""Hand-built geometry shared by the loss tests."""

from __future__ import annotations

import numpy as np
import torch

BIG = 50.0  # |logit| whose sigmoid is 0 or 1 to float32 precision for the loss values checked


def softplus(v: np.ndarray) -> np.ndarray:
    return np.log1p(np.exp(v))


def manual_bce(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Voxel (or edge) BCE with logits: softplus(-x) where the target is 1, softplus(x) where it is 0."""
    return np.where(target, softplus(-logits), softplus(logits))


def logits_from_mask(pred: np.ndarray, *, value: float = BIG, dtype=torch.float32) -> torch.Tensor:
    """Logits +value on ``pred`` and -value elsewhere, with (B, C) axes added to a 2-D/3-D mask."""
    p = torch.as_tensor(np.asarray(pred, dtype=bool))
    out = torch.where(p, value, -value).to(dtype)
    return out[None, None]


def as_target(mask: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    """A 2-D/3-D mask as a (1, 1, ...) target tensor."""
    return torch.as_tensor(np.asarray(mask, dtype=bool)).to(dtype)[None, None]


def affinities(seg: np.ndarray) -> np.ndarray:
    """Waterz-convention affinities of a label image: ``aff[d][p] = seg[p] == seg[p - e_d] != 0``.

    The first slice along axis ``d`` links to outside the image and is 0.
    """
    out = np.zeros((seg.ndim, *seg.shape), dtype=bool)
    for d in range(seg.ndim):
        here = [slice(None)] * seg.ndim
        before = [slice(None)] * seg.ndim
        here[d] = slice(1, None)
        before[d] = slice(None, -1)
        a, b = seg[tuple(here)], seg[tuple(before)]
        out[d][tuple(here)] = (a == b) & (a != 0)
    return out


def random_lines(rng: np.random.Generator, shape: tuple[int, int], n_lines: int, radius: float) -> np.ndarray:
    """Instance labels (1..n_lines, later lines on top) of random thick straight segments in a 2-D image."""
    labels = np.zeros(shape, dtype=np.int32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for i in range(n_lines):
        p0 = rng.uniform(0, shape, size=2)
        p1 = rng.uniform(0, shape, size=2)
        d = p1 - p0
        t = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / max(float(d @ d), 1e-9), 0, 1)
        dist = np.hypot(yy - (p0[0] + t * d[0]), xx - (p0[1] + t * d[1]))
        labels[dist <= radius] = i + 1
    return labels
