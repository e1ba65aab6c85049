"""Open the training and validation volumes of a :class:`TrainConfig` as patch sources.

Stores are opened through :mod:`pipeline.io` (``open_image`` / ``open_labels``; a phantom is written
with ``pipeline.io.phantom.write_phantom``); the returned sources hold lazy zarr arrays, never whole
volumes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from pipeline.data import Box, VolumeSource, prepare_source
from pipeline.errors import ConfigError, InputDataError
from pipeline.io.omezarr import open_image, open_labels
from pipeline.train.config import TrainConfig, VolumeConfig

__all__ = ["TrainingSources", "open_sources"]


@dataclass(frozen=True)
class TrainingSources:
    """Opened volumes: ``train`` and ``val`` sources and whether ``val`` is really held out."""

    train: tuple[VolumeSource, ...]
    val: tuple[VolumeSource, ...]
    held_out: bool


def open_sources(config: TrainConfig, *, out_dir: Path, progress: bool = False) -> TrainingSources:
    """Open (or, for a phantom, generate once into ``out_dir/data``) the volumes of ``config``.

    Raises
    ------
    InputDataError
        If a store or label image is missing or malformed.
    ConfigError
        If a region of interest does not fit its volume, or the phantom generator is unavailable.
    """
    data = config.data
    seed = config.seed
    vols: list[VolumeConfig] = list(data.volumes)
    val_vols: list[VolumeConfig] = list(data.val_volumes)
    if data.phantom is not None:
        path = _ensure_phantom(out_dir / "data" / "phantom_train.zarr", data.phantom, progress=progress)
        vols = [VolumeConfig(path=path)]
        if data.val_phantom_seed is not None:
            params = data.phantom.model_copy(update={"seed": data.val_phantom_seed})
            vpath = _ensure_phantom(out_dir / "data" / "phantom_val.zarr", params, progress=progress)
            val_vols = [VolumeConfig(path=vpath)]
    train = tuple(_open(v, config, seed=seed + i, what="data.volumes") for i, v in enumerate(vols))
    if val_vols:
        val = tuple(
            _open(v, config, seed=seed + 1000 + i, what="data.val_volumes") for i, v in enumerate(val_vols)
        )
        return TrainingSources(train, val, held_out=True)
    warnings.warn(
        "no validation volumes (data.val_volumes or data.val_phantom_seed): validation patches are drawn "
        "from the training volumes and are not held out",
        stacklevel=3,
    )
    return TrainingSources(train, train, held_out=False)


def _open(volume: VolumeConfig, config: TrainConfig, *, seed: int, what: str) -> VolumeSource:
    image = open_image(volume.path)
    if len(image.axes) != 3:
        raise InputDataError(
            f"{volume.path} has axes {image.axes}; training needs a single-channel (z, y, x) image"
        )
    labels = open_labels(volume.path, volume.labels)
    shape = image.spatial_shape
    start = volume.roi_start or (0, 0, 0)
    stop = volume.roi_stop or shape
    if any(a >= b or b > s for a, b, s in zip(start, stop, shape, strict=True)):
        raise ConfigError(
            f"{what}: roi_start={tuple(start)} / roi_stop={tuple(stop)} of {volume.path} do not fit its "
            f"(z, y, x) shape {shape}; expected 0 <= start < stop <= shape"
        )
    source = prepare_source(
        image.array,
        labels.array,
        voxel_size_um=image.voxel_size_um,
        roi=Box(tuple(start), tuple(stop)),  # type: ignore[arg-type]
        normalization=config.data.normalization,
        percentiles=config.data.percentiles,
        seed=seed,
        name=str(volume.path) + (f"[{start}:{stop}]" if volume.roi_start or volume.roi_stop else ""),
    )
    if source.index.n_foreground == 0:
        raise InputDataError(
            f"{what}: label image '{volume.labels}' of {volume.path} has no labelled (non-zero) voxels"
            f"{' in its roi' if volume.roi_start or volume.roi_stop else ''}; training needs labelled neurites "
            "(check the label image, or the roi_start/roi_stop)"
        )
    return source


def _ensure_phantom(path: Path, params: object, *, progress: bool) -> Path:
    """Write the phantom unless a complete one is already there (``write_phantom`` marks completion)."""
    try:
        from pipeline.io.phantom import phantom_complete, write_phantom
    except ImportError as exc:
        raise ConfigError(
            f"data.phantom needs the phantom generator (pipeline.io.phantom), which is not available "
            f"({exc}); "
            "give data.volumes (OME-Zarr stores) instead"
        ) from None
    if not phantom_complete(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_phantom(path, params, overwrite=True, progress=progress)
    return path
