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

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.config import DaskConfig, NeuroreconConfig
from pipeline.errors import ConfigError, InputDataError, OutputError
from pipeline.io.checkpoint import ModelMetadata
from pipeline.io.labels import open_label_image
from pipeline.io.location import URL
from pipeline.io.lock import check_writable_dir, confine
from pipeline.io.omezarr import OmeArray, open_image
from pipeline.segment.blockwise import check_halo_vx
from pipeline.segment.config import SegmentConfig

if TYPE_CHECKING:
    import networkx as nx

    from pipeline.inference.memory import ForwardMemory

log = logging.getLogger(__name__)

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
    "check_thresholds",
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
    tile_shape : tuple of 3 int or None
        The inference tile chosen to fit the workers' memory when ``segment.tile_shape`` is unset and
        the default does not fit (:func:`check_memory`); None: the setting or the default.
    gpu_ids : tuple of str
        ``CUDA_VISIBLE_DEVICES`` of each GPU worker the local cluster starts (``segment.device: cuda``
        without ``dask.address``); empty otherwise.
    """

    model: Path
    model_meta: ModelMetadata
    tile_shape: tuple[int, int, int] | None = None
    gpu_ids: tuple[str, ...] = ()


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
        If the raw image is missing (at a URL: cannot be read, naming the cause), not a non-empty 3-D
        (z, y, x) image of integers or floats, has axes without a unit and a scale implausible in µm,
        the block shape does not cover whole chunks or the halo does not fit it, the model does not take
        a single-channel 3-D image, or the ground truth does not match the raw image (shape, voxel size,
        skeletons inside the volume).
    CheckpointError
        If the model checkpoint is missing, corrupt or not a 3-channel affinity model.
    OutputError
        If the output directory lies outside ``output.root`` or cannot be written.
    """
    cfg = check_output(config)
    raw = open_image(cfg.raw, setting="segment.raw")
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
    net, meta = _checked_model(path, what="segment.model")
    check_model_fits_raw(meta, raw, what="segment.raw")
    if evaluate:
        check_ground_truth(config, raw)
    workers = check_cluster(config.dask, gpu=cfg.device.startswith("cuda"))
    gpu_ids: tuple[str, ...] = ()
    if cfg.device.startswith("cuda") and not config.dask.address:
        from pipeline.inference.cuda import check_cuda, visible_gpu_ids

        check_cuda(cfg.device, what="segment.device")
        gpu_ids = tuple(visible_gpu_ids())
    tile = check_memory(config, net=net, model=path, volume_shape=raw.spatial_shape, workers=workers)
    return RunInputs(model=path, model_meta=meta, tile_shape=tile, gpu_ids=gpu_ids)


def check_thresholds(
    values: Sequence[float] | None, *, max_threshold: float, name: str = "--thresholds"
) -> tuple[float, ...]:
    """The agglomeration thresholds of a sweep (``name``: the option or parameter that gave them), each
    in [0, ``max_threshold``], without duplicates, in the order given; ``()`` for none.

    Raises
    ------
    ConfigError
        If a value is not a number in [0, 1] (waterz's 1 - mean affinity) or lies above
        ``segment.max_threshold``, the largest threshold whose merges the blocks record.
    """
    if not values:
        return ()
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        numbers = []
    if not numbers or not all(0.0 <= v <= 1.0 for v in numbers):
        given = ",".join(str(v) for v in values)
        raise ConfigError(f"{name} must be one or more numbers in [0, 1] (waterz's 1 - mean affinity), "
                          f"e.g. 0.3,0.5,0.7; got {given!r}")
    above = [v for v in numbers if v > max_threshold]
    if above:
        raise ConfigError(
            f"{name} {', '.join(f'{v:g}' for v in above)} above segment.max_threshold {max_threshold:g}, the "
            "largest threshold the blocks record merges for; raise segment.max_threshold (a new value redoes "
            "the watershed: --overwrite) or sweep lower thresholds"
        )
    return tuple(dict.fromkeys(numbers))


def check_output(config: NeuroreconConfig) -> SegmentConfig:
    """The cheap part of :func:`check_run`, safe before taking the output lock: ``segment.out`` is a local
    directory inside ``output.root``, outside the input image (a raw image at a URL lies outside it), and
    can be written. Returns the ``segment:`` section.

    Raises
    ------
    ConfigError
        If there is no ``segment:`` section.
    OutputError
        If the output directory is a URL, lies outside ``output.root`` or inside the raw image, or cannot
        be written.
    """
    cfg = require_segment(config, None)
    out = confine(cfg.out, config.output.root, what="segment.out")
    raw_store = None if isinstance(cfg.raw, URL) else Path(cfg.raw).expanduser().resolve()
    if raw_store is not None and (out == raw_store or raw_store in out.parents):
        raise OutputError(
            f"segment.out {cfg.out} lies inside the input image {cfg.raw}; inputs are only ever read: "
            "choose an output directory outside it"
        )
    check_writable_dir(cfg.out, what="segment.out")
    return cfg


#: Seconds to wait for the scheduler at ``dask.address`` before refusing the run.
CLUSTER_TIMEOUT_S = 5.0


def check_cluster(
    dask: DaskConfig, *, gpu: bool = False, timeout_s: float = CLUSTER_TIMEOUT_S
) -> list[dict[str, Any]] | None:
    """Refuse an existing-cluster address (``dask.address``) where no scheduler answers within
    ``timeout_s`` seconds (Dask's own default waits 30 s, then the run fails with a traceback); with
    ``gpu``, also one where no worker offers the ``GPU`` resource, or where the first such worker cannot
    use its GPU (:func:`pipeline.inference.cuda.check_cuda`, run on that worker).

    Returns
    -------
    list of dict or None
        The cluster's workers as the scheduler describes them (``memory_limit``, ``resources``, ...);
        None without ``dask.address``.

    Raises
    ------
    ConfigError
        Naming the address, what happened and the ways out.
    """
    if not dask.address:
        return None
    from distributed import Client

    from flows.cluster import GPU_RESOURCE

    try:
        with Client(dask.address, timeout=timeout_s, set_as_default=False) as client:
            info = client.scheduler_info(n_workers=-1)["workers"]
            workers = list(info.values())
            if gpu:
                gpus = [a for a, w in info.items() if (w.get("resources") or {}).get(GPU_RESOURCE, 0) >= 1]
                if not gpus:
                    raise ConfigError(
                        f"segment.device is cuda but none of the {len(workers)} worker(s) of the Dask "
                        f"cluster at dask.address {dask.address!r} offers the {GPU_RESOURCE!r} resource GPU "
                        f"blocks need: start one worker per GPU (`CUDA_VISIBLE_DEVICES=0 dask worker "
                        f"{dask.address} --resources {GPU_RESOURCE}=1 --nthreads 1`; docker/compose.yaml: "
                        "dask-gpu-worker-0, -1), or set segment.device: cpu"
                    )
                found = client.run(_cuda_on_worker, workers=gpus[:1])
                problem = next(iter(found.values()))
                if problem:
                    raise ConfigError(f"Dask worker {gpus[0]} of dask.address {dask.address!r}: {problem}")
            return workers
    except (OSError, TimeoutError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        why = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"dask.address {dask.address!r}: no Dask scheduler answered within {timeout_s:.0f} s ({why}); "
            f"start one there (`dask scheduler`, then `dask worker {dask.address}`), or set dask.address: "
            "null to run on a local cluster"
        ) from None


def _cuda_on_worker() -> str:
    """Run on a GPU worker: '' when it can use its GPU, else why not (:func:`check_cuda`'s message)."""
    from pipeline.inference.cuda import check_cuda

    try:
        check_cuda("cuda", what="segment.device")
    except ConfigError as exc:
        return str(exc)
    return ""


#: Fraction of a worker's memory limit one task may plan to use: Dask pauses a worker at 80 % and
#: restarts it at 95 % (``distributed.worker.memory.pause`` / ``terminate``).
MEMORY_BUDGET_FRACTION = 0.8
#: A segment (watershed + agglomeration) task: process runtime, and bytes per voxel read (block + halo),
#: from benchmarks/bench_segment.py (peak 180-190 MB for 32 x 128 x 128 blocks with a (4, 16, 16) halo).
SEGMENT_RUNTIME_BYTES = 250 * 2**20
SEGMENT_BYTES_PER_VOXEL = 100
#: Bounds used to skip measuring the model when even they fit (small volumes and tiles).
_PESSIMISTIC_RUNTIME_BYTES = 2**30
_PESSIMISTIC_BYTES_PER_VOXEL = 2000.0


def worker_memory_limit(dask: DaskConfig, workers: Sequence[Mapping[str, Any]] | None, *,
                        gpu: bool = False) -> int | None:
    """Bytes a block task's worker may use: the local workers' ``dask.memory_limit`` ('auto' as Dask
    resolves it), or the smallest limit among an existing cluster's workers (those with the GPU resource
    for GPU blocks); None for no limit."""
    if workers is None:
        from distributed.worker_memory import parse_memory_limit

        return parse_memory_limit(dask.memory_limit, dask.threads_per_worker, logger=log)
    from flows.cluster import GPU_RESOURCE

    if gpu:
        workers = [w for w in workers if (w.get("resources") or {}).get(GPU_RESOURCE, 0) >= 1]
    limits = [int(w["memory_limit"]) for w in workers if w.get("memory_limit")]
    return min(limits) if limits else None


def forward_memory_key(model: Path) -> str:
    """The key of ``model``'s entry in the forward-memory cache: the checkpoint's content, the torch
    version and how the predict tasks run the forward pass (:data:`FORWARD_VERSION`)."""
    import torch

    from pipeline.inference.predict import FORWARD_VERSION
    from pipeline.io.checkpoint import checkpoint_sha256

    return f"{checkpoint_sha256(model)}:{torch.__version__}:{FORWARD_VERSION}"


def model_memory(model: Path) -> ForwardMemory:
    """``model``'s forward-pass memory, measured once per checkpoint and torch version on this machine
    (:func:`pipeline.inference.memory.measure_forward_memory`, a few seconds) and cached in
    ``$XDG_CACHE_HOME/neurorecon/forward_memory.json`` (default ``~/.cache``)."""
    import json
    import os

    from pipeline.inference.memory import ForwardMemory, measure_forward_memory
    from pipeline.io.atomic import read_json_or_empty, write_atomic

    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = cache_home / "neurorecon" / "forward_memory.json"
    key = forward_memory_key(model)
    known = read_json_or_empty(cache)
    try:
        return ForwardMemory(**known[key])
    except (KeyError, TypeError):  # not measured yet, or by an older version
        pass
    log.info("measuring the memory of %s per voxel (once per model and machine) ...", model.name)
    measured = measure_forward_memory(str(model))
    known[key] = json.loads(measured.to_json())
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache, json.dumps(known, indent=1))
    except OSError as exc:  # a read-only home: measure again next time
        log.warning("could not cache the model's memory figures in %s: %s", cache, exc)
    return measured


def check_memory(
    config: NeuroreconConfig, *, net: Any, model: Path, volume_shape: Sequence[int],
    workers: Sequence[Mapping[str, Any]] | None,
) -> tuple[int, int, int] | None:
    """Check that a predict task and a segment task fit one worker's memory, before any block runs.

    A predict task needs the process's runtime, the forward pass's activations (measured per input
    voxel for this model: :func:`model_memory`) times the tile's input voxels and ``batch_size``, and the
    block's buffers (:func:`pipeline.inference.memory.predict_task_bytes`); with ``threads_per_worker``
    tasks sharing a worker, the activations and buffers count that many times. It may plan to use
    :data:`MEMORY_BUDGET_FRACTION` of the worker's limit (:func:`worker_memory_limit`).

    Returns
    -------
    tuple of 3 int or None
        When ``segment.tile_shape`` is unset and the default tile does not fit: the largest tile that
        does (:func:`pipeline.inference.memory.tile_for_budget`), logged; else None (the setting or the
        default).

    Raises
    ------
    ConfigError
        When ``segment.tile_shape`` is set and does not fit, when no tile fits next to the block's
        buffers, or when a segment task (block plus halo) does not fit: naming the estimate, its parts,
        the limit and the settings that fix it.
    """
    from pipeline.inference.memory import ForwardMemory, predict_task_bytes, tile_for_budget
    from pipeline.segment.config import default_tile_shape

    cfg = require_segment(config, None)
    dask = config.dask
    gpu = cfg.device.startswith("cuda")
    limit = worker_memory_limit(dask, workers, gpu=gpu)
    if limit is None:
        return None
    threads = dask.threads_per_worker if workers is None else 1
    budget = int(limit * MEMORY_BUDGET_FRACTION)
    gib = 2**30
    context = [int(c) for c in net.context]
    factors = [int(f) for f in net.total_downsample_factor]
    block = [min(int(b), int(n)) for b, n in zip(cfg.block_shape, volume_shape, strict=True)]
    block_voxels = int(np.prod(block))
    read_voxels = int(np.prod([b + 2 * c for b, c in zip(block, context, strict=True)]))

    # segment: block + halo
    halo_voxels = int(np.prod([b + 2 * h for b, h in zip(block, cfg.halo_vx, strict=True)]))
    segment_bytes = SEGMENT_RUNTIME_BYTES + threads * SEGMENT_BYTES_PER_VOXEL * halo_voxels
    if segment_bytes > budget:
        raise ConfigError(
            f"segment.block_shape {tuple(block)} with halo_vx {tuple(cfg.halo_vx)}: a watershed task needs "
            f"about {segment_bytes / gib:.1f} GiB ({SEGMENT_BYTES_PER_VOXEL} B per voxel read x "
            f"{halo_voxels / 1e6:.1f} Mvoxel x {threads} thread(s) + runtime), more than the "
            f"{budget / gib:.1f} GiB a worker may use ({MEMORY_BUDGET_FRACTION:.0%} of its "
            f"{limit / gib:.1f} GiB limit); use smaller segment.block_shape or raise dask.memory_limit"
        )

    def input_voxels(tile: Sequence[int]) -> int:
        padded = tuple(t + 2 * c for t, c in zip(tile, context, strict=True))
        return int(np.prod(net.valid_input_shape(padded)))

    def need(tile: Sequence[int], memory: ForwardMemory) -> int:
        one = predict_task_bytes(memory, tile_input_voxels=input_voxels(tile), batch_size=cfg.batch_size,
                                 block_read_voxels=read_voxels, block_voxels=block_voxels)
        return memory.runtime_bytes + threads * (one - memory.runtime_bytes)

    tile = (tuple(cfg.tile_shape) if cfg.tile_shape
            else default_tile_shape(tuple(volume_shape), tuple(factors)))
    pessimistic = ForwardMemory(_PESSIMISTIC_RUNTIME_BYTES, _PESSIMISTIC_BYTES_PER_VOXEL, "cpu", "")
    if need(tile, pessimistic) <= budget:
        return None  # fits even on the most pessimistic figures: nothing to measure
    memory = model_memory(model)
    needed = need(tile, memory)
    if needed <= budget:
        return None
    smaller = tile_for_budget(tile, fits=lambda t: need(t, memory) <= budget, multiple=factors)
    parts = (f"{memory.runtime_bytes / gib:.2f} GiB runtime + {memory.bytes_per_voxel:.0f} B per input voxel "
             f"(measured for {model.name}) x {input_voxels(tile) / 1e6:.1f} Mvoxel x batch_size "
             f"{cfg.batch_size}"
             f" x {threads} thread(s) + block buffers")
    where = (f"the {budget / gib:.1f} GiB a worker may use ({MEMORY_BUDGET_FRACTION:.0%} of its "
             f"{limit / gib:.1f} GiB limit: Dask pauses a worker there and restarts it at 95 %)")
    if smaller is not None and cfg.tile_shape is None:
        log.info("segment.tile_shape: the default %s needs about %.1f GiB per predict task, more than %s; "
                 "using %s", tile, needed / gib, where, smaller)
        return smaller  # type: ignore[return-value]
    fix = (f"set segment.tile_shape to {smaller} or smaller" if smaller is not None
           else "use a smaller segment.block_shape")
    raise ConfigError(
        f"segment.tile_shape {tile}: a predict task needs about {needed / gib:.1f} GiB ({parts}), more than "
        f"{where}; {fix}, or raise dask.memory_limit to at least "
        f"{needed / MEMORY_BUDGET_FRACTION / gib:.1f}GiB"
    )


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
    return _checked_model(path, what=what)[1]


def _checked_model(path: str | Path, *, what: str) -> tuple[Any, ModelMetadata]:
    """:func:`check_model`, returning the loaded network too."""
    from pipeline.io.checkpoint import load_model

    net, meta = load_model(path)
    if meta.target != "affinities" or net.out_channels != 3:
        raise InputDataError(
            f"{what} {path} predicts {meta.target} ({net.out_channels} channels); segmentation needs a "
            "3-channel affinity model (trained with train.data.target: affinities)"
        )
    return net, meta


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
