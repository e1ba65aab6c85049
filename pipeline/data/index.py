"""A coarse index of where the labelled voxels of a volume are, for foreground-biased patch sampling.

One pass over the labels, one block (cell) at a time — by default the store's chunks, so each read
decodes one chunk and memory stays at one cell — records for every cell the number of labelled voxels
and up to ``candidates_per_cell`` of their positions, drawn at random. Sampling a foreground voxel is
then free of I/O: pick a cell with probability proportional to its count, then one of its candidates.
This is exactly uniform over the labelled voxels when no cell has more than ``candidates_per_cell`` of
them, and close to it otherwise (uniform over cells' mass, then over a random subset of each cell).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.data.volume import Box, Reader, as_stack, iter_blocks, read_box

__all__ = ["ForegroundIndex", "foreground_index", "sample_foreground_voxel"]

_DEFAULT_CELL = (32, 128, 128)
_MAX_CELL_VOXELS = 2**21


@dataclass(frozen=True)
class ForegroundIndex:
    """Labelled-voxel counts and candidate positions per cell of a (z, y, x) volume.

    Attributes
    ----------
    counts : numpy.ndarray
        (N,) int64, labelled voxels of each non-empty cell.
    candidates : numpy.ndarray
        (N, K, 3) int32 (z, y, x) positions of labelled voxels in each cell, in volume coordinates;
        rows beyond ``n_candidates[i]`` are -1.
    n_candidates : numpy.ndarray
        (N,) int32, valid rows of ``candidates`` per cell (``min(counts, K)``).
    n_voxels : int
        Voxels indexed (the ROI size).
    """

    counts: np.ndarray
    candidates: np.ndarray
    n_candidates: np.ndarray
    n_voxels: int

    @property
    def n_foreground(self) -> int:
        """Labelled voxels in the indexed region."""
        return int(self.counts.sum())

    @property
    def foreground_fraction(self) -> float:
        """Fraction of the indexed voxels that are labelled."""
        return self.n_foreground / max(self.n_voxels, 1)


def foreground_index(
    labels: Reader,
    *,
    roi: Box | None = None,
    cell_shape: Sequence[int] | None = None,
    candidates_per_cell: int = 64,
    seed: int = 0,
) -> ForegroundIndex:
    """Index the labelled (non-zero) voxels of ``labels`` inside ``roi``, one cell at a time.

    Parameters
    ----------
    labels : reader
        (Z, Y, X) or (Y, X) integer labels (0 = background) with numpy-style slicing.
    roi : Box, optional
        Region to index, default the whole volume.
    cell_shape : sequence of int, optional
        (z, y, x) cell shape; default the reader's ``chunks`` (else (32, 128, 128)), capped to 2**21
        voxels. Cells are aligned to a grid anchored at voxel 0.
    candidates_per_cell : int
        How many labelled positions to keep per cell (K).
    seed : int
        Seed of the choice of candidates.

    Returns
    -------
    ForegroundIndex

    Raises
    ------
    TypeError
        If ``labels`` is not integer or bool.
    ValueError
        For a bad ``cell_shape`` or ``candidates_per_cell``.
    """
    stack = as_stack(labels, "labels")
    if np.dtype(stack.dtype).kind not in "biu":
        raise TypeError(f"labels has dtype {stack.dtype}; expected integer instance labels (0 = background)")
    if isinstance(candidates_per_cell, bool) or int(candidates_per_cell) < 1:
        raise ValueError(f"candidates_per_cell={candidates_per_cell!r}; expected a positive integer")
    k = int(candidates_per_cell)
    region = roi if roi is not None else Box.from_shape(stack.shape)
    cell = _cell_shape(stack, cell_shape)
    rng = np.random.default_rng(seed)
    counts: list[int] = []
    candidates: list[np.ndarray] = []
    for box in iter_blocks(region, cell):
        block = read_box(stack, box)
        flat = np.flatnonzero(block)
        if flat.size == 0:
            continue
        pick = flat if flat.size <= k else rng.choice(flat, size=k, replace=False)
        coords = np.stack(np.unravel_index(np.sort(pick), block.shape), axis=1) + np.asarray(box.start)
        rows = np.full((k, 3), -1, np.int32)
        rows[: len(coords)] = coords
        counts.append(int(flat.size))
        candidates.append(rows)
    if counts:
        cand = np.stack(candidates)
        cnt = np.asarray(counts, np.int64)
    else:
        cand = np.zeros((0, k, 3), np.int32)
        cnt = np.zeros(0, np.int64)
    return ForegroundIndex(
        counts=cnt,
        candidates=cand,
        n_candidates=np.minimum(cnt, k).astype(np.int32),
        n_voxels=region.size,
    )


def sample_foreground_voxel(index: ForegroundIndex, rng: np.random.Generator) -> tuple[int, int, int] | None:
    """A random labelled (z, y, x) voxel from ``index``, or None if it has none."""
    if index.counts.size == 0:
        return None
    p = index.counts / index.counts.sum()
    cell = int(rng.choice(index.counts.size, p=p))
    row = int(rng.integers(index.n_candidates[cell]))
    return tuple(int(v) for v in index.candidates[cell, row])  # type: ignore[return-value]


def _cell_shape(stack: Reader, cell_shape: Sequence[int] | None) -> tuple[int, int, int]:
    if cell_shape is not None:
        cell = tuple(int(c) for c in cell_shape)
        if len(cell) != 3 or min(cell) < 1:
            raise ValueError(f"cell_shape={cell_shape!r}; expected three positive integers (z, y, x)")
        return cell  # type: ignore[return-value]
    chunks = getattr(stack, "chunks", None)
    cell = tuple(int(c) for c in chunks[-3:]) if chunks is not None else _DEFAULT_CELL
    while int(np.prod(cell)) > _MAX_CELL_VOXELS:
        axis = int(np.argmax(cell))
        cell = tuple(c // 2 if i == axis else c for i, c in enumerate(cell))
    return cell  # type: ignore[return-value]
