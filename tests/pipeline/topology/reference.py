"""Slow, obviously-correct critical components, written directly from the supervoxel paper's Algorithms 1-2.

Pure Python breadth-first searches over voxels with explicit neighbour offsets; no cc3d, no vectorization.
Used by the tests as the oracle for ``pipeline.topology.critical_components`` and by the benchmark as the
baseline. Works on arrays of a few thousand voxels; far too slow for anything bigger.
"""

from __future__ import annotations

import itertools
from collections import deque
from functools import lru_cache
from typing import Literal

import numpy as np

Rule = Literal["count", "algorithm2"]

#: The largest number of non-zero coordinates of a neighbour offset: 1 = faces, 2 = + edges, 3 = + corners.
REACH = {(2, 4): 1, (2, 8): 2, (3, 6): 1, (3, 18): 2, (3, 26): 3}


def offsets(ndim: int, connectivity: int) -> list[tuple[int, ...]]:
    """All offsets in {-1, 0, 1}^ndim with between 1 and ``REACH`` non-zero entries."""
    reach = REACH[ndim, connectivity]
    return [d for d in itertools.product((-1, 0, 1), repeat=ndim) if 1 <= sum(map(abs, d)) <= reach]


@lru_cache(maxsize=4096)
def neighbours(shape: tuple[int, ...], connectivity: int) -> tuple[tuple[int, ...], ...]:
    """For each voxel (C-order flat index), the flat indices of its in-bounds neighbours."""
    strides = [1] * len(shape)
    for axis in range(len(shape) - 2, -1, -1):
        strides[axis] = strides[axis + 1] * shape[axis + 1]
    result = []
    for voxel in itertools.product(*(range(s) for s in shape)):
        near = []
        for d in offsets(len(shape), connectivity):
            other = [v + o for v, o in zip(voxel, d, strict=True)]
            if all(0 <= c < s for c, s in zip(other, shape, strict=True)):
                near.append(sum(c * st for c, st in zip(other, strides, strict=True)))
        result.append(tuple(near))
    return tuple(result)


def components(labels: list[int], nbrs: tuple[tuple[int, ...], ...]) -> list[int]:
    """Label-aware connected components S(.) by BFS: component id per voxel, 0 for background."""
    comp = [0] * len(labels)
    next_id = 0
    for start, value in enumerate(labels):
        if value == 0 or comp[start]:
            continue
        next_id += 1
        comp[start] = next_id
        queue = deque([start])
        while queue:
            i = queue.popleft()
            for j in nbrs[i]:
                if labels[j] == value and not comp[j]:
                    comp[j] = next_id
                    queue.append(j)
    return comp


def get_critical(
    y: list[int], mistakes: list[bool], nbrs: tuple[tuple[int, ...], ...], rule: Rule
) -> list[bool]:
    """Algorithm 1's GET_CRITICAL: the voxels of the critical components of the mistake mask ``mistakes``."""
    s_y = components(y, nbrs)
    s_removed = components([0 if m else v for v, m in zip(y, mistakes, strict=True)], nbrs)
    critical = [False] * len(y)
    done = [False] * len(y)
    for root in (i for i, m in enumerate(mistakes) if m):  # F(y_x): sample roots until every voxel is done
        if done[root]:
            continue
        component, is_critical = get_component(y, mistakes, s_y, s_removed, root, nbrs, rule)
        for i in component:
            done[i] = True
            critical[i] = is_critical
    return critical


def get_component(
    y: list[int],
    mistakes: list[bool],
    s_y: list[int],
    s_removed: list[int],
    root: int,
    nbrs: tuple[tuple[int, ...], ...],
    rule: Rule,
) -> tuple[set[int], bool]:
    """Algorithm 2's GET_COMPONENT: BFS over the mistake component of ``root`` and its boundary D(C).

    ``rule="algorithm2"`` is the paper's hash-table test (key: component in S(y); value: component in
    S(y - mistakes)). ``rule="count"`` is the stated definition: critical iff the number of distinct
    components of S(y - mistakes) touched by same-label boundary voxels is not exactly one.
    """
    component: set[int] = set()
    collisions: dict[int, int] = {}
    touched: set[int] = set()
    algorithm2_critical = False
    queued = {root}
    queue = [root]
    while queue:
        i = queue.pop()
        component.add(i)
        for j in nbrs[i]:
            if y[j] != y[root]:
                continue
            if mistakes[j]:
                if j not in queued:
                    queued.add(j)
                    queue.append(j)
            else:
                touched.add(s_removed[j])
                if s_y[j] not in collisions:
                    collisions[s_y[j]] = s_removed[j]
                elif collisions[s_y[j]] != s_removed[j]:
                    algorithm2_critical = True
    if not collisions:  # the paper's line 19: no boundary voxel of the same label, a whole object
        algorithm2_critical = True
    if rule == "algorithm2":
        return component, algorithm2_critical
    return component, len(touched) != 1


def reference_critical_components(
    pred: np.ndarray, target: np.ndarray, *, connectivity: int, rule: Rule = "count"
) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm 1's DETECT_CRITICALS: (negatively critical mask, positively critical mask)."""
    shape = target.shape
    nbrs = neighbours(tuple(shape), connectivity)
    y = np.asarray(target).ravel().tolist()  # Python ints (or bools): exact for any integer dtype
    y_hat = np.asarray(pred).ravel().tolist()
    false_negatives = [t != 0 and p == 0 for t, p in zip(y, y_hat, strict=True)]
    false_positives = [p != 0 and t == 0 for t, p in zip(y, y_hat, strict=True)]
    negative = get_critical(y, false_negatives, nbrs, rule)
    positive = get_critical(y_hat, false_positives, nbrs, rule)
    return np.array(negative, bool).reshape(shape), np.array(positive, bool).reshape(shape)
