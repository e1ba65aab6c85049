"""Predict affinities for an OME-Zarr raw volume block by block on Dask.

Load -> compute -> save per block around :func:`pipeline.inference.predict_region`: each block reads its
write region plus the network's context (mirrored at the volume border), normalizes it as the training
data were (the checkpoint records how), predicts in tiles on a global grid — so for a given tile shape
the result does not depend on the block shape — and writes its write region of the affinity image.

Output: an OME-Zarr image ``affinities.zarr`` with axes (c, z, y, x), 3 channels (z, y, x affinities,
waterz convention: ``aff[d][p]`` links ``p`` and ``p - e_d``), stored as **uint8 quantized**
``round(255 * a)`` — a quarter of float32's size, and an error (< 0.002) far below what changes a waterz
merge decision; :func:`flows.segment.read_affinities` decodes it. ``dtype="float16"`` keeps more precision.

GPU work: pass ``device="cuda"``; on a Dask cluster the blocks then ask for the worker resource
``GPU=1`` (start GPU workers with ``--resources GPU=1``), so only GPU workers run them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flows.blockwise import run_blocks
from pipeline.blocks import Block, block_grid
from pipeline.errors import InputDataError
from pipeline.io.blockstate import BlockState
from pipeline.io.omezarr import create_image, open_image, write_region

__all__ = ["predict_volume"]

log = logging.getLogger(__name__)


def predict_volume(
    raw: str | Path,
    checkpoint: str | Path,
    out: str | Path,
    *,
    state_dir: str | Path,
    block_shape: Sequence[int],
    tile_shape: Sequence[int] | None = None,
    batch_size: int = 1,
    device: str = "cpu",
    dtype: str = "uint8",
    client: Any = None,
    max_retries: int = 2,
    progress: bool = True,
) -> Path:
    """Write the affinity image ``out`` for the OME-Zarr raw image ``raw``.

    Parameters
    ----------
    raw : path
        OME-Zarr image (z, y, x).
    checkpoint : path
        A training checkpoint (``checkpoints/final.pt``) or an exported model.
    out : path
        The affinity OME-Zarr image to create (or resume).
    state_dir : path
        Per-block completion state (resume).
    block_shape : sequence of 3 int
        Write-region shape, a multiple of the raw image's chunks.
    tile_shape : sequence of 3 int, optional
        Network output size per tile (default: the block shape; smaller tiles use less memory but
        recompute the network's context around each tile).
    batch_size : int
        Tiles per forward pass.
    device : {"cpu", "cuda"}
        Where the network runs (AMP on CUDA).
    dtype : {"uint8", "float16"}
        Storage of the affinities.
    client : distributed.Client, optional
        Dask client; serial if None.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    InputDataError
        If the raw image is not (z, y, x), or its voxel size differs from the training data's by more
        than 25 % (predictions would be unreliable; resample first).
    CheckpointError
        If the checkpoint is corrupt or does not fit its architecture.
    BlockFailure
        If blocks still fail after their retries.
    """
    from pipeline.data.normalize import intensity_range
    from pipeline.io.checkpoint import load_model

    if dtype not in ("uint8", "float16"):
        raise ValueError(f"dtype must be 'uint8' or 'float16'; got {dtype!r}")
    image = open_image(raw)
    if image.axes != ("z", "y", "x"):
        raise InputDataError(f"raw image {raw} has axes {image.axes}; expected (z, y, x)")
    model, meta = load_model(checkpoint)
    if meta.target != "affinities" or model.out_channels != 3:
        raise InputDataError(f"checkpoint {checkpoint} predicts {meta.target} ({model.out_channels} channels); "
                             "segmentation needs a 3-channel affinity model")
    trained_vs = meta.input.get("voxel_size_um")
    if trained_vs is not None:
        ratio = np.asarray(image.voxel_size_um) / np.asarray(trained_vs, float)
        if np.any(np.abs(ratio - 1) > 0.25):
            raise InputDataError(
                f"raw voxel size {image.voxel_size_um} µm differs from the model's training data "
                f"{tuple(trained_vs)} µm by more than 25 %; resample the volume or train on matching data"
            )
    method = meta.input.get("normalization", "percentile")
    rng = intensity_range(image.reader, method=method,
                          percentiles=tuple(meta.input.get("percentiles", (1.0, 99.9))))
    if not (np.isfinite(rng.low) and np.isfinite(rng.high)):
        raise InputDataError(
            f"raw image {raw} contains NaN or infinite intensities (sampled range {rng.low}..{rng.high}); "
            "replace them (e.g. by 0) before reconstruction"
        )
    # Large tiles: each tile reads the network's context around it, so small tiles recompute a lot.
    tile = tuple(int(t) for t in (tile_shape or block_shape))
    chunks = tuple(image.chunks)
    blocks = block_grid(image.spatial_shape, block_shape=block_shape, chunks=chunks)
    params = {
        "raw": str(Path(raw).resolve()), "checkpoint": str(Path(checkpoint).resolve()), "shape": list(image.shape),
        "block_shape": [int(b) for b in block_shape], "tile_shape": list(tile), "dtype": dtype,
        "normalization": [method, rng.low, rng.high], "downscale_xy": int(meta.input.get("downscale_xy", 1)),
    }
    state = BlockState(state_dir, "predict")
    state.check_params(params)
    create_image(out, shape=image.spatial_shape, dtype=dtype, chunks=chunks, voxel_size_um=image.voxel_size_um,
                 name="affinities", channels=3, exist_ok=True, codec="lz4")
    task = functools.partial(
        _predict_block, raw=str(raw), checkpoint=str(checkpoint), out=str(out), low=rng.low, high=rng.high,
        tile=tile, batch_size=batch_size, device=device, dtype=dtype, downscale_xy=params["downscale_xy"],
    )
    run_blocks("predict", blocks, task, state=state, client=client, max_retries=max_retries,
               resources={"GPU": 1} if device.startswith("cuda") else None, progress=progress).raise_if_failed()
    return Path(out)


@functools.lru_cache(maxsize=2)
def _cached_model(checkpoint: str, device: str) -> Any:
    from pipeline.io.checkpoint import load_model

    model, _ = load_model(checkpoint, device=device)
    return model


def _predict_block(
    block: Block, *, raw: str, checkpoint: str, out: str, low: float, high: float, tile: tuple[int, ...],
    batch_size: int, device: str, dtype: str, downscale_xy: int,
) -> dict[str, Any]:
    from pipeline.data.normalize import normalize_intensity
    from pipeline.inference import predict_region

    array = open_image(raw).reader
    model = _cached_model(checkpoint, device)

    def read(region: tuple[slice, slice, slice]) -> np.ndarray:
        data = np.asarray(array[region])
        if data.dtype.kind == "f" and not np.isfinite(data).all():
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(data))[0])
            where = tuple(int(r.start) + i for r, i in zip(region, bad, strict=True))
            raise InputDataError(
                f"raw image {raw} has a NaN or infinite intensity at voxel (z, y, x) = {where} (block {block.id}); "
                "replace non-finite values (e.g. by 0) before reconstruction"
            )
        return normalize_intensity(data, low=low, high=high)

    aff = predict_region(model, read, volume_shape=array.shape, region=block.write, tile_shape=tile,
                         batch_size=batch_size, device=device, downscale_xy=downscale_xy)
    data = np.round(aff * 255).astype(np.uint8) if dtype == "uint8" else aff.astype(np.float16)
    write_region(open_image(out, mode="r+").array, (slice(None), *block.write), data)
    return {"mean_affinity": float(aff.mean())}
