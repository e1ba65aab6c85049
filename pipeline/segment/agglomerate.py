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


def agglomerate_edges(edges: EdgeTable, *, threshold: float, fragment_ids: np.ndarray | None = None) -> dict[int, int]:
    """Merge fragments hierarchically by mean affinity until the best score reaches ``threshold``.

    Parameters
    ----------
    edges : EdgeTable
        Affinity statistics between fragments (u < v).
    threshold : float
        waterz threshold in [0, 1]: regions are merged while ``1 - mean affinity < threshold``.
    fragment_ids : numpy.ndarray, optional
        All fragment ids, so fragments without edges get a segment too.

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
    u = edges.u.tolist()
    v = edges.v.tolist()
    sums = edges.aff_sum.tolist()
    counts = edges.count.tolist()
    adj: dict[int, dict[int, list[float]]] = {}
    heap: list[tuple[float, int, int, float]] = []
    for a, b, s, c in zip(u, v, sums, counts, strict=True):
        stat = [s, c]
        adj.setdefault(a, {})[b] = stat
        adj.setdefault(b, {})[a] = stat
        heap.append((1.0 - s / c, a, b, c))
    heapq.heapify(heap)
    parent: dict[int, int] = {}
    while heap:
        score, a, b, c = heapq.heappop(heap)
        if score >= threshold:
            break
        na = adj.get(a)
        if na is None or b not in na or na[b][1] != c:
            continue  # stale: a or b was merged away, or the edge's statistics changed since
        keep, gone = (a, b) if len(na) >= len(adj[b]) else (b, a)
        nk, ng = adj[keep], adj.pop(gone)
        del nk[gone]
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
            lo, hi = (keep, w) if keep < w else (w, keep)
            heapq.heappush(heap, (1.0 - stat[0] / stat[1], lo, hi, stat[1]))
        parent[gone] = keep

    def find(x: int) -> int:
        root = x
        while root in parent:
            root = parent[root]
        while x != root:  # path compression
            parent[x], x = root, parent[x]
        return root

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
