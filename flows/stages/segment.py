"""The segment stage: an OME-Zarr affinity volume -> fragments -> segmentation, block by block on Dask.

Load -> compute -> save per block, around the compute of :mod:`pipeline.segment.blockwise` (the same
functions :func:`pipeline.segment.segment_blockwise` runs serially in memory). Stages:

1. ``blocks``: one waterz call per block (read region = write region + halo) -> ``fragments``
   and the block's merge decisions (a :class:`~pipeline.segment.blockwise.BlockDecisions` record in
   ``<state>/blocks/<id>.npz``);
2. ``faces``: the decisions across each block's lower faces, as fragment pairs (``faces/<id>.npz``),
   from the face planes stage 1 saved for the block and its lower neighbours (no volume reads);
3. ``union``: connected components of all decisions -> the :class:`~pipeline.segment.blockwise.Lut`
   record ``<state>/union/lut.npz`` (in the client: the fragment graph, not the volume, is in memory);
   segments are numbered in raster order of their first voxel, so the ids do not depend on the blocks;
4. ``relabel``: ``segmentation`` = lut[fragments];
5. ``pyramid``: the lower resolutions of ``fragments`` and ``segmentation`` (mode of each window), level
   by level from the complete level 0 (:mod:`flows.stages.pyramid`).

Outputs are two standalone OME-Zarr label images (uint64, z/y/x, µm, with pyramids): ``fragments`` and
``segmentation``, whose ``image-label.source.image`` is the raw image they lie on, relative to them, and
whose ``neurorecon`` attribute says how they were made (model, thresholds, affinities, neurorecon's
version); the input volumes are never written to. A rerun skips the finished blocks of every stage and
recomputes the union only if a block of stage 1 or 2 was redone (then relabel and pyramid are redone);
the result is bit-identical. The stages' parameters are recorded, and a rerun with others is refused.

Affinities may be stored as float16/float32 in [0, 1] or as uint8 quantized to ``round(255 * a)``
(:mod:`pipeline.io.affinities`). :func:`segment_raw` runs the predict stage and this one
(``neurorecon segment``).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flows.preflight import RunInputs, model_path
from flows.stages.predict import predict_run
from flows.stages.pyramid import pyramid_volume, reset_pyramid_state
from flows.stages.runner import run_blocks
from pipeline import __version__
from pipeline.blocks import Block, block_grid, grid_shape
from pipeline.errors import InputDataError
from pipeline.io.affinities import open_affinities, read_affinities
from pipeline.io.blockstate import BlockState
from pipeline.io.checkpoint import checkpoint_sha256
from pipeline.io.layout import RunLayout
from pipeline.io.location import URL, as_location
from pipeline.io.omezarr import create_label_image, image_fingerprint, open_image, write_region
from pipeline.segment.agglomerate import union_lut
from pipeline.segment.blockwise import (
    FacePlane,
    Faces,
    Lut,
    block_segment,
    check_halo_vx,
    face_pairs,
    lower_neighbour,
    relabel_block,
)
from pipeline.segment.config import SegmentConfig

__all__ = ["SegmentOutputs", "segment_raw", "segment_volume"]

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
) -> Path:
    """Segment an affinity image into the label images ``fragments_out`` and ``segmentation_out``.

    Parameters
    ----------
    affinities : path
        OME-Zarr image with axes (c, z, y, x), 3 channels (z, y, x affinities, waterz convention);
        its chunk grid is the blocks' grid.
    fragments_out, segmentation_out : path
        OME-Zarr label images to create (or resume): waterz fragments and final segments, uint64.
    state_dir : path
        Where per-block completion state is kept (resume): the ``state`` folder of a run directory, its
        parent; the affinities are recorded relative to it if they lie inside, else by their
        :func:`~pipeline.io.omezarr.image_fingerprint` (a moved run directory resumes).
    block_shape, halo_vx : sequence of 3 int
        Write-region shape (a multiple of the affinities' chunks) and watershed context, in voxels
        (:func:`~pipeline.segment.blockwise.check_halo_vx`).
    threshold, background_threshold : float
        Agglomeration threshold (waterz's ``1 - mean affinity``) and background mask threshold.
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

    Returns
    -------
    Path
        ``segmentation_out``.

    Raises
    ------
    InputDataError
        If the affinities are not an OME-Zarr (3, Z, Y, X) image of float or uint8 values, or the halo
        does not fit the blocks.
    BlockFailure
        If blocks still fail after their retries (finished blocks are kept for the rerun).
    """
    aff = open_affinities(affinities)
    chunks = tuple(aff.chunks[-3:])
    block_shape = tuple(int(b) for b in block_shape)
    try:
        halo = check_halo_vx(halo_vx, block_shape=block_shape, volume_shape=aff.spatial_shape)
    except ValueError as exc:
        raise InputDataError(str(exc)) from None
    blocks = block_grid(aff.spatial_shape, block_shape=block_shape, chunks=chunks, halo=halo)
    run = RunLayout(Path(state_dir).parent)  # the run directory (state_dir is its RunLayout.state)
    params = {
        "affinities": run.identify(affinities, lambda: image_fingerprint(aff)),
        "shape": list(aff.spatial_shape),
        "block_shape": list(block_shape),
        "halo_vx": list(halo),
        "threshold": float(threshold),
        "background_threshold": float(background_threshold),
        # 4: BlockDecisions with first voxels (segment ids independent of blocks); 5: inputs recorded
        # where the run directory does not matter (relative inside it, fingerprints outside)
        "state_format": 5,
    }
    states = {name: BlockState(state_dir, name) for name in ("blocks", "faces", "union", "relabel")}
    for st in states.values():
        st.check_params(params)
    source = as_location(raw if raw is not None else affinities)
    source = source if isinstance(source, URL) else source.resolve()
    for out in (fragments_out, segmentation_out):
        made = {"software": "neurorecon", "version": __version__,
                "affinities": _relative(affinities, out), "threshold": float(threshold),
                "background_threshold": float(background_threshold),
                "model": None if model is None else {"path": str(Path(model).resolve()),
                                                     "sha256": checkpoint_sha256(model)}}
        create_label_image(out, shape=aff.spatial_shape, chunks=chunks, voxel_size_um=aff.voxel_size_um,
                           source=source, name=Path(out).stem, exist_ok=True, pyramid=True,
                           attributes={"neurorecon": made})
    per_block = int(np.prod(block_shape))
    before = (states["blocks"].done_ids(), states["faces"].done_ids())

    run_blocks(
        "blocks", blocks,
        functools.partial(_segment_block, affinities=str(affinities), fragments=str(fragments_out),
                          per_block=per_block,
                          threshold=threshold, background_threshold=background_threshold,
                          state_root=str(state_dir)),
        state=states["blocks"], client=client, max_retries=max_retries, progress=progress,
        memory_hint=SEGMENT_MEMORY_HINT,
    ).raise_if_failed()
    run_blocks(
        "faces", blocks,
        functools.partial(_faces_block, grid=grid_shape(blocks), state_root=str(state_dir)),
        state=states["faces"], client=client, max_retries=max_retries, progress=progress,
    ).raise_if_failed()

    lut_path = states["union"].dir / f"{_LUT}.npz"
    if not lut_path.is_file() or (states["blocks"].done_ids(), states["faces"].done_ids()) != before:
        ids = np.concatenate([
            np.arange(b.id * per_block + 1, b.id * per_block + states["blocks"].info(b.id)["n_fragments"] + 1,
                      dtype=np.uint64)
            for b in blocks
        ])
        pairs = [states["blocks"].load_record(b.id, np.ndarray, "decisions.merges") for b in blocks]
        pairs += [states["faces"].load_record(b.id, np.ndarray, "pairs") for b in blocks]
        firsts = [states["blocks"].load_record(b.id, np.ndarray, "decisions.first_voxel") for b in blocks]
        lut = Lut(*union_lut(ids, pairs, first_voxel=np.concatenate(firsts)))
        states["union"].save_records(_LUT, lut=lut)
        states["relabel"].check_params(params, reset=True)  # a new table invalidates relabelled blocks
        reset_pyramid_state(state_dir)  # ... and the lower levels of both label images
        log.info("union: %d fragments -> %d segments", len(lut), int(lut.segments.max()) if len(lut) else 0)
    run_blocks(
        "relabel", blocks,
        functools.partial(_relabel_block, fragments=str(fragments_out), segmentation=str(segmentation_out),
                          state_root=str(state_dir)),
        state=states["relabel"], client=client, max_retries=max_retries, progress=progress,
    ).raise_if_failed()
    for out in (fragments_out, segmentation_out):
        pyramid_volume(out, name=Path(out).stem, state_dir=state_dir, block_shape=block_shape,
                       max_retries=max_retries, client=client, progress=progress)
    return Path(segmentation_out)


def _relative(path: str | Path, label_image: str | Path) -> str:
    """``path`` relative to the label image ``label_image`` (as ``image-label.source.image`` is)."""
    return os.path.relpath(Path(path).resolve(), Path(label_image).resolve())


# -- per-block tasks (module level so Dask can pickle them) --------------------------------------------


#: The fix for watershed blocks whose worker was killed for memory.
SEGMENT_MEMORY_HINT = "use a smaller segment.block_shape or segment.halo_vx, or raise dask.memory_limit"
_LUT = "lut"  # the union's fragment -> segment table, a stage record of "union"


def _segment_block(
    block: Block, *, affinities: str, fragments: str, per_block: int, threshold: float,
    background_threshold: float, state_root: str,
) -> dict[str, Any]:
    aff = read_affinities(open_image(affinities).reader, block.read)
    res = block_segment(aff, block, id_offset=block.id * per_block, threshold=threshold,
                        background_threshold=background_threshold)
    write_region(open_image(fragments, mode="r+").array, block.write, res.fragments)
    BlockState(state_root, "blocks").save_records(block.id, decisions=res.decisions)
    return {"n_fragments": res.n, "n_merges": int(len(res.merges))}


def _faces_block(block: Block, *, grid: tuple[int, int, int], state_root: str) -> dict[str, Any]:
    state = BlockState(state_root, "blocks")
    lower_faces = state.load_record(block.id, Faces, "decisions.lower")
    pairs = []
    for d, lower in enumerate(lower_faces):
        if lower is None:
            continue
        neighbour = lower_neighbour(block, d, grid)
        upper = state.load_record(neighbour, FacePlane, f"decisions.upper.{d}", optional=True)
        if upper is None:  # the neighbour's read region ended at its write region: no halo
            raise InputDataError(f"block {block.id}'s lower neighbour along {'zyx'[d]} saved no upper face; "
                                 f"delete {state_root} and rerun")
        pairs.append(face_pairs(lower, upper))
    merged = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.uint64)
    BlockState(state_root, "faces").save_records(block.id, pairs=merged)
    return {"n_pairs": int(len(merged))}


def _relabel_block(block: Block, *, fragments: str, segmentation: str, state_root: str) -> dict[str, Any]:
    lut = _load_lut(state_root)
    frag = np.asarray(open_image(fragments).array[block.write])
    write_region(open_image(segmentation, mode="r+").array, block.write, relabel_block(frag, lut))
    return {}


def _load_lut(state_root: str) -> Lut:
    return _load_lut_version(state_root, os.stat(Path(state_root) / "union" / f"{_LUT}.npz").st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _load_lut_version(state_root: str, _mtime_ns: int) -> Lut:
    return BlockState(state_root, "union").load_record(_LUT, Lut, "lut")


@dataclass(frozen=True)
class SegmentOutputs:
    """Where :func:`segment_raw` put its results."""

    affinities: Path
    fragments: Path
    segmentation: Path


def segment_raw(
    cfg: SegmentConfig, *, inputs: RunInputs, max_retries: int, client: Any = None, progress: bool = True
) -> SegmentOutputs:
    """Raw OME-Zarr -> affinities -> fragments -> segmentation, block by block (``neurorecon segment``).

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
    """
    affinities = predict_run(cfg, inputs=inputs, max_retries=max_retries, client=client, progress=progress)
    segmentation = segment_run(cfg, affinities, max_retries=max_retries, client=client, progress=progress)
    return SegmentOutputs(affinities, RunLayout(cfg.out).fragments, segmentation)


def segment_run(
    cfg: SegmentConfig, affinities: str | Path, *, max_retries: int, client: Any = None, progress: bool = True
) -> Path:
    """:func:`segment_volume` of a run's affinities with the ``segment:`` settings, into the run directory."""
    run = RunLayout(cfg.out)
    return segment_volume(
        affinities, fragments_out=run.fragments, segmentation_out=run.segmentation, state_dir=run.state,
        block_shape=cfg.block_shape, halo_vx=cfg.halo_vx, threshold=cfg.threshold,
        background_threshold=cfg.background_threshold, max_retries=max_retries, raw=cfg.raw,
        model=model_path(cfg), client=client, progress=progress,
    )
