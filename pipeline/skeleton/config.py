"""The ``skeletonize:`` section of a config: block-wise kimimaro skeletons and the lengths table.

Read by ``neurorecon skeletonize`` (whose options override it) and by ``neurorecon run``. Shapes are
(z, y, x) voxels; sizes are µm and say so.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from pipeline.settings import StrictModel
from pipeline.skeleton.params import TeasarParams

__all__ = ["DEFAULT_DUST_THRESHOLD_UM3", "DEFAULT_HALO_UM", "DEFAULT_TICK_THRESHOLD_UM", "SkeletonizeConfig"]

#: Default context around each block, µm (``skeletonize.halo_um``): covers TEASAR's invalidation radius
#: ``scale * r + const`` (1.5 r + 1 µm with the defaults) for radii up to ~1.3 µm, i.e. axon initial
#: segments and neurites.
DEFAULT_HALO_UM = 3.0
#: End branches shorter than this are removed, µm (``skeletonize.tick_threshold_um``); 0 keeps them all.
DEFAULT_TICK_THRESHOLD_UM = 0.0
#: Objects of at most this volume are dust, µm³ (``skeletonize.dust_threshold_um3``): dropped, with no
#: skeleton and no row in lengths.csv. 2 µm³ is 5 voxels of (1.5, 0.5, 0.5) µm: specks of a few voxels go,
#: while the smallest true object of the phantoms (an AIS cut by the volume border, 53 voxels = 20 µm³, over
#: seeds 0-3 of both kinds at the default shape) is ten times larger.
DEFAULT_DUST_THRESHOLD_UM3 = 2.0

PositiveInt = Annotated[int, Field(gt=0)]


class SkeletonizeConfig(StrictModel):
    """Settings of the skeletonization stage (see :mod:`pipeline.skeleton.blockwise` for the algorithm).

    Outputs in the run directory: ``skeletons/<label>.swc`` (µm), ``skeletons_precomputed/``
    (neuroglancer, nm), ``lengths.csv`` and ``skeletonize.json``; per-block state in ``state/``.
    """

    block_shape: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(
        (128, 256, 256), description="write region per block, voxels (clipped to the volume)")
    halo_um: float = Field(
        DEFAULT_HALO_UM, gt=0, allow_inf_nan=False,
        description="context read around each block, µm: about scale x the radius of the thickest "
                    "objects + const_um; at least one voxel, at most the block along an axis with several "
                    "blocks")
    teasar: TeasarParams = Field(TeasarParams(), description="kimimaro TEASAR settings, µm")
    tick_threshold_um: float = Field(
        DEFAULT_TICK_THRESHOLD_UM, ge=0, allow_inf_nan=False,
        description="remove end branches shorter than this, µm (0: keep all)")
    dust_threshold_um3: float = Field(
        DEFAULT_DUST_THRESHOLD_UM3, ge=0, allow_inf_nan=False,
        description="objects of at most this volume are dropped (no skeleton, no row in lengths.csv), µm³ "
                    "(0: keep all)")
    one_piece_max_voxels: int | None = Field(
        None, ge=0,
        description="objects crossing a block seam whose bounding box holds at most this many voxels "
                    "are skeletonized in one piece, as in a one-block run (null: a block's read region; "
                    "0: never)")
