"""The levels of a multiscale pyramid: factors, shapes, voxel sizes and voxel-centre offsets, in µm.

Each level halves some axes of the level above it (factor 1 or 2 per axis, (z, y, x)):

* while an axis is at most half as coarse as the coarsest axis, only such fine axes are halved (light-sheet
  voxels such as (1.5, 0.5, 0.5) µm become (1.5, 1, 1), then near-isotropic);
* once no axis is that fine (near-isotropic voxels), every axis is halved;
* an axis one voxel long is never halved.

Levels are added while the last one spans more than one chunk, and stop before one whose largest extent
would be under :data:`MIN_LEVEL_EXTENT_VX` voxels.

A voxel of level k averages (or takes the mode of) the ``F`` level-0 voxels it covers (``F`` the product
of the factors so far), so its centre lies ``(F - 1) / 2`` level-0 voxels past the first one's: with
voxel centres at ``index * scale + translation`` (OME-Zarr), level k has ``scale = F * voxel_size_um``
and ``translation = (F - 1) / 2 * voxel_size_um``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline._checks import as_voxel_size

__all__ = ["MIN_LEVEL_EXTENT_VX", "PyramidLevel", "level_factors", "plan_pyramid"]

#: No level is made whose largest extent is under this many voxels.
MIN_LEVEL_EXTENT_VX = 64


@dataclass(frozen=True)
class PyramidLevel:
    """One level below level 0.

    Attributes
    ----------
    factor : tuple of 3 int
        (z, y, x) downsampling factor from the level above (1 or 2 each).
    shape : tuple of 3 int
        (z, y, x) shape in voxels: ``ceil(shape above / factor)``.
    scale_um : tuple of 3 float
        (z, y, x) voxel size, µm.
    translation_um : tuple of 3 float
        (z, y, x) position of voxel (0, 0, 0)'s centre relative to level 0's, µm.
    """

    factor: tuple[int, int, int]
    shape: tuple[int, int, int]
    scale_um: tuple[float, float, float]
    translation_um: tuple[float, float, float]


def level_factors(voxel_size_um: Sequence[float], shape: Sequence[int]) -> tuple[int, int, int]:
    """The (z, y, x) factor that makes the next level from one of this voxel size and shape.

    Examples
    --------
    >>> level_factors((1.5, 0.5, 0.5), (64, 256, 256))  # y/x much finer than z: only they are halved
    (1, 2, 2)
    >>> level_factors((1.5, 1.0, 1.0), (64, 128, 128))  # near-isotropic: all axes
    (2, 2, 2)
    """
    vs = as_voxel_size(voxel_size_um)
    coarsest = max(vs)
    can = [int(s) > 1 for s in shape]
    fine = [c and 2 * v <= coarsest * (1 + 1e-9) for c, v in zip(can, vs, strict=True)]
    pick = fine if any(fine) else can
    return tuple(2 if p else 1 for p in pick)  # type: ignore[return-value]


def plan_pyramid(
    shape: Sequence[int],
    *,
    chunks: Sequence[int],
    voxel_size_um: Sequence[float],
    min_extent_vx: int = MIN_LEVEL_EXTENT_VX,
) -> tuple[PyramidLevel, ...]:
    """The levels below level 0 of a (z, y, x) volume (see the module docstring for the rule).

    Parameters
    ----------
    shape, chunks : sequence of 3 int
        Level 0's shape and chunk shape, voxels; every level is stored with these chunks.
    voxel_size_um : sequence of 3 float
        Level 0's voxel size, µm.
    min_extent_vx : int
        No level whose largest extent is under this is made.

    Returns
    -------
    tuple of PyramidLevel
        Levels 1, 2, ... (empty when level 0 fits in one chunk or is small).

    Raises
    ------
    ValueError
        If a shape or the voxel size is invalid.

    Examples
    --------
    >>> [lv.shape for lv in plan_pyramid((64, 1024, 1024), chunks=(32, 256, 256),
    ...                                  voxel_size_um=(1.5, 0.5, 0.5))]
    [(64, 512, 512), (32, 256, 256)]
    """
    vs = as_voxel_size(voxel_size_um)
    cur = _positive(shape, "shape")
    chunk = _positive(chunks, "chunks")
    if int(min_extent_vx) < 1:
        raise ValueError(f"min_extent_vx must be a positive integer; got {min_extent_vx!r}")
    total = [1, 1, 1]
    levels = []
    while any(s > c for s, c in zip(cur, chunk, strict=True)):
        scale = tuple(v * t for v, t in zip(vs, total, strict=True))
        factor = level_factors(scale, cur)
        nxt = tuple(-(-s // f) for s, f in zip(cur, factor, strict=True))
        if factor == (1, 1, 1) or max(nxt) < int(min_extent_vx):
            break
        total = [t * f for t, f in zip(total, factor, strict=True)]
        levels.append(PyramidLevel(
            factor=factor, shape=nxt,  # type: ignore[arg-type]
            scale_um=tuple(v * t for v, t in zip(vs, total, strict=True)),  # type: ignore[arg-type]
            translation_um=tuple((t - 1) / 2 * v for v, t in zip(vs, total, strict=True)),  # type: ignore[arg-type]
        ))
        cur = nxt
    return tuple(levels)


def _positive(values: Sequence[int], name: str) -> tuple[int, int, int]:
    try:
        out = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be three positive integers (z, y, x); got {values!r}") from None
    if len(out) != 3 or min(out) < 1:
        raise ValueError(f"{name} must be three positive integers (z, y, x); got {values!r}")
    return out  # type: ignore[return-value]
