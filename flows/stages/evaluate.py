"""The evaluate stage: a segmentation against ground truth -> ``metrics.json``.

Voxel metrics on the label images, skeleton metrics against ground-truth SWC skeletons (with the gaps
bridged), and the length-distribution metrics, as :func:`pipeline.metrics.evaluate.evaluate_arrays` gives
them on whole volumes, read block by block (:mod:`pipeline.metrics.blocks`):

1. ``evaluate`` tasks, one per block of ``evaluate.block_shape``: each reads the block of both images
   (and of every swept segmentation) and records its contingency table, the predicted labels at the
   ground-truth skeleton nodes in it, and its labels' bounding boxes;
2. ``evaluate objects`` tasks, a batch of objects each: what needs an object whole (the connected pieces
   of a predicted object that overlaps the truth; the length of an object that does not touch the volume
   border) is computed from the object's voxels, gathered from the blocks that hold it (a task holds one
   object's voxels, and for a length a byte per voxel of its bounding box).

The driver holds the summed tables (a row per pair of labels that meet) and a box per object, never a
block of voxels. The records are scratch (``state/evaluate*``): every evaluation starts them anew, and
``metrics.json`` is written anew. The kind of volume (``neurons`` or ``ais``) and the signal-dropout gaps
come from a phantom's ground-truth folder (``params.json``, ``dropout_gaps.csv``); other ground truth is
scored as ``neurons``, without gaps.

When the run directory holds the segmentations of a threshold sweep (``neurorecon segment --thresholds``),
each is compared too, in the section ``thresholds`` of ``metrics.json``: one row per threshold with the
number of segments, VOI, ARI and, with skeletons, ERL, splits and merges
(:func:`pipeline.metrics.evaluate.sweep_row`; the length metrics, which skeletonize every object, only
for the segmentation evaluated).

When the run joined pieces across gaps (``skeletonize.join``, ``joins.csv`` of this segmentation), the
segmentation is scored as joined, like its skeletons and ``lengths.csv``; the section ``joins`` gives the
number of joins and the skeleton and length metrics before them, so the joins' effect reads apart.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flows.preflight import check_same_voxel_size, check_skeletons_in_volume
from flows.stages.runner import Task, Tasks, run_blocks
from flows.stages.skeletonize import read_skeletonize_record, recorded_segmentation
from pipeline.blocks import Block, block_grid
from pipeline.errors import InputDataError
from pipeline.io.blockstate import BlockState
from pipeline.io.labels import open_label_image, voxel_size_of
from pipeline.io.layout import RunLayout, threshold_value
from pipeline.io.location import URL, describe
from pipeline.io.omezarr import open_image, read_provenance
from pipeline.io.phantom import phantom_skeletons, read_phantom_truth
from pipeline.io.report import write_metrics_json
from pipeline.io.skeletons import read_joins_csv, read_swc_folder
from pipeline.metrics.blocks import (
    BlockCounts,
    Contingency,
    NodeVoxels,
    Objects,
    assemble,
    block_counts,
    merge_contingency,
    node_voxels,
    object_summary,
    objects_of,
    sweep_row_of,
)
from pipeline.skeleton.plan import BlockLabels, LabelStatistics, block_labels, label_statistics

__all__ = ["evaluate_run"]


#: Objects per ``evaluate objects`` task (each object is read and measured alone).
OBJECTS_PER_TASK = 500

_STATE_FORMAT = 1
_NODES = "nodes"  # the stage record of the skeleton nodes' voxels


@dataclass(frozen=True)
class _View:
    """A segmentation scored: ``path`` relabelled by ``table`` (the joins), ``full`` (every section) or a
    sweep row."""

    path: str
    table: dict[int, int] | None
    full: bool


def evaluate_run(
    segmentation: str | Path | URL,
    gt_labels: str | Path | URL,
    *,
    out: str | Path,
    min_label_nodes: int,
    dust_threshold_um3: float,
    gt_swc: str | Path | None = None,
    voxel_size_um: Sequence[float] | None = None,
    block_shape: Sequence[int],
    max_retries: int,
    client: Any = None,
    cluster: Callable[[], AbstractContextManager[Any]] | None = None,
    progress: bool = False,
) -> Path:
    """Compare a segmentation with ground-truth labels (and skeletons) and write ``out/metrics.json``.

    Parameters
    ----------
    segmentation, gt_labels : path or URL
        OME-Zarr label images of the same (z, y, x) volume, local or at URLs
        (:mod:`pipeline.io.location`).
    out : path
        Run directory.
    min_label_nodes : int
        Skeleton nodes a predicted label must cover to count on a ground-truth skeleton
        (``evaluate.min_label_nodes``).
    dust_threshold_um3 : float
        Labels of at most this total volume, µm³, are not objects of the length metrics, in either image:
        ``skeletonize`` drops them (``skeletonize.dust_threshold_um3``), so the metrics score the objects a
        run reports (:func:`pipeline.metrics.blocks.objects_of`).
    gt_swc : path, optional
        A folder of ground-truth ``<label>.swc`` (µm, volume frame); None: the phantom's
        ``<store>_gt/skeletons`` when ``gt_labels`` is a local ``<store>.zarr/labels/<name>`` and it
        exists (none beside a URL).
    voxel_size_um : sequence of 3 float, optional
        Override the segmentation's voxel size (µm, z, y, x).
    block_shape : sequence of 3 int
        Region read per block, voxels (``evaluate.block_shape``; clipped to the volume).
    client : distributed.Client, optional
        Dask client; serial in this process if None (and no ``cluster``).
    cluster : callable, optional
        Starts a Dask client (a context manager) once the inputs are checked, for the blocks: a command
        that owns its cluster refuses bad input before starting one.
    max_retries : int
        Extra attempts per failed block (``dask.max_retries``).
    progress : bool
        Show the blocks' progress.

    Returns
    -------
    Path
        The ``metrics.json`` written.

    Raises
    ------
    InputDataError
        If an input is missing, not an integer label image, the shapes differ, the voxel sizes differ
        (without ``voxel_size_um``), the ground truth holds no object, or most ground-truth skeleton
        nodes lie outside the volume (SWC coordinates in nm rather than µm, or in another frame).
    BlockFailure
        If blocks still fail after their retries.
    """
    seg = open_label_image(segmentation, what="segmentation")
    gt = open_label_image(gt_labels, what="ground-truth labels")
    if seg.spatial_shape != gt.spatial_shape:
        raise InputDataError(
            f"segmentation {segmentation} has shape {seg.spatial_shape} but ground truth {gt_labels} has "
            f"{gt.spatial_shape}; they must cover the same (z, y, x) volume"
        )
    if voxel_size_um is None:
        check_same_voxel_size(gt, seg, truth_what="ground-truth labels", image_what="segmentation",
                              fix=" (or pass --voxel-size to say which applies)")
    vs = voxel_size_of(seg, voxel_size_um)
    shape = tuple(int(n) for n in seg.spatial_shape)
    swc_dir = Path(gt_swc) if gt_swc is not None else phantom_skeletons(gt_labels)
    skeletons = read_swc_folder(swc_dir) if swc_dir is not None else None
    if skeletons:  # before any metric: skeletons in nm or another frame would score an ERL of 0
        check_skeletons_in_volume(skeletons, shape=shape, voxel_size_um=vs,
                                  what=f"ground-truth skeletons {swc_dir}")
    truth_meta = read_phantom_truth(gt_labels)
    kind = truth_meta.kind if truth_meta is not None else "neurons"
    gaps = None
    if truth_meta is not None and skeletons:  # gaps on objects that have a skeleton
        gaps = [g for g in truth_meta.gaps if g.label in skeletons]
    run = RunLayout(out)
    table, n_joins = _joins_of(run, segmentation)
    views = [_View(str(segmentation), table or None, True)]
    if table:  # the skeleton and length metrics before the joins
        views.append(_View(str(segmentation), None, True))
    sweep = _sweep(run, segmentation)
    for path in (p for _, p in sorted(sweep.items()) if p is not None):
        swept = open_label_image(path).spatial_shape
        if swept != gt.spatial_shape:
            raise InputDataError(f"{path.name} has shape {swept} but ground truth {gt_labels} has "
                                 f"{gt.spatial_shape}; they must cover the same (z, y, x) volume")
        views.append(_View(str(path), None, False))

    node_dtype = np.uint64 if seg.array.dtype == np.uint64 else np.int64  # as sample_at gives the labels
    with cluster() if cluster is not None else contextlib.nullcontext(client) as dask:
        return _evaluate(run, views, sweep, segmentation, gt_labels, skeletons=skeletons, gaps=gaps,
                         kind=kind, voxel_size_um=vs, shape=shape, node_dtype=node_dtype, swc_dir=swc_dir,
                         n_joins=n_joins, table=table, dust_threshold_um3=dust_threshold_um3,
                         min_label_nodes=min_label_nodes, block_shape=block_shape, client=dask,
                         max_retries=max_retries, progress=progress)


def _evaluate(
    run: RunLayout, views: list[_View], sweep: dict[float, Path | None], segmentation: str | Path | URL,
    gt_labels: str | Path | URL, *, skeletons: dict[int, Any] | None, gaps: list[Any] | None, kind: str,
    voxel_size_um: tuple[float, ...], shape: tuple[int, ...], node_dtype: Any, swc_dir: Path | None,
    n_joins: int | None, table: dict[int, int], dust_threshold_um3: float, min_label_nodes: int,
    block_shape: Sequence[int], client: Any, max_retries: int, progress: bool,
) -> Path:
    """The two passes of :func:`evaluate_run` once its inputs are checked, and ``metrics.json``."""
    vs = voxel_size_um
    nodes = node_voxels(skeletons, shape, voxel_size_um=vs)
    grid = block_grid(shape, block_shape=tuple(min(int(b), n) for b, n in zip(block_shape, shape,
                                                                            strict=True)))
    state = BlockState(run.state, "evaluate")
    state.check_params({"state_format": _STATE_FORMAT}, reset=True)  # scratch: every evaluation anew
    state.save_records(_NODES, nodes=nodes)
    run_blocks(
        "evaluate", grid,
        functools.partial(_block_task, views=tuple(views), truth=str(gt_labels), state_root=str(run.state)),
        state=state, client=client, max_retries=max_retries, progress=progress,
        memory_hint="use a smaller evaluate.block_shape, or raise dask.memory_limit",
    ).raise_if_failed()

    tables = [merge_contingency(_records(state, grid, f"v{i}.table", Contingency)) for i in range(len(views))]
    if not np.any(tables[0].true != 0):
        raise InputDataError(
            f"ground-truth labels {gt_labels} hold no objects (every voxel is 0); metrics against them are "
            "undefined: pass the label image that holds the annotated neurons"
        )
    node_labels = [_node_labels(state, grid, i, len(nodes.voxels), node_dtype) for i in range(len(views))]
    truth_stats = label_statistics(_records(state, grid, "truth", BlockLabels), volume_shape=shape)
    pred_stats = {i: label_statistics(_records(state, grid, f"b{i}", BlockLabels), volume_shape=shape)
                  for i, v in enumerate(views) if v.full}
    objects = {i: objects_of(tables[i], voxel_size_um=vs, dust_threshold_um3=dust_threshold_um3)
               for i, v in enumerate(views) if v.full}  # the views scored whole (not the sweep's)
    lengths, pieces = _objects(run, views, pred_stats, truth_stats, tables, objects, truth=str(gt_labels),
                               shape=shape, block_shape=tuple(grid.block_shape), voxel_size_um=vs,
                               client=client, max_retries=max_retries, progress=progress)

    def scored(i: int) -> dict[str, Any]:
        return assemble(tables[i], kind=kind, voxel_size_um=vs, volume_shape=shape, gt_skeletons=skeletons,
                        node_labels=node_labels[i] if skeletons else None, nodes=nodes, gaps=gaps,
                        min_label_nodes=min_label_nodes, pred_lengths_um=lengths[i],
                        true_lengths_um=lengths[-1], piece_overlaps=pieces[i], objects=objects[i])

    metrics = scored(0)
    if n_joins is not None:
        before = scored(1) if table else None
        metrics["joins"] = {"n_joins": n_joins, "n_pieces_joined": len(table),
                            "before": {k: before[k] for k in ("skeleton", "length") if k in before}
                            if before is not None else None}
    if sweep:
        rows = []
        for t, path in sorted(sweep.items()):
            i = next(k for k, v in enumerate(views) if not v.full and v.path == str(path)) if path else 0
            rows.append({"threshold": t, "segmentation": Path(path if path else segmentation).name,
                         **sweep_row_of(tables[i], gt_skeletons=skeletons, nodes=nodes,
                                        node_labels=node_labels[i] if skeletons else None,
                                        min_label_nodes=min_label_nodes)})
        metrics["thresholds"] = rows
    metrics["inputs"] = {
        "segmentation": describe(segmentation),
        "gt_labels": describe(gt_labels),
        "gt_swc": str(swc_dir.resolve()) if swc_dir is not None else None,
    }
    metrics["parameters"] = {"voxel_size_um": list(vs), "min_label_nodes": min_label_nodes,
                             "dust_threshold_um3": float(dust_threshold_um3),
                             "block_shape": [int(b) for b in grid.block_shape]}
    return write_metrics_json(run.metrics_json, metrics)


def _records(state: BlockState, grid: Any, name: str, cls: type) -> Iterator[Any]:
    """Each block's record ``name``, one at a time."""
    for block in grid:
        yield state.load_record(block.id, cls, name)


def _node_labels(state: BlockState, grid: Any, view: int, n: int, dtype: Any) -> np.ndarray:
    """The predicted label of view ``view`` at every skeleton node, gathered from the blocks."""
    labels = np.zeros(n, dtype=dtype)
    for block in grid:
        counts = state.load_record(block.id, BlockCounts, f"v{view}")
        labels[counts.node_index] = counts.node_labels
    return labels


def _read(path: str, region: tuple[slice, ...], table: dict[int, int] | None) -> np.ndarray:
    """A region of a label image, relabelled by ``table`` (the joins)."""
    labels = np.asarray(open_image(path).array[region])
    if table:
        import fastremap

        labels = fastremap.remap(labels, table, preserve_missing_labels=True, in_place=False)
    return labels


def _block_task(block: Block, *, views: tuple[_View, ...], truth: str, state_root: str) -> dict[str, Any]:
    state = BlockState(state_root, "evaluate")
    nodes = state.load_record(_NODES, NodeVoxels, "nodes")
    true = np.asarray(open_image(truth).array[block.write])
    origin = [s.start for s in block.write]
    records: dict[str, Any] = {"truth": block_labels(true, block=block)}
    read: dict[str, np.ndarray] = {}
    for i, view in enumerate(views):
        if view.path not in read:
            read = {view.path: np.asarray(open_image(view.path).array[block.write])}  # one image at a time
        pred = read[view.path]
        if view.table:
            import fastremap

            pred = fastremap.remap(pred, view.table, preserve_missing_labels=True, in_place=False)
        records[f"v{i}"] = block_counts(pred, true, origin=origin, nodes=nodes)
        if view.full:
            records[f"b{i}"] = block_labels(pred, block=block)
    state.save_records(block.id, **records)
    return {"n_pairs": int(len(records["v0"].table.counts))}


def _objects(
    run: RunLayout, views: list[_View], pred_stats: dict[int, LabelStatistics], truth_stats: LabelStatistics,
    tables: list[Contingency], objects: dict[int, Objects], *, truth: str, shape: tuple[int, ...],
    block_shape: tuple[int, ...], voxel_size_um: tuple[float, ...], client: Any, max_retries: int,
    progress: bool,
) -> tuple[list[dict[int, float]], list[np.ndarray]]:
    """Lengths (per view, the truth's last) and piece overlaps (per view) of the objects that are not dust
    (``objects``, per view scored whole), by object tasks."""
    jobs: list[tuple[int, int, tuple[int, ...], tuple[int, ...], bool, bool]] = []
    for i, stats in pred_stats.items():
        t = tables[i]
        overlapping = set(np.unique(t.pred[(t.pred != 0) & (t.true != 0)]).tolist())
        kept = set(objects[i].pred.tolist())
        for label, (lo, hi) in stats.boxes.items():
            interior = label not in stats.border_labels
            if label in kept and (interior or label in overlapping):
                jobs.append((i, label, lo, hi, interior, label in overlapping))
    true_kept = set(objects[0].true.tolist())
    for label, (lo, hi) in truth_stats.boxes.items():
        if label not in truth_stats.border_labels and label in true_kept:
            jobs.append((-1, label, lo, hi, True, False))
    state = BlockState(run.state, "evaluate_objects")
    state.check_params({"state_format": _STATE_FORMAT}, reset=True)
    n_tasks = -(-len(jobs) // OBJECTS_PER_TASK)
    for k in range(n_tasks):
        part = jobs[k * OBJECTS_PER_TASK:(k + 1) * OBJECTS_PER_TASK]
        state.save_records(
            f"jobs-{k}", view=np.array([j[0] for j in part], np.int64),
            label=np.array([j[1] for j in part], np.uint64), start=np.array([j[2] for j in part], np.int64),
            stop=np.array([j[3] for j in part], np.int64), length=np.array([j[4] for j in part], bool),
            pieces=np.array([j[5] for j in part], bool))
    run_blocks(
        "evaluate objects", Tasks(n_tasks),
        functools.partial(_objects_task, views=tuple(views), truth=truth, state_root=str(run.state),
                          shape=shape, block_shape=block_shape, voxel_size_um=voxel_size_um),
        state=state, client=client, max_retries=max_retries, progress=progress, unit="task",
        memory_hint="an object is held whole (its voxels; with a length, a byte per voxel of its box): "
                    "raise dask.memory_limit",
    ).raise_if_failed()
    lengths: list[dict[int, float]] = [{} for _ in range(len(views) + 1)]
    pieces: list[list[np.ndarray]] = [[] for _ in views]
    for k in range(n_tasks):
        view = state.load_record(k, np.ndarray, "view")
        label = state.load_record(k, np.ndarray, "label")
        length = state.load_record(k, np.ndarray, "length_um")
        for v, lab, ln in zip(view.tolist(), label.tolist(), length.tolist(), strict=True):
            if not np.isnan(ln):
                lengths[v][int(lab)] = float(ln)
        rows = state.load_record(k, np.ndarray, "pieces")
        row_view = state.load_record(k, np.ndarray, "piece_view")
        for v in np.unique(row_view).tolist():
            pieces[v].append(rows[row_view == v])
    return lengths, [np.concatenate(p) if p else np.zeros((0, 3), np.int64) for p in pieces]


_JOB_FIELDS = ("view", "label", "start", "stop", "length", "pieces")


def _objects_task(
    task: Task, *, views: tuple[_View, ...], truth: str, state_root: str, shape: tuple[int, ...],
    block_shape: tuple[int, ...], voxel_size_um: tuple[float, ...],
) -> dict[str, Any]:
    state = BlockState(state_root, "evaluate_objects")
    blocks = BlockState(state_root, "evaluate")
    grid = block_grid(shape, block_shape=block_shape)
    job = {name: state.load_record(f"jobs-{task.id}", np.ndarray, name) for name in _JOB_FIELDS}

    @functools.lru_cache(maxsize=2)
    def read(path: str, table_of: int, block_id: int) -> np.ndarray:
        return _read(path, grid[block_id].write, views[table_of].table if table_of >= 0 else None)

    lengths, rows, row_views = [], [], []
    for v, label, lo, hi, length, pieces in zip(*(job[n].tolist() for n in _JOB_FIELDS), strict=True):
        path, record = (truth, "truth") if v < 0 else (views[v].path, f"b{v}")
        raster, values = [], []
        for block_id in _blocks_in(grid, lo, hi):  # the object's voxels, from the blocks that hold it
            held = blocks.load_record(block_id, BlockLabels, record).labels
            at = np.searchsorted(held, np.uint64(label))
            if at == len(held) or held[at] != label:
                continue
            block = grid[block_id]
            where = np.nonzero(read(path, v, block_id) == np.uint64(label))
            origin = [s.start for s in block.write]
            raster.append(np.ravel_multi_index(tuple(w + o for w, o in zip(where, origin, strict=True)),
                                               shape))
            if pieces:
                values.append(read(truth, -1, block_id)[where])
        order = np.argsort(np.concatenate(raster))
        summary = object_summary(
            np.concatenate(raster)[order], label, volume_shape=shape, voxel_size_um=voxel_size_um,
            length=bool(length), true_values=np.concatenate(values)[order] if pieces else None)
        lengths.append(np.nan if summary.length_um is None else summary.length_um)
        rows.append(summary.pieces.astype(np.uint64))
        row_views.append(np.full(len(summary.pieces), v, np.int64))
    state.save_records(
        task.id, view=job["view"], label=job["label"].astype(np.uint64),
        length_um=np.array(lengths, np.float64),
        pieces=np.concatenate(rows).reshape(-1, 3) if rows else np.zeros((0, 3), np.uint64),
        piece_view=np.concatenate(row_views) if row_views else np.zeros(0, np.int64))
    return {"n_objects": len(lengths)}


def _blocks_in(grid: Any, lo: Sequence[int], hi: Sequence[int]) -> list[int]:
    """Ids of the blocks of ``grid`` that meet the box ``[lo, hi)``."""
    ranges = [range(a // b, (c - 1) // b + 1) for a, c, b in zip(lo, hi, grid.block_shape, strict=True)]
    return [int(np.ravel_multi_index(i, grid.shape)) for i in itertools.product(*ranges)]


def _sweep(run: RunLayout, evaluated: str | Path | URL) -> dict[float, Path | None]:
    """The segmentations of a threshold sweep in ``run`` by threshold; None for the segmentation evaluated
    (scored as evaluated, joins included) if it records a threshold of its own that the sweep lacks. Empty
    when the run holds no sweep."""
    swept = run.swept_segmentations()
    if not swept:
        return {}
    found: dict[float, Path | None] = {threshold_value(t): path for t, path in swept.items()}
    own = read_provenance(evaluated).get("threshold")
    if own is not None and threshold_value(own) not in found:
        found[threshold_value(own)] = None
    return found


def _joins_of(run: RunLayout, segmentation: str | Path | URL) -> tuple[dict[int, int], int | None]:
    """The relabelling of the joins a run made on ``segmentation`` (``joins.csv``) and their number; an
    empty table and None where it made none (or joined another segmentation)."""
    if not run.joins_csv.is_file():
        return {}, None
    record = read_skeletonize_record(run.root)
    named = recorded_segmentation(run.root, record)
    if record.get("join") is None or named is None or describe(named) != describe(segmentation):
        return {}, None
    return read_joins_csv(run.joins_csv), int(record.get("n_joins", 0))
