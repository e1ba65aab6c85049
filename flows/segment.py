"""Segment an OME-Zarr affinity volume block by block on Dask.

Load -> compute -> save per block, around the compute of :mod:`pipeline.segment.blockwise` (the same
functions :func:`pipeline.segment.segment_blockwise` runs serially in memory). Stages:

1. ``blocks``: one waterz call per block (read region = write region + halo) -> ``fragments``
   and the block's merge decisions (``<state>/blocks/<id>.npz``);
2. ``faces``: the decisions across each block's lower faces, as fragment pairs (``faces/<id>.npz``),
   from the face planes stage 1 saved for the block and its lower neighbours (no volume reads);
3. ``union``: connected components of all decisions -> ``<state>/union/lut.npz`` (in the client: the
   fragment graph, not the volume, is in memory);
4. ``relabel``: ``segmentation`` = lut[fragments].

Outputs are two standalone OME-Zarr label images (uint64, z/y/x, µm): ``fragments`` and
``segmentation``; the input volumes are never written to. A rerun skips the
finished blocks of every stage and recomputes the union only if a block of stage 1 or 2 was redone;
the result is bit-identical. The stages' parameters are recorded, and a rerun with others is refused.

Affinities may be stored as float16/float32 in [0, 1] or as uint8 quantized to ``round(255 * a)``.
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

from flows.blockwise import run_blocks
from pipeline.blocks import Block, block_grid, grid_shape
from pipeline.errors import InputDataError
from pipeline.io.blockstate import BlockState
from pipeline.io.omezarr import create_label_image, open_image, write_region
from pipeline.segment.agglomerate import union_lut
from pipeline.segment.blockwise import (
    DEFAULT_HALO,
    FacePlane,
    Lut,
    block_segment,
    clip_halo,
    face_pairs,
    lower_neighbour,
    relabel_block,
)

__all__ = ["SegmentOutputs", "read_affinities", "segment_raw", "segment_volume"]

log = logging.getLogger(__name__)


def read_affinities(array: Any, region: Sequence[slice]) -> np.ndarray:
    """Read (3, *region) affinities as float32 in [0, 1] from a float or uint8-quantized array."""
    data = np.asarray(array[(slice(None), *region)])
    if data.dtype == np.uint8:
        return data.astype(np.float32) / np.float32(255)
    return data.astype(np.float32, copy=False)


def segment_volume(
    affinities: str | Path,
    *,
    fragments_out: str | Path,
    segmentation_out: str | Path,
    state_dir: str | Path,
    block_shape: Sequence[int],
    threshold: float,
    halo: Sequence[int] = DEFAULT_HALO,
    background_threshold: float = 0.5,
    client: Any = None,
    max_retries: int = 2,
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
        Where per-block completion state is kept (resume).
    block_shape, halo : sequence of 3 int
        Write-region shape (a multiple of the affinities' chunks) and watershed context, in voxels.
    threshold, background_threshold : float
        Agglomeration threshold (waterz's ``1 - mean affinity``) and background mask threshold.
    client : distributed.Client, optional
        Dask client; serial if None.

    Returns
    -------
    Path
        ``segmentation_out``.

    Raises
    ------
    InputDataError
        If the affinities are not an OME-Zarr (3, Z, Y, X) image of float or uint8 values.
    BlockFailure
        If blocks still fail after their retries (finished blocks are kept for the rerun).
    """
    aff = open_image(affinities)
    if aff.axes != ("c", "z", "y", "x") or aff.shape[0] != 3:
        raise InputDataError(f"affinities {affinities} have axes {aff.axes} and shape {aff.shape}; expected (3, Z, Y, X)")
    if aff.dtype.kind not in "fu":
        raise InputDataError(f"affinities {affinities} have dtype {aff.dtype}; expected float or uint8")
    chunks = tuple(aff.chunks[-3:])
    block_shape = tuple(int(b) for b in block_shape)
    blocks = block_grid(aff.spatial_shape, block_shape=block_shape, chunks=chunks,
                        halo=clip_halo(halo, block_shape))
    params = {
        "affinities": str(Path(affinities).resolve()),
        "shape": list(aff.spatial_shape),
        "block_shape": list(block_shape),
        "halo": list(clip_halo(halo, block_shape)),
        "threshold": float(threshold),
        "background_threshold": float(background_threshold),
        "state_format": 2,  # 2: sparse face planes in blocks/<id>.npz
    }
    states = {name: BlockState(state_dir, name) for name in ("blocks", "faces", "union", "relabel")}
    for st in states.values():
        st.check_params(params)
    source = str(Path(affinities).resolve())
    for out in (fragments_out, segmentation_out):
        create_label_image(out, shape=aff.spatial_shape, chunks=chunks, voxel_size_um=aff.voxel_size_um,
                           source=source, name=Path(out).stem, exist_ok=True)
    per_block = int(np.prod(block_shape))
    before = (states["blocks"].done_ids(), states["faces"].done_ids())

    run_blocks(
        "blocks", blocks,
        functools.partial(_segment_block, affinities=str(affinities), fragments=str(fragments_out), per_block=per_block,
                          threshold=threshold, background_threshold=background_threshold,
                          state_root=str(state_dir)),
        state=states["blocks"], client=client, max_retries=max_retries, progress=progress,
    ).raise_if_failed()
    run_blocks(
        "faces", blocks,
        functools.partial(_faces_block, grid=grid_shape(blocks), state_root=str(state_dir)),
        state=states["faces"], client=client, max_retries=max_retries, progress=progress,
    ).raise_if_failed()

    lut_path = states["union"].dir / "lut.npz"
    if not lut_path.is_file() or (states["blocks"].done_ids(), states["faces"].done_ids()) != before:
        ids = np.concatenate([
            np.arange(b.id * per_block + 1, b.id * per_block + states["blocks"].info(b.id)["n_fragments"] + 1,
                      dtype=np.uint64)
            for b in blocks
        ])
        pairs = [states["blocks"].load_arrays(b.id)["merges"] for b in blocks]
        pairs += [states["faces"].load_arrays(b.id)["pairs"] for b in blocks]
        frags, segs = union_lut(ids, pairs)
        tmp = lut_path.with_name(".lut.tmp.npz")
        np.savez(tmp, fragments=frags, segments=segs)
        tmp.replace(lut_path)
        states["relabel"].check_params(params, reset=True)  # a new table invalidates relabelled blocks
        log.info("union: %d fragments -> %d segments", frags.size, int(segs.max()) if segs.size else 0)
    run_blocks(
        "relabel", blocks,
        functools.partial(_relabel_block, fragments=str(fragments_out), segmentation=str(segmentation_out),
                          lut_path=str(lut_path)),
        state=states["relabel"], client=client, max_retries=max_retries, progress=progress,
    ).raise_if_failed()
    return Path(segmentation_out)


# -- per-block tasks (module level so Dask can pickle them) --------------------------------------------


def _segment_block(
    block: Block, *, affinities: str, fragments: str, per_block: int, threshold: float,
    background_threshold: float, state_root: str,
) -> dict[str, Any]:
    aff = read_affinities(open_image(affinities).reader, block.read)
    res = block_segment(aff, block, id_offset=block.id * per_block, threshold=threshold,
                        background_threshold=background_threshold)
    write_region(open_image(fragments, mode="r+").array, block.write, res.fragments)
    faces = {}
    for side in ("lower", "upper"):
        for d, face in enumerate(getattr(res, side)):
            if face is not None:
                faces[f"{side}_{d}_index"], faces[f"{side}_{d}_fragments"] = face.index, face.fragments
    BlockState(state_root, "blocks").save_arrays(block.id, merges=res.merges, **faces)
    return {"n_fragments": res.n, "n_merges": int(len(res.merges))}


def _face(saved: dict[str, np.ndarray], side: str, d: int) -> FacePlane | None:
    if f"{side}_{d}_index" not in saved:
        return None
    return FacePlane(saved[f"{side}_{d}_index"], saved[f"{side}_{d}_fragments"])


def _faces_block(block: Block, *, grid: tuple[int, int, int], state_root: str) -> dict[str, Any]:
    state = BlockState(state_root, "blocks")
    saved = state.load_arrays(block.id)
    pairs = []
    for d in range(3):
        lower = _face(saved, "lower", d)
        if lower is None:
            continue
        neighbour = lower_neighbour(block, d, grid)
        upper = _face(state.load_arrays(neighbour, (f"upper_{d}_index", f"upper_{d}_fragments")), "upper", d)
        if upper is None:  # the neighbour's read region ended at its write region: no halo
            raise InputDataError(f"block {block.id}'s lower neighbour along {'zyx'[d]} saved no upper face; "
                                 f"delete {state_root} and rerun")
        pairs.append(face_pairs(lower, upper))
    merged = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.uint64)
    BlockState(state_root, "faces").save_arrays(block.id, pairs=merged)
    return {"n_pairs": int(len(merged))}


def _relabel_block(block: Block, *, fragments: str, segmentation: str, lut_path: str) -> dict[str, Any]:
    lut = _load_lut(lut_path)
    frag = np.asarray(open_image(fragments).array[block.write])
    write_region(open_image(segmentation, mode="r+").array, block.write, relabel_block(frag, lut))
    return {}


def _load_lut(path: str) -> Lut:
    return _load_lut_version(path, os.stat(path).st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _load_lut_version(path: str, _mtime_ns: int) -> Lut:
    with np.load(path) as data:
        return Lut(data["fragments"], data["segments"])


@dataclass(frozen=True)
class SegmentOutputs:
    """Where :func:`segment_raw` put its results."""

    affinities: Path
    fragments: Path
    segmentation: Path


def segment_raw(cfg: Any, *, client: Any = None, progress: bool = True) -> SegmentOutputs:
    """Raw OME-Zarr -> affinities -> fragments -> segmentation, block by block (``neurorecon segment``).

    Parameters
    ----------
    cfg : pipeline.segment.config.SegmentConfig
        The ``segment:`` section.
    client : distributed.Client, optional
        Dask client; serial if None.
    """
    from flows.predict import predict_volume
    from pipeline.model import DEMO_MODEL

    out = Path(cfg.out)
    model = Path(cfg.model) if cfg.model is not None else DEMO_MODEL
    affinities = predict_volume(
        cfg.raw, model, out / "affinities.zarr", state_dir=out / "state", block_shape=cfg.block_shape,
        tile_shape=cfg.tile_shape, batch_size=cfg.batch_size, device=cfg.device, dtype=cfg.affinity_dtype,
        client=client, max_retries=cfg.max_retries, progress=progress,
    )
    segmentation = segment_volume(
        affinities, fragments_out=out / "fragments.zarr", segmentation_out=out / "segmentation.zarr",
        state_dir=out / "state", block_shape=cfg.block_shape, threshold=cfg.threshold, halo=cfg.halo,
        background_threshold=cfg.background_threshold, client=client, max_retries=cfg.max_retries,
        progress=progress,
    )
    return SegmentOutputs(affinities, out / "fragments.zarr", segmentation)
