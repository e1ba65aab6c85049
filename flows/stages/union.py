"""The segment stage's union at one threshold, as block and node tasks (:mod:`pipeline.segment.union`).

The driver only schedules: it holds the block list and, per row of blocks, how many segments each of
its planes starts (``O(blocks)`` small numbers), never fragments or pairs. Each task reads its inputs
from the block state and writes its records there; every step is resumable. Layout of
``<state>/union_t<threshold>/`` (each sub-folder a :class:`~pipeline.io.blockstate.BlockState` stage):

* ``up0/<block>``: each fragment's component key at level 0 and the block's crossing pairs;
* ``up<L>/<node>``: a node's crossing pairs and the keys it merged (levels 1 .. top);
* ``down<L>/<node>``: the final keys of a node's open keys (levels top - 1 .. 1);
* ``down0/<block>``: the final key of each of the block's fragments and the keys it owns; its marker
  holds the owned keys' count per plane;
* ``offsets.npy``: per row of blocks and plane, the segments numbered before it;
* ``ids/<row>``: the owned keys of a row of blocks and their segment ids;
* ``segments.json``: written last, the union is done: ``{"n_segments": n}``.

A relabel task then builds its block's table alone (:func:`block_lut`): its fragments' final keys, and
the ids of those keys from the rows of blocks that own them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flows.stages.runner import Task, Tasks, run_blocks
from pipeline.blocks import Block, grid_shape
from pipeline.io.atomic import atomic_file, write_atomic
from pipeline.io.blockstate import BlockState
from pipeline.segment.blockwise import Lut, RegionEdges
from pipeline.segment.union import (
    Crossing,
    Octree,
    band_ids,
    block_union,
    final_keys,
    node_union,
    plane_counts,
    remap,
)

__all__ = ["UNION_FORMAT", "block_lut", "union_segments", "union_volume"]

#: The layout of a union's state (a parameter of the union stage: another layout is redone, not read).
UNION_FORMAT = 2
_DONE = "segments.json"


@dataclass(frozen=True)
class _Grid:
    """What every task needs to know of the grid (small: it travels with each task)."""

    volume_shape: tuple[int, int, int]
    block_shape: tuple[int, int, int]
    grid: tuple[int, int, int]
    per_block: int

    @property
    def tree(self) -> Octree:
        return Octree(self.grid, self.per_block)

    def block_index(self, block_id: int) -> tuple[int, int, int]:
        return tuple(int(i) for i in np.unravel_index(block_id, self.grid))  # type: ignore[return-value]

    def row_of(self, block_id: int) -> int:
        """The row of blocks along x holding a block: ``bz * grid_y + by``."""
        bz, by, _ = self.block_index(block_id)
        return bz * self.grid[1] + by


def union_segments(state_root: str | Path, union: str) -> int | None:
    """The number of segments of a finished union, or None if it is not finished."""
    path = Path(state_root) / union / _DONE
    return int(json.loads(path.read_text())["n_segments"]) if path.is_file() else None


def union_volume(
    state_root: str | Path, union: str, blocks: Sequence[Block], *, threshold: float, per_block: int,
    volume_shape: Sequence[int], block_shape: Sequence[int], client: Any, max_retries: int, progress: bool,
) -> int:
    """Run the union at ``threshold`` over the blocks' region graphs (stages ``blocks`` and ``faces``),
    resuming; returns the number of segments."""
    state_root = str(state_root)
    grid = _Grid(tuple(int(s) for s in volume_shape), tuple(int(s) for s in block_shape),  # type: ignore[arg-type]
                 grid_shape(blocks), int(per_block))
    tree = grid.tree
    name = union.replace("union_t", "union t=")

    def run(step: str, items: Sequence[Any], task: Any, *, show: bool = False) -> None:
        # one progress bar, the blocks' first pass (the name the union's progress has always had)
        run_blocks(name if show else f"{name} {step}", items, task,
                   state=BlockState(state_root, f"{union}/{step}"), client=client, max_retries=max_retries,
                   progress=progress and show).raise_if_failed()

    common = {"state_root": state_root, "union": union, "grid": grid}
    run("up0", blocks, functools.partial(_up_block, threshold=float(threshold), **common), show=True)
    for level in range(1, tree.top + 1):
        run(f"up{level}", Tasks(len(tree.nodes(level))),
            functools.partial(_up_node, level=level, **common))
    for level in range(tree.top - 1, 0, -1):
        run(f"down{level}", Tasks(len(tree.nodes(level))),
            functools.partial(_down_node, level=level, **common))
    run("down0", blocks, functools.partial(_down_block, **common))

    # per row of blocks along x and plane, the keys numbered before the row's keys of that plane
    counts = np.zeros((grid.grid[0], grid.grid[1], grid.block_shape[0]), np.int64)
    down0 = BlockState(state_root, f"{union}/down0")
    for b in blocks:
        planes = down0.info(b.id)["planes"]
        counts[b.index[0], b.index[1], :len(planes)] += planes
    before_plane = np.cumsum(counts.sum(axis=1).ravel()) - counts.sum(axis=1).ravel()
    offsets = before_plane.reshape(grid.grid[0], 1, -1) + np.cumsum(counts, axis=1) - counts
    with atomic_file(Path(state_root) / union / "offsets.npy", fsync=True) as fh:
        np.save(fh, offsets)
    run("ids", Tasks(grid.grid[0] * grid.grid[1]), functools.partial(_ids_row, **common))
    n_segments = int(counts.sum())
    write_atomic(Path(state_root) / union / _DONE, json.dumps({"n_segments": n_segments}), fsync=True)
    return n_segments


def block_lut(state_root: str | Path, union: str, block: Block, *, per_block: int,
              volume_shape: Sequence[int], block_shape: Sequence[int], grid: Sequence[int]) -> Lut:
    """The table fragment -> segment of one block's fragments, from the finished union's records: its
    fragments' final keys and the ids of those keys, read from the rows of blocks that own them."""
    g = _Grid(tuple(volume_shape), tuple(block_shape), tuple(grid), int(per_block))  # type: ignore[arg-type]
    final = BlockState(state_root, f"{union}/down0").load_record(block.id, np.ndarray, "final")
    first = block.id * per_block + 1
    fragments = np.arange(first, first + final.size, dtype=np.uint64)
    segments = np.zeros(final.size, np.uint64)
    voxel = np.stack(np.unravel_index(final, g.volume_shape), axis=1)
    owner = voxel // np.asarray(g.block_shape)
    row = owner[:, 0] * g.grid[1] + owner[:, 1]
    ids = BlockState(state_root, f"{union}/ids")
    for r in np.unique(row):
        keys = ids.load_record(int(r), np.ndarray, "keys")
        numbers = ids.load_record(int(r), np.ndarray, "ids")
        here = row == r
        at = np.searchsorted(keys, final[here])
        segments[here] = numbers[at]
    return Lut(fragments, segments)


# -- tasks (module level so Dask can pickle them) ------------------------------------------------------


def _at(records: BlockState, block_id: int, name: str, threshold: float) -> np.ndarray:
    return records.load_record(block_id, RegionEdges, name).at(threshold)


def _up_block(block: Block, *, threshold: float, state_root: str, union: str, grid: _Grid) -> dict[str, Any]:
    blocks, faces = BlockState(state_root, "blocks"), BlockState(state_root, "faces")
    first_voxel = blocks.load_record(block.id, np.ndarray, "decisions.first_voxel")
    first, n = block.id * grid.per_block + 1, len(first_voxel)
    face_pairs = [_at(faces, block.id, "edges", threshold)]  # across its lower faces (it owns them)
    for d in range(3):  # across its upper faces: owned by the neighbours above, naming its fragments
        index = list(block.index)
        index[d] += 1
        if index[d] < grid.grid[d]:
            pairs = _at(faces, int(np.ravel_multi_index(index, grid.grid)), "edges", threshold)
            mine = (pairs >= np.uint64(first)) & (pairs < np.uint64(first + n))
            face_pairs.append(pairs[mine.any(axis=1)])
    keys, crossing = block_union(first, first_voxel, _at(blocks, block.id, "decisions.edges", threshold),
                                 np.concatenate(face_pairs), grid.volume_shape)
    BlockState(state_root, f"{union}/up0").save_records(block.id, keys=keys, crossing=crossing)
    return {"crossing": len(crossing)}


def _up_node(node: Task, *, level: int, state_root: str, union: str, grid: _Grid) -> dict[str, Any]:
    tree = grid.tree
    below = BlockState(state_root, f"{union}/up{level - 1}")
    children = [below.load_record(c, Crossing, "crossing") for c in tree.children(level, node.id)]
    result = node_union(children, tree, level, node.id)
    BlockState(state_root, f"{union}/up{level}").save_records(
        node.id, crossing=result.crossing, merged_from=result.merged_from, merged_to=result.merged_to)
    return {"crossing": len(result.crossing), "merged": int(result.merged_from.size)}


def _finals(state_root: str, union: str, tree: Octree, level: int, node: int,
            open_keys: np.ndarray) -> np.ndarray:
    """The final keys of node ``node``'s ``open_keys`` (level ``level`` < top), from its parent's records."""
    parent = tree.parent(level, node)
    up = BlockState(state_root, f"{union}/up{level + 1}")
    merged = [up.load_record(parent, np.ndarray, name) for name in ("merged_from", "merged_to")]
    if level + 1 == tree.top:  # the root: nothing is open above it
        empty = np.zeros(0, np.int64)
        return final_keys(open_keys, *merged, empty, empty)
    down = BlockState(state_root, f"{union}/down{level + 1}")
    return final_keys(open_keys, *merged, down.load_record(parent, np.ndarray, "open"),
                      down.load_record(parent, np.ndarray, "final"))


def _down_node(node: Task, *, level: int, state_root: str, union: str, grid: _Grid) -> dict[str, Any]:
    crossing = BlockState(state_root, f"{union}/up{level}").load_record(node.id, Crossing, "crossing")
    open_keys = crossing.open_keys
    final = _finals(state_root, union, grid.tree, level, node.id, open_keys)
    BlockState(state_root, f"{union}/down{level}").save_records(node.id, open=open_keys, final=final)
    return {}


def _down_block(block: Block, *, state_root: str, union: str, grid: _Grid) -> dict[str, Any]:
    up0 = BlockState(state_root, f"{union}/up0")
    keys = up0.load_record(block.id, np.ndarray, "keys")
    tree = grid.tree
    final = keys
    if tree.top > 0:
        open_keys = up0.load_record(block.id, Crossing, "crossing").open_keys
        final = remap(keys, open_keys, _finals(state_root, union, tree, 0, block.id, open_keys))
    # the components whose first voxel lies in this block: their key is one of its fragments' keys
    voxel = np.stack(np.unravel_index(final, grid.volume_shape), axis=1) if final.size else np.zeros((0, 3))
    start = np.array([sl.start for sl in block.write])
    stop = np.array([sl.stop for sl in block.write])
    owned = np.unique(final[((voxel >= start) & (voxel < stop)).all(axis=1)])
    BlockState(state_root, f"{union}/down0").save_records(block.id, final=final, owned=owned)
    z = (block.write[0].start, block.write[0].stop)
    return {"planes": plane_counts(owned, grid.volume_shape, z).tolist()}


def _ids_row(row: Task, *, state_root: str, union: str, grid: _Grid) -> dict[str, Any]:
    bz, by = divmod(row.id, grid.grid[1])
    members = [int(np.ravel_multi_index((bz, by, bx), grid.grid)) for bx in range(grid.grid[2])]
    down0 = BlockState(state_root, f"{union}/down0")
    owned = [down0.load_record(b, np.ndarray, "owned") for b in members]
    offsets = np.load(Path(state_root) / union / "offsets.npy", mmap_mode="r")[bz, by]
    ids = band_ids(owned, np.asarray(offsets), grid.volume_shape, bz * grid.block_shape[0])
    keys = np.concatenate(owned) if owned else np.zeros(0, np.int64)
    order = np.argsort(keys, kind="stable")
    segments = np.concatenate(ids).astype(np.uint64) if ids else np.zeros(0, np.uint64)
    BlockState(state_root, f"{union}/ids").save_records(row.id, keys=keys[order], ids=segments[order])
    return {"segments": int(keys.size)}
