"""Segment an OME-Zarr affinity volume block by block on Dask: fragments, edges, agglomeration, relabel.

Load -> compute -> save per block, around the compute of :mod:`pipeline.segment.blockwise` (the same
functions :func:`pipeline.segment.segment_blockwise` runs serially in memory). Outputs:

* ``<store>/labels/fragments`` — uint64 waterz fragments, ids unique across blocks;
* ``<store>/labels/segmentation`` — uint64 segments after global agglomeration;
* ``<state>/{fragments,edges,relabel}/<block>.json`` — completion markers, with ``fragments/<block>.npz``
  (the watershed's same-basin planes at the block faces) and ``edges/<block>.npz`` (edge table and
  must-merge pairs);
* ``<state>/agglomerate/lut.npz`` — the fragment -> segment table.

A rerun skips finished blocks of each stage; the agglomeration is recomputed only if an edge block was
redone (it is cheap next to the block stages, and deterministic, so the result is bit-identical).

Affinities may be stored as float16/float32 in [0, 1] or as uint8 quantized to ``round(255 * a)``.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flows.blockwise import run_blocks
from pipeline.blocks import Block, block_grid
from pipeline.errors import InputDataError, OutputError
from pipeline.io.blockstate import BlockState
from pipeline.io.omezarr import create_labels, open_image, open_labels, write_region
from pipeline.segment.agglomerate import agglomerate_edges
from pipeline.segment.blockwise import (
    DEFAULT_HALO,
    BlockFragments,
    Lut,
    block_edges,
    block_fragments,
    edge_region,
    face_agreement,
    lower_neighbours,
    lut_from_mapping,
    relabel_block,
)
from pipeline.segment.rag import EdgeTable, merge_edge_tables

__all__ = ["read_affinities", "segment_volume"]

log = logging.getLogger(__name__)


def read_affinities(array: Any, region: Sequence[slice]) -> np.ndarray:
    """Read (3, *region) affinities as float32 in [0, 1] from a float or uint8-quantized array."""
    data = np.asarray(array[(slice(None), *region)])
    if data.dtype == np.uint8:
        return data.astype(np.float32) / np.float32(255)
    return data.astype(np.float32, copy=False)


def segment_volume(
    affinities: str | Path,
    store: str | Path,
    *,
    state_dir: str | Path,
    block_shape: Sequence[int],
    threshold: float,
    halo: Sequence[int] = DEFAULT_HALO,
    background_threshold: float = 0.5,
    client: Any = None,
    max_retries: int = 2,
    progress: bool = True,
) -> Path:
    """Write ``labels/fragments`` and ``labels/segmentation`` of the OME-Zarr image ``store``.

    Parameters
    ----------
    affinities : path
        OME-Zarr image with axes (c, z, y, x), 3 channels (z, y, x affinities, waterz convention).
    store : path
        OME-Zarr image (e.g. the raw volume) with the same (z, y, x) shape; labels are added to it.
    state_dir : path
        Where per-block completion state is kept (resume).
    block_shape, halo : sequence of 3 int
        Write-region shape (a multiple of the store's chunks) and watershed context, in voxels.
    threshold, background_threshold : float
        Agglomeration threshold (waterz's ``1 - mean affinity``) and background mask threshold.
    client : distributed.Client, optional
        Dask client; serial if None.

    Returns
    -------
    Path
        The path of ``labels/segmentation``.

    Raises
    ------
    InputDataError
        If the affinities are not (3, Z, Y, X) or do not match the store's shape.
    BlockFailure
        If blocks still fail after their retries (finished blocks are kept for the rerun).
    """
    aff = open_image(affinities)
    image = open_image(store)
    if aff.axes != ("c", "z", "y", "x") or aff.shape[0] != 3:
        raise InputDataError(f"affinities {affinities} have axes {aff.axes} and shape {aff.shape}; expected (3, Z, Y, X)")
    if aff.spatial_shape != image.spatial_shape:
        raise InputDataError(
            f"affinities {affinities} have (z, y, x) shape {aff.spatial_shape} but {store} has {image.spatial_shape}"
        )
    if aff.dtype.kind not in "fu":
        raise InputDataError(f"affinities {affinities} have dtype {aff.dtype}; expected float or uint8")
    chunks = tuple(image.chunks[-3:])
    blocks = block_grid(image.spatial_shape, block_shape=block_shape, chunks=chunks, halo=halo)
    params = {
        "affinities": str(Path(affinities).resolve()),
        "shape": list(image.spatial_shape),
        "block_shape": [int(b) for b in block_shape],
        "halo": [int(h) for h in halo],
        "background_threshold": float(background_threshold),
    }
    frag_state = BlockState(state_dir, "fragments")
    edge_state = BlockState(state_dir, "edges")
    frag_state.check_params(params)
    edge_state.check_params(params)
    create_labels(store, "fragments", dtype="uint64", chunks=chunks, exist_ok=True)
    per_block = int(np.prod(block_shape))
    common = {"affinities": str(affinities), "store": str(store)}

    run_blocks(
        "fragments", blocks,
        functools.partial(_fragments_block, **common, per_block=per_block,
                          background_threshold=background_threshold, state_root=str(state_dir)),
        state=frag_state, client=client, max_retries=max_retries, progress=progress,
    ).raise_if_failed()
    edges_before = edge_state.done_ids()
    run_blocks(
        "edges", blocks,
        functools.partial(_edges_block, **common, state_root=str(state_dir), grid={b.index: b.id for b in blocks}),
        state=edge_state, client=client, max_retries=max_retries, progress=progress,
    ).raise_if_failed()

    # Global agglomeration: the graph (not the volume) in memory.
    agg_dir = Path(state_dir) / "agglomerate"
    lut_path = agg_dir / "lut.npz"
    agg_params = {**params, "threshold": float(threshold)}
    agg_state = BlockState(state_dir, "agglomerate")
    relabel_state = BlockState(state_dir, "relabel")
    try:
        agg_state.check_params(agg_params)
        same_params = True
    except OutputError:  # e.g. another threshold: agglomerate and relabel again, keep fragments/edges
        same_params = False
    if not same_params or not lut_path.is_file() or edge_state.done_ids() != edges_before:
        agg_state.check_params(agg_params, reset=True)
        table = merge_edge_tables(_load_edges(edge_state, blocks))
        ids = np.concatenate(
            [np.arange(b.id * per_block + 1, b.id * per_block + frag_state.info(b.id)["n_fragments"] + 1,
                       dtype=np.uint64) for b in blocks]
        )
        must = np.concatenate([edge_state.load_arrays(b.id)["must_merge"] for b in blocks])
        lut = lut_from_mapping(agglomerate_edges(table, threshold=threshold, fragment_ids=ids, must_merge=must))
        tmp = agg_dir / ".lut.tmp.npz"
        np.savez(tmp, fragments=lut.fragments, segments=lut.segments)
        tmp.replace(lut_path)
        relabel_state.check_params(agg_params, reset=True)  # a new table invalidates relabelled blocks
        log.info("agglomerate: %d fragments, %d edges -> %d segments", len(ids), len(table),
                 int(lut.segments.max()) if len(lut) else 0)
    else:
        relabel_state.check_params(agg_params)
    create_labels(store, "segmentation", dtype="uint64", chunks=chunks, exist_ok=True)
    run_blocks(
        "relabel", blocks, functools.partial(_relabel_block, store=str(store), lut_path=str(lut_path)),
        state=relabel_state, client=client, max_retries=max_retries, progress=progress,
    ).raise_if_failed()
    return Path(store) / "labels" / "segmentation"


# -- per-block tasks (module level so Dask can pickle them) --------------------------------------------


def _fragments_block(
    block: Block, *, affinities: str, store: str, per_block: int, background_threshold: float, state_root: str
) -> dict[str, Any]:
    aff = read_affinities(open_image(affinities).array, block.read)
    res = block_fragments(aff, block, id_offset=block.id * per_block, background_threshold=background_threshold)
    write_region(open_labels(store, "fragments", mode="r+").array, block.write, res.fragments)
    faces = {f"{side}_{d}": plane for side, planes in (("lower", res.same_lower), ("upper", res.same_upper))
             for d, plane in enumerate(planes) if plane is not None}
    BlockState(state_root, "fragments").save_arrays(block.id, **faces)
    return {"n_fragments": res.n}


def _faces(state: BlockState, block_id: int) -> BlockFragments:
    arrays = state.load_arrays(block_id)
    return BlockFragments(
        np.zeros(0, np.uint64), 0,
        tuple(arrays.get(f"lower_{d}") for d in range(3)),  # type: ignore[arg-type]
        tuple(arrays.get(f"upper_{d}") for d in range(3)),  # type: ignore[arg-type]
    )


def _edges_block(
    block: Block, *, affinities: str, store: str, state_root: str, grid: dict[tuple[int, int, int], int]
) -> dict[str, Any]:
    region, lower = edge_region(block)
    frag = np.asarray(open_labels(store, "fragments").array[region])
    aff = read_affinities(open_image(affinities).array, region)
    frag_state = BlockState(state_root, "fragments")
    neighbours = [_faces(frag_state, grid[i]) if i is not None else None for i in lower_neighbours(block)]
    edges = block_edges(frag, aff, lower, agree=face_agreement(_faces(frag_state, block.id), neighbours))
    t = edges.table
    BlockState(state_root, "edges").save_arrays(
        block.id, u=t.u, v=t.v, aff_sum=t.aff_sum, count=t.count, must_merge=edges.must_merge
    )
    return {"n_edges": len(t), "n_must_merge": int(len(edges.must_merge))}


def _relabel_block(block: Block, *, store: str, lut_path: str) -> dict[str, Any]:
    lut = _load_lut(lut_path)
    frag = np.asarray(open_labels(store, "fragments").array[block.write])
    write_region(open_labels(store, "segmentation", mode="r+").array, block.write, relabel_block(frag, lut))
    return {}


def _load_lut(path: str) -> Lut:
    return _load_lut_version(path, os.stat(path).st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _load_lut_version(path: str, _mtime_ns: int) -> Lut:
    with np.load(path) as data:
        return Lut(data["fragments"], data["segments"])


def _load_edges(state: BlockState, blocks: Sequence[Block]) -> list[EdgeTable]:
    tables = []
    for b in blocks:
        a = state.load_arrays(b.id)
        tables.append(EdgeTable(a["u"], a["v"], a["aff_sum"], a["count"]))
    return tables
