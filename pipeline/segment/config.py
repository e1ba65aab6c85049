"""The ``segment:`` section of a config: raw OME-Zarr -> affinities -> segmentation, block by block."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from pipeline.settings import StrictModel

__all__ = ["DEFAULT_BACKGROUND_THRESHOLD", "DEFAULT_HALO_VX", "SegmentConfig"]

#: Default watershed context per side of a block, voxels (z, y, x) (``segment.halo_vx``).
DEFAULT_HALO_VX = (4, 16, 16)
#: Voxels whose incident affinities are all below this are background (``segment.background_threshold``).
DEFAULT_BACKGROUND_THRESHOLD = 0.5

PositiveInt = Annotated[int, Field(gt=0)]
HaloInt = Annotated[int, Field(ge=1)]
Unit = Annotated[float, Field(ge=0, le=1)]


class SegmentConfig(StrictModel):
    """Settings of ``neurorecon segment`` and ``neurorecon run``; shapes are (z, y, x) voxels.

    Outputs in ``out``: ``affinities.zarr`` (c, z, y, x; uint8-quantized, Blosc-LZ4), ``fragments.zarr`` and
    ``segmentation.zarr`` (uint64 OME-Zarr label images) and ``state/`` (per-block progress: a rerun
    resumes). The raw volume is only read.
    """

    raw: Path = Field(description="OME-Zarr raw image (z, y, x)")
    out: Path = Field(description="run directory")
    model: Literal["neurons", "ais"] | Path | None = Field(
        None,
        description="checkpoint, or 'neurons' / 'ais' for a shipped model of that kind (null: 'neurons')")
    block_shape: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(
        (32, 256, 256), description="write region per block, a multiple of the raw chunks")
    halo_vx: tuple[HaloInt, HaloInt, HaloInt] = Field(
        DEFAULT_HALO_VX, description="waterz context per side, voxels: at least 1, at most the block shape")
    threshold: Unit = Field(0.5, description="waterz merge threshold on 1 - mean affinity")
    background_threshold: Unit = Field(
        DEFAULT_BACKGROUND_THRESHOLD, description="voxels with all affinities below this are background")
    tile_shape: tuple[PositiveInt, PositiveInt, PositiveInt] | None = Field(
        None, description="network output per tile; default the block shape (less memory: smaller)")
    batch_size: PositiveInt = Field(1, description="tiles per forward pass")
    device: Literal["cpu", "cuda"] = "cpu"
    affinity_dtype: Literal["uint8", "float16"] = "uint8"
