"""The union of the blocks' merge decisions, level by level over an octree of blocks: no step holds more
than one node's boundary.

:func:`pipeline.segment.agglomerate.union_lut` takes connected components of the whole volume's fragment
graph in one process: its memory grows with the number of fragments. This module computes the same
table in pieces whose size is set by the blocks:

1. **up, level 0** (:func:`block_union`, one per block): components of the block's own merged pairs. A
   component is named by its *key*: the raster index of its first voxel (the smallest of its fragments'
   first voxels), which does not depend on the blocks, and the key of a union of components is the
   smallest of theirs. The block keeps the merged face pairs with exactly one end inside it (its
   :class:`Crossing`), each with the key of that end.
2. **up, level L** (:func:`node_union`, one per octree node, 2 x 2 x 2 nodes of level L - 1): the pairs
   between its children join their components; the node keeps the pairs that still cross its own
   boundary and which child keys it merged (:class:`NodeUnion`). The root has no crossing pair: every
   component is complete.
3. **down** (:func:`final_keys`, root to blocks): each node's open keys (those at its crossing pairs)
   get their final key from their parent's; a block then knows the final key of each of its fragments,
   and *owns* the components whose key lies in it.
4. **numbering** (:func:`band_ids`, one per row of blocks along x): segments are numbered 1..n in raster
   order of their key, as :func:`~pipeline.segment.agglomerate.union_lut` numbers them. A key's rank is
   the number of keys in the planes before it (a prefix sum over per-plane counts: one small array per
   block), plus those before it in its own plane, which only the blocks of its row of blocks hold.

So the result is :func:`~pipeline.segment.agglomerate.union_lut`'s, id for id
(``tests/pipeline/segment/test_union.py`` checks it on random graphs and grids), and a step's memory is
its node's boundary (the merged pairs crossing it), not the volume's fragments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = [
    "Crossing",
    "NodeUnion",
    "Octree",
    "band_ids",
    "block_union",
    "final_keys",
    "node_union",
    "plane_counts",
    "remap",
]

_NO_KEY = np.int64(-1)  # the key of a pair's end outside the node


@dataclass(frozen=True)
class Crossing:
    """A node's merged fragment pairs with exactly one end inside it.

    Attributes
    ----------
    pairs : numpy.ndarray
        (P, 2) uint64 fragment pairs.
    keys : numpy.ndarray
        (P, 2) int64: the component key of each end inside the node at its level; -1 for the end
        outside.
    """

    pairs: np.ndarray
    keys: np.ndarray

    @classmethod
    def empty(cls) -> Crossing:
        return cls(np.zeros((0, 2), np.uint64), np.zeros((0, 2), np.int64))

    def __len__(self) -> int:
        return int(self.pairs.shape[0])

    @property
    def open_keys(self) -> np.ndarray:
        """Sorted distinct keys of the node's components that still touch a crossing pair."""
        keys = self.keys[self.keys >= 0]
        return np.unique(keys)


@dataclass(frozen=True)
class NodeUnion:
    """What one octree node of level >= 1 decided.

    Attributes
    ----------
    crossing : Crossing
        Its merged pairs that cross its boundary, with the keys of its components.
    merged_from, merged_to : numpy.ndarray
        (M,) int64: the child keys that joined a component of smaller key at this node (sorted), and
        that key.
    """

    crossing: Crossing
    merged_from: np.ndarray
    merged_to: np.ndarray


def remap(keys: np.ndarray, table_from: np.ndarray, table_to: np.ndarray) -> np.ndarray:
    """``keys`` mapped through the table ``table_from`` (sorted) -> ``table_to``; keys not in it are kept."""
    keys = np.asarray(keys, np.int64)
    out = keys.copy()
    if table_from.size and keys.size:
        at = np.minimum(np.searchsorted(table_from, keys), table_from.size - 1)
        hit = table_from[at] == keys
        out[hit] = table_to[at[hit]]
    return out


@dataclass(frozen=True)
class Octree:
    """The octree of a block grid: level 0 is the blocks, a node of level L covers the blocks whose grid
    index shifted right by L is its index, and the root (level :attr:`top`) covers them all.

    Parameters
    ----------
    grid : tuple of 3 int
        Blocks along (z, y, x).
    per_block : int
        The fragment-id range of each block (block ``b``'s fragments are ``b * per_block + 1 ..``).
    """

    grid: tuple[int, int, int]
    per_block: int

    @property
    def top(self) -> int:
        return max(int(np.ceil(np.log2(n))) if n > 1 else 0 for n in self.grid)

    def shape(self, level: int) -> tuple[int, int, int]:
        """Nodes along (z, y, x) at ``level``."""
        return tuple(((n - 1) >> level) + 1 for n in self.grid)  # type: ignore[return-value]

    def nodes(self, level: int) -> range:
        """Ids of the nodes of ``level`` (C order over :meth:`shape`)."""
        return range(int(np.prod(self.shape(level))))

    def children(self, level: int, node: int) -> list[int]:
        """Ids of the nodes of ``level - 1`` inside node ``node`` of ``level``."""
        index = np.unravel_index(node, self.shape(level))
        below = self.shape(level - 1)
        ranges = [range(2 * i, min(2 * i + 2, n)) for i, n in zip(index, below, strict=True)]
        return [int(np.ravel_multi_index((z, y, x), below)) for z in ranges[0] for y in ranges[1]
                for x in ranges[2]]

    def parent(self, level: int, node: int) -> int:
        """Id of the node of ``level + 1`` holding node ``node`` of ``level``."""
        index = np.unravel_index(node, self.shape(level))
        return int(np.ravel_multi_index(tuple(int(i) >> 1 for i in index), self.shape(level + 1)))

    def node_of(self, fragments: np.ndarray, level: int) -> np.ndarray:
        """Id of the node of ``level`` holding each fragment (from its id range)."""
        block = (np.asarray(fragments, np.uint64) - np.uint64(1)) // np.uint64(self.per_block)
        index = np.unravel_index(block.astype(np.int64), self.grid)
        return np.ravel_multi_index(tuple(i >> level for i in index), self.shape(level))


def block_union(
    first_id: int, first_voxel: np.ndarray, pairs: np.ndarray, face_pairs: np.ndarray,
    volume_shape: Sequence[int],
) -> tuple[np.ndarray, Crossing]:
    """Level 0: the components of one block.

    Parameters
    ----------
    first_id : int
        The block's first fragment id; its fragments are ``first_id .. first_id + n - 1``.
    first_voxel : numpy.ndarray
        (n, 3) global (z, y, x) of each fragment's first voxel.
    pairs : numpy.ndarray
        (K, 2) merged pairs of the block's own fragments.
    face_pairs : numpy.ndarray
        (F, 2) merged pairs across the block's faces: one end in the block, one in a neighbour.
    volume_shape : sequence of 3 int
        The volume's shape (keys are raster indices in it).

    Returns
    -------
    keys : numpy.ndarray
        (n,) int64 the component key of each fragment.
    crossing : Crossing
    """
    first_voxel = np.asarray(first_voxel, np.int64).reshape(-1, 3)
    n = first_voxel.shape[0]
    voxel_key = np.ravel_multi_index(tuple(first_voxel.T), tuple(volume_shape)).astype(np.int64)
    local = (np.asarray(pairs, np.uint64).reshape(-1, 2) - np.uint64(first_id)).astype(np.int64)
    if local.size and (local.min() < 0 or local.max() >= n):
        raise ValueError(f"pairs name fragments outside the block's ids {first_id}..{first_id + n - 1}")
    keys = _component_min(n, local, voxel_key)
    face_pairs = np.asarray(face_pairs, np.uint64).reshape(-1, 2)
    inside = (face_pairs >= np.uint64(first_id)) & (face_pairs < np.uint64(first_id + n))
    if not np.all(inside.sum(axis=1) == 1):
        raise ValueError("face_pairs must have exactly one end in the block")
    face_keys = np.full(face_pairs.shape, _NO_KEY, np.int64)
    face_keys[inside] = keys[(face_pairs[inside] - np.uint64(first_id)).astype(np.int64)]
    return keys, Crossing(face_pairs, face_keys)


def _component_min(n: int, edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each of ``n`` nodes, the smallest ``values`` entry of its connected component."""
    if n == 0:
        return np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    n_comp, comp = connected_components(graph, directed=False)
    smallest = np.full(n_comp, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(smallest, comp, values)
    return smallest[comp]


def node_union(children: Sequence[Crossing], tree: Octree, level: int, node: int) -> NodeUnion:
    """Level ``level`` >= 1: join the children's components across the pairs between them.

    Parameters
    ----------
    children : sequence of Crossing
        The crossing pairs of the node's children (level ``level - 1``).
    tree : Octree
    level, node : int
        The node.
    """
    pairs = np.concatenate([c.pairs for c in children]) if children else Crossing.empty().pairs
    keys = np.concatenate([c.keys for c in children]) if children else Crossing.empty().keys
    if not len(pairs):
        return NodeUnion(Crossing.empty(), np.zeros(0, np.int64), np.zeros(0, np.int64))
    inside = tree.node_of(pairs.ravel(), level).reshape(-1, 2) == node
    internal = inside.all(axis=1)
    # a pair between two children is listed by each, with the key of its own end: combine the two rows
    p, k = pairs[internal], keys[internal]
    order = np.lexsort((p[:, 1], p[:, 0]))
    p, k = p[order], k[order]
    if len(p) % 2 or not (np.array_equal(p[0::2], p[1::2])):
        raise ValueError(f"node {node} of level {level}: a pair between its children is not listed by both")
    joined = np.maximum(k[0::2], k[1::2])
    if (joined < 0).any():
        raise ValueError(f"node {node} of level {level}: a pair between its children has an end without key")
    # components of the child keys joined by those pairs; each takes its smallest key
    ends, inverse = np.unique(joined.ravel(), return_inverse=True)
    new = _component_min(ends.size, inverse.reshape(-1, 2), ends)
    changed = new != ends
    merged_from, merged_to = ends[changed], new[changed]
    # the pairs that still cross this node's boundary, with their inside end's key at this level
    out = ~internal
    out_keys = keys[out].copy()
    has = out_keys >= 0
    out_keys[has] = remap(out_keys[has], merged_from, merged_to)
    return NodeUnion(Crossing(pairs[out], out_keys), merged_from, merged_to)


def final_keys(open_keys: np.ndarray, merged_from: np.ndarray, merged_to: np.ndarray, parent_open: np.ndarray,
               parent_final: np.ndarray) -> np.ndarray:
    """The final key of each of a node's ``open_keys``, from what its parent merged (its
    :class:`NodeUnion`'s ``merged_from`` -> ``merged_to``) and the final keys of the parent's own open keys
    (empty at the root)."""
    at_parent = remap(open_keys, np.asarray(merged_from, np.int64), np.asarray(merged_to, np.int64))
    return remap(at_parent, np.asarray(parent_open, np.int64), np.asarray(parent_final, np.int64))


def plane_counts(owned: np.ndarray, volume_shape: Sequence[int], z_range: tuple[int, int]) -> np.ndarray:
    """How many of the keys ``owned`` (raster indices) lie on each plane ``z_range[0] .. z_range[1] - 1``."""
    plane = np.asarray(owned, np.int64) // np.int64(int(volume_shape[1]) * int(volume_shape[2]))
    return np.bincount(plane - z_range[0], minlength=z_range[1] - z_range[0]).astype(np.int64)


def band_ids(owned: Sequence[np.ndarray], offsets: np.ndarray, volume_shape: Sequence[int],
             z0: int) -> list[np.ndarray]:
    """Segment ids (1..n over the volume, in raster order of their keys) of the keys owned by the blocks
    of one row of blocks along x.

    Parameters
    ----------
    owned : sequence of numpy.ndarray
        Per block of the row, the keys of the components it owns (their first voxel lies in it).
    offsets : numpy.ndarray
        Per plane ``z0 ..`` of the row, how many keys of the whole volume come before the row's keys of
        that plane: those of every earlier plane and those of the rows of blocks above it in that plane.
    volume_shape : sequence of 3 int
    z0 : int
        The row's first plane.

    Returns
    -------
    list of numpy.ndarray
        Per block, the id of each of its keys.
    """
    sizes = [len(o) for o in owned]
    keys = np.concatenate([np.asarray(o, np.int64) for o in owned]) if owned else np.zeros(0, np.int64)
    order = np.argsort(keys, kind="stable")
    plane = keys[order] // np.int64(int(volume_shape[1]) * int(volume_shape[2])) - z0
    # position within its plane in this row of blocks: index minus the index of the plane's first key
    first_of_plane = np.searchsorted(plane, plane, side="left")
    rank = np.empty(keys.size, np.int64)
    rank[order] = np.asarray(offsets, np.int64)[plane] + np.arange(keys.size) - first_of_plane
    return list(np.split(rank + 1, np.cumsum(sizes)[:-1]))
