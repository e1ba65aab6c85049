"""Check a run's inputs and output location before anything is written or any cluster starts.

A run over terabytes should fail in its first second, not after hours, when the raw image, the model,
the ground truth, the block layout or the output directory cannot work; and a refused run must leave
every existing output as it was. :func:`check_segment_config` reads only metadata (and the checkpoint),
never the volume: per-block problems (NaN intensities, unreadable chunks) are caught by the blocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import InputDataError
from pipeline.io.lock import check_writable_dir
from pipeline.io.omezarr import open_image

__all__ = ["check_segment_config"]


def check_segment_config(cfg: Any) -> None:
    """Validate a :class:`~pipeline.segment.config.SegmentConfig` against the files it names.

    Raises
    ------
    InputDataError
        If the raw image is missing, not a non-empty 3-D (z, y, x) image of integers or floats, the
        block shape does not cover whole chunks or is smaller than the halo, or the ground truth does
        not match the raw image.
    CheckpointError
        If the model checkpoint is missing, corrupt or not a 3-channel affinity model.
    OutputError
        If the output directory cannot be written.
    """
    raw = open_image(cfg.raw)
    if raw.axes != ("z", "y", "x"):
        raise InputDataError(
            f"segment.raw {cfg.raw} has axes {raw.axes} and shape {raw.shape}; expected a single-channel "
            "3-D image with axes (z, y, x) (split channels into separate images)"
        )
    if raw.dtype.kind not in "uif":
        raise InputDataError(
            f"segment.raw {cfg.raw} has dtype {raw.dtype}; expected unsigned/signed integers or floats "
            "(e.g. uint16 or float32 intensities)"
        )
    if min(raw.spatial_shape) == 0:
        raise InputDataError(f"segment.raw {cfg.raw} is empty (shape {raw.spatial_shape}); nothing to segment")
    chunks = tuple(int(c) for c in raw.chunks)
    for axis, (b, c, h) in enumerate(zip(cfg.block_shape, chunks, cfg.halo, strict=True)):
        if b % c:
            fit = tuple(max(1, bb // cc) * cc for bb, cc in zip(cfg.block_shape, chunks, strict=True))
            raise InputDataError(
                f"segment.block_shape {tuple(cfg.block_shape)} is not a multiple of the raw chunks {chunks} "
                f"along {'zyx'[axis]}; choose a multiple (e.g. {fit}) so that no two blocks write the same chunk"
            )
        if b < h:
            raise InputDataError(
                f"segment.block_shape {tuple(cfg.block_shape)} is smaller than segment.halo {tuple(cfg.halo)} "
                f"along {'zyx'[axis]}; use blocks of at least the halo (several times it is efficient) "
                "or a smaller halo"
            )
    _check_model(cfg.model)
    if cfg.gt_labels is not None:
        _check_ground_truth(Path(cfg.gt_labels), raw.spatial_shape)
    if cfg.gt_swc is not None and not Path(cfg.gt_swc).is_dir():
        raise InputDataError(f"segment.gt_swc {cfg.gt_swc} is not a folder; expected a folder of <label>.swc files")
    check_writable_dir(cfg.out, what="segment.out")


def _check_model(model: Path | None) -> None:
    from pipeline.io.checkpoint import load_model
    from pipeline.model import DEMO_MODEL

    path = Path(model) if model is not None else DEMO_MODEL
    net, meta = load_model(path)  # missing, corrupt or not fitting its architecture: CheckpointError
    if meta.target != "affinities" or net.out_channels != 3:
        raise InputDataError(
            f"segment.model {path} predicts {meta.target} ({net.out_channels} channels); segmentation needs a "
            "3-channel affinity model (trained with train.data.target: affinities)"
        )


def _check_ground_truth(path: Path, shape: tuple[int, ...]) -> None:
    from flows.analysis import open_label_image

    gt = open_label_image(path, what="segment.gt_labels")
    if gt.spatial_shape != tuple(shape):  # open_label_image has checked the axes and the integer dtype
        raise InputDataError(
            f"segment.gt_labels {path} has shape {gt.spatial_shape} but segment.raw has {tuple(shape)}; "
            "ground truth must cover the raw image voxel for voxel"
        )
