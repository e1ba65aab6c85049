"""The global union of the merge decisions that the blocks made."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["union_lut"]


def union_lut(
    fragment_ids: np.ndarray, pairs: Iterable[np.ndarray], *, first_voxel: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the graph on ``fragment_ids`` with edges ``pairs``.

    Parameters
    ----------
    fragment_ids : numpy.ndarray
        Every fragment id (non-zero, distinct).
    pairs : iterable of numpy.ndarray
        (K, 2) arrays of fragment pairs to join.
    first_voxel : numpy.ndarray, optional
        (N, 3) global (z, y, x) of each fragment's first voxel in raster order, aligned with
        ``fragment_ids``. Segments are then numbered in raster order of their first voxel, which does
        not depend on how the volume was cut into blocks (fragment ids do).

    Returns
    -------
    fragments, segments : numpy.ndarray
        Sorted fragment ids and their segment ids (uint64, 1..n), numbered in raster order of each
        segment's first voxel (without ``first_voxel``: in the order of its smallest fragment id).

    Raises
    ------
    ValueError
        If a pair names a fragment that is not in ``fragment_ids``, or ``first_voxel`` does not match.

    Examples
    --------
    >>> frags, segs = union_lut(np.array([5, 9, 7]), [np.array([[5, 7]])],
    ...                         first_voxel=np.array([[0, 4, 0], [0, 0, 0], [1, 0, 0]]))
    >>> frags.tolist(), segs.tolist()
    ([5, 7, 9], [2, 2, 1])
    """
    given = np.asarray(fragment_ids, dtype=np.uint64).ravel()
    if first_voxel is not None:
        first_voxel = np.asarray(first_voxel, dtype=np.int64)
        if first_voxel.shape != (given.size, 3):
            raise ValueError(f"first_voxel has shape {first_voxel.shape}; expected ({given.size}, 3)")
    frags, where = np.unique(given, return_index=True)
    if frags.size != given.size:
        raise ValueError("fragment_ids repeat an id")
    keep = frags != 0
    frags, where = frags[keep], where[keep]
    edges = [np.asarray(p, dtype=np.uint64).reshape(-1, 2) for p in pairs]
    edges = np.concatenate(edges) if edges else np.zeros((0, 2), np.uint64)
    n = frags.size
    if n == 0:
        return frags, frags.copy()
    a = np.searchsorted(frags, edges[:, 0])
    b = np.searchsorted(frags, edges[:, 1])
    bad = (a >= n) | (b >= n)
    bad |= frags[np.minimum(a, n - 1)] != edges[:, 0]
    bad |= frags[np.minimum(b, n - 1)] != edges[:, 1]
    if bad.any():
        raise ValueError(f"fragment pairs {edges[bad][:3].tolist()} name unknown fragments")
    graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
    n_comp, comp = connected_components(graph, directed=False)
    # Each fragment's rank: raster order of its first voxel, or its id (frags is sorted).
    if first_voxel is None:
        rank = np.arange(n)
    else:
        fv = first_voxel[where]
        rank = np.empty(n, np.int64)
        rank[np.lexsort((fv[:, 2], fv[:, 1], fv[:, 0]))] = np.arange(n)
    # Number components by their smallest rank.
    smallest = np.full(n_comp, n, np.int64)
    np.minimum.at(smallest, comp, rank)
    order = np.empty(n_comp, np.int64)
    order[np.argsort(smallest)] = np.arange(n_comp)
    return frags, (order[comp] + 1).astype(np.uint64)
