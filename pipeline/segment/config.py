"""The ``segment:`` section of a config: raw OME-Zarr -> affinities -> segmentation, block by block."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SegmentConfig"]

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Unit = Annotated[float, Field(ge=0, le=1)]


class SegmentConfig(BaseModel):
    """Settings of ``neurorecon segment`` and ``neurorecon run``; shapes are (z, y, x) voxels.

    Outputs in ``out``: ``affinities.zarr`` (c, z, y, x; uint8-quantized, Blosc-LZ4), ``fragments.zarr`` and
    ``segmentation.zarr`` (uint64 OME-Zarr label images) and ``state/`` (per-block progress: a rerun
    resumes). The raw volume is only read.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    raw: Path = Field(description="OME-Zarr raw image (z, y, x)")
    out: Path = Field(description="run directory")
    model: Path | None = Field(None, description="checkpoint; default: the shipped phantom affinity model")
    block_shape: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(
        (32, 256, 256), description="write region per block, a multiple of the raw chunks")
    halo: tuple[NonNegInt, NonNegInt, NonNegInt] = Field((4, 16, 16), description="waterz context per side")
    threshold: Unit = Field(0.5, description="waterz merge threshold on 1 - mean affinity")
    background_threshold: Unit = Field(0.5, description="voxels with all affinities below this are background")
    tile_shape: tuple[PositiveInt, PositiveInt, PositiveInt] | None = Field(
        None, description="network output per tile; default the block shape (less memory: smaller)")
    batch_size: PositiveInt = 1
    device: Literal["cpu", "cuda"] = "cpu"
    affinity_dtype: Literal["uint8", "float16"] = "uint8"
    max_retries: NonNegInt = Field(2, description="extra attempts per failed block")
    gt_labels: Path | None = Field(
        None, description="ground-truth label image for metrics (`neurorecon run`), e.g. X.zarr/labels/ground_truth")
    gt_swc: Path | None = Field(None, description="ground-truth skeletons (folder of <label>.swc, µm) for metrics")
