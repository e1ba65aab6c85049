"""The ``skeletonize:`` section of a config: block-wise kimimaro skeletons and the lengths table.

Read by ``neurorecon skeletonize`` (whose options override it) and by ``neurorecon run``. Shapes are
(z, y, x) voxels; sizes are µm and say so.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from pipeline.settings import StrictModel
from pipeline.skeleton.params import TeasarParams

__all__ = [
    "AIS_JOIN", "DEFAULT_DUST_THRESHOLD_UM3", "DEFAULT_HALO_UM", "DEFAULT_JOIN_MAX_ANGLE_DEG",
    "DEFAULT_JOIN_MAX_GAP_UM", "DEFAULT_JOIN_MIN_GAP_UM", "DEFAULT_JOIN_TANGENT_UM",
    "DEFAULT_TICK_THRESHOLD_UM", "JoinConfig", "SkeletonizeConfig",
]

#: Default context around each block, µm (``skeletonize.halo_um``): covers TEASAR's invalidation radius
#: ``scale * r + const`` (1.5 r + 1 µm with the defaults) for radii up to ~1.3 µm, i.e. axon initial
#: segments and neurites.
DEFAULT_HALO_UM = 3.0
#: End branches shorter than this are removed, µm (``skeletonize.tick_threshold_um``); 0 keeps them all.
DEFAULT_TICK_THRESHOLD_UM = 0.0
#: Objects of at most this volume are dust, µm³ (``skeletonize.dust_threshold_um3``): dropped, with no
#: skeleton and no row in lengths.csv, and not counted as objects by ``evaluate``. 5 µm³ is 13 voxels of
#: (1.5, 0.5, 0.5) µm. Chosen on phantoms used for neither training nor reporting (shipped ``ais`` model,
#: seeds 2-6): the predicted objects of at most 5 µm³ are background specks of 1-2 slices, and dropping them
#: raised the AIS precision from 0.71 (at 2 µm³) to 0.83, while the smallest true object (an AIS cut by the
#: border, 21 voxels = 7.9 µm³; neurons: 113 voxels) stays (benchmarks/RESULTS.md, "Dust").
DEFAULT_DUST_THRESHOLD_UM3 = 5.0

#: ``skeletonize.join``: the longest gap bridged (µm), the largest angle at each end (degrees), the
#: shortest gap (µm) and the cable behind an end that gives its direction (µm); see
#: :mod:`pipeline.skeleton.join`. 60° was chosen on phantoms used for neither training nor reporting
#: (``benchmarks/RESULTS.md``).
DEFAULT_JOIN_MAX_GAP_UM = 6.0
DEFAULT_JOIN_MAX_ANGLE_DEG = 60.0
DEFAULT_JOIN_MIN_GAP_UM = 0.0
DEFAULT_JOIN_TANGENT_UM = 3.0

PositiveInt = Annotated[int, Field(gt=0)]


class JoinConfig(StrictModel):
    """``skeletonize.join``: join skeleton pieces whose ends face each other across a short gap
    (:mod:`pipeline.skeleton.join`), as tracing tools do at signal dropout.

    Off by default: on unseen phantoms it bridges most dropout gaps and cuts splits, but it also joins
    pieces of different neurons where they touch (``benchmarks/RESULTS.md``, "Gap joins in the
    pipeline"). The segmentation is left as agglomerated; ``joins.csv`` lists what was joined and the
    skeletons, ``lengths.csv`` and the metrics are those of the joined objects.
    """

    enabled: bool = Field(False, description="join pieces across short gaps after skeletonizing")
    max_gap_um: float = Field(
        DEFAULT_JOIN_MAX_GAP_UM, gt=0, allow_inf_nan=False, description="longest gap bridged, µm")
    max_angle_deg: float = Field(
        DEFAULT_JOIN_MAX_ANGLE_DEG, gt=0, le=90, allow_inf_nan=False,
        description="largest angle at each end between its direction and the line to the other end, degrees")
    min_gap_um: float = Field(
        DEFAULT_JOIN_MIN_GAP_UM, ge=0, allow_inf_nan=False,
        description="ends closer than this are not joined, µm")
    tangent_um: float = Field(
        DEFAULT_JOIN_TANGENT_UM, gt=0, allow_inf_nan=False,
        description="cable behind an end over which its direction is measured, µm")

    @model_validator(mode="after")
    def _gap_range(self) -> JoinConfig:
        if self.min_gap_um >= self.max_gap_um:
            raise ValueError(f"min_gap_um={self.min_gap_um} must be below max_gap_um={self.max_gap_um}; "
                             "lower skeletonize.join.min_gap_um or raise skeletonize.join.max_gap_um")
        return self


#: ``skeletonize.join`` for an AIS stain (volumes of kind ``ais``: one object per AIS, the objects apart):
#: gaps up to 10 µm at up to 90° at each end. Chosen on 15 phantoms used for neither training nor reporting
#: (seeds 2-6 and 22-31, shipped ``ais`` model; 6-15 µm and 30-90° tried): the best precision with no AIS
#: joined to another (15 µm joined two AIS on seed 29). On 10 unseen phantoms it raised the AIS precision
#: from 0.81 to 0.98, bridged every dropout gap and cut the length Wasserstein distance 2.9x, at a recall of
#: 0.99 (1 of 130 AIS joined to another) (``benchmarks/RESULTS.md``, "AIS: dust and gap joins").
#: ``neurorecon demo`` and ``configs/segment_phantom_ais.yaml`` use it; neurons, which touch, keep the joins
#: off.
AIS_JOIN = JoinConfig(enabled=True, max_gap_um=10.0, max_angle_deg=90.0)


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
    join: JoinConfig = Field(JoinConfig(), description="join pieces across short gaps (off by default)")
    sharded_precomputed: bool = Field(
        False, description="write skeletons_precomputed/ as neuroglancer sharded files (a file per 2,048 "
                           "labels, for millions of objects) instead of a file per object")
