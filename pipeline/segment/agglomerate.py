"""The global union of the merge decisions that the blocks made."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["union_lut"]


def union_lut(fragment_ids: np.ndarray, pairs: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the graph on ``fragment_ids`` with edges ``pairs``.

    Parameters
    ----------
    fragment_ids : numpy.ndarray
        Every fragment id (non-zero).
    pairs : iterable of numpy.ndarray
        (K, 2) arrays of fragment pairs to join.

    Returns
    -------
    fragments, segments : numpy.ndarray
        Sorted fragment ids and their segment ids (uint64, 1..n), numbered in the order of each
        segment's smallest fragment id, so the table does not depend on how the blocks were run.

    Raises
    ------
    ValueError
        If a pair names a fragment that is not in ``fragment_ids``.
    """
    frags = np.unique(np.asarray(fragment_ids, dtype=np.uint64))
    frags = frags[frags != 0]
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
    _, comp = connected_components(graph, directed=False)
    # Renumber components by their smallest fragment (frags is sorted, so by first occurrence).
    _, first = np.unique(comp, return_index=True)
    order = np.empty(first.size, np.int64)
    order[np.argsort(first)] = np.arange(first.size)
    return frags, (order[comp] + 1).astype(np.uint64)
