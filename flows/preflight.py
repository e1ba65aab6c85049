"""Check a run's inputs and output location once, before anything is written or any cluster starts.

A run over terabytes should fail in its first second, not after hours, when the raw image, the model,
the ground truth, the block layout or the output directory cannot work; and a refused run must leave
every existing output as it was. :func:`check_run` reads only metadata (and the checkpoint, once), never
the volume: per-block problems (NaN intensities, unreadable chunks) are caught by the blocks. What it
learnt (the model's metadata) is handed to the stages in :class:`RunInputs`, so nothing is checked or
loaded twice. The same check functions serve a stage called on its own (:func:`check_model`,
:func:`check_model_fits_raw`, :func:`check_same_voxel_size`, :func:`check_skeletons_in_volume`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.config import DaskConfig, NeuroreconConfig
from pipeline.errors import ConfigError, InputDataError, OutputError
from pipeline.io.checkpoint import ModelMetadata
from pipeline.io.labels import open_label_image
from pipeline.io.lock import check_writable_dir, confine
from pipeline.io.omezarr import OmeArray, open_image
from pipeline.segment.blockwise import check_halo_vx
from pipeline.segment.config import SegmentConfig

if TYPE_CHECKING:
    import networkx as nx

__all__ = [
    "CLUSTER_TIMEOUT_S",
    "RunInputs",
    "check_cluster",
    "check_ground_truth",
    "check_model",
    "check_model_fits_raw",
    "check_output",
    "check_prefect_home",
    "check_run",
    "check_same_voxel_size",
    "check_skeletons_in_volume",
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
        If the raw image is missing, not a non-empty 3-D (z, y, x) image of integers or floats, has
        axes without a unit and a scale implausible in µm, the block shape does not cover whole chunks
        or the halo does not fit it, the model does not take a single-channel 3-D image, or the ground
        truth does not match the raw image (shape, voxel size, skeletons inside the volume).
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
        check_ground_truth(config, raw)
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
    from prefect.settings import Settings

    home = Path(Settings().home).expanduser()  # from the environment now, as the server process will see it
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
    """Refuse a model that does not take ``raw``: one input channel and 3-D (z, y, x) patches, and
    training data whose voxel size is within 25 % of the raw image's.

    Raises
    ------
    InputDataError
        For a model of another number of input channels or dimensions (naming what it expects), or
        naming both voxel sizes and the fix (predictions would be unreliable).
    """
    arch = meta.architecture
    in_channels, ndim = arch.get("in_channels", 1), arch.get("ndim", 3)
    if in_channels != 1 or ndim != 3:
        expects = f"{in_channels}-channel {ndim}-D {'(z, y, x)' if ndim == 3 else '(y, x)'} input"
        raise InputDataError(
            f"model {meta.path} expects {expects} (architecture in_channels={in_channels}, ndim={ndim}), "
            f"but {what} {raw.path} is a single-channel 3-D (z, y, x) image; use a model trained on "
            "single-channel 3-D volumes (neurorecon train with train.model.ndim: 3), or the shipped one "
            "(segment.model: null)"
        )
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


def check_ground_truth(config: NeuroreconConfig, raw: OmeArray) -> None:
    """Check the ``evaluate:`` section's ground truth against the raw image (if it is set).

    The label image must have the raw image's shape and voxel size; the skeletons (``evaluate.gt_swc``,
    or a phantom's own) must lie in the raw image's volume (:func:`check_skeletons_in_volume`).

    Raises
    ------
    InputDataError
        If the ground truth is missing or malformed, or does not match the raw image.
    """
    from pipeline.io.phantom import phantom_skeletons
    from pipeline.io.skeletons import read_swc_folder

    ev = config.evaluate
    if ev.gt_labels is not None:
        gt: OmeArray = open_label_image(ev.gt_labels, what="evaluate.gt_labels")
        # open_label_image has checked the axes and the integer dtype
        if gt.spatial_shape != raw.spatial_shape:
            raise InputDataError(
                f"evaluate.gt_labels {ev.gt_labels} has shape {gt.spatial_shape} but segment.raw has "
                f"{raw.spatial_shape}; ground truth must cover the raw image voxel for voxel"
            )
        check_same_voxel_size(gt, raw, truth_what="evaluate.gt_labels", image_what="segment.raw")
    if ev.gt_swc is not None and not Path(ev.gt_swc).is_dir():
        raise InputDataError(
            f"evaluate.gt_swc {ev.gt_swc} is not a folder; expected a folder of <label>.swc files"
        )
    if ev.gt_labels is None:  # nothing is evaluated
        return
    swc_dir = Path(ev.gt_swc) if ev.gt_swc is not None else phantom_skeletons(ev.gt_labels)
    if swc_dir is not None:  # the skeletons the evaluate stage will score against
        what = "evaluate.gt_swc" if ev.gt_swc is not None else "the phantom's ground-truth skeletons"
        check_skeletons_in_volume(read_swc_folder(swc_dir), shape=raw.spatial_shape,
                                  voxel_size_um=raw.voxel_size_um, what=f"{what} {swc_dir}")


def check_same_voxel_size(
    truth: OmeArray, image: OmeArray, *, truth_what: str, image_what: str, fix: str = ""
) -> None:
    """Refuse ground-truth labels whose voxel size differs from the image they are compared with.

    Serves the preflight (against ``segment.raw``) and ``neurorecon evaluate`` (against the
    segmentation); ``fix`` adds a way out that only one of them has.

    Raises
    ------
    InputDataError
        Naming both images and both voxel sizes (µm).
    """
    if not np.allclose(truth.voxel_size_um, image.voxel_size_um, rtol=1e-6):
        raise InputDataError(
            f"{truth_what} {truth.path} has voxel size {truth.voxel_size_um} µm but {image_what} "
            f"{image.path} has {image.voxel_size_um} µm (z, y, x); ground truth must lie on the same voxel "
            f"grid: resample it, or correct the scale metadata of the image that is wrong{fix}"
        )


#: Refuse a ground-truth skeleton set when more than this fraction of its nodes lie outside the volume.
MAX_FRACTION_OUTSIDE = 0.5


def check_skeletons_in_volume(
    skeletons: Mapping[int, nx.Graph],
    *,
    shape: Sequence[int],
    voxel_size_um: Sequence[float],
    what: str = "ground-truth skeletons",
) -> None:
    """Refuse ground-truth skeletons most of whose nodes lie outside the volume (wrong units or frame).

    A few nodes just beyond the border are normal (a skeleton sampled at the border): the evaluation
    counts them (``skeleton.n_nodes_outside_volume``). When more than half of all nodes lie outside
    the volume's extent (``shape`` x ``voxel_size_um``, µm), every metric against them would be
    meaningless (an ERL of 0): typically SWC coordinates in nm instead of µm, or in another frame.

    Parameters
    ----------
    skeletons : mapping of int to networkx.Graph
        Ground-truth skeletons, nodes with ``pos_um`` (z, y, x) µm, as
        :func:`pipeline.io.skeletons.read_swc_folder` reads them.
    shape : sequence of 3 int
        (z, y, x) shape of the volume, voxels.
    voxel_size_um : sequence of 3 float
        (z, y, x) voxel size, µm.
    what : str
        The skeletons' name and folder, for the message.

    Raises
    ------
    InputDataError
        Naming ``what``, the coordinate range found and the volume's extent in µm, and the likely cause.
    """
    from pipeline.metrics.nodes import nodes_outside

    if not skeletons:
        return
    n_nodes = sum(g.number_of_nodes() for g in skeletons.values())
    outside = nodes_outside(skeletons, shape, voxel_size_um=voxel_size_um)
    if n_nodes == 0 or outside <= MAX_FRACTION_OUTSIDE * n_nodes:
        return
    pos = np.array([d["pos_um"] for g in skeletons.values() for _, d in g.nodes(data=True)], dtype=float)
    lo, hi = pos.min(axis=0), pos.max(axis=0)
    extent = np.asarray(shape, float) * np.asarray(voxel_size_um, float)
    found = ", ".join(f"{a} {lo[i]:.6g}..{hi[i]:.6g}" for i, a in enumerate("zyx"))
    volume = ", ".join(f"{a} 0..{extent[i]:.6g}" for i, a in enumerate("zyx"))
    ratio = float(np.max(np.maximum(np.abs(lo), np.abs(hi)) / extent))
    if 100 <= ratio <= 10_000:
        cause = (f"SWC coordinates must be in µm; these look like nm (they reach {ratio:.0f}x the volume's "
                 "extent): divide them by 1000")
    else:
        cause = ("SWC coordinates must be in µm, in the volume's frame (x y z from its first voxel's "
                 "centre; # OFFSET headers are added): check their units and origin")
    raise InputDataError(
        f"{what}: {outside} of {n_nodes} nodes lie outside the volume; their coordinates span {found} µm "
        f"but the volume spans {volume} µm ({tuple(int(v) for v in shape)} voxels of "
        f"{tuple(float(v) for v in voxel_size_um)} µm); {cause}"
    )
