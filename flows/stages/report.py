"""The report stage: a run directory -> ``report.html`` (self-contained) and ``report.pdf``.

Load -> compute -> save around :mod:`pipeline.report`: reads ``lengths.csv`` (required) and
``skeletonize.json``, ``metrics.json`` and ``skeletons/`` where present, and builds the z projections of
the segmentation over its raw image slab by slab (memory bounded by a slab). When the run holds the
segmentations of a threshold sweep, the report compares them: their thresholds and numbers of segments
from the images' records, and the metrics of ``metrics.json``'s ``thresholds`` section where evaluated.
"""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import Any

import numpy as np

from flows.stages.skeletonize import read_skeletonize_record, recorded_segmentation
from pipeline.errors import InputDataError
from pipeline.io.labels import image_of_labels, open_label_image
from pipeline.io.layout import RunLayout, threshold_value
from pipeline.io.location import URL, as_location
from pipeline.io.omezarr import OmeArray, open_image, open_levels, read_provenance
from pipeline.io.report import read_metrics_json, write_report
from pipeline.io.skeletons import read_lengths_csv, read_swc_folder

__all__ = ["report_run"]

log = logging.getLogger(__name__)


def report_run(
    run_dir: str | Path,
    *,
    figures: bool,
    segmentation: str | Path | URL | None = None,
    raw: str | Path | URL | None = None,
    out: str | Path | None = None,
) -> dict[str, Path]:
    """Write ``report.html`` and ``report.pdf`` for a run directory.

    Parameters
    ----------
    run_dir : path
        The run directory (its ``lengths.csv`` is required).
    figures : bool
        Also write the figures as PNG files (``report.figures``).
    segmentation : path or URL, optional
        The label image of the projection; default the one recorded by ``skeletonize``.
    raw : path or URL, optional
        The raw image under it; default the image store a ``.../labels/NAME`` segmentation belongs to
        (none otherwise). Either may lie at a URL (:mod:`pipeline.io.location`).
    out : path, optional
        Where to write; default ``run_dir``.

    Returns what :func:`pipeline.io.report.write_report` wrote (``html``, ``pdf``, figures). Raises
    :class:`~pipeline.errors.InputDataError` if the run has no ``lengths.csv``, or an input image is
    missing or its shape differs.
    """
    from pipeline.report import ReportData, build_report, software_versions

    run = RunLayout(run_dir)
    if not run.root.is_dir():
        raise InputDataError(f"run directory {run.root} does not exist")
    rows = read_lengths_csv(run.lengths_csv)
    record = read_skeletonize_record(run.root)
    metrics = read_metrics_json(run.metrics_json) if run.metrics_json.is_file() else None
    seg_path = (as_location(segmentation) if segmentation is not None
                else recorded_segmentation(run.root, record))
    seg = open_label_image(seg_path) if seg_path is not None else None
    raw_path = (as_location(raw) if raw is not None
                else image_of_labels(seg_path) if seg_path is not None else None)
    raw_image = open_image(raw_path, setting="raw") if raw_path is not None else None
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
            f"{run.root} has no {run.skeletonize_json.name} and no segmentation was given; "
            "pass --segmentation"
        )
    skeletons = read_swc_folder(run.skeletons) if run.skeletons.is_dir() else None
    parameters: dict[str, Any] = {k: v for k, v in record.items() if k not in ("segmentation",)}
    sources = {"segmentation": str(seg_path) if seg_path else "–", "raw": str(raw_path) if raw_path else "–"}
    if metrics:
        sources.update({f"metrics.{k}": str(v) for k, v in (metrics.get("inputs") or {}).items()})
    data = ReportData(
        title=f"neurorecon report — {run.root.resolve().name}",
        subtitle=str(run.root.resolve()),
        rows=rows,
        voxel_size_um=vs,  # type: ignore[arg-type]
        metrics=metrics,
        projection=_projection(seg, raw_image) if seg is not None else None,
        skeletons=skeletons,
        parameters=parameters,
        versions=software_versions(),
        created=_dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        sources=sources,
        thresholds=_sweep_rows(run, metrics),
    )
    return write_report(Path(out) if out is not None else run.root, build_report(data), figures=figures)


def _sweep_rows(run: RunLayout, metrics: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per threshold of the run's sweep (none without one): threshold, image, number of segments
    (as the segment stage recorded them), and the metrics ``evaluate`` wrote for that threshold."""
    swept = run.swept_segmentations()
    if not swept:
        return []
    rows: dict[float, dict[str, Any]] = {}
    for path in (run.segmentation, *swept.values()):  # segmentation.zarr: unless its threshold is swept
        record = read_provenance(path)
        if "threshold" in record:
            t = threshold_value(record["threshold"])
            rows[t] = {"threshold": t, "segmentation": path.name, "n_segments": record.get("n_segments")}
    for row in (metrics or {}).get("thresholds") or []:
        t = row.get("threshold")
        if isinstance(t, int | float) and threshold_value(t) in rows:
            rows[threshold_value(t)].update({k: v for k, v in row.items() if k != "segmentation"})
    return [rows[t] for t in sorted(rows)]


#: The most (y, x) pixels of the report's projection: it is made at the finest pyramid level of at most
#: this size (a whole brain's level 0 has ~10^8.5 pixels), whatever the volume.
MAX_PROJECTION_PIXELS = 4096 * 4096
#: The most voxels read at once to make it (one tile of the chosen level).
PROJECTION_TILE_VOXELS = 2**22


def _projection(seg: OmeArray, raw: OmeArray | None) -> Any:
    """The z projection of ``seg`` (over ``raw``) at the finest pyramid level of at most
    :data:`MAX_PROJECTION_PIXELS` pixels (the coarsest there is if none), read tile by tile: memory is set
    by that image and one tile, not by the volume."""
    from pipeline.report import tiled_projection

    levels = open_levels(seg)
    level = next((i for i, a in enumerate(levels) if int(np.prod(a.shape[-2:])) <= MAX_PROJECTION_PIXELS),
                 len(levels) - 1)
    labels = levels[level]
    read_raw = None
    if raw is not None:
        raw_levels = [a for a in open_levels(raw) if tuple(a.shape[-3:]) == tuple(labels.shape)]
        if raw_levels:
            image = raw_levels[0]
            read_raw = ((lambda r: np.asarray(image[r])) if raw.axes == ("z", "y", "x")
                        else (lambda r: np.asarray(image[(0, *r)])))
        else:
            log.info("report: raw %s has no level of shape %s; the projection shows the labels alone",
                     raw.path, tuple(labels.shape))
    if level:
        log.info("report: projection made at pyramid level %d, %s voxels", level, tuple(labels.shape))
    chunks = tuple(int(c) for c in labels.chunks)
    side = max(1, int((PROJECTION_TILE_VOXELS / max(1, chunks[0])) ** 0.5))
    tile = (chunks[0], max(chunks[1], side - side % chunks[1]), max(chunks[2], side - side % chunks[2]))
    return tiled_projection(lambda r: np.asarray(labels[r]), read_raw, labels.shape, tile)
