"""The block grid of a block-wise skeletonization: write regions plus a halo of context given in µm.

One halo rule for the stage: the halo is given in µm (``halo_um``, one value or (z, y, x)), must be
positive, becomes ``ceil(halo_um / voxel_size_um)`` whole voxels per axis (so at least one), and may
not exceed the block along an axis split into several blocks. Invalid values are refused, never clipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pipeline._checks import as_voxel_size
from pipeline.blocks import Block, block_grid
from pipeline.skeleton.config import DEFAULT_HALO_UM

__all__ = ["halo_voxels", "skeleton_grid"]



def halo_voxels(
    halo_um: float | Sequence[float],
    *,
    voxel_size_um: Sequence[float],
    block_shape: Sequence[int] | None = None,
    volume_shape: Sequence[int] | None = None,
) -> tuple[int, int, int]:
    """Convert a halo in µm to whole voxels per axis.

    Parameters
    ----------
    halo_um : float or sequence of 3 float
        Context on each side of a block, µm (one value for all axes, or (z, y, x)); > 0.
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x).
    block_shape : sequence of 3 int, optional
        If given, a halo larger than the block is an error along every axis that ``volume_shape``
        splits into several blocks (every axis if ``volume_shape`` is not given).
    volume_shape : sequence of 3 int, optional
        The volume's shape, voxels.

    Returns
    -------
    tuple of 3 int
        ``ceil(halo_um / voxel_size_um)`` per axis (at least 1).

    Raises
    ------
    ValueError
        If the halo is not positive and finite, or larger than ``block_shape`` where that matters.

    Examples
    --------
    >>> halo_voxels(3.0, voxel_size_um=(1.5, 0.5, 0.5))
    (2, 6, 6)
    """
    vs = as_voxel_size(voxel_size_um)
    values = (halo_um,) * 3 if isinstance(halo_um, int | float) else tuple(halo_um)
    if len(values) != 3 or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values
    ):
        raise ValueError(
            f"halo_um must be a number > 0 or three (z, y, x) numbers > 0 in µm; got {halo_um!r} "
            f"(the default is {DEFAULT_HALO_UM} µm)"
        )
    halo = tuple(max(1, math.ceil(h / v - 1e-9)) for h, v in zip(values, vs, strict=True))
    if block_shape is not None:
        blocks = tuple(int(b) for b in block_shape)
        split = (
            tuple(s > b for s, b in zip(volume_shape, blocks, strict=True))
            if volume_shape is not None else (True,) * 3
        )
        if any(h > b and m for h, b, m in zip(halo, blocks, split, strict=True)):
            raise ValueError(
                f"halo_um={halo_um!r} is {halo} voxels, more than block_shape {blocks} along some axis; "
                "use larger blocks (several times the halo) or a smaller halo"
            )
    return halo  # type: ignore[return-value]


def skeleton_grid(
    shape: Sequence[int],
    *,
    block_shape: Sequence[int],
    voxel_size_um: Sequence[float],
    halo_um: float | Sequence[float] = DEFAULT_HALO_UM,
) -> list[Block]:
    """The blocks of a block-wise skeletonization: a :func:`~pipeline.blocks.block_grid` with a halo.

    Parameters
    ----------
    shape, block_shape : sequence of 3 int
        Volume and block (write region) shape, voxels (z, y, x).
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x).
    halo_um : float or sequence of 3 float
        Context around each block, µm; converted with :func:`halo_voxels`.

    Returns
    -------
    list of Block
        ``block.read`` is the region to read and skeletonize, ``block.write`` the region it owns.
    """
    halo = halo_voxels(halo_um, voxel_size_um=voxel_size_um, block_shape=block_shape, volume_shape=shape)
    return block_grid(shape, block_shape=block_shape, halo=halo)
