"""Maximum-intensity projections along z of a raw volume and its segmentation, computable slab by slab."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline._checks import check_array, check_same_shape

__all__ = ["ZProjection", "combine_projections", "tiled_projection", "z_projection"]


@dataclass(frozen=True, eq=False)
class ZProjection:
    """Projections of a (z, y, x) volume along z.

    Attributes
    ----------
    raw : ndarray, shape (Y, X), float32, or None
        Maximum of the raw intensity over z (None without a raw volume).
    labels : ndarray, shape (Y, X), uint64
        The label shown at each pixel: of the labelled voxel with the brightest raw intensity in the
        column (the object a viewer of the raw MIP sees there), or the largest label without raw; 0 where
        the column has no labelled voxel.
    score : ndarray, shape (Y, X), float32
        The intensity that chose ``labels`` (-inf where there is no label); used to combine slabs.
    """

    raw: np.ndarray | None
    labels: np.ndarray
    score: np.ndarray


def z_projection(labels: np.ndarray, raw: np.ndarray | None = None) -> ZProjection:
    """Project a (z, y, x) label volume, and optionally its raw image, along z.

    Parameters
    ----------
    labels : ndarray, shape (Z, Y, X), integer
        Segmentation; 0 is background.
    raw : ndarray, shape (Z, Y, X), optional
        The raw image (any real dtype).

    Returns
    -------
    ZProjection

    Raises
    ------
    TypeError
        If ``labels`` is not integer or ``raw`` not numeric.
    ValueError
        If the arrays are not 3-D or their shapes differ.

    Examples
    --------
    >>> lab = np.zeros((2, 1, 2), np.uint8); lab[0, 0, 0] = 3; lab[1, 0, 0] = 5
    >>> raw = np.array([[[9, 1]], [[4, 2]]], np.uint16)
    >>> p = z_projection(lab, raw)
    >>> p.labels.tolist(), p.raw.tolist()
    ([[3, 0]], [[9.0, 2.0]])
    """
    lab = check_array(labels, "labels", ndim=3, kinds="biu")
    if raw is None:
        score = np.where(lab != 0, lab.astype(np.float64), -np.inf)
        idx = np.argmax(score, axis=0)
        best = np.take_along_axis(score, idx[None], axis=0)[0]
        chosen = np.take_along_axis(lab, idx[None], axis=0)[0]
        return ZProjection(
            None, np.where(np.isfinite(best), chosen, 0).astype(np.uint64), best.astype(np.float32)
        )
    r = check_array(raw, "raw", ndim=3, kinds="biuf")
    check_same_shape(r, "raw", lab, "labels")
    rf = r.astype(np.float32, copy=False)
    score = np.where(lab != 0, rf, -np.inf)
    idx = np.argmax(score, axis=0)
    best = np.take_along_axis(score, idx[None], axis=0)[0]
    chosen = np.take_along_axis(lab, idx[None], axis=0)[0]
    return ZProjection(
        rf.max(axis=0), np.where(np.isfinite(best), chosen, 0).astype(np.uint64), best.astype(np.float32)
    )


def combine_projections(a: ZProjection, b: ZProjection) -> ZProjection:
    """Combine the projections of two z-slabs of the same (y, x) extent into that of both.

    Raises
    ------
    ValueError
        If the projections have different (y, x) shapes or only one has a raw projection.
    """
    if a.labels.shape != b.labels.shape:
        raise ValueError(f"projections have shapes {a.labels.shape} and {b.labels.shape}; they must match")
    if (a.raw is None) != (b.raw is None):
        raise ValueError("combine projections either both with or both without raw")
    take_b = b.score > a.score
    raw = None if a.raw is None else np.maximum(a.raw, b.raw)  # type: ignore[arg-type]
    return ZProjection(raw, np.where(take_b, b.labels, a.labels), np.where(take_b, b.score, a.score))


def tiled_projection(
    read_labels: Callable[[tuple[slice, ...]], np.ndarray],
    read_raw: Callable[[tuple[slice, ...]], np.ndarray] | None,
    shape: Sequence[int],
    tile_shape: Sequence[int],
) -> ZProjection:
    """The projection of a (z, y, x) volume of ``shape``, read one ``tile_shape`` region at a time.

    Columns are projected independently, so the result is :func:`z_projection`'s of the whole volume,
    pixel for pixel; memory is the (y, x) result plus one tile.

    Parameters
    ----------
    read_labels, read_raw : callable
        ``read(region) -> ndarray``: the labels (and the raw image, or None) in a (z, y, x) region.
    shape, tile_shape : sequence of 3 int
        The volume's shape and the largest region read at once.

    Examples
    --------
    >>> lab = np.zeros((4, 2, 3), np.uint8); lab[3, 1, 2] = 7; lab[0, 0, 0] = 2
    >>> tiled_projection(lambda r: lab[r], None, lab.shape, (3, 1, 2)).labels.tolist()
    [[2, 0, 0], [0, 0, 7]]
    """
    shape = tuple(int(s) for s in shape)
    tile = tuple(max(1, min(int(t), s)) for t, s in zip(tile_shape, shape, strict=True))
    labels = np.zeros(shape[1:], np.uint64)
    score = np.full(shape[1:], -np.inf, np.float32)
    raw = None if read_raw is None else np.full(shape[1:], -np.inf, np.float32)
    for y0 in range(0, shape[1], tile[1]):
        for x0 in range(0, shape[2], tile[2]):
            cols = (slice(y0, min(y0 + tile[1], shape[1])), slice(x0, min(x0 + tile[2], shape[2])))
            part = None
            for z0 in range(0, shape[0], tile[0]):
                region = (slice(z0, min(z0 + tile[0], shape[0])), *cols)
                slab = z_projection(read_labels(region), None if read_raw is None else read_raw(region))
                part = slab if part is None else combine_projections(part, slab)
            labels[cols], score[cols] = part.labels, part.score  # type: ignore[union-attr]
            if raw is not None:
                raw[cols] = part.raw  # type: ignore[union-attr]
    return ZProjection(raw, labels, score)
