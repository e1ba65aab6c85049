"""The segment stage: an OME-Zarr affinity volume -> fragments -> segmentation(s), block by block on Dask.

Load -> compute -> save per block, around the compute of :mod:`pipeline.segment.blockwise` (the same
functions :func:`pipeline.segment.segment_blockwise` runs serially in memory). Stages:

1. ``blocks``: one waterz call per block (read region = write region + halo) -> ``fragments`` and the
   block's region graph: scored fragment pairs and lower-face decisions (a
   :class:`~pipeline.segment.blockwise.BlockDecisions` record in ``<state>/blocks/<id>.npz``), from
   waterz's merge history recorded once up to ``max_threshold`` (``segment.max_threshold``);
2. ``faces``: the scored fragment pairs across each block's lower faces (``faces/<id>.npz``), from the
   face planes stage 1 saved for the block and its lower neighbours (no volume reads);
3. ``union`` at a threshold: connected components of the pairs scored below it, level by level over an
   octree of blocks (:mod:`flows.stages.union`, :mod:`pipeline.segment.union`): block and node tasks in
   ``<state>/union_t<threshold>/``, each holding one block or one node's boundary, never the volume's
   fragments; segments are numbered in raster order of their first voxel, so the ids do not depend on the
   blocks (they equal :func:`~pipeline.segment.agglomerate.union_lut`'s over the whole graph);
4. ``relabel``: a segmentation = lut[fragments] (state ``relabel`` for ``segmentation_out``,
   ``relabel_t<threshold>`` for each segmentation of a sweep). Each task builds its own block's table
   from the union's records (:func:`~flows.stages.union.block_lut`): its memory is set by the block, not
   by the volume's number of fragments;
5. ``pyramid``: the lower resolutions of ``fragments`` and of each segmentation (mode of each window),
   level by level from the complete level 0 (:mod:`flows.stages.pyramid`).

Stages 1 and 2 do not depend on the threshold (up to ``max_threshold``): a sweep (``sweep``: one more
segmentation per threshold) or a rerun with another threshold runs only stages 3 to 5, and gives the
segmentation a fresh run at that threshold gives, bit for bit. Each threshold's union and relabel keep
their own state, so they resume independently; ``segmentation_out`` is relabelled again when the
threshold asked for it changes.

Outputs are standalone OME-Zarr label images (uint64, z/y/x, µm, with pyramids): ``fragments`` and the
segmentations, whose ``image-label.source.image`` is the raw image they lie on, relative to them, and
whose ``neurorecon`` attribute says how they were made (model, background threshold, affinities,
neurorecon's version) and, once written, the segmentation's threshold and number of segments
(:func:`~pipeline.io.omezarr.read_provenance`); the input volumes are never written to. A rerun skips
the finished blocks of every stage and recomputes the unions only if a block of stage 1 or 2 is redone;
the result is bit-identical. The parameters of stages 1 and 2 are recorded, and a rerun with others is
refused.

Affinities may be stored as float16/float32 in [0, 1] or as uint8 quantized to ``round(255 * a)``
(:mod:`pipeline.io.affinities`). :func:`segment_raw` runs the predict stage and this one
(``neurorecon segment``).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flows.preflight import RunInputs, model_path
from flows.stages.predict import predict_run
from flows.stages.pyramid import pyramid_volume, reset_pyramid_state
from flows.stages.runner import run_blocks
from flows.stages.union import UNION_FORMAT, block_lut, union_segments, union_volume
from pipeline import __version__
from pipeline.blocks import Block, block_grid, grid_shape
from pipeline.errors import InputDataError
from pipeline.io.affinities import open_affinities, read_affinities
from pipeline.io.blockstate import BlockState
from pipeline.io.checkpoint import checkpoint_sha256
from pipeline.io.layout import (
    THRESHOLD_STAGES,
    RunLayout,
    relabel_stage,
    threshold_key,
    threshold_value,
    union_stage,
)
from pipeline.io.location import URL, as_location
from pipeline.io.omezarr import (
    create_label_image,
    image_fingerprint,
    open_image,
    write_provenance,
    write_region,
)
from pipeline.segment.blockwise import (
    FacePlane,
    LowerFaces,
    RegionEdges,
    block_segment,
    check_halo_vx,
    face_edges,
    lower_neighbour,
    relabel_block,
)
from pipeline.segment.config import SegmentConfig

__all__ = ["SegmentOutputs", "segment_raw", "segment_run", "segment_volume"]

log = logging.getLogger(__name__)


def segment_volume(
    affinities: str | Path,
    *,
    fragments_out: str | Path,
    segmentation_out: str | Path,
    state_dir: str | Path,
    block_shape: Sequence[int],
    halo_vx: Sequence[int],
    threshold: float,
    background_threshold: float,
    max_retries: int,
    raw: str | Path | None = None,
    model: str | Path | None = None,
    client: Any = None,
    progress: bool = True,
    max_threshold: float,
    sweep: Mapping[float, str | Path] | None = None,
) -> Path:
    """Segment an affinity image into the label images ``fragments_out`` and ``segmentation_out`` (and one
    segmentation per threshold of ``sweep``).

    Parameters
    ----------
    affinities : path
        OME-Zarr image with axes (c, z, y, x), 3 channels (z, y, x affinities, waterz convention);
        its chunk grid is the blocks' grid.
    fragments_out, segmentation_out : path
        OME-Zarr label images to create (or resume): waterz fragments and the segments at ``threshold``,
        uint64.
    state_dir : path
        Where per-block completion state is kept (resume): the ``state`` folder of a run directory, its
        parent; the affinities are recorded relative to it if they lie inside, else by their
        :func:`~pipeline.io.omezarr.image_fingerprint` (a moved run directory resumes).
    block_shape, halo_vx : sequence of 3 int
        Write-region shape (a multiple of the affinities' chunks) and watershed context, in voxels
        (:func:`~pipeline.segment.blockwise.check_halo_vx`).
    threshold, background_threshold : float
        Agglomeration threshold (waterz's ``1 - mean affinity``, in [0, ``max_threshold``]) and background
        mask threshold.
    max_retries : int
        Extra attempts per failed block.
    raw : path or URL, optional
        The raw image the affinities were predicted from: the label images' ``image-label.source.image``
        (as a path relative to them, or its URL); default the affinities.
    model : path, optional
        The checkpoint that predicted the affinities, recorded (path and sha256) in the label images'
        ``neurorecon`` attribute.
    client : distributed.Client, optional
        Dask client; serial if None.
    max_threshold : float
        The largest threshold the blocks' region graphs answer for (a parameter of stages 1 and 2), in
        (0, 1] (``segment.max_threshold``).
    sweep : mapping of float to path, optional
        More segmentations: the label image to write at each threshold (in [0, ``max_threshold``]). They
        share the fragments and region graph of ``segmentation_out``: each costs a union and a relabel.

    Returns
    -------
    Path
        ``segmentation_out``.

    Raises
    ------
    ValueError
        If a threshold is outside [0, ``max_threshold``], or ``max_threshold`` outside (0, 1].
    InputDataError
        If the affinities are not an OME-Zarr (3, Z, Y, X) image of float or uint8 values, or the halo
        does not fit the blocks.
    OutputError
        If an earlier run of stages 1 and 2 used other parameters (block shape, halo, background
        threshold, ``max_threshold``, affinities).
    BlockFailure
        If blocks still fail after their retries (finished blocks are kept for the rerun).
    """
    sweep = dict(sweep or {})
    if not 0.0 < float(max_threshold) <= 1.0:
        raise ValueError(f"max_threshold must be in (0, 1] (waterz's 1 - mean affinity); got {max_threshold}")
    for t in (threshold, *sweep):
        if not 0.0 <= float(t) <= float(max_threshold):
            raise ValueError(f"threshold must be in [0, {max_threshold:g}] (the largest threshold the blocks "
                             f"record merges for, segment.max_threshold); got {t}")
    aff = open_affinities(affinities)
    chunks = tuple(aff.chunks[-3:])
    block_shape = tuple(int(b) for b in block_shape)
    try:
        halo = check_halo_vx(halo_vx, block_shape=block_shape, volume_shape=aff.spatial_shape)
    except ValueError as exc:
        raise InputDataError(str(exc)) from None
    blocks = block_grid(aff.spatial_shape, block_shape=block_shape, chunks=chunks, halo=halo)
    run = RunLayout(Path(state_dir).parent)  # the run directory (state_dir is its RunLayout.state)
    params = {  # of every stage; union and relabel add the threshold
        "affinities": run.identify(affinities, lambda: image_fingerprint(aff)),
        "shape": list(aff.spatial_shape),
        "block_shape": list(block_shape),
        "halo_vx": list(halo),
        "background_threshold": float(background_threshold),
        "max_threshold": float(max_threshold),
        # 4: BlockDecisions with first voxels (segment ids independent of blocks); 5: inputs recorded
        # where the run directory does not matter (relative inside it, fingerprints outside); 6: region
        # graphs with merge scores (any threshold from one watershed)
        "state_format": 6,
    }
    states = {name: BlockState(state_dir, name) for name in ("blocks", "faces")}
    for st in states.values():
        st.check_params(params)
    # (threshold, output, relabel stage): segmentation_out first
    outputs = [(float(threshold), Path(segmentation_out), relabel_stage(None))]
    outputs += [(float(t), Path(out), relabel_stage(t)) for t, out in sweep.items()]
    source = as_location(raw if raw is not None else affinities)
    source = source if isinstance(source, URL) else source.resolve()
    for out in (Path(fragments_out), *(out for _, out, _ in outputs)):
        made = {"software": "neurorecon", "version": __version__,
                "affinities": _relative(affinities, out), "background_threshold": float(background_threshold),
                "max_threshold": float(max_threshold),
                "model": None if model is None else {"path": str(Path(model).resolve()),
                                                     "sha256": checkpoint_sha256(model)}}
        create_label_image(out, shape=aff.spatial_shape, chunks=chunks, voxel_size_um=aff.voxel_size_um,
                           source=source, name=out.stem, exist_ok=True, pyramid=True,
                           attributes={"neurorecon": made})
    per_block = int(np.prod(block_shape))
    if any(len(st.done_ids()) < len(blocks) for st in states.values()):
        # blocks of stage 1 or 2 are (re)done: the tables and segmentations of an older region graph go
        # first (all of them, before any block runs, so an interrupted run removes them again)
        for stage in sorted({p.name for pattern in THRESHOLD_STAGES for p in Path(state_dir).glob(pattern)}):
            BlockState(state_dir, stage).remove()

    run_blocks(
        "blocks", blocks,
        functools.partial(_segment_block, affinities=str(affinities), fragments=str(fragments_out),
                          per_block=per_block, background_threshold=background_threshold,
                          max_threshold=max_threshold, state_root=str(state_dir)),
        state=states["blocks"], client=client, max_retries=max_retries, progress=progress,
        memory_hint=SEGMENT_MEMORY_HINT,
    ).raise_if_failed()
    run_blocks(
        "faces", blocks,
        functools.partial(_faces_block, grid=grid_shape(blocks), state_root=str(state_dir)),
        state=states["faces"], client=client, max_retries=max_retries, progress=progress,
    ).raise_if_failed()

    for key in dict.fromkeys(threshold_key(t) for t, _, _ in outputs):  # one union per threshold
        t = next(t for t, _, _ in outputs if threshold_key(t) == key)
        union = BlockState(state_dir, union_stage(t))
        wanted = {**params, "threshold": key, "union_format": UNION_FORMAT}
        union.check_params(wanted, reset=union.differs(wanted))  # a union of another layout is redone
        if union_segments(state_dir, union.stage) is not None:
            continue
        for t_out, _, stage in outputs:  # a new table invalidates the blocks relabelled with another
            if threshold_key(t_out) == key:
                BlockState(state_dir, stage).remove()
        n_segments = union_volume(state_dir, union.stage, blocks, threshold=t, per_block=per_block,
                                  volume_shape=aff.spatial_shape, block_shape=block_shape, client=client,
                                  max_retries=max_retries, progress=progress)
        reset_pyramid_state(state_dir)  # the lower levels of the label images are redone from level 0
        log.info("union t=%s: %d segments", key, n_segments)
    for t, out, stage in outputs:
        _relabel(t, out, BlockState(state_dir, stage), params=params, blocks=blocks, fragments=fragments_out,
                 per_block=per_block, client=client, max_retries=max_retries, progress=progress)
    for out in (Path(fragments_out), *(out for _, out, _ in outputs)):
        pyramid_volume(out, name=out.stem, state_dir=state_dir, block_shape=block_shape,
                       max_retries=max_retries, client=client, progress=progress)
    return Path(segmentation_out)


def _relative(path: str | Path, label_image: str | Path) -> str:
    """``path`` relative to the label image ``label_image`` (as ``image-label.source.image`` is)."""
    return os.path.relpath(Path(path).resolve(), Path(label_image).resolve())


def _relabel(
    threshold: float, out: Path, state: BlockState, *, params: dict[str, Any], blocks: Sequence[Block],
    fragments: str | Path, per_block: int, client: Any, max_retries: int, progress: bool,
) -> None:
    """Write the segmentation ``out`` at ``threshold`` with the relabel stage ``state``, resuming; an image
    relabelled at another threshold before is relabelled anew."""
    wanted = {**params, "threshold": threshold_key(threshold)}
    state.check_params(wanted, reset=state.differs(wanted))
    if len(state.done_ids()) < len(blocks):  # being (re)written: it says its threshold when it is done
        write_provenance(out, None)
        reset_pyramid_state(state.dir.parent)  # ... and its lower levels are made again
    state_dir, union = str(state.dir.parent), union_stage(threshold)
    volume_shape, block_shape = tuple(params["shape"]), tuple(params["block_shape"])
    run_blocks(
        state.stage.replace("_t", " t="), blocks,
        functools.partial(_relabel_block, fragments=str(fragments), segmentation=str(out),
                          state_root=str(state_dir), union=union, per_block=per_block,
                          volume_shape=volume_shape, block_shape=block_shape, grid=grid_shape(blocks)),
        state=state, client=client, max_retries=max_retries, progress=progress,
    ).raise_if_failed()
    n_segments = union_segments(state_dir, union)
    write_provenance(out, {"threshold": threshold_value(threshold), "n_segments": n_segments})


# -- per-block tasks (module level so Dask can pickle them) --------------------------------------------


#: The fix for watershed blocks whose worker was killed for memory.
SEGMENT_MEMORY_HINT = "use a smaller segment.block_shape or segment.halo_vx, or raise dask.memory_limit"


def _segment_block(
    block: Block, *, affinities: str, fragments: str, per_block: int, background_threshold: float,
    max_threshold: float, state_root: str,
) -> dict[str, Any]:
    aff = read_affinities(open_image(affinities).reader, block.read)
    res = block_segment(aff, block, id_offset=block.id * per_block, background_threshold=background_threshold,
                        max_threshold=max_threshold)
    write_region(open_image(fragments, mode="r+").array, block.write, res.fragments)
    BlockState(state_root, "blocks").save_records(block.id, decisions=res.decisions)
    return {"n_fragments": res.n, "n_edges": len(res.edges)}


def _faces_block(block: Block, *, grid: tuple[int, int, int], state_root: str) -> dict[str, Any]:
    state = BlockState(state_root, "blocks")
    lower_faces = state.load_record(block.id, LowerFaces, "decisions.lower")
    edges = []
    for d, lower in enumerate(lower_faces):
        if lower is None:
            continue
        neighbour = lower_neighbour(block, d, grid)
        upper = state.load_record(neighbour, FacePlane, f"decisions.upper.{d}", optional=True)
        if upper is None:  # the neighbour's read region ended at its write region: no halo
            raise InputDataError(f"block {block.id}'s lower neighbour along {'zyx'[d]} saved no upper face; "
                                 f"delete {state_root} and rerun")
        edges.append(face_edges(lower, upper))
    merged = RegionEdges.concat(edges)
    BlockState(state_root, "faces").save_records(block.id, edges=merged)
    return {"n_edges": len(merged)}


def _relabel_block(
    block: Block, *, fragments: str, segmentation: str, state_root: str, union: str, per_block: int,
    volume_shape: tuple[int, int, int], block_shape: tuple[int, int, int], grid: tuple[int, int, int],
) -> dict[str, Any]:
    lut = block_lut(state_root, union, block, per_block=per_block, volume_shape=volume_shape,
                    block_shape=block_shape, grid=grid)
    frag = np.asarray(open_image(fragments).array[block.write])
    write_region(open_image(segmentation, mode="r+").array, block.write, relabel_block(frag, lut))
    return {}


@dataclass(frozen=True)
class SegmentOutputs:
    """Where :func:`segment_raw` put its results: ``swept`` holds the segmentation at each threshold of a
    sweep."""

    affinities: Path
    fragments: Path
    segmentation: Path
    swept: dict[float, Path]


def segment_raw(
    cfg: SegmentConfig, *, inputs: RunInputs, max_retries: int, client: Any = None, progress: bool = True,
    thresholds: Sequence[float] = (),
) -> SegmentOutputs:
    """Raw OME-Zarr -> affinities -> fragments -> segmentation(s), block by block (``neurorecon segment``).

    Parameters
    ----------
    cfg : SegmentConfig
        The ``segment:`` section; outputs go to ``cfg.out`` (:class:`~pipeline.io.layout.RunLayout`).
    inputs : RunInputs
        What the run's preflight (:func:`flows.preflight.check_run`) established.
    max_retries : int
        Extra attempts per failed block (``dask.max_retries``).
    client : distributed.Client, optional
        Dask client; serial if None.
    thresholds : sequence of float
        A sweep: one more segmentation per threshold, ``segmentation_t<threshold>.zarr``
        (:meth:`~pipeline.io.layout.RunLayout.segmentation_at`).
    """
    affinities = predict_run(cfg, inputs=inputs, max_retries=max_retries, client=client, progress=progress)
    segmentation = segment_run(cfg, affinities, max_retries=max_retries, client=client, progress=progress,
                               thresholds=thresholds)
    run = RunLayout(cfg.out)
    swept = {float(np.float32(t)): run.segmentation_at(t) for t in thresholds}
    return SegmentOutputs(affinities, run.fragments, segmentation, dict(sorted(swept.items())))


def segment_run(
    cfg: SegmentConfig, affinities: str | Path, *, max_retries: int, client: Any = None,
    progress: bool = True,
    thresholds: Sequence[float] = (),
) -> Path:
    """:func:`segment_volume` of a run's affinities with the ``segment:`` settings, into the run directory,
    with a sweep over ``thresholds`` (``segmentation_t<threshold>.zarr``).

    When ``segmentation.zarr`` is relabelled at a new ``segment.threshold``, the block state of the
    skeletons derived from it is removed: the next skeletonize redoes them.
    """
    run = RunLayout(cfg.out)
    before = (BlockState(run.state, relabel_stage(None)).recorded_params() or {}).get("threshold")
    if before not in (None, threshold_key(cfg.threshold)):
        for stage in run.skeletonize_state:
            BlockState(stage.parent, stage.name).remove()
    return segment_volume(
        affinities, fragments_out=run.fragments, segmentation_out=run.segmentation, state_dir=run.state,
        block_shape=cfg.block_shape, halo_vx=cfg.halo_vx, threshold=cfg.threshold,
        background_threshold=cfg.background_threshold, max_threshold=cfg.max_threshold,
        max_retries=max_retries, raw=cfg.raw, model=model_path(cfg), client=client, progress=progress,
        sweep={t: run.segmentation_at(t) for t in {threshold_key(t): t for t in thresholds}.values()},
    )
