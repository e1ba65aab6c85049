"""Check a run's inputs and output location once, before anything is written or any cluster starts.

A run over terabytes should fail in its first second, not after hours, when the raw image, the model,
the ground truth, the block layout or the output directory cannot work; and a refused run must leave
every existing output as it was. :func:`check_run` reads only metadata (and the checkpoint, once), never
the volume: per-block problems (NaN intensities, unreadable chunks) are caught by the blocks. What it
learnt (the model's metadata) is handed to the stages in :class:`RunInputs`, so nothing is checked or
loaded twice. The same check functions serve a stage called on its own (:func:`check_model`,
:func:`check_model_fits_raw`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import DaskConfig, NeuroreconConfig
from pipeline.errors import ConfigError, InputDataError, OutputError
from pipeline.io.checkpoint import ModelMetadata
from pipeline.io.labels import open_label_image
from pipeline.io.lock import check_writable_dir, confine
from pipeline.io.omezarr import OmeArray, open_image
from pipeline.segment.blockwise import check_halo_vx
from pipeline.segment.config import SegmentConfig

__all__ = [
    "CLUSTER_TIMEOUT_S",
    "RunInputs",
    "check_cluster",
    "check_model",
    "check_model_fits_raw",
    "check_output",
    "check_prefect_home",
    "check_run",
    "model_path",
    "require_segment",
]


@dataclass(frozen=True)
class RunInputs:
    """What :func:`check_run` established, for the stages of the run.

    Attributes
    ----------
    model : Path
        The checkpoint the run uses (``segment.model``, or the shipped model).
    model_meta : ModelMetadata
        Its metadata (how to prepare the raw data), read once.
    """

    model: Path
    model_meta: ModelMetadata


def require_segment(config: NeuroreconConfig, source: str | Path | None) -> SegmentConfig:
    """The ``segment:`` section, or a :class:`ConfigError` naming ``source`` and an example."""
    if config.segment is None:
        raise ConfigError(f"{source or 'the configuration'} has no segment: section; "
                          "see configs/segment_phantom.yaml for an example")
    return config.segment


def check_run(config: NeuroreconConfig, *, evaluate: bool = True) -> RunInputs:
    """Validate a run's configuration against the files it names (``neurorecon segment`` / ``run``).

    Checks the ``segment:`` section (output directory: :func:`check_output`; raw image, block layout,
    halo, model), with ``evaluate`` the ground truth of the ``evaluate:`` section, and that the cluster
    at ``dask.address``, if any, answers (:func:`check_cluster`).

    Raises
    ------
    ConfigError
        If there is no ``segment:`` section, or no scheduler answers at ``dask.address``.
    InputDataError
        If the raw image is missing, not a non-empty 3-D (z, y, x) image of integers or floats, the
        block shape does not cover whole chunks or the halo does not fit it, or the ground truth does
        not match the raw image.
    CheckpointError
        If the model checkpoint is missing, corrupt or not a 3-channel affinity model.
    OutputError
        If the output directory lies outside ``output.root`` or cannot be written.
    """
    cfg = check_output(config)
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
        raise InputDataError(
            f"segment.raw {cfg.raw} is empty (shape {raw.spatial_shape}); nothing to segment"
        )
    chunks = tuple(int(c) for c in raw.chunks)
    for axis, (b, c) in enumerate(zip(cfg.block_shape, chunks, strict=True)):
        if b % c:
            fit = tuple(max(1, bb // cc) * cc for bb, cc in zip(cfg.block_shape, chunks, strict=True))
            raise InputDataError(
                f"segment.block_shape {tuple(cfg.block_shape)} is not a multiple of the raw chunks {chunks} "
                f"along {'zyx'[axis]}; choose a multiple (e.g. {fit}) so that no two blocks write the same "
                "chunk"
            )
    try:
        check_halo_vx(cfg.halo_vx, block_shape=cfg.block_shape, volume_shape=raw.spatial_shape,
                      name="segment.halo_vx", block_name="segment.block_shape")
    except ValueError as exc:
        raise InputDataError(str(exc)) from None
    path = model_path(cfg)
    meta = check_model(path, what="segment.model")
    check_model_fits_raw(meta, raw, what="segment.raw")
    if evaluate:
        check_ground_truth(config, raw.spatial_shape)
    check_cluster(config.dask)
    return RunInputs(model=path, model_meta=meta)


def check_output(config: NeuroreconConfig) -> SegmentConfig:
    """The cheap part of :func:`check_run`, safe before taking the output lock: ``segment.out`` lies
    inside ``output.root``, outside the input image, and can be written. Returns the ``segment:`` section.

    Raises
    ------
    ConfigError
        If there is no ``segment:`` section.
    OutputError
        If the output directory lies outside ``output.root`` or inside the raw image, or cannot be
        written.
    """
    cfg = require_segment(config, None)
    out = confine(cfg.out, config.output.root, what="segment.out")
    raw_store = Path(cfg.raw).expanduser().resolve()
    if out == raw_store or raw_store in out.parents:
        raise OutputError(
            f"segment.out {cfg.out} lies inside the input image {cfg.raw}; inputs are only ever read: "
            "choose an output directory outside it"
        )
    check_writable_dir(cfg.out, what="segment.out")
    return cfg


#: Seconds to wait for the scheduler at ``dask.address`` before refusing the run.
CLUSTER_TIMEOUT_S = 5.0


def check_cluster(dask: DaskConfig, *, timeout_s: float = CLUSTER_TIMEOUT_S) -> None:
    """Refuse an existing-cluster address (``dask.address``) where no scheduler answers within
    ``timeout_s`` seconds (Dask's own default waits 30 s, then the run fails with a traceback).

    Raises
    ------
    ConfigError
        Naming the address, what happened and the two ways out.
    """
    if not dask.address:
        return
    from distributed import Client

    try:
        with Client(dask.address, timeout=timeout_s, set_as_default=False):
            pass
    except (OSError, TimeoutError, ValueError) as exc:
        why = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"dask.address {dask.address!r}: no Dask scheduler answered within {timeout_s:.0f} s ({why}); "
            f"start one there (`dask scheduler`, then `dask worker {dask.address}`), or set dask.address: "
            "null to run on a local cluster"
        ) from None


def check_prefect_home() -> None:
    """Refuse a ``PREFECT_HOME`` where the temporary Prefect server cannot keep its database (it would
    wait three minutes for the server, then fail with a traceback).

    Raises
    ------
    ConfigError
        Naming the directory and the fix.
    """
    from prefect.settings import get_current_settings

    home = Path(get_current_settings().home).expanduser()
    try:
        check_writable_dir(home, what="PREFECT_HOME")
    except OutputError as exc:
        raise ConfigError(
            f"{exc}; Prefect keeps the database of a run's temporary server there: set PREFECT_HOME to a "
            "writable directory (default ~/.prefect), or PREFECT_API_URL to a running Prefect server"
        ) from None


def model_path(cfg: SegmentConfig) -> Path:
    """``segment.model``: a checkpoint, or the shipped model of a kind (``neurons`` when null)."""
    from pipeline.model import SHIPPED_MODELS

    if cfg.model is None or isinstance(cfg.model, str):
        return SHIPPED_MODELS[cfg.model or "neurons"]
    return Path(cfg.model)


def check_model(path: str | Path, *, what: str = "model") -> ModelMetadata:
    """Load a checkpoint once and check that it predicts 3-channel affinities; return its metadata.

    Raises
    ------
    CheckpointError
        If the checkpoint is missing, corrupt or does not fit its architecture.
    InputDataError
        If it is not a 3-channel affinity model.
    """
    from pipeline.io.checkpoint import load_model

    net, meta = load_model(path)
    if meta.target != "affinities" or net.out_channels != 3:
        raise InputDataError(
            f"{what} {path} predicts {meta.target} ({net.out_channels} channels); segmentation needs a "
            "3-channel affinity model (trained with train.data.target: affinities)"
        )
    return meta


def check_model_fits_raw(meta: ModelMetadata, raw: OmeArray, *, what: str = "raw image") -> None:
    """Refuse a raw image whose voxel size differs from the model's training data by more than 25 %.

    Raises
    ------
    InputDataError
        Naming both voxel sizes and the fix (predictions would be unreliable).
    """
    trained_vs = meta.input.get("voxel_size_um")
    if trained_vs is None:
        return
    ratio = np.asarray(raw.voxel_size_um) / np.asarray(trained_vs, float)
    if np.any(np.abs(ratio - 1) > 0.25):
        raise InputDataError(
            f"{what} {raw.path} has voxel size {raw.voxel_size_um} µm, which differs from the model's "
            "training "
            f"data {tuple(trained_vs)} µm by more than 25 %; resample the volume or train on matching data"
        )


def check_ground_truth(config: NeuroreconConfig, shape: tuple[int, int, int]) -> None:
    """Check the ``evaluate:`` section's ground truth against a raw image of ``shape`` (if it is set)."""
    ev = config.evaluate
    if ev.gt_labels is not None:
        gt: OmeArray = open_label_image(ev.gt_labels, what="evaluate.gt_labels")
        if gt.spatial_shape != tuple(shape):  # open_label_image has checked the axes and the integer dtype
            raise InputDataError(
                f"evaluate.gt_labels {ev.gt_labels} has shape {gt.spatial_shape} but segment.raw has "
                f"{tuple(shape)}; ground truth must cover the raw image voxel for voxel"
            )
    if ev.gt_swc is not None and not Path(ev.gt_swc).is_dir():
        raise InputDataError(
            f"evaluate.gt_swc {ev.gt_swc} is not a folder; expected a folder of <label>.swc files"
        )
