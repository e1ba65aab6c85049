"""The evaluate stage: a segmentation against ground truth -> ``metrics.json``.

Load -> compute -> save around :func:`pipeline.metrics.evaluate.evaluate_arrays`: voxel metrics on the
label images, skeleton metrics against ground-truth SWC skeletons (with the gaps bridged), and the
length-distribution metrics. The kind of volume (``neurons`` or ``ais``) and the signal-dropout gaps come
from a phantom's ground-truth folder (``params.json``, ``dropout_gaps.csv``); other ground truth is
scored as ``neurons``, without gaps. Both label images are read whole (they must fit in memory together).

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

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flows.preflight import check_same_voxel_size, check_skeletons_in_volume
from flows.stages.skeletonize import read_skeletonize_record, recorded_segmentation
from pipeline.errors import InputDataError
from pipeline.io.labels import open_label_image, voxel_size_of
from pipeline.io.layout import RunLayout, threshold_value
from pipeline.io.location import URL, describe
from pipeline.io.omezarr import read_provenance
from pipeline.io.phantom import phantom_skeletons, read_phantom_truth
from pipeline.io.report import write_metrics_json
from pipeline.io.skeletons import read_joins_csv, read_swc_folder
from pipeline.metrics.evaluate import evaluate_arrays, sweep_row

__all__ = ["evaluate_run"]


def evaluate_run(
    segmentation: str | Path | URL,
    gt_labels: str | Path | URL,
    *,
    out: str | Path,
    min_label_nodes: int,
    gt_swc: str | Path | None = None,
    voxel_size_um: Sequence[float] | None = None,
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
    gt_swc : path, optional
        A folder of ground-truth ``<label>.swc`` (µm, volume frame); None: the phantom's
        ``<store>_gt/skeletons`` when ``gt_labels`` is a local ``<store>.zarr/labels/<name>`` and it
        exists (none beside a URL).
    voxel_size_um : sequence of 3 float, optional
        Override the segmentation's voxel size (µm, z, y, x).

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
    swc_dir = Path(gt_swc) if gt_swc is not None else phantom_skeletons(gt_labels)
    skeletons = read_swc_folder(swc_dir) if swc_dir is not None else None
    if skeletons:  # before any metric: skeletons in nm or another frame would score an ERL of 0
        check_skeletons_in_volume(skeletons, shape=seg.spatial_shape, voxel_size_um=vs,
                                  what=f"ground-truth skeletons {swc_dir}")
    truth = np.asarray(gt.array[...])
    if not truth.any():
        raise InputDataError(
            f"ground-truth labels {gt_labels} hold no objects (every voxel is 0); metrics against them are "
            "undefined: pass the label image that holds the annotated neurons"
        )
    truth_meta = read_phantom_truth(gt_labels)
    kind = truth_meta.kind if truth_meta is not None else "neurons"
    gaps = None
    if truth_meta is not None and skeletons:  # gaps on objects that have a skeleton
        gaps = [g for g in truth_meta.gaps if g.label in skeletons]
    predicted = np.asarray(seg.array[...])
    table, n_joins = _joins_of(RunLayout(out), segmentation)
    before = None
    if table:
        import fastremap

        before = evaluate_arrays(predicted, truth, voxel_size_um=vs, kind=kind, gt_skeletons=skeletons,
                                 gaps=gaps, min_label_nodes=min_label_nodes)
        predicted = fastremap.remap(predicted, table, preserve_missing_labels=True, in_place=False)
    metrics = evaluate_arrays(predicted, truth, voxel_size_um=vs, kind=kind,
                              gt_skeletons=skeletons, gaps=gaps, min_label_nodes=min_label_nodes)
    if n_joins is not None:
        metrics["joins"] = {"n_joins": n_joins, "n_pieces_joined": len(table),
                            "before": {k: before[k] for k in ("skeleton", "length") if k in before}
                            if before is not None else None}
    sweep = _sweep(RunLayout(out), segmentation, predicted)
    if sweep:
        rows = []
        for t, (name, load) in sorted(sweep.items()):
            labels = load()
            if labels.shape != truth.shape:
                raise InputDataError(f"{name} has shape {labels.shape} but ground truth {gt_labels} has "
                                     f"{truth.shape}; they must cover the same (z, y, x) volume")
            rows.append({"threshold": t, "segmentation": name,
                         **sweep_row(labels, truth, voxel_size_um=vs, gt_skeletons=skeletons,
                                     min_label_nodes=min_label_nodes)})
        metrics["thresholds"] = rows
    metrics["inputs"] = {
        "segmentation": describe(segmentation),
        "gt_labels": describe(gt_labels),
        "gt_swc": str(swc_dir.resolve()) if swc_dir is not None else None,
    }
    metrics["parameters"] = {"voxel_size_um": list(vs), "min_label_nodes": min_label_nodes}
    return write_metrics_json(RunLayout(out).metrics_json, metrics)


def _sweep(run: RunLayout, evaluated: str | Path, predicted: np.ndarray) -> dict[float, tuple[str, Any]]:
    """The segmentations of a threshold sweep in ``run`` by threshold: a name and how to read it; the
    segmentation evaluated among them (as read already) if it records a threshold of its own. Empty when
    the run holds no sweep."""
    swept = run.swept_segmentations()
    if not swept:
        return {}
    found: dict[float, tuple[str, Any]] = {
        threshold_value(t): (path.name, lambda path=path: np.asarray(open_label_image(path).array[...]))
        for t, path in swept.items()
    }
    own = read_provenance(evaluated).get("threshold")
    if own is not None and threshold_value(own) not in found:
        found[threshold_value(own)] = (Path(evaluated).name, lambda: predicted)
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
