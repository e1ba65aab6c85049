"""Downsampling by factors of 1 or 2 per axis: the mode for labels, the mean for intensities.

Both work on any (z, y, x) shape: a window cut by the end of an odd axis holds fewer voxels, and the output
has ``ceil(n / factor)`` voxels along each axis. A block of a level is made from the matching region of the
level above (``region * factor``, clipped), so block-wise and whole-volume results are identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline._checks import check_array

__all__ = ["downsample_labels", "downsample_mean"]


def downsample_labels(labels: np.ndarray, factor: Sequence[int]) -> np.ndarray:
    """The most frequent label of each window (the mode), for label images.

    Halving two or three axes uses tinybrain's mode pooling (``countless``; exact for 2 x 2 and
    2 x 2 x 2 windows); halving one axis takes the first voxel of each pair, which is a mode of a
    window of two. Ties go to one of the most frequent labels.

    Parameters
    ----------
    labels : ndarray, (Z, Y, X) integer
        Labels (0 = background, counted like any label).
    factor : sequence of 3 int
        (z, y, x) factor, each 1 or 2.

    Returns
    -------
    ndarray, (ceil(Z / fz), ceil(Y / fy), ceil(X / fx)), same dtype

    Raises
    ------
    TypeError
        If ``labels`` is not an integer array.
    ValueError
        If ``labels`` is not 3-D or a factor is not 1 or 2.

    Examples
    --------
    >>> a = np.array([[[1, 1, 2, 3], [1, 5, 2, 2]]], np.uint32)
    >>> downsample_labels(a, (1, 2, 2)).tolist()
    [[[1, 2]]]
    """
    import tinybrain

    arr = check_array(labels, "labels", ndim=3, kinds="iu")
    f = _check_factor(factor)
    halved = [a for a in range(3) if f[a] == 2]
    if not halved:
        return arr.copy()
    if len(halved) == 1:
        return np.ascontiguousarray(arr[tuple(slice(None, None, fa) for fa in f)])
    data = arr.view(arr.dtype.newbyteorder("=").str.replace("i", "u")) if arr.dtype.kind == "i" else arr
    if len(halved) == 3:
        out = tinybrain.downsample_segmentation(np.asfortranarray(data.T), (2, 2, 2))[0].T
    else:  # tinybrain pools the first two axes of an (x, y, z) array: put the kept axis last
        kept = f.index(1)
        order = [a for a in (2, 1, 0) if a != kept] + [kept]  # tinybrain's axes as ours
        pooled = tinybrain.downsample_segmentation(np.asfortranarray(data.transpose(order)), (2, 2, 1))[0]
        out = pooled.transpose(np.argsort(order))
    return np.ascontiguousarray(out).view(arr.dtype)


def downsample_mean(image: np.ndarray, factor: Sequence[int]) -> np.ndarray:
    """The mean of each window, for intensity images; integers are rounded (half to even).

    Parameters
    ----------
    image : ndarray, (Z, Y, X) integer or float
    factor : sequence of 3 int
        (z, y, x) factor, each 1 or 2.

    Returns
    -------
    ndarray, (ceil(Z / fz), ceil(Y / fy), ceil(X / fx)), same dtype

    Raises
    ------
    TypeError
        If ``image`` is not numeric.
    ValueError
        If ``image`` is not 3-D or a factor is not 1 or 2.

    Examples
    --------
    >>> downsample_mean(np.array([[[0, 2, 4, 7, 9]]], np.uint16), (1, 1, 2)).tolist()
    [[[1, 6, 9]]]
    """
    arr = check_array(image, "image", ndim=3, kinds="uif")
    f = _check_factor(factor)
    total = arr.astype(np.float64)
    count = np.ones(1)
    for axis, fa in enumerate(f):
        if fa == 1:
            continue
        starts = np.arange(0, arr.shape[axis], fa)
        total = np.add.reduceat(total, starts, axis=axis)
        sizes = np.minimum(starts + fa, arr.shape[axis]) - starts
        count = count * sizes.reshape([-1 if a == axis else 1 for a in range(3)])
    mean = total / count
    if arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        mean = np.clip(np.rint(mean), info.min, info.max)
    return mean.astype(arr.dtype)


def _check_factor(factor: Sequence[int]) -> tuple[int, int, int]:
    try:
        f = tuple(int(v) for v in factor)
    except (TypeError, ValueError):
        raise ValueError(f"factor must be three values of 1 or 2 (z, y, x); got {factor!r}") from None
    if len(f) != 3 or any(v not in (1, 2) for v in f):
        raise ValueError(f"factor must be three values of 1 or 2 (z, y, x); got {factor!r}")
    return f  # type: ignore[return-value]
