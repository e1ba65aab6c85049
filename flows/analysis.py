"""Analysis stages of a run: skeletonize (block-wise, on Dask), evaluate against ground truth, report.

Each stage is load -> compute -> save around :mod:`pipeline.skeleton.blockwise`, :mod:`pipeline.metrics`
and :mod:`pipeline.report`. Label images are named by the path of an OME-Zarr label image: a standalone
one (``RUN/segmentation.zarr``) or a label group inside an image store (``volume.zarr/labels/NAME``,
e.g. a phantom's ``volume.zarr/labels/ground_truth``).

Run layout (``--out RUN``)::

    RUN/skeletons/<label>.swc         skeletons, µm                         (skeletonize)
    RUN/skeletons_precomputed/        neuroglancer precomputed skeletons, nm (skeletonize)
    RUN/lengths.csv                   per-object lengths                    (skeletonize)
    RUN/skeletonize.json              inputs and parameters                 (skeletonize)
    RUN/state/skeleton_labels/        per-block label counts and boxes      (skeletonize)
    RUN/state/skeletonize_plan.npz    objects skeletonized in one piece     (skeletonize)
    RUN/state/skeletonize/            per-block pieces, for resuming        (skeletonize)
    RUN/metrics.json                  voxel, skeleton and length metrics    (evaluate)
    RUN/report.html, RUN/report.pdf                                         (report)
"""

from __future__ import annotations

import datetime as _dt
import functools
import io
import json
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flows.blockwise import run_blocks
from pipeline.blocks import Block
from pipeline.errors import InputDataError, OutputError
from pipeline.io.atomic import write_atomic
from pipeline.io.blockstate import BlockState
from pipeline.io.omezarr import OmeArray, open_image
from pipeline.io.phantom import ground_truth_dir
from pipeline.io.report import read_metrics_json, write_metrics_json, write_report
from pipeline.io.skeletons import (
    read_lengths_csv,
    read_swc_folder,
    write_lengths_csv,
    write_precomputed_skeletons,
    write_swc_folder,
)
from pipeline.skeleton.blockwise import (
    DEFAULT_HALO_UM,
    BlockLabels,
    BlockSkeletons,
    OnePiecePlan,
    TeasarParams,
    block_labels,
    check_max_voxels,
    fuse_block_skeletons,
    label_statistics,
    object_rows,
    plan_one_piece,
    skeleton_grid,
    skeletonize_block_with_plan,
)

__all__ = [
    "DEFAULT_BLOCK_SHAPE",
    "SkeletonizeOutputs",
    "evaluate_arrays",
    "evaluate_run",
    "open_label_image",
    "report_run",
    "skeletonize_volume",
]

log = logging.getLogger(__name__)

#: Default write-region shape of a skeletonization block (clipped to the volume), voxels (z, y, x).
DEFAULT_BLOCK_SHAPE = (128, 256, 256)
_PARAMS_FILE = "skeletonize.json"
_DEFAULT_PARAMS = TeasarParams()


# -- inputs ----------------------------------------------------------------------------------------------


def open_label_image(path: str | Path, *, what: str = "segmentation") -> OmeArray:
    """Open an OME-Zarr label image: ``RUN/segmentation.zarr`` or ``volume.zarr/labels/NAME``.

    Raises
    ------
    InputDataError
        If there is no OME-Zarr image at ``path`` (naming the label images of a store if ``path`` is an
        image store), or it is not a 3-D (z, y, x) integer image.
    """
    p = Path(path)
    if not p.exists():
        raise InputDataError(
            f"{what} {p} does not exist; expected an OME-Zarr label image such as RUN/segmentation.zarr "
            "or volume.zarr/labels/ground_truth"
        )
    image = open_image(p)
    if image.axes != ("z", "y", "x"):
        from pipeline.io.omezarr import list_labels

        names = list_labels(p)
        hint = f"; its label images are {', '.join(f'{p}/labels/{n}' for n in names)}" if names else ""
        raise InputDataError(f"{what} {p} has axes {image.axes}; expected a (z, y, x) label image{hint}")
    if image.dtype.kind not in "iu" or not _is_label_image(p):
        from pipeline.io.omezarr import list_labels

        names = list_labels(p)
        hint = (
            f" Its label images: {', '.join(f'{p}/labels/{n}' for n in names)}."
            if names
            else " Is this the raw image rather than a segmentation?"
        )
        problem = (
            f"has dtype {image.dtype}"
            if image.dtype.kind not in "iu"
            else "has no OME-Zarr image-label metadata"
        )
        raise InputDataError(f"{what} {p} {problem}; expected an integer label image.{hint}")
    return image


def _is_label_image(path: Path) -> bool:
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return "image-label" in meta.get("attributes", {}).get("ome", {})


def _voxel_size(image: OmeArray, override: Sequence[float] | None) -> tuple[float, float, float]:
    if override is None:
        return image.voxel_size_um
    vs = tuple(float(v) for v in override)
    if len(vs) != 3 or not all(math.isfinite(v) and v > 0 for v in vs):
        raise InputDataError(f"voxel size must be three positive numbers (z, y, x) in µm; got {override!r}")
    if not np.allclose(vs, image.voxel_size_um, rtol=1e-6):
        warnings.warn(
            f"using voxel size {vs} µm instead of {image.voxel_size_um} µm recorded in {image.path}",
            UserWarning,
            stacklevel=3,
        )
    return vs  # type: ignore[return-value]


# -- skeletonize -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkeletonizeOutputs:
    """What :func:`skeletonize_volume` wrote."""

    swc_dir: Path
    precomputed_dir: Path
    lengths_csv: Path
    params_json: Path
    n_objects: int
    n_skeletons: int


_PLAN_FILE = "skeletonize_plan.npz"
_OBJECTS = "objects_"  # key prefix of a block's one-piece objects in its state arrays


def _skeleton_labels_task(block: Block, *, segmentation: str, state_root: str) -> dict[str, Any]:
    piece = block_labels(np.asarray(open_image(segmentation).array[block.write]), block=block)
    BlockState(state_root, "skeleton_labels").save_arrays(block.id, **piece.as_arrays())
    return {"n_labels": int(len(piece.labels))}


def _skeletonize_block_task(
    block: Block,
    *,
    segmentation: str,
    volume_shape: tuple[int, int, int],
    voxel_size_um: tuple[float, ...],
    teasar: dict[str, Any],
    state_root: str,
) -> dict[str, Any]:
    image = open_image(segmentation)
    with np.load(Path(state_root) / _PLAN_FILE) as data:
        plan = OnePiecePlan.from_arrays(dict(data))
    pieces, objects = skeletonize_block_with_plan(
        lambda region: np.asarray(image.array[region]),
        block=block,
        plan=plan,
        volume_shape=volume_shape,
        voxel_size_um=voxel_size_um,
        params=TeasarParams(**teasar),
    )
    arrays = {**pieces.as_arrays(), **{_OBJECTS + k: v for k, v in objects.as_arrays().items()}}
    BlockState(state_root, "skeletonize").save_arrays(block.id, **arrays)
    return {"n_vertices": int(len(pieces.vertices_vx)), "n_one_piece_vertices": int(len(objects.vertices_vx))}


def _write_plan(path: Path, plan: OnePiecePlan) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **plan.as_arrays())
    write_atomic(path, buffer.getvalue())


def skeletonize_volume(
    segmentation: str | Path,
    *,
    out: str | Path,
    block_shape: Sequence[int] | None = None,
    halo_um: float = DEFAULT_HALO_UM,
    voxel_size_um: Sequence[float] | None = None,
    params: TeasarParams = _DEFAULT_PARAMS,
    tick_threshold_um: float = 0.0,
    one_piece_max_voxels: int | None = None,
    client: Any = None,
    max_retries: int = 2,
    progress: bool = True,
    overwrite: bool = False,
) -> SkeletonizeOutputs:
    """Skeletonize a label image block by block and write SWC, precomputed skeletons and ``lengths.csv``.

    Parameters
    ----------
    segmentation : path
        OME-Zarr label image (see :func:`open_label_image`).
    out : path
        Run directory (see the module docstring for the layout).
    block_shape : sequence of 3 int, optional
        Write-region shape of a block, voxels; default :data:`DEFAULT_BLOCK_SHAPE` clipped to the volume.
    halo_um : float
        Context around each block, µm (see :mod:`pipeline.skeleton.blockwise`).
    voxel_size_um : sequence of 3 float, optional
        Override the voxel size recorded in the image (µm, z, y, x).
    params : TeasarParams
        kimimaro settings.
    tick_threshold_um : float
        Remove end branches shorter than this (0: keep them).
    one_piece_max_voxels : int, optional
        Objects that cross a block seam and whose bounding box (grown by one voxel) holds at most this
        many voxels are skeletonized in one piece, exactly as in a one-block run; default the largest
        read region (memory stays bounded by the block size); 0: every object block by block.
    client : distributed.Client, optional
        Dask client; serial in this process if None.
    overwrite : bool
        Replace earlier outputs (and their block state) in ``out``.

    Returns
    -------
    SkeletonizeOutputs

    Raises
    ------
    InputDataError
        If the segmentation is missing or not an integer (z, y, x) label image.
    OutputError
        If outputs exist (without ``overwrite``) or an interrupted run used other parameters.
    BlockFailure
        If blocks still fail after their retries.
    """
    seg = open_label_image(segmentation)
    vs = _voxel_size(seg, voxel_size_um)
    shape = seg.spatial_shape
    blocks_shape = tuple(
        min(int(b), s) for b, s in zip(block_shape or DEFAULT_BLOCK_SHAPE, shape, strict=True)
    )
    out = Path(out)
    swc_dir, pre_dir = out / "skeletons", out / "skeletons_precomputed"
    if not overwrite:
        existing = [p for p in (swc_dir, pre_dir, out / "lengths.csv") if p.exists()]
        if existing:
            raise OutputError(
                f"{existing[0]} already exists; pass --overwrite to replace the skeletons in {out}, "
                "or choose another --out"
            )
    check_max_voxels(one_piece_max_voxels, "one_piece_max_voxels")
    grid = skeleton_grid(shape, block_shape=blocks_shape, voxel_size_um=vs, halo_um=halo_um)
    record = {
        "segmentation": str(Path(segmentation).resolve()),
        "shape": list(shape),
        "voxel_size_um": list(vs),
        "block_shape": list(blocks_shape),
        "halo_um": float(halo_um),
        "teasar": asdict(params),
        "tick_threshold_um": float(tick_threshold_um),
        "one_piece_max_voxels": one_piece_max_voxels,
        "state_format": 2,
    }
    state_root = out / "state"
    # stage 1: label counts and bounding boxes per block (write regions only)
    labels_state = BlockState(state_root, "skeleton_labels")
    labels_state.check_params(
        {k: record[k] for k in ("segmentation", "shape", "block_shape", "state_format")}, reset=overwrite
    )
    state = BlockState(state_root, "skeletonize")
    state.check_params(record, reset=overwrite)
    run_blocks(
        "skeleton labels",
        grid,
        functools.partial(_skeleton_labels_task, segmentation=str(segmentation), state_root=str(state_root)),
        state=labels_state, client=client, max_retries=max_retries, progress=progress,
    ).raise_if_failed()
    stats = label_statistics(
        (BlockLabels.from_arrays(labels_state.load_arrays(b.id)) for b in grid), volume_shape=shape
    )
    # stage 2: every block skeletonizes its pieces and the one-piece objects it owns
    plan = plan_one_piece(stats, grid, max_voxels=one_piece_max_voxels)
    _write_plan(state_root / _PLAN_FILE, plan)  # a function of stage 1 and the parameters: rewriting is a no-op
    log.info("skeletonize: %d objects cross a seam and are skeletonized in one piece", len(plan.labels))
    task = functools.partial(
        _skeletonize_block_task,
        segmentation=str(segmentation),
        volume_shape=shape,
        voxel_size_um=vs,
        teasar=asdict(params),
        state_root=str(state_root),
    )
    run_blocks(
        "skeletonize", grid, task, state=state, client=client, max_retries=max_retries, progress=progress
    ).raise_if_failed()

    pieces = []
    for b in grid:
        arrays = state.load_arrays(b.id)
        pieces.append(BlockSkeletons.from_arrays({k: v for k, v in arrays.items() if not k.startswith(_OBJECTS)}))
        pieces.append(BlockSkeletons.from_arrays(
            {k[len(_OBJECTS):]: v for k, v in arrays.items() if k.startswith(_OBJECTS)}
        ))
    graphs = fuse_block_skeletons(pieces, voxel_size_um=vs, tick_threshold_um=tick_threshold_um)
    rows = object_rows(graphs, stats, voxel_size_um=vs)
    comments = [f"neurorecon skeletonize {record['segmentation']}", "coordinates: µm, volume frame"]
    write_swc_folder(swc_dir, graphs, overwrite=True, comments=comments)
    write_precomputed_skeletons(pre_dir, graphs, overwrite=True)
    lengths = write_lengths_csv(out / "lengths.csv", rows)
    params_json = out / _PARAMS_FILE
    params_json.write_text(
        json.dumps({**record, "n_objects": len(rows), "n_skeletons": len(graphs)}, indent=1)
    )
    log.info("skeletonize: %d objects, %d skeletons -> %s", len(rows), len(graphs), out)
    return SkeletonizeOutputs(swc_dir, pre_dir, lengths, params_json, len(rows), len(graphs))


# -- evaluate ----------------------------------------------------------------------------------------------


def evaluate_arrays(
    segmentation: np.ndarray,
    gt_labels: np.ndarray,
    *,
    voxel_size_um: Sequence[float],
    gt_skeletons: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Voxel, skeleton (if GT skeletons are given) and length metrics, as the ``metrics.json`` sections.

    Parameters
    ----------
    segmentation, gt_labels : ndarray, shape (Z, Y, X), integer
        Predicted and true instance labels.
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x).
    gt_skeletons : sequence of networkx.Graph, optional
        Ground-truth skeletons (``pos_um`` in the volume frame).

    Returns
    -------
    dict
        ``{"voxel": {...}, "skeleton": {...}, "length": {...}}`` with the keys of
        :data:`pipeline.report.METRICS_SCHEMA`.
    """
    from pipeline.metrics import (
        accuracy,
        adjusted_rand_index,
        dice,
        length_metrics,
        skeleton_metrics,
        variation_of_information,
    )

    voi = variation_of_information(segmentation, gt_labels)
    result: dict[str, Any] = {
        "voxel": {
            "accuracy": accuracy(segmentation, gt_labels),
            "dice": dice(segmentation, gt_labels),
            "adjusted_rand_index": adjusted_rand_index(segmentation, gt_labels),
            "voi_split_bits": voi.split,
            "voi_merge_bits": voi.merge,
            "voi_total_bits": voi.total,
        }
    }
    if gt_skeletons:
        sk = skeleton_metrics(list(gt_skeletons), segmentation, voxel_size_um=voxel_size_um)
        result["skeleton"] = {
            "splits_per_neuron": sk.splits_per_neuron,
            "omit_pct": sk.omit_pct,
            "merged_pct": sk.merged_pct,
            "edge_accuracy_pct": sk.edge_accuracy,
            "erl_um": sk.erl_um,
            "normalized_erl": sk.normalized_erl,
            "n_skeletons": len(sk.per_neuron),
        }
    lm = length_metrics(segmentation, gt_labels, voxel_size_um=voxel_size_um)
    result["length"] = {
        "precision": lm.precision,
        "recall": lm.recall,
        "overlapping_instances": lm.overlapping_instances,
        "wasserstein_um": lm.wasserstein_um,
        "ssmd": lm.ssmd,
        "ssmd_signed": lm.ssmd_signed,
        "n_pred": lm.n_pred,
        "n_true": lm.n_true,
        "n_matched": len(lm.matches),
        "pred_lengths_um": {str(k): v for k, v in lm.pred_lengths_um.items()},
        "true_lengths_um": {str(k): v for k, v in lm.true_lengths_um.items()},
    }
    return result


def _default_gt_swc(gt_labels: Path) -> Path | None:
    """The phantom's ``<store>_gt/skeletons`` for ``<store>.zarr/labels/<name>``, if it exists."""
    parts = gt_labels.resolve().parts
    if len(parts) >= 3 and parts[-2] == "labels":
        candidate = ground_truth_dir(Path(*parts[:-2])) / "skeletons"
        if candidate.is_dir():
            return candidate
    return None


def evaluate_run(
    segmentation: str | Path,
    gt_labels: str | Path,
    *,
    out: str | Path,
    gt_swc: str | Path | None = None,
    voxel_size_um: Sequence[float] | None = None,
) -> Path:
    """Compare a segmentation with ground-truth labels (and skeletons) and write ``out/metrics.json``.

    Both label images are read whole (they must fit in memory together). Ground-truth skeletons are
    ``gt_swc`` (a folder of ``<label>.swc`` in µm, volume frame), or by default the phantom's
    ``<store>_gt/skeletons`` when ``gt_labels`` is ``<store>.zarr/labels/<name>``.

    Raises
    ------
    InputDataError
        If an input is missing, not an integer label image, the shapes differ, or the voxel sizes
        differ (without ``voxel_size_um``).
    """
    seg = open_label_image(segmentation, what="segmentation")
    gt = open_label_image(gt_labels, what="ground-truth labels")
    if seg.spatial_shape != gt.spatial_shape:
        raise InputDataError(
            f"segmentation {segmentation} has shape {seg.spatial_shape} but ground truth {gt_labels} has "
            f"{gt.spatial_shape}; they must cover the same (z, y, x) volume"
        )
    if voxel_size_um is None and not np.allclose(seg.voxel_size_um, gt.voxel_size_um, rtol=1e-6):
        raise InputDataError(
            f"segmentation voxel size {seg.voxel_size_um} µm differs from ground truth "
            f"{gt.voxel_size_um} µm; pass --voxel-size to say which applies"
        )
    vs = _voxel_size(seg, voxel_size_um)
    truth = np.asarray(gt.array[...])
    if not truth.any():
        raise InputDataError(
            f"ground-truth labels {gt_labels} hold no objects (every voxel is 0); metrics against them are "
            "undefined: pass the label image that holds the annotated neurons"
        )
    swc_dir = Path(gt_swc) if gt_swc is not None else _default_gt_swc(Path(gt_labels))
    skeletons = list(read_swc_folder(swc_dir).values()) if swc_dir is not None else None
    metrics = evaluate_arrays(
        np.asarray(seg.array[...]), truth, voxel_size_um=vs, gt_skeletons=skeletons
    )
    metrics["inputs"] = {
        "segmentation": str(Path(segmentation).resolve()),
        "gt_labels": str(Path(gt_labels).resolve()),
        "gt_swc": str(swc_dir.resolve()) if swc_dir is not None else None,
    }
    metrics["parameters"] = {"voxel_size_um": list(vs)}
    return write_metrics_json(Path(out) / "metrics.json", metrics)


# -- report ------------------------------------------------------------------------------------------------


def _raw_for(segmentation: Path) -> Path | None:
    """The image a label group belongs to (``X.zarr`` for ``X.zarr/labels/NAME``)."""
    parts = segmentation.resolve().parts
    if len(parts) >= 3 and parts[-2] == "labels" and (Path(*parts[:-2]) / "zarr.json").is_file():
        return Path(*parts[:-2])
    return None


def _projection(seg: OmeArray, raw: OmeArray | None, slab: int = 16) -> Any:
    from pipeline.report import combine_projections, z_projection

    result = None
    for z0 in range(0, seg.spatial_shape[0], slab):
        region = (slice(z0, min(z0 + slab, seg.spatial_shape[0])), slice(None), slice(None))
        labels = np.asarray(seg.array[region])
        image = None
        if raw is not None:
            image = np.asarray(raw.array[region] if raw.axes == ("z", "y", "x") else raw.array[(0, *region)])
        part = z_projection(labels, image)
        result = part if result is None else combine_projections(result, part)
    return result


def report_run(
    run_dir: str | Path,
    *,
    segmentation: str | Path | None = None,
    raw: str | Path | None = None,
    out: str | Path | None = None,
    figures: bool = False,
) -> dict[str, Path]:
    """Write ``report.html`` and ``report.pdf`` for a run directory.

    Reads ``lengths.csv`` (required) and ``skeletonize.json``, ``metrics.json`` and ``skeletons/`` where
    present. The projection shows ``segmentation`` (default: the one recorded by ``skeletonize``) over
    ``raw`` (default: the image store a ``.../labels/NAME`` segmentation belongs to; none otherwise).

    Raises
    ------
    InputDataError
        If the run has no ``lengths.csv``, or an input image is missing or its shape differs.
    """
    from pipeline.report import ReportData, build_report, software_versions

    run = Path(run_dir)
    if not run.is_dir():
        raise InputDataError(f"run directory {run} does not exist")
    rows = read_lengths_csv(run / "lengths.csv")
    record: dict[str, Any] = {}
    if (run / _PARAMS_FILE).is_file():
        record = json.loads((run / _PARAMS_FILE).read_text())
    metrics = read_metrics_json(run / "metrics.json") if (run / "metrics.json").is_file() else None
    seg_path = (
        Path(segmentation)
        if segmentation is not None
        else (Path(record["segmentation"]) if "segmentation" in record else None)
    )
    seg = open_label_image(seg_path) if seg_path is not None else None
    raw_path = Path(raw) if raw is not None else (_raw_for(seg_path) if seg_path is not None else None)
    raw_image = open_image(raw_path) if raw_path is not None else None
    if seg is not None and raw_image is not None and raw_image.spatial_shape != seg.spatial_shape:
        raise InputDataError(
            f"raw {raw_path} has shape {raw_image.spatial_shape} but segmentation {seg_path} has "
            f"{seg.spatial_shape}; pass the raw image of this segmentation with --raw"
        )
    if "voxel_size_um" in record:
        vs = tuple(record["voxel_size_um"])
    elif seg is not None:
        vs = seg.voxel_size_um
    else:
        raise InputDataError(
            f"{run} has no {_PARAMS_FILE} and no segmentation was given; pass --segmentation"
        )
    skeletons = read_swc_folder(run / "skeletons") if (run / "skeletons").is_dir() else None
    parameters: dict[str, Any] = {k: v for k, v in record.items() if k not in ("segmentation",)}
    sources = {"segmentation": str(seg_path) if seg_path else "–", "raw": str(raw_path) if raw_path else "–"}
    if metrics:
        sources.update({f"metrics.{k}": str(v) for k, v in (metrics.get("inputs") or {}).items()})
    data = ReportData(
        title=f"neurorecon report — {run.resolve().name}",
        subtitle=str(run.resolve()),
        rows=rows,
        voxel_size_um=vs,  # type: ignore[arg-type]
        metrics=metrics,
        projection=_projection(seg, raw_image) if seg is not None else None,
        skeletons=skeletons,
        parameters=parameters,
        versions=software_versions(),
        created=_dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        sources=sources,
    )
    return write_report(Path(out) if out is not None else run, build_report(data), figures=figures)
