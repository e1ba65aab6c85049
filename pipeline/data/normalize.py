"""Raw intensity normalization to float32 ``[0, 1]``-ish values.

Two methods, chosen per training run and recorded in the checkpoint so inference does the same:

``"percentile"`` (default)
    ``(raw - low) / (high - low)`` with ``low``/``high`` the ``percentiles`` of the volume's intensities,
    estimated from a seeded sample of blocks (by default 32 blocks of the store's chunk shape, capped
    at 2**18 voxels each): the volume is never read whole. Background maps to about 0 and bright
    structure to about 1; values outside are kept (not clipped), so the result is "[0, 1]-ish".
``"dtype"``
    ``raw / dtype_max`` (65535 for uint16, 255 for uint8; float input is left as it is).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipeline.data.volume import Box, Reader, as_stack, iter_blocks, read_box

__all__ = ["IntensityRange", "NormalizationMethod", "intensity_range", "normalize_intensity"]

NormalizationMethod = Literal["percentile", "dtype"]

_MAX_BLOCK_VOXELS = 2**18


@dataclass(frozen=True)
class IntensityRange:
    """The raw values mapped to 0 and 1 by :func:`normalize_intensity`."""

    low: float
    high: float


def intensity_range(
    raw: Reader,
    *,
    method: NormalizationMethod = "percentile",
    percentiles: tuple[float, float] = (1.0, 99.9),
    roi: Box | None = None,
    n_blocks: int = 32,
    block_shape: Sequence[int] | None = None,
    seed: int = 0,
) -> IntensityRange:
    """Estimate the normalization range of a raw volume from a sample of blocks.

    Parameters
    ----------
    raw : reader
        (Z, Y, X) or (Y, X) raw intensities with numpy-style slicing (numpy, zarr, ...).
    method : {"percentile", "dtype"}
        See the module docstring.
    percentiles : (float, float)
        Low and high percentiles in [0, 100] (``"percentile"`` only).
    roi : Box, optional
        Sample only inside this (z, y, x) box; default the whole volume.
    n_blocks : int
        Number of blocks read; all blocks are read when the ROI has fewer.
    block_shape : sequence of int, optional
        (z, y, x) block shape; default the reader's ``chunks`` (so each read decodes one chunk), else
        (16, 64, 64), capped to 2**18 voxels.
    seed : int
        Seed of the block choice.

    Returns
    -------
    IntensityRange
        ``high > low`` always (a constant volume gets ``high = low + 1``).

    Raises
    ------
    ValueError
        For percentiles outside [0, 100] or not increasing, ``n_blocks < 1`` or an unknown method.
    """
    if method not in ("percentile", "dtype"):
        raise ValueError(f"method={method!r}; expected 'percentile' or 'dtype'")
    stack = as_stack(raw, "raw")
    dtype = np.dtype(stack.dtype)
    if method == "dtype":
        high = float(np.iinfo(dtype).max) if dtype.kind in "iu" else 1.0
        return IntensityRange(0.0, high)
    lo_p, hi_p = (float(p) for p in percentiles)
    if not 0.0 <= lo_p < hi_p <= 100.0:
        raise ValueError(f"percentiles={percentiles!r}; expected (low, high) with 0 <= low < high <= 100")
    if isinstance(n_blocks, bool) or int(n_blocks) < 1:
        raise ValueError(f"n_blocks={n_blocks!r}; expected a positive integer")
    region = roi if roi is not None else Box.from_shape(stack.shape)
    block = _sample_block_shape(stack, block_shape, region)
    blocks = list(iter_blocks(region, block))
    rng = np.random.default_rng(seed)
    if len(blocks) > n_blocks:
        chosen = sorted(rng.choice(len(blocks), size=int(n_blocks), replace=False).tolist())
        blocks = [blocks[i] for i in chosen]
    values = np.concatenate([read_box(stack, b).reshape(-1) for b in blocks]).astype(np.float64)
    low, high = np.percentile(values, [lo_p, hi_p])
    if not high > low:
        high = low + 1.0
    return IntensityRange(float(low), float(high))


def normalize_intensity(raw: np.ndarray, *, low: float, high: float) -> np.ndarray:
    """Map ``low`` to 0 and ``high`` to 1, as float32 (values outside are not clipped).

    Examples
    --------
    >>> normalize_intensity(np.array([100, 300, 500], np.uint16), low=100, high=500).tolist()
    [0.0, 0.5, 1.0]
    """
    if not high > low:
        raise ValueError(f"high={high!r} must be greater than low={low!r}")
    scale = np.float32(1.0 / (high - low))
    return (np.asarray(raw, dtype=np.float32) - np.float32(low)) * scale


def _sample_block_shape(
    stack: Reader, block_shape: Sequence[int] | None, region: Box
) -> tuple[int, int, int]:
    if block_shape is not None:
        block = tuple(int(b) for b in block_shape)
        if len(block) != 3 or min(block) < 1:
            raise ValueError(f"block_shape={block_shape!r}; expected three positive integers (z, y, x)")
    else:
        chunks = getattr(stack, "chunks", None)
        block = tuple(int(c) for c in chunks[-3:]) if chunks is not None else (16, 64, 64)
    block = tuple(min(b, s) for b, s in zip(block, region.shape, strict=True))
    # Cap the voxels per block (halving the largest axis) so huge chunks do not blow up the sample.
    while int(np.prod(block)) > _MAX_BLOCK_VOXELS:
        axis = int(np.argmax(block))
        block = tuple(b // 2 if i == axis else b for i, b in enumerate(block))
    return block  # type: ignore[return-value]
