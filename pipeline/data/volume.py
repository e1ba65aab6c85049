"""Lazy (z, y, x) volumes for patch sampling: readers, regions of interest and block iteration.

A *reader* is any object with ``shape``, ``dtype`` and numpy-style basic slicing (a numpy array, a
``zarr.Array``, an ``h5py.Dataset``, a memmap). Nothing here reads more than the region it is asked for:
every read is ``reader[z0:z1, y0:y1, x0:x1]`` of a box at most as large as a patch or an index cell, so
volumes larger than memory are fine. 2-D images (Y, X) are seen as one-slice stacks (1, Y, X).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["Box", "Reader", "as_stack", "iter_blocks", "read_box"]


class Reader(Protocol):
    """What a patch sampler needs from a volume: a shape, a dtype and numpy-style slicing."""

    shape: tuple[int, ...]
    dtype: Any

    def __getitem__(self, key: Any) -> Any: ...


@dataclass(frozen=True)
class Box:
    """A half-open (z, y, x) box ``[start, stop)`` in voxels.

    Attributes
    ----------
    start, stop : tuple of int
        (z, y, x) corners; ``stop`` is exclusive.
    """

    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop, strict=True))  # type: ignore[return-value]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        pairs = zip(self.start, self.stop, strict=True)
        return tuple(slice(a, b) for a, b in pairs)  # type: ignore[return-value]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @classmethod
    def from_shape(cls, shape: Sequence[int]) -> Box:
        return cls((0, 0, 0), tuple(int(s) for s in shape))  # type: ignore[arg-type]


class _OneSliceStack:
    """A 2-D reader seen as a (1, Y, X) stack; reads stay lazy."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader
        self.shape = (1, *tuple(reader.shape))
        self.dtype = reader.dtype
        chunks = getattr(reader, "chunks", None)
        self.chunks = (1, *tuple(chunks)) if chunks is not None else None

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        z, y, x = key
        out = np.asarray(self._reader[y, x])
        return out[np.newaxis][z]


def as_stack(reader: Reader, name: str) -> Reader:
    """Return ``reader`` as a 3-D (z, y, x) reader: 2-D readers become one-slice stacks.

    Raises
    ------
    TypeError
        If ``reader`` has no ``shape``/``dtype`` or does not support slicing.
    ValueError
        If it is not 2-D or 3-D, or is empty.
    """
    if not all(hasattr(reader, attr) for attr in ("shape", "dtype", "__getitem__")):
        raise TypeError(
            f"{name} must be array-like with shape, dtype and numpy-style slicing (numpy, zarr, h5py); "
            f"got {type(reader).__name__}"
        )
    shape = tuple(int(s) for s in reader.shape)
    if len(shape) not in (2, 3):
        raise ValueError(
            f"{name} has ndim={len(shape)} (shape {shape}); expected a (z, y, x) or (y, x) array"
        )
    if min(shape) < 1:
        raise ValueError(f"{name} is empty (shape {shape})")
    return _OneSliceStack(reader) if len(shape) == 2 else reader


def read_box(reader: Reader, box: Box) -> np.ndarray:
    """Read ``reader[box]`` as a numpy array (only the chunks the box touches are loaded)."""
    return np.asarray(reader[box.slices])


def iter_blocks(region: Box, block_shape: Sequence[int]) -> Iterator[Box]:
    """Boxes of ``block_shape`` tiling ``region`` (the last ones along an axis are cut at its stop).

    Blocks are aligned to a grid anchored at voxel 0 (not at ``region.start``), so with
    ``block_shape`` equal to a store's chunk shape every read touches exactly one chunk.
    """
    block = tuple(int(b) for b in block_shape)
    ranges = []
    for a, b, s in zip(region.start, region.stop, block, strict=True):
        first = (a // s) * s
        ranges.append([(max(a, lo), min(b, lo + s)) for lo in range(first, b, s)])
    for parts in itertools.product(*ranges):
        yield Box(tuple(p[0] for p in parts), tuple(p[1] for p in parts))  # type: ignore[arg-type]
