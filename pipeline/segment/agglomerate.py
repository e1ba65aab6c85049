"""waterz's merge history replayed at any threshold, and the global union of the blocks' merge decisions.

**Why a history recorded once gives every threshold exactly.** waterz merges the region pair of lowest
score first and stops at the first score >= the threshold. After a merge, an edge whose statistics
changed is scored again before it can be merged, and its new score is never below its old one (a mean
over a merged boundary lies between the means of its parts; waterz relies on it). So the scores of the
merges waterz makes never decrease, and the merges it makes at a threshold ``t`` are exactly the first
merges of its history recorded up to any larger threshold: those with score < ``t``. :class:`MergeHistory`
holds that order, and :func:`merge_levels` turns it into the *level* of each merge (the running maximum
of the scores, which guards the prefix rule against a score rounded below its predecessor), so that

    merges made at t  ==  merges whose level < float32(t)

for every ``t`` up to the threshold the history was recorded to (waterz compares float32 scores with
the threshold cast to float32). :func:`join_levels` gives, for any two regions of the initial
fragments, the level at which they first lie in one region: they are in one segment at ``t`` iff that
level is < ``t``.

One caveat, of floating point: the mean of a merged boundary is computed in float32 and, when both parts
have the same mean, can round one unit in the last place below it. waterz stops when a stale edge's old
score reaches the threshold; if its new score is rounded below that, a run to a larger threshold merges
it below ``t``. The replay can then differ from a run at ``t`` only when ``t`` equals that old score in
float32. Seeded checks against waterz at thresholds equal to recorded scores
(``tests/pipeline/segment/test_agglomerate.py``, and 876 more on uint8-quantized and float affinities
while this was written) found no difference, and no decreasing score in any history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["MergeHistory", "as_score", "join_levels", "merge_levels", "replay", "union_lut"]


def as_score(threshold: float) -> np.float32:
    """A threshold as waterz compares it with scores: float32.

    Examples
    --------
    >>> float(as_score(0.3))
    0.30000001192092896
    """
    return np.float32(threshold)


@dataclass(frozen=True)
class MergeHistory:
    """The merges of one waterz agglomeration, in the order waterz made them.

    Attributes
    ----------
    merges : numpy.ndarray
        (M, 2) uint64 region ids ``(a, b)``: region ``b`` was merged into region ``a`` (waterz names the
        union ``a``). Region ids are the ids of the initial fragments 1..n; both are current regions.
    scores : numpy.ndarray
        (M,) float32 score of each merge (waterz's ``1 - mean affinity`` between the two regions then).
    """

    merges: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        merges = np.asarray(self.merges, np.uint64).reshape(-1, 2)
        scores = np.asarray(self.scores, np.float32).ravel()
        if scores.size != len(merges):
            raise ValueError(f"{len(merges)} merges but {scores.size} scores")
        object.__setattr__(self, "merges", merges)
        object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return int(self.scores.size)


def merge_levels(history: MergeHistory) -> np.ndarray:
    """The level of each merge: the running maximum of the scores, (M,) float32, non-decreasing.

    The merges made at threshold ``t`` are those with level < ``float32(t)`` (the module docstring says
    why), always a prefix of the history.
    """
    if not len(history):
        return np.zeros(0, np.float32)
    return np.maximum.accumulate(history.scores)


def replay(history: MergeHistory, threshold: float, *, n_fragments: int) -> np.ndarray:
    """The segments at ``threshold``: replay the merges whose level is below it.

    Parameters
    ----------
    history : MergeHistory
        Recorded up to a threshold >= ``threshold``.
    threshold : float
        As waterz's threshold.
    n_fragments : int
        The largest fragment id.

    Returns
    -------
    numpy.ndarray
        (n_fragments + 1,) int64 segment of each fragment id (0 for id 0); fragments share a segment iff
        waterz run at ``threshold`` puts them in one region.

    Examples
    --------
    >>> h = MergeHistory(np.array([[1, 2], [1, 3]]), np.array([0.2, 0.6]))
    >>> replay(h, 0.5, n_fragments=3).tolist()
    [0, 1, 1, 2]
    """
    k = int(np.searchsorted(merge_levels(history), as_score(threshold), side="left"))
    n = int(n_fragments) + 1
    a, b = history.merges[:k, 0].astype(np.int64), history.merges[:k, 1].astype(np.int64)
    graph = coo_matrix((np.ones(k, np.int8), (a, b)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    order = np.full(comp.max() + 1, -1, np.int64)  # number the segments by their smallest fragment
    first = np.unique(comp, return_index=True)[1]
    order[comp[np.sort(first)]] = np.arange(first.size)
    return order[comp]


def join_levels(history: MergeHistory, u: np.ndarray, v: np.ndarray, *, n_fragments: int) -> np.ndarray:
    """The level at which fragments ``u[i]`` and ``v[i]`` first lie in one region of the history.

    ``u[i]`` and ``v[i]`` are in one segment at threshold ``t`` iff the level is < ``float32(t)``.

    Parameters
    ----------
    history : MergeHistory
        The merges, over fragment ids 1..``n_fragments``.
    u, v : numpy.ndarray
        (K,) fragment ids (0..n_fragments).
    n_fragments : int
        The largest fragment id.

    Returns
    -------
    numpy.ndarray
        (K,) float32: ``-inf`` where ``u == v`` (one region at any threshold), ``inf`` where the two never
        join in the history.

    Examples
    --------
    >>> h = MergeHistory(np.array([[1, 2], [3, 4], [1, 3]]), np.array([0.2, 0.1, 0.6]))
    >>> join_levels(h, np.array([1, 1, 2, 5, 4]), np.array([2, 4, 2, 1, 3]), n_fragments=5).tolist()
    [0.20000000298023224, 0.6000000238418579, -inf, inf, 0.20000000298023224]
    """
    n = int(n_fragments) + 1
    parent, up = _merge_forest(history, n)
    depth = np.zeros(n, np.int64)
    node = np.arange(n)
    while True:  # depth of every node: at most log2(n) rounds (union by size)
        step = parent[node]
        moving = step != node
        if not moving.any():
            break
        depth += moving
        node = step
    u = np.asarray(u, np.int64).copy()
    v = np.asarray(v, np.int64).copy()
    level = np.full(u.shape, -np.inf, np.float32)
    du, dv = depth[u], depth[v]
    for a, da, db in ((u, du, dv), (v, dv, du)):  # lift the deeper end to the other's depth
        while True:
            m = np.flatnonzero(da > db)
            if not m.size:
                break
            level[m] = np.maximum(level[m], up[a[m]])
            a[m] = parent[a[m]]
            da[m] -= 1
    while True:  # then both ends together, up to their lowest common ancestor (or two roots)
        m = np.flatnonzero((u != v) & (du > 0))
        if not m.size:
            break
        level[m] = np.maximum(level[m], np.maximum(up[u[m]], up[v[m]]))
        u[m], v[m] = parent[u[m]], parent[v[m]]
        du[m] -= 1
    level[u != v] = np.inf  # different trees: never joined
    return level


def _merge_forest(history: MergeHistory, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The history as a union-by-size forest over ids 0..n-1: each node's parent and the level at which
    it was attached to it (inf for roots). Two ids join at the largest level on the path between them."""
    parent = list(range(n))
    size = [1] * n
    up = [np.inf] * n
    root_of = list(range(n))  # waterz's region id -> the root of its tree here
    levels = merge_levels(history).tolist()
    for (a, b), level in zip(history.merges.tolist(), levels, strict=True):
        ra, rb = root_of[a], root_of[b]
        if size[ra] < size[rb]:
            ra, rb = rb, ra
        parent[rb] = ra
        up[rb] = level
        size[ra] += size[rb]
        root_of[a] = ra
    return np.asarray(parent, np.int64), np.asarray(up, np.float32)


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
