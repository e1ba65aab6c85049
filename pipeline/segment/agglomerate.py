"""Global agglomeration of fragments: waterz's mean-affinity merging, on a region adjacency graph.

The score of an edge between two regions is ``1 - mean affinity`` over all affinity edges between them
(waterz's default ``OneMinus<MeanAffinity>``). Starting from the fragments, the edge with the lowest
score is merged while it is below ``threshold``; after each merge the statistics of edges to common
neighbours are added (sum and count), exactly as waterz's region graph does. Running this on the
block-summed edge table of :mod:`pipeline.segment.rag` therefore reproduces what one waterz call on
the whole volume would do with the same fragments (ties aside: equal scores are merged in order of
(u, v) here, in waterz's queue order there) — without ever holding the volume in memory.

Cost: O(E log E) heap operations in Python on the fragment graph (not on voxels).
"""

from __future__ import annotations

import heapq

import numpy as np

from pipeline.segment.rag import EdgeTable

__all__ = ["agglomerate_edges"]


def agglomerate_edges(
    edges: EdgeTable,
    *,
    threshold: float,
    fragment_ids: np.ndarray | None = None,
    must_merge: np.ndarray | None = None,
) -> dict[int, int]:
    """Merge fragments hierarchically by mean affinity until the best score reaches ``threshold``.

    Parameters
    ----------
    edges : EdgeTable
        Affinity statistics between fragments (u < v).
    threshold : float
        waterz threshold in [0, 1]: regions are merged while ``1 - mean affinity < threshold``.
    fragment_ids : numpy.ndarray, optional
        All fragment ids, so fragments without edges get a segment too.
    must_merge : numpy.ndarray, optional
        (K, 2) fragment pairs merged before anything else, whatever their score (pieces of one
        watershed basin cut apart by a block boundary).

    Returns
    -------
    dict of int to int
        Fragment id -> segment id. Segment ids are 1..n, numbered in the order of each segment's
        smallest fragment id (so the result does not depend on merge order).

    Raises
    ------
    ValueError
        If ``threshold`` is outside [0, 1].
    """
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1] (waterz's 1 - mean affinity); got {threshold}")
    adj: dict[int, dict[int, list[float]]] = {}
    for a, b, s, c in zip(edges.u.tolist(), edges.v.tolist(), edges.aff_sum.tolist(), edges.count.tolist(),
                          strict=True):
        stat = [s, c]
        adj.setdefault(a, {})[b] = stat
        adj.setdefault(b, {})[a] = stat
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while root in parent:
            root = parent[root]
        while x != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def merge(a: int, b: int) -> tuple[int, list[tuple[int, list[float]]]]:
        """Merge roots a and b; return the surviving root and its edges whose statistics changed."""
        na, nb = adj.setdefault(a, {}), adj.setdefault(b, {})
        keep, gone = (a, b) if len(na) >= len(nb) else (b, a)
        nk, ng = adj[keep], adj.pop(gone)
        nk.pop(gone, None)
        changed = []
        for w, stat in ng.items():
            if w == keep:
                continue
            nw = adj[w]
            del nw[gone]
            existing = nk.get(w)
            if existing is None:
                nk[w] = stat
                nw[keep] = stat
            else:
                existing[0] += stat[0]
                existing[1] += stat[1]
                stat = existing
            changed.append((w, stat))
        parent[gone] = keep
        return keep, changed

    if must_merge is not None:
        for a, b in np.asarray(must_merge, dtype=np.uint64).reshape(-1, 2).tolist():
            ra, rb = find(a), find(b)
            if ra != rb:
                merge(ra, rb)
    heap = [(1.0 - st[0] / st[1], a, b, st[1]) for a, nbrs in adj.items() for b, st in nbrs.items() if a < b]
    heapq.heapify(heap)
    while heap:
        score, a, b, c = heapq.heappop(heap)
        if score >= threshold:
            break
        na = adj.get(a)
        if na is None or b not in na or na[b][1] != c:
            continue  # stale: a or b was merged away, or the edge's statistics changed since
        keep, changed = merge(a, b)
        for w, stat in changed:
            lo, hi = (keep, w) if keep < w else (w, keep)
            heapq.heappush(heap, (1.0 - stat[0] / stat[1], lo, hi, stat[1]))

    nodes = set(adj)
    nodes.update(parent)
    if fragment_ids is not None:
        nodes.update(int(f) for f in np.asarray(fragment_ids).ravel() if f != 0)
    nodes.discard(0)
    roots = {n: find(n) for n in nodes}
    first: dict[int, int] = {}
    for n in sorted(nodes):
        first.setdefault(roots[n], len(first) + 1)
    return {n: first[roots[n]] for n in nodes}
