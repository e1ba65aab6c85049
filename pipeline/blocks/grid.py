"""A regular grid of blocks over a (z, y, x) volume.

Each block has a *write region* — the part of the output it owns, a whole number of output chunks, so
no two blocks ever write the same chunk — and a *read region*: the write region grown by ``halo`` voxels
on every side (the context a model or a watershed needs), clipped to the volume. ``read_pad`` says how
many voxels the clipping removed on each side, so a stage that needs the full context can pad the data
it read (e.g. by reflection) before processing.

Block ids are the C-order (z, then y, then x) linear index of the block in the grid; they are stable
for a given volume shape and block shape, which is what per-block completion state is keyed on.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Block", "BlockGrid", "block_grid", "grid_shape"]

Region = tuple[slice, slice, slice]


@dataclass(frozen=True)
class Block:
    """One block of a :func:`block_grid`.

    Attributes
    ----------
    id : int
        C-order linear index of the block in the grid.
    index : tuple of int
        (z, y, x) position of the block in the grid.
    write : tuple of slice
        Region of the volume this block owns (aligned to the chunk grid).
    read : tuple of slice
        ``write`` grown by the halo and clipped to the volume.
    read_pad : tuple of (int, int)
        Per axis, the (before, after) voxels of halo lost to clipping at the volume border.
    """

    id: int
    index: tuple[int, int, int]
    write: Region
    read: Region
    read_pad: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]

    @property
    def write_shape(self) -> tuple[int, int, int]:
        return tuple(s.stop - s.start for s in self.write)  # type: ignore[return-value]

    @property
    def read_shape(self) -> tuple[int, int, int]:
        return tuple(s.stop - s.start for s in self.read)  # type: ignore[return-value]

    @property
    def write_in_read(self) -> Region:
        """The write region in the coordinates of the read region (to crop a processed read block)."""
        return tuple(  # type: ignore[return-value]
            slice(w.start - r.start, w.stop - r.start) for w, r in zip(self.write, self.read, strict=True)
        )


def block_grid(
    shape: Sequence[int],
    *,
    block_shape: Sequence[int],
    chunks: Sequence[int] | None = None,
    halo: Sequence[int] = (0, 0, 0),
) -> BlockGrid:
    """Split a (z, y, x) volume into blocks aligned to its chunk grid.

    Parameters
    ----------
    shape : sequence of 3 int
        Volume shape in voxels.
    block_shape : sequence of 3 int
        Write-region shape of every block (the last block along an axis may be smaller). Must be a
        multiple of ``chunks`` along every axis so blocks never share a chunk.
    chunks : sequence of 3 int, optional
        The output array's chunk shape; defaults to ``block_shape``.
    halo : sequence of 3 int
        Context in voxels added on each side of the write region to form the read region (clipped to
        the volume). Along an axis split into several blocks it must not exceed the block shape (a
        block would then read more than three blocks' worth of data per axis; use bigger blocks);
        along an axis that one block covers it changes nothing.

    Returns
    -------
    BlockGrid
        The blocks in id order: a sequence that makes each block when it is asked for, so a grid of
        10^6 blocks costs no memory until its blocks are used.

    Raises
    ------
    ValueError
        For non-positive sizes, a block shape that is not a multiple of the chunk shape, or a halo
        larger than the block shape along an axis split into several blocks.

    Examples
    --------
    >>> blocks = block_grid((10, 8, 8), block_shape=(5, 8, 8), halo=(1, 0, 0))
    >>> [(b.write[0], b.read[0]) for b in blocks]
    [(slice(0, 5, None), slice(0, 6, None)), (slice(5, 10, None), slice(4, 10, None))]
    """
    shape_t = _triple(shape, "shape", minimum=1)
    block_t = _triple(block_shape, "block_shape", minimum=1)
    chunks_t = _triple(chunks, "chunks", minimum=1) if chunks is not None else block_t
    halo_t = _triple(halo, "halo", minimum=0)
    for axis, (b, c) in enumerate(zip(block_t, chunks_t, strict=True)):
        if b % c:
            raise ValueError(
                f"block_shape {block_t} is not a multiple of the chunk shape {chunks_t} along axis {'zyx'[axis]}; "
                "blocks must cover whole chunks so no two blocks write the same chunk"
            )
    for axis, (b, h, s) in enumerate(zip(block_t, halo_t, shape_t, strict=True)):
        if h > b and s > b:
            raise ValueError(
                f"halo {halo_t} is larger than block_shape {block_t} along axis {'zyx'[axis]}; "
                "use a block shape of at least the halo (blocks several times the halo are efficient)"
            )
    return BlockGrid(shape_t, block_t, halo_t)


class BlockGrid(Sequence[Block]):
    """The blocks of a :func:`block_grid`, made on demand (indexing, slicing, iteration), in id order."""

    def __init__(self, shape: tuple[int, int, int], block_shape: tuple[int, int, int],
                 halo: tuple[int, int, int]) -> None:
        self.volume_shape, self.block_shape, self.halo = shape, block_shape, halo
        self.shape: tuple[int, int, int] = tuple(-(-s // b) for s, b in zip(shape, block_shape, strict=True))  # type: ignore[assignment]
        self._n = self.shape[0] * self.shape[1] * self.shape[2]

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        i = operator.index(i)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"block {i} is outside a grid of {self._n} blocks")
        return self._block(i)

    def __iter__(self) -> Iterator[Block]:
        return (self._block(i) for i in range(self._n))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BlockGrid):
            return (self.volume_shape, self.block_shape, self.halo) == (
                other.volume_shape, other.block_shape, other.halo)
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"BlockGrid(shape={self.volume_shape}, block_shape={self.block_shape}, halo={self.halo}: "
                f"{self._n} blocks)")

    def _block(self, bid: int) -> Block:
        index = tuple(int(i) for i in _unravel(bid, self.shape))
        write, read, pad = [], [], []
        for i, s, b, h in zip(index, self.volume_shape, self.block_shape, self.halo, strict=True):
            start, stop = i * b, min((i + 1) * b, s)
            lo, hi = start - h, stop + h
            write.append(slice(start, stop))
            read.append(slice(max(lo, 0), min(hi, s)))
            pad.append((max(-lo, 0), max(hi - s, 0)))
        return Block(bid, index, tuple(write), tuple(read), tuple(pad))  # type: ignore[arg-type]


def _unravel(i: int, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    rest, x = divmod(i, shape[2])
    z, y = divmod(rest, shape[1])
    return z, y, x


def grid_shape(blocks: Sequence[Block]) -> tuple[int, int, int]:
    """Blocks per axis of a :func:`block_grid` (whose ids are C-order over this shape).

    >>> grid_shape(block_grid((10, 8, 8), block_shape=(5, 4, 8)))
    (2, 2, 1)
    """
    if isinstance(blocks, BlockGrid):
        return blocks.shape
    return tuple(i + 1 for i in blocks[-1].index)  # type: ignore[return-value]


def _triple(values: Sequence[int] | None, name: str, *, minimum: int) -> tuple[int, int, int]:
    try:
        out = tuple(int(v) for v in values)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be three integers (z, y, x); got {values!r}") from None
    if len(out) != 3 or min(out) < minimum:
        what = "positive" if minimum else "non-negative"
        raise ValueError(f"{name} must be three {what} integers (z, y, x); got {values!r}")
    return out  # type: ignore[return-value]
