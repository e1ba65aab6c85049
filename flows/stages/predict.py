"""The predict stage: affinities for an OME-Zarr raw volume, block by block on Dask.

Load -> compute -> save per block around :func:`pipeline.inference.predict_region`: each block reads its
write region plus the network's context (mirrored at the volume border), normalizes it as the training
data were (the checkpoint records how), predicts in tiles on a global grid — so for a given tile shape
the result does not depend on the block shape — and writes its write region of the affinity image
(:mod:`pipeline.io.affinities`: (c, z, y, x), 3 channels, uint8-quantized or float16).

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

from flows.preflight import RunInputs, check_model, check_model_fits_raw
from flows.stages.runner import run_blocks
from pipeline.blocks import Block, block_grid
from pipeline.errors import InputDataError
from pipeline.io.affinities import AffinityDtype, create_affinity_image, encode_affinities
from pipeline.io.blockstate import BlockState
from pipeline.io.checkpoint import ModelMetadata, checkpoint_sha256
from pipeline.io.layout import RunLayout
from pipeline.io.location import URL
from pipeline.io.omezarr import image_fingerprint, open_image, write_region
from pipeline.segment.config import SegmentConfig, default_tile_shape

__all__ = ["predict_run", "predict_volume"]

log = logging.getLogger(__name__)

#: 2: inputs recorded where the run directory does not matter (relative inside it, fingerprints outside)
_STATE_FORMAT = 2


def predict_volume(
    raw: str | Path | URL,
    checkpoint: str | Path,
    out: str | Path,
    *,
    state_dir: str | Path,
    block_shape: Sequence[int],
    tile_shape: Sequence[int] | None,
    batch_size: int,
    device: str,
    dtype: AffinityDtype,
    max_retries: int,
    model_meta: ModelMetadata | None = None,
    client: Any = None,
    progress: bool = True,
) -> Path:
    """Write the affinity image ``out`` for the OME-Zarr raw image ``raw``.

    Parameters
    ----------
    raw : path or URL
        OME-Zarr image (z, y, x), local or at a URL (read by every block's worker).
    checkpoint : path
        A training checkpoint (``checkpoints/final.pt``) or an exported model.
    out : path
        The affinity OME-Zarr image to create (or resume).
    state_dir : path
        Per-block completion state (resume): the ``state`` folder of a run directory, its parent. The
        stage's parameters name the inputs relative to that run directory where they lie inside it,
        else by what they hold (the raw image's :func:`~pipeline.io.omezarr.image_fingerprint`, the
        checkpoint's sha256), so a moved run directory resumes.
    block_shape : sequence of 3 int
        Write-region shape, a multiple of the raw image's chunks.
    tile_shape : sequence of 3 int or None
        Network output size per tile (None: :func:`~pipeline.segment.config.default_tile_shape`, never
        the block shape; smaller tiles use less memory but recompute the network's context around
        each tile).
    batch_size : int
        Tiles per forward pass.
    device : {"cpu", "cuda"}
        Where the network runs (AMP on CUDA).
    dtype : {"uint8", "float16"}
        Storage of the affinities.
    max_retries : int
        Extra attempts per failed block.
    model_meta : ModelMetadata, optional
        The checkpoint's metadata as :func:`flows.preflight.check_model` returned it (the run's
        preflight); without it the checkpoint is loaded and checked here.
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

    image = open_image(raw)
    if image.axes != ("z", "y", "x"):
        raise InputDataError(f"raw image {raw} has axes {image.axes}; expected (z, y, x)")
    meta = check_model(checkpoint) if model_meta is None else model_meta
    check_model_fits_raw(meta, image, what="raw image")
    method = meta.input.get("normalization", "percentile")
    rng = intensity_range(image.reader, method=method,
                          percentiles=tuple(meta.input.get("percentiles", (1.0, 99.9))))
    if not (np.isfinite(rng.low) and np.isfinite(rng.high)):
        raise InputDataError(
            f"raw image {raw} contains NaN or infinite intensities (sampled range {rng.low}..{rng.high}); "
            "replace them (e.g. by 0) before reconstruction"
        )
    # Large tiles: each tile reads the network's context around it, so small tiles recompute a lot. The
    # default never follows the block shape: the result must not depend on it (a tile's size changes
    # the float rounding of its convolutions).
    factors = np.prod(np.array(meta.architecture.get("downsample_factors") or [[1, 1, 1]]), axis=0)
    tile = tuple(int(t) for t in tile_shape) if tile_shape else default_tile_shape(
        image.spatial_shape, tuple(int(f) for f in factors))
    blocks = block_grid(image.spatial_shape, block_shape=block_shape, chunks=tuple(image.chunks))
    run = RunLayout(Path(state_dir).parent)  # the run directory (state_dir is its RunLayout.state)
    params = {
        "raw": run.identify(raw, lambda: image_fingerprint(image)),
        "checkpoint": run.identify(checkpoint, lambda: {"sha256": checkpoint_sha256(checkpoint)}),
        "shape": list(image.shape),
        "block_shape": [int(b) for b in block_shape], "tile_shape": list(tile), "dtype": dtype,
        "normalization": [method, rng.low, rng.high], "downscale_xy": int(meta.input.get("downscale_xy", 1)),
        "state_format": _STATE_FORMAT,
    }
    state = BlockState(state_dir, "predict")
    state.check_params(params)
    create_affinity_image(out, like=image, dtype=dtype)
    task = functools.partial(
        _predict_block, raw=str(raw), checkpoint=str(checkpoint), out=str(out), low=rng.low, high=rng.high,
        tile=tile, batch_size=batch_size, device=device, dtype=dtype, downscale_xy=params["downscale_xy"],
    )
    resources = {"GPU": 1} if device.startswith("cuda") else None
    run_blocks("predict", blocks, task, state=state, client=client, max_retries=max_retries,
               resources=resources, progress=progress, memory_hint=PREDICT_MEMORY_HINT,
               resource_hint=GPU_WORKER_HINT).raise_if_failed()
    return Path(out)


#: The fix for predict blocks whose worker was killed for memory.
PREDICT_MEMORY_HINT = (
    "set a smaller segment.tile_shape (or leave it unset: the run then picks one that fits "
    "dask.memory_limit), segment.batch_size: 1 or a smaller segment.block_shape, or raise dask.memory_limit"
)
#: The fix for GPU blocks on a cluster without a GPU worker.
GPU_WORKER_HINT = (
    "start one Dask worker per GPU (`CUDA_VISIBLE_DEVICES=0 dask worker SCHEDULER --resources GPU=1 "
    "--nthreads 1`; docker/compose.yaml: dask-gpu-worker-0, -1), or set segment.device: cpu"
)


def predict_run(
    cfg: SegmentConfig, *, inputs: RunInputs, max_retries: int, client: Any = None, progress: bool = True
) -> Path:
    """:func:`predict_volume` with the ``segment:`` settings, into the run directory ``cfg.out``; the tile is
    ``segment.tile_shape``, or the one the preflight chose to fit the workers' memory
    (:func:`flows.preflight.check_memory`), or the default."""
    run = RunLayout(cfg.out)
    return predict_volume(
        cfg.raw, inputs.model, run.affinities, state_dir=run.state, block_shape=cfg.block_shape,
        tile_shape=cfg.tile_shape or inputs.tile_shape, batch_size=cfg.batch_size, device=cfg.device,
        dtype=cfg.affinity_dtype,
        max_retries=max_retries, model_meta=inputs.model_meta, client=client, progress=progress,
    )


@functools.lru_cache(maxsize=2)
def _cached_model(checkpoint: str, device: str) -> Any:
    from pipeline.inference.predict import for_inference
    from pipeline.io.checkpoint import load_model

    model, _ = load_model(checkpoint, device=device)
    return for_inference(model)


def _predict_block(
    block: Block, *, raw: str, checkpoint: str, out: str, low: float, high: float, tile: tuple[int, ...],
    batch_size: int, device: str, dtype: AffinityDtype, downscale_xy: int,
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
                f"raw image {raw} has a NaN or infinite intensity at voxel (z, y, x) = {where} "
                f"(block {block.id}); "
                "replace non-finite values (e.g. by 0) before reconstruction"
            )
        return normalize_intensity(data, low=low, high=high)

    aff = predict_region(model, read, volume_shape=array.shape, region=block.write, tile_shape=tile,
                         batch_size=batch_size, device=device, downscale_xy=downscale_xy)
    write_region(open_image(out, mode="r+").array, (slice(None), *block.write), encode_affinities(aff, dtype))
    return {"mean_affinity": float(aff.mean())}
