"""Write a light-sheet phantom to disk: OME-Zarr image + labels, ground-truth skeletons and tables.

Layout for ``write_phantom("run/volume.zarr", params)``::

    run/volume.zarr/                      OME-Zarr 0.5 image: raw, uint16, (z, y, x), µm scale, with a
                                          pyramid (lower levels by the mean, :mod:`pipeline.io.pyramid`)
    run/volume.zarr/labels/ground_truth/  instance labels, uint32 (0 = background): one per neuron
                                          (neurons kind, SWC files) or per AIS (ais kind); pyramid by
                                          the mode
    run/volume_gt/skeletons/<label>.swc   ground-truth skeleton of each object, µm, volume frame
                                          (SWC types 1 soma, 2 axon, 3 dendrite)
    run/volume_gt/lengths.csv             label, kind, cable_length_um, path_length_um, n_nodes,
                                          touches_border
    run/volume_gt/ais.csv                 one row per object with an AIS in the volume: label, AIS start
                                          and end as path distance along the axon from the soma surface
                                          (µm), length, start and end positions (µm), clipped,
                                          soma_in_volume
    run/volume_gt/dropout_gaps.csv        one row per dropout gap: gap, label (the neuron's, the AIS's or
                                          the SWC file's), kind, length, start and end (µm)
    run/volume_gt/params.json             the parameters used (``kind`` included)
    run/volume_gt/COMPLETE                written last: its presence means the whole phantom is on disk

Finding things on the skeletons: the start and end of every dropout gap, and of every AIS, are nodes
of that label's SWC skeleton (to the 6 decimals of the SWC file), so "the skeleton nodes just before
and after a gap" are the nodes at ``start_*_um`` and ``end_*_um``, and the nodes between them (the
path joining them in the tree) are the dark stretch.

The image is written block by block (one block per chunk of ``params.chunks``), so volumes larger than
memory are fine; each block is rendered independently (see :mod:`pipeline.synth.render`). The lower
levels of the pyramids are then made block by block from level 0
(:func:`pipeline.io.pyramid.build_pyramid`). A run that stops half way leaves no ``COMPLETE`` marker;
:func:`phantom_complete` tells the two apart.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from pipeline.blocks import block_grid
from pipeline.errors import InputDataError, OutputError
from pipeline.io.atomic import atomic_file, write_atomic
from pipeline.io.diskspace import write_error
from pipeline.io.labels import image_of_labels
from pipeline.io.location import URL, is_url
from pipeline.io.omezarr import create_image, create_labels, write_region
from pipeline.io.pyramid import build_pyramid
from pipeline.io.swc import read_swc, write_swc
from pipeline.synth import (
    AIS_COLUMNS,
    LENGTHS_COLUMNS,
    DropoutGap,
    PhantomParams,
    ais_table,
    border_labels,
    generate_phantom,
    lengths_table,
    render_region,
)

__all__ = [
    "AIS_COLUMNS",
    "GAPS_COLUMNS",
    "PhantomResult",
    "ground_truth_dir",
    "GapRecord",
    "PhantomTruth",
    "phantom_complete",
    "phantom_skeletons",
    "read_phantom_truth",
    "write_phantom",
]

log = logging.getLogger(__name__)

#: Columns of ``dropout_gaps.csv``: gap index, the label it lies on, that object's kind, its length
#: along the centreline and its start and end (skeleton nodes of that label), µm.
GAPS_COLUMNS = (
    "gap", "label", "kind", "length_um",
    "start_z_um", "start_y_um", "start_x_um", "end_z_um", "end_y_um", "end_x_um",
)

LABELS_NAME = "ground_truth"
COMPLETE_MARKER = "COMPLETE"


@dataclass(frozen=True)
class PhantomResult:
    """What :func:`write_phantom` wrote.

    Attributes
    ----------
    store : Path
        The OME-Zarr store (raw image; labels under ``labels/ground_truth``).
    gt_dir : Path
        The ground-truth folder ``<store without .zarr>_gt``.
    skeleton_dir : Path
        Folder of ``<label>.swc`` files, µm.
    lengths_csv : Path
        Table of true lengths (:data:`pipeline.synth.LENGTHS_COLUMNS`).
    gaps_csv : Path
        Table of dropout gaps (:data:`GAPS_COLUMNS`).
    ais_csv : Path
        Table of AIS positions (:data:`AIS_COLUMNS`).
    kind : str
        ``"neurons"`` or ``"ais"``.
    n_objects : int
        Number of objects (labels) in the phantom.
    gaps : tuple of DropoutGap
        The dropout gaps, with their centreline paths.
    """

    store: Path
    gt_dir: Path
    skeleton_dir: Path
    lengths_csv: Path
    gaps_csv: Path
    n_objects: int
    gaps: tuple[DropoutGap, ...]
    ais_csv: Path | None = None
    kind: str = "neurons"


def ground_truth_dir(store: str | Path) -> Path:
    """``<store without .zarr>_gt`` beside the store."""
    store = Path(store)
    stem = store.name[: -len(".zarr")] if store.name.endswith(".zarr") else store.name
    return store.with_name(stem + "_gt")


def phantom_skeletons(gt_labels: str | Path | URL) -> Path | None:
    """The phantom's ``<store>_gt/skeletons`` for its label image ``<store>.zarr/labels/<name>``, if it
    exists. None for a label image at a URL: its skeletons are named by ``evaluate.gt_swc``."""
    if is_url(gt_labels):
        return None
    store = image_of_labels(gt_labels)
    if not isinstance(store, Path):
        return None
    candidate = ground_truth_dir(store) / "skeletons"
    return candidate if candidate.is_dir() else None


@dataclass(frozen=True)
class GapRecord:
    """One row of ``dropout_gaps.csv``: the label it lies on and its two ends on that skeleton (µm)."""

    label: int
    start_um: tuple[float, float, float]
    end_um: tuple[float, float, float]
    length_um: float


@dataclass(frozen=True)
class PhantomTruth:
    """What a phantom's ground-truth folder says beyond labels and skeletons.

    Attributes
    ----------
    kind : str
        ``"neurons"`` or ``"ais"`` (``params.json``).
    gaps : tuple of GapRecord
        The signal-dropout gaps (``dropout_gaps.csv``).
    """

    kind: str
    gaps: tuple[GapRecord, ...]


def read_phantom_truth(gt_labels: str | Path | URL) -> PhantomTruth | None:
    """The kind and dropout gaps of the phantom whose label image is ``gt_labels``; None if it is no phantom
    or lies at a URL (no ground-truth folder is looked for beside a remote store).

    Raises
    ------
    InputDataError
        If the phantom's ``params.json`` or ``dropout_gaps.csv`` is unreadable or malformed.
    """
    store = None if is_url(gt_labels) else image_of_labels(gt_labels)
    gt_dir = ground_truth_dir(store) if isinstance(store, Path) else None
    if gt_dir is None or not (gt_dir / "params.json").is_file():
        return None
    try:
        kind = str(json.loads((gt_dir / "params.json").read_text(encoding="utf-8")).get("kind", "neurons"))
        gaps = []
        gaps_csv = gt_dir / "dropout_gaps.csv"
        if gaps_csv.is_file():
            with gaps_csv.open(newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    gaps.append(GapRecord(
                        label=int(row["label"]),
                        start_um=tuple(float(row[f"start_{a}_um"]) for a in "zyx"),  # type: ignore[arg-type]
                        end_um=tuple(float(row[f"end_{a}_um"]) for a in "zyx"),  # type: ignore[arg-type]
                        length_um=float(row["length_um"]),
                    ))
    except (OSError, ValueError, KeyError) as exc:
        raise InputDataError(f"ground-truth folder {gt_dir} is damaged: {exc}; regenerate it with "
                             "`neurorecon synth --overwrite`") from None
    return PhantomTruth(kind=kind, gaps=tuple(gaps))


def phantom_complete(store: str | Path) -> bool:
    """Whether a phantom was completely written at ``store`` (its ``_gt/COMPLETE`` marker exists)."""
    return (ground_truth_dir(store) / COMPLETE_MARKER).is_file()


def write_phantom(
    path: str | Path, params: PhantomParams, *, overwrite: bool = False, progress: bool = True
) -> PhantomResult:
    """Generate a phantom and write it: OME-Zarr raw + labels, SWC skeletons, lengths, AIS and gaps tables.

    Parameters
    ----------
    path : str or Path
        The OME-Zarr store to create (conventionally ``something.zarr``); the ground truth goes to
        ``<path without .zarr>_gt/``.
    params : PhantomParams
        Phantom parameters; ``params.swc_files`` are read here when set.
    overwrite : bool
        Replace an existing store and ground-truth folder.
    progress : bool
        Show a progress bar over blocks.

    Returns
    -------
    PhantomResult

    Raises
    ------
    TypeError
        If ``params`` is not a PhantomParams.
    OutputError
        If the store or its ground-truth folder exists and ``overwrite`` is False, or cannot be written.
    InputDataError
        If an SWC file is missing or malformed.
    ConfigError
        If the parameters cannot be realised (e.g. too many somata for the volume).

    Notes
    -----
    The ``COMPLETE`` marker is removed first and written last, after every block, skeleton and
    table, so an interrupted run never looks complete.

    Examples
    --------
    >>> from pipeline.synth import PhantomParams
    >>> result = write_phantom("runs/demo/volume.zarr", PhantomParams(seed=1))  # doctest: +SKIP
    >>> result.kind, result.n_objects  # doctest: +SKIP
    ('neurons', 6)
    """
    if not isinstance(params, PhantomParams):
        raise TypeError(f"params must be a PhantomParams; got {type(params).__name__}")
    store = Path(path)
    gt_dir = ground_truth_dir(store)
    existing = [p for p in (store, gt_dir) if p.exists()]
    if existing and not overwrite:
        raise OutputError(
            f"{existing[0]} already exists; pass overwrite=True (CLI: --overwrite) to replace the phantom, "
            "or choose another output path"
        )
    graphs = _read_swc_files(params) if params.swc_files else None
    phantom = generate_phantom(params, swc_graphs=graphs)
    if phantom.n_objects == 0:
        log.warning(
            "the phantom has no objects (neurons kind: n_neurons, n_ais and n_passing_axons 0, or no SWC "
            "skeleton reaches the crop; ais kind: ais.density_per_mm3 too low)"
        )

    if gt_dir.exists():
        (gt_dir / COMPLETE_MARKER).unlink(missing_ok=True)
        try:
            shutil.rmtree(gt_dir)
        except OSError as exc:
            raise OutputError(f"cannot remove the existing ground-truth folder {gt_dir}: {exc}") from None
    chunks = params.effective_chunks
    raw_arr = create_image(
        store, shape=params.shape, dtype="uint16", chunks=chunks, voxel_size_um=params.voxel_size_um,
        name="raw", overwrite=overwrite, pyramid="mean",
    )
    lab_arr = create_labels(store, LABELS_NAME, dtype="uint32", chunks=chunks, overwrite=overwrite,
                            pyramid=True)
    touching: set[int] = set()
    blocks = block_grid(params.shape, block_shape=chunks)
    for grid_block in tqdm(blocks, desc="phantom blocks", unit="block", disable=not progress):
        region = grid_block.write
        block = render_region(phantom, region)
        write_region(raw_arr, region, block.raw)
        write_region(lab_arr, region, block.labels)
        touching.update(int(x) for x in border_labels(block.labels, region, params.shape))
    try:
        build_pyramid(store)  # the lower levels, from the complete level 0
        build_pyramid(store / "labels" / LABELS_NAME)
    except OSError as exc:
        raise write_error(f"cannot write the pyramid of {store}", exc, store) from None

    skeleton_dir = gt_dir / "skeletons"
    try:
        skeleton_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(f"cannot create {skeleton_dir}", exc, skeleton_dir) from None
    frame = ", ".join(f"{x:.6f}" for x in phantom.origin_um)
    for obj in phantom.objects:
        write_swc(
            skeleton_dir / f"{obj.label}.swc",
            obj.skeleton,
            comments=(
                f"neurorecon phantom ground truth ({phantom.kind} kind): label {obj.label}, kind {obj.kind}, "
                f"name {obj.name or '-'}",
                "coordinates: volume frame, voxel (i, j, k) centre at (i, j, k) * voxel_size_um",
                f"voxel (0, 0, 0) centre in the source frame (z, y, x) um: {frame}",
            ),
        )
    lengths_csv = gt_dir / "lengths.csv"
    _write_csv(
        lengths_csv, LENGTHS_COLUMNS,
        [_format_row(astuple(row)) for row in lengths_table(phantom, border_labels=touching)],
    )
    ais_csv = gt_dir / "ais.csv"
    _write_csv(ais_csv, AIS_COLUMNS, [_format_row(astuple(row)) for row in ais_table(phantom)])
    gaps_csv = gt_dir / "dropout_gaps.csv"
    _write_csv(
        gaps_csv, GAPS_COLUMNS,
        [
            _format_row((i, g.label, g.kind, g.length_um, *g.start_um, *g.end_um))
            for i, g in enumerate(phantom.gaps)
        ],
    )
    try:
        write_atomic(gt_dir / "params.json", params.model_dump_json(indent=2))
        write_atomic(
            gt_dir / COMPLETE_MARKER,
            json.dumps(
                {
                    "store": str(store), "kind": phantom.kind, "n_objects": phantom.n_objects,
                    "n_gaps": len(phantom.gaps),
                }
            )
            + "\n",
        )
    except OSError as exc:
        raise write_error(f"cannot write to {gt_dir}", exc, gt_dir) from None
    return PhantomResult(
        store=store, gt_dir=gt_dir, skeleton_dir=skeleton_dir, lengths_csv=lengths_csv, gaps_csv=gaps_csv,
        n_objects=phantom.n_objects, gaps=phantom.gaps, ais_csv=ais_csv, kind=phantom.kind,
    )


def _read_swc_files(params: PhantomParams) -> list:
    graphs = []
    for i, path in enumerate(params.swc_files):
        try:
            graph = read_swc(path)
        except InputDataError as exc:
            raise InputDataError(f"swc_files[{i}]: {exc}") from None
        if graph.number_of_nodes() == 0:
            raise InputDataError(f"swc_files[{i}]: SWC file {path} has no nodes")
        graphs.append(graph)
    return graphs


def _format_row(values: tuple) -> list[str]:
    out = []
    for v in values:
        if isinstance(v, bool | np.bool_):
            out.append("True" if v else "False")
        elif isinstance(v, float | np.floating):
            out.append(f"{float(v):.6f}")
        else:
            out.append(str(v))
    return out


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[list[str]]) -> None:
    try:
        with atomic_file(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            writer.writerows(rows)
    except OSError as exc:
        raise write_error(f"cannot write {path}", exc, path) from None
