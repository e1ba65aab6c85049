"""Step 0 of block-wise skeletonization: count the labels per block and plan the one-piece objects.

A first pass over the blocks' write regions gives every label's voxel count, bounding box and number
of blocks (:func:`block_labels`, merged by :func:`label_statistics`). Labels in more than one block
whose box, grown by one voxel on its faces inside the volume, holds at most ``max_voxels`` voxels are
skeletonized in one piece (:func:`plan_one_piece`), each by the block whose write region holds its
box's first corner. See :mod:`pipeline.skeleton.blockwise` for the whole algorithm.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import fastremap
import numpy as np
from scipy.ndimage import find_objects

from pipeline._checks import check_array
from pipeline.blocks import Block, BlockGrid

__all__ = [
    "BlockLabels",
    "LabelStatistics",
    "OnePiecePlan",
    "block_labels",
    "check_max_voxels",
    "label_statistics",
    "padded_box",
    "plan_one_piece",
]


@dataclass(frozen=True, eq=False)
class BlockLabels:
    """Per-label voxel counts and bounding boxes of one block's write region.

    Attributes
    ----------
    block_id : int
        The block's id in its grid.
    labels : ndarray, shape (K,), uint64
        Non-zero labels present in the write region, ascending.
    n_voxels : ndarray, shape (K,), int64
        Their voxel counts in the write region.
    box_start, box_stop : ndarray, shape (K, 3), int64
        Their bounding boxes in the write region, global voxel indices (z, y, x), half-open.
    """

    block_id: int
    labels: np.ndarray
    n_voxels: np.ndarray
    box_start: np.ndarray
    box_stop: np.ndarray


def block_labels(labels: np.ndarray, *, block: Block) -> BlockLabels:
    """Voxel counts and bounding boxes of the labels in one block's write region.

    Parameters
    ----------
    labels : ndarray, shape ``block.write_shape``, integer or bool
        The label volume read over ``block.write`` (0 is background).
    block : Block
        The block, from :func:`skeleton_grid`.

    Returns
    -------
    BlockLabels

    Raises
    ------
    TypeError
        If ``labels`` is not an integer or bool array.
    ValueError
        If ``labels`` does not have the shape of ``block.write``.

    Examples
    --------
    >>> from pipeline.blocks import block_grid
    >>> block = block_grid((4, 8, 8), block_shape=(4, 4, 4))[1]  # write region x in [4, 8)
    >>> labels = np.zeros((4, 4, 4), np.uint16)
    >>> labels[1:3, 0, 2] = 9
    >>> piece = block_labels(labels, block=block)
    >>> piece.labels.tolist(), piece.n_voxels.tolist(), piece.box_start.tolist(), piece.box_stop.tolist()
    ([9], [2], [[1, 0, 6]], [[3, 1, 7]])
    """
    arr = check_array(labels, "labels", ndim=3, kinds="biu")
    if tuple(arr.shape) != tuple(block.write_shape):
        raise ValueError(
            f"labels has shape {arr.shape} but block {block.id} writes a region of shape "
            f"{block.write_shape}; pass the labels of block.write"
        )
    if arr.dtype == bool:
        arr = arr.view(np.uint8)
    # find_objects indexes by label value: renumber first (labels can be any 64-bit ids; 0 stays 0)
    renumbered, mapping = fastremap.renumber(arr, in_place=False)
    original = np.zeros(len(mapping) + 1, dtype=np.uint64)
    for old, new in mapping.items():
        original[new] = old
    slices = find_objects(renumbered)  # slices[i]: label i + 1
    ids, counts = fastremap.unique(renumbered, return_counts=True)
    keep = ids != 0
    ids, counts = ids[keep].astype(np.int64), counts[keep].astype(np.int64)
    order = np.argsort(original[ids], kind="stable")
    ids, counts = ids[order], counts[order]
    boxes = np.array(
        [[(s.start, s.stop) for s in slices[i - 1]] for i in ids.tolist()], dtype=np.int64
    ).reshape(-1, 3, 2)
    start = np.array([s.start for s in block.write], dtype=np.int64)
    return BlockLabels(
        block_id=int(block.id),
        labels=original[ids],
        n_voxels=counts,
        box_start=boxes[:, :, 0] + start,
        box_stop=boxes[:, :, 1] + start,
    )


@dataclass(frozen=True)
class LabelStatistics:
    """Whole-volume voxel statistics gathered from the blocks.

    Attributes
    ----------
    n_voxels : dict of int to int
        Voxel count of every non-zero label present.
    border_labels : frozenset of int
        Labels with a voxel on a face of the volume.
    boxes : dict of int to (tuple, tuple)
        Bounding box of every label, global voxel indices ((z, y, x) start, (z, y, x) stop), half-open.
    n_blocks : dict of int to int
        Number of blocks whose write region holds a voxel of the label.
    """

    n_voxels: dict[int, int]
    border_labels: frozenset[int]
    boxes: dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]] = field(default_factory=dict)
    n_blocks: dict[int, int] = field(default_factory=dict)


def label_statistics(pieces: Iterable[BlockLabels], *, volume_shape: Sequence[int]) -> LabelStatistics:
    """Sum the per-block counts of :func:`block_labels` and merge their bounding boxes.

    ``border_labels`` are the labels whose bounding box touches a face of ``volume_shape``.
    """
    shape = np.asarray(volume_shape, dtype=np.int64)
    counts: dict[int, int] = defaultdict(int)
    n_blocks: dict[int, int] = defaultdict(int)
    lo: dict[int, np.ndarray] = {}
    hi: dict[int, np.ndarray] = {}
    for piece in pieces:
        for i, label in enumerate(piece.labels.tolist()):
            label = int(label)
            counts[label] += int(piece.n_voxels[i])
            n_blocks[label] += 1
            if label in lo:
                lo[label] = np.minimum(lo[label], piece.box_start[i])
                hi[label] = np.maximum(hi[label], piece.box_stop[i])
            else:
                lo[label], hi[label] = piece.box_start[i].copy(), piece.box_stop[i].copy()
    boxes = {k: (tuple(int(v) for v in lo[k]), tuple(int(v) for v in hi[k])) for k in sorted(counts)}
    border = frozenset(k for k in counts if np.any(lo[k] == 0) or np.any(hi[k] == shape))
    return LabelStatistics(dict(sorted(counts.items())), border, boxes, dict(sorted(n_blocks.items())))


@dataclass(frozen=True, eq=False)
class OnePiecePlan:
    """The objects that cross a seam but are small enough to skeletonize in one piece, and who does it.

    Attributes
    ----------
    labels : ndarray, shape (K,), uint64
        The objects, ascending.
    box_start, box_stop : ndarray, shape (K, 3), int64
        Their bounding boxes, global voxel indices, half-open.
    owner : ndarray, shape (K,), int64
        Id of the block that skeletonizes each: the block whose write region holds the box's first corner.
    max_voxels : int
        The memory bound the objects were chosen by (voxels of a box grown by one voxel).
    """

    labels: np.ndarray
    box_start: np.ndarray
    box_stop: np.ndarray
    owner: np.ndarray
    max_voxels: int

    def owned_by(self, block_id: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """The objects ``block_id`` skeletonizes: label -> (box start, box stop)."""
        return {
            int(self.labels[i]): (self.box_start[i], self.box_stop[i])
            for i in np.flatnonzero(self.owner == block_id)
        }

    def in_region(self, region: Sequence[slice]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """The objects whose bounding box meets ``region`` (a (z, y, x) tuple of slices): label -> box."""
        start = np.array([s.start for s in region], dtype=np.int64)
        stop = np.array([s.stop for s in region], dtype=np.int64)
        meets = np.all((self.box_start < stop) & (self.box_stop > start), axis=1)
        return {int(self.labels[i]): (self.box_start[i], self.box_stop[i]) for i in np.flatnonzero(meets)}


def check_max_voxels(value: Any, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is None or an integer >= 0."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0
    ):
        raise ValueError(f"{name} must be an integer >= 0 (voxels) or None; got {value!r}")


def padded_box(start: np.ndarray, stop: np.ndarray, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A box grown by one voxel on its faces inside the volume: what
    :func:`~pipeline.skeleton.block.skeletonize_objects` holds."""
    return start - (start > 0), stop + (stop < shape)


def plan_one_piece(
    statistics: LabelStatistics, grid: Sequence[Block], *, max_voxels: int | None = None
) -> OnePiecePlan:
    """Choose the objects to skeletonize in one piece instead of block by block.

    An object is skeletonized in one piece when its write regions span more than one block and its
    bounding box, grown by one voxel on the faces inside the volume, holds at most ``max_voxels``
    voxels. Its skeleton is then exactly that of a one-block run (see the module docstring).

    Parameters
    ----------
    statistics : LabelStatistics
        From :func:`label_statistics` over every block of ``grid``.
    grid : sequence of Block
        The grid (from :func:`skeleton_grid`).
    max_voxels : int, optional
        Largest box to hold in memory; default the largest read region of the grid, so memory stays
        bounded by the block size. 0 skeletonizes every object block by block.

    Returns
    -------
    OnePiecePlan

    Raises
    ------
    ValueError
        If ``max_voxels`` is negative or not an integer, or the grid is empty.
    """
    if not grid:
        raise ValueError("grid is empty; pass the blocks of skeleton_grid()")
    check_max_voxels(max_voxels, "max_voxels")
    if isinstance(grid, BlockGrid):  # from its geometry: no pass over (up to 10^6) blocks
        shape = np.asarray(grid.volume_shape, dtype=np.int64)
        starts = [np.arange(0, n, b, dtype=np.int64) for n, b in zip(shape, grid.block_shape, strict=True)]
        if max_voxels is None:  # the read region is largest where the halo is not clipped: per axis
            longest = [max(min(a + b + h, n) - max(a - h, 0) for a in st)
                       for st, b, h, n in zip(starts, grid.block_shape, grid.halo, shape, strict=True)]
            max_voxels = math.prod(longest)

        def block_id(index: tuple[int, ...]) -> int | None:
            inside = all(0 <= i < n for i, n in zip(index, grid.shape, strict=True))
            return int(np.ravel_multi_index(index, grid.shape)) if inside else None
    else:
        if max_voxels is None:
            max_voxels = max(math.prod(b.read_shape) for b in grid)
        shape = np.max([[s.stop for s in b.write] for b in grid], axis=0)
        starts = [np.unique([b.write[a].start for b in grid]) for a in range(3)]
        by_index = {tuple(b.index): b.id for b in grid}

        def block_id(index: tuple[int, ...]) -> int | None:
            return by_index.get(index)
    chosen, lo_all, hi_all, owners = [], [], [], []
    for label, (lo, hi) in statistics.boxes.items():
        if statistics.n_blocks.get(label, 0) < 2:
            continue
        lo, hi = np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)
        a, b = padded_box(lo, hi, shape)
        if int(np.prod(b - a)) > max_voxels:
            continue
        index = tuple(int(np.searchsorted(starts[d], lo[d], side="right")) - 1 for d in range(3))
        owner = block_id(index)
        if owner is None or np.any(hi > shape):
            raise ValueError(
                f"label {label} has the box {tuple(lo.tolist())}..{tuple(hi.tolist())}, outside the grid's "
                f"volume {tuple(shape.tolist())}; pass the statistics of this grid's blocks"
            )
        chosen.append(label)
        lo_all.append(lo)
        hi_all.append(hi)
        owners.append(owner)
    return OnePiecePlan(
        labels=np.array(chosen, dtype=np.uint64),
        box_start=np.array(lo_all, dtype=np.int64).reshape(-1, 3),
        box_stop=np.array(hi_all, dtype=np.int64).reshape(-1, 3),
        owner=np.array(owners, dtype=np.int64),
        max_voxels=int(max_voxels),
    )
