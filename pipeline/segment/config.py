"""The ``segment:`` section of a config: raw OME-Zarr -> affinities -> segmentation, block by block."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from pipeline.io.location import InputLocation, OutputDir
from pipeline.settings import StrictModel

__all__ = ["DEFAULT_BACKGROUND_THRESHOLD", "DEFAULT_HALO_VX", "DEFAULT_MAX_THRESHOLD", "DEFAULT_TILE_SHAPE",
           "SegmentConfig", "SegmentSettings", "default_tile_shape"]

#: Default watershed context per side of a block, voxels (z, y, x) (``segment.halo_vx``).
DEFAULT_HALO_VX = (4, 16, 16)
#: Voxels whose incident affinities are all below this are background (``segment.background_threshold``).
DEFAULT_BACKGROUND_THRESHOLD = 0.5
#: The largest agglomeration threshold a run can be asked for (``segment.max_threshold``): each block records
#: waterz's merges up to it once, and any threshold up to it (``segment.threshold``, ``--thresholds``) is
#: replayed from that record. 1.0: every threshold.
DEFAULT_MAX_THRESHOLD = 1.0

#: Network output per inference tile, voxels (z, y, x), unless ``segment.tile_shape`` is set: about 2
#: Mvoxels, clipped to the volume. A fixed default, so the affinities — hence the segmentation — do not
#: depend on ``block_shape``. With the network's context the shipped U-Net reads 64 x 344 x 344 voxels
#: per tile and one predict task peaks near 4 GB on CPU: where that does not fit ``dask.memory_limit``,
#: the preflight picks a smaller tile (``flows.preflight.check_memory``) and logs it.
DEFAULT_TILE_SHAPE = (32, 256, 256)

PositiveInt = Annotated[int, Field(gt=0)]
HaloInt = Annotated[int, Field(ge=1)]
Unit = Annotated[float, Field(ge=0, le=1)]


class SegmentSettings(StrictModel):
    """The settings of the ``segment:`` section without its volume (``raw``, ``out``): what the batch flow
    applies to every volume of its input folder. Shapes are (z, y, x) voxels."""

    model: Literal["neurons", "ais"] | Path | None = Field(
        None,
        description="checkpoint, or 'neurons' / 'ais' for a shipped model of that kind (null: 'neurons')")
    block_shape: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(
        (32, 256, 256), description="write region per block, a multiple of the raw chunks")
    halo_vx: tuple[HaloInt, HaloInt, HaloInt] = Field(
        DEFAULT_HALO_VX, description="waterz context per side, voxels: at least 1, at most the block shape")
    threshold: Unit = Field(
        0.5, description="waterz merge threshold on 1 - mean affinity (segmentation.zarr; changing it redoes "
                         "only the union and relabel)")
    max_threshold: Annotated[float, Field(gt=0, le=1)] = Field(
        DEFAULT_MAX_THRESHOLD,
        description="the largest threshold a run can be asked for (segment.threshold, segment --thresholds): "
                    "the blocks record waterz's merges up to it once. On dense data without background (EM), "
                    "agglomerating up to 1.0 can take several times as long as up to 0.5: lower it to the "
                    "largest threshold you will try")
    background_threshold: Unit = Field(
        DEFAULT_BACKGROUND_THRESHOLD, description="voxels with all affinities below this are background")
    tile_shape: tuple[PositiveInt, PositiveInt, PositiveInt] | None = Field(
        None, description="network output per tile (null: DEFAULT_TILE_SHAPE (32, 256, 256) clipped to the "
                          "volume, smaller where a worker's memory needs it; less memory: smaller). Results "
                          "depend on it, never on block_shape")
    batch_size: PositiveInt = Field(1, description="tiles per forward pass")
    device: Literal["cpu", "cuda"] = "cpu"
    affinity_dtype: Literal["uint8", "float16"] = "uint8"

    @model_validator(mode="after")
    def _threshold_within_max(self) -> SegmentSettings:
        if self.threshold > self.max_threshold:
            raise ValueError(f"segment.threshold {self.threshold} is above segment.max_threshold "
                             f"{self.max_threshold}, the largest threshold the blocks record merges for; "
                             "raise segment.max_threshold (or lower the threshold)")
        return self


class SegmentConfig(SegmentSettings):
    """Settings of ``neurorecon segment`` and ``neurorecon run``: :class:`SegmentSettings` for one volume.

    Outputs in ``out``: ``affinities.zarr`` (c, z, y, x; uint8-quantized, Blosc-LZ4), ``fragments.zarr`` and
    ``segmentation.zarr`` (uint64 OME-Zarr label images; ``segmentation_t<threshold>.zarr`` for each
    threshold of a sweep, ``neurorecon segment --thresholds``) and ``state/`` (per-block progress: a rerun
    resumes). The raw volume is only read; it may lie at a URL (:mod:`pipeline.io.location`), the run
    directory may not.
    """

    raw: InputLocation = Field(
        description="OME-Zarr raw image (z, y, x): a local path or a URL (s3://, gs://, https://; read-only)")
    out: OutputDir = Field(description="run directory (local or mounted; a URL is refused)")


def default_tile_shape(
    volume_shape: tuple[int, ...], stride_multiple: tuple[int, ...]
) -> tuple[int, int, int]:
    """:data:`DEFAULT_TILE_SHAPE` clipped to the volume, rounded up to the network's downsample factor.

    Examples
    --------
    >>> default_tile_shape((64, 512, 512), (1, 4, 4))
    (32, 256, 256)
    >>> default_tile_shape((20, 100, 37), (1, 4, 4))
    (20, 100, 40)
    """
    return tuple(min(t, -(-int(n) // int(m)) * int(m))  # type: ignore[return-value]
                 for t, n, m in zip(DEFAULT_TILE_SHAPE, volume_shape, stride_multiple, strict=True))
