"""Region-adjacency-graph edges between fragments, scored by affinity statistics.

Every affinity edge ``aff[d][p]`` (between voxel ``p`` and ``p - e_d``) is *owned* by the block whose
write region contains ``p``. A block therefore reads its fragments and affinities over its write region
plus one plane on each lower side (where ``p - e_d`` may lie in the neighbouring block) and reports,
for each pair of distinct non-zero fragments (u < v), the sum and count of the affinities of the edges
it owns between them. Because ownership partitions the affinity edges, adding the per-block tables
gives exactly the table of the whole volume, whatever the block shape: the mean affinity of a pair
(waterz's ``MeanAffinity``) is sum / count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["EdgeTable", "merge_edge_tables", "rag_edges"]


@dataclass(frozen=True)
class EdgeTable:
    """Affinity statistics of fragment pairs.

    Attributes
    ----------
    u, v : numpy.ndarray
        (E,) uint64 fragment ids with u < v, sorted by (u, v), unique.
    aff_sum : numpy.ndarray
        (E,) float64 sum of the affinities between u and v.
    count : numpy.ndarray
        (E,) int64 number of affinity edges between u and v.
    """

    u: np.ndarray
    v: np.ndarray
    aff_sum: np.ndarray
    count: np.ndarray

    def __len__(self) -> int:
        return int(self.u.size)

    @property
    def mean_affinity(self) -> np.ndarray:
        return self.aff_sum / np.maximum(self.count, 1)

    @classmethod
    def empty(cls) -> EdgeTable:
        return cls(np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0), np.zeros(0, np.int64))


def rag_edges(
    fragments: np.ndarray, affinities: np.ndarray, *, lower_context: Sequence[int] = (0, 0, 0)
) -> EdgeTable:
    """Edges between fragments owned by one region.

    Parameters
    ----------
    fragments : numpy.ndarray
        (Z, Y, X) uint64 fragments of the region plus ``lower_context[d]`` (0 or 1) extra planes
        before it along axis d (the last plane of the neighbouring block; 0 at the volume border).
    affinities : numpy.ndarray
        (3, Z, Y, X) affinities over the same extent.
    lower_context : sequence of 3 int
        Per axis, 1 if the first plane is context (owned by another block), else 0.

    Returns
    -------
    EdgeTable
        Statistics of the affinity edges whose voxel ``p`` lies in the region proper.
    """
    lo = tuple(int(c) for c in lower_context)
    core = tuple(slice(c, None) for c in lo)
    us, vs, vals = [], [], []
    for d in range(3):
        here = list(core)
        prev = list(core)
        start = lo[d] if lo[d] else 1  # without context the first plane has no partner inside
        here[d] = slice(start, None)
        prev[d] = slice(start - 1, fragments.shape[d] - 1)
        a = fragments[tuple(here)]
        b = fragments[tuple(prev)]
        keep = (a != b) & (a != 0) & (b != 0)
        if not keep.any():
            continue
        a, b = a[keep], b[keep]
        us.append(np.minimum(a, b))
        vs.append(np.maximum(a, b))
        vals.append(affinities[d][tuple(here)][keep].astype(np.float64))
    if not us:
        return EdgeTable.empty()
    return _group(np.concatenate(us), np.concatenate(vs), np.concatenate(vals), None)


def merge_edge_tables(tables: Iterable[EdgeTable]) -> EdgeTable:
    """Add edge tables (e.g. of all blocks) into one; pairs present in several tables are summed."""
    tables = [t for t in tables if len(t)]
    if not tables:
        return EdgeTable.empty()
    return _group(
        np.concatenate([t.u for t in tables]),
        np.concatenate([t.v for t in tables]),
        np.concatenate([t.aff_sum for t in tables]),
        np.concatenate([t.count for t in tables]),
    )


def _group(u: np.ndarray, v: np.ndarray, vals: np.ndarray, counts: np.ndarray | None) -> EdgeTable:
    ids, inv = np.unique(np.concatenate([u, v]), return_inverse=True)
    n = np.int64(ids.size)
    iu, iv = inv[: u.size].astype(np.int64), inv[u.size :].astype(np.int64)
    keys, key_inv = np.unique(iu * n + iv, return_inverse=True)
    aff_sum = np.bincount(key_inv, weights=vals, minlength=keys.size)
    if counts is None:
        count = np.bincount(key_inv, minlength=keys.size).astype(np.int64)
    else:
        count = np.bincount(key_inv, weights=counts, minlength=keys.size).astype(np.int64)
    return EdgeTable(ids[keys // n].astype(np.uint64), ids[keys % n].astype(np.uint64), aff_sum, count)
