"""The union over an octree of blocks gives :func:`union_lut`'s table id for id, resumes, and no task
reads more than its node's records."""

from __future__ import annotations

import random

import numpy as np
import pytest

from flows.stages.union import block_lut, union_segments, union_volume
from pipeline.blocks import block_grid, grid_shape
from pipeline.io.blockstate import BlockState
from pipeline.segment.agglomerate import union_lut
from pipeline.segment.blockwise import BlockDecisions, RegionEdges
from pipeline.segment.union import Octree, block_union, node_union

THRESHOLD = 0.5


def synthetic_records(state, shape, block_shape, *, seed, fragments=12, density=0.25):
    """Random block records as the ``blocks`` and ``faces`` stages leave them: fragments with distinct
    first voxels inside their block, scored pairs inside blocks and across each lower face. Returns the
    blocks, ``per_block`` and the whole graph (ids, first voxels, pairs merged at the threshold)."""
    rng = np.random.default_rng(seed)
    blocks = block_grid(shape, block_shape=block_shape)
    grid = grid_shape(blocks)
    per_block = int(np.prod(block_shape))
    st_blocks, st_faces = BlockState(state, "blocks"), BlockState(state, "faces")
    ids, firsts, merged = [], [], []
    n_of = {}
    for b in blocks:
        n = int(rng.integers(0, fragments + 1))
        n_of[b.id] = n
        local = rng.choice(int(np.prod(b.write_shape)), size=n, replace=False)
        voxel = np.stack(np.unravel_index(np.sort(local), b.write_shape), 1) + [s.start for s in b.write]
        frag = np.arange(b.id * per_block + 1, b.id * per_block + n + 1, dtype=np.uint64)
        pairs = np.zeros((0, 2), np.uint64)
        if n > 1:
            k = int(rng.integers(0, 2 * n))
            a, c = rng.integers(0, n, k), rng.integers(0, n, k)
            keep = a != c
            pairs = np.unique(np.sort(np.stack([frag[a[keep]], frag[c[keep]]], 1), axis=1), axis=0)
        edges = RegionEdges(pairs.astype(np.uint64), rng.random(len(pairs)).astype(np.float32))
        decisions = BlockDecisions(edges, (None, None, None), (None, None, None), voxel.astype(np.int64))
        st_blocks.save_records(b.id, decisions=decisions)
        st_blocks.mark_done(b.id, {"n_fragments": n})
        ids.append(frag)
        firsts.append(voxel)
        merged.append(edges.at(THRESHOLD))
    for b in blocks:
        face = []
        for d in range(3):
            if b.index[d] == 0:
                continue
            index = list(b.index)
            index[d] -= 1
            lower = int(np.ravel_multi_index(index, grid))
            n, m = n_of[b.id], n_of[lower]
            if n and m:
                k = rng.binomial(n * m, density)
                a = rng.integers(0, n, k) + b.id * per_block + 1
                c = rng.integers(0, m, k) + lower * per_block + 1
                face.append(np.unique(np.stack([c, a], 1).astype(np.uint64), axis=0))
        pairs = np.concatenate(face) if face else np.zeros((0, 2), np.uint64)
        edges = RegionEdges(pairs, rng.random(len(pairs)).astype(np.float32))
        st_faces.save_records(b.id, edges=edges)
        st_faces.mark_done(b.id, {})
        merged.append(edges.at(THRESHOLD))
    return blocks, per_block, (np.concatenate(ids), np.concatenate(firsts), merged)


def run_union(state, blocks, shape, block_shape, per_block, client=None):
    return union_volume(state, "union_t0.5", blocks, threshold=THRESHOLD, per_block=per_block,
                        volume_shape=shape, block_shape=block_shape, client=client, max_retries=0,
                        progress=False)


def luts(state, blocks, shape, block_shape, per_block):
    grid = grid_shape(blocks)
    parts = [block_lut(state, "union_t0.5", b, per_block=per_block, volume_shape=shape,
                       block_shape=block_shape, grid=grid) for b in blocks]
    return (np.concatenate([p.fragments for p in parts]), np.concatenate([p.segments for p in parts]))


CASES = [  # volume, block: grids 1x1x1, 2x2x2, 3x5x2 (uneven, levels 0..3), 7x1x1, 1x1x9
    ((4, 6, 6), (4, 6, 6)),
    ((8, 8, 8), (4, 4, 4)),
    ((12, 20, 7), (4, 4, 4)),
    ((14, 3, 3), (2, 3, 3)),
    ((2, 2, 27), (2, 2, 3)),
]


@pytest.mark.parametrize(("shape", "block_shape"), CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_octree_union_gives_union_luts_table_id_for_id(tmp_path, shape, block_shape, seed):
    blocks, per_block, (ids, firsts, merged) = synthetic_records(tmp_path, shape, block_shape, seed=seed)
    n_segments = run_union(tmp_path, blocks, shape, block_shape, per_block)
    want_frags, want_segs = union_lut(ids, merged, first_voxel=firsts)
    frags, segs = luts(tmp_path, blocks, shape, block_shape, per_block)
    np.testing.assert_array_equal(frags, want_frags)
    np.testing.assert_array_equal(segs, want_segs)
    assert n_segments == union_segments(tmp_path, "union_t0.5") == (int(want_segs.max()) if segs.size else 0)


def test_one_object_through_every_block_is_one_segment(tmp_path):
    """Pairs chaining fragment 1 of every block to its neighbours' make one segment spanning the
    volume; the rest stay apart. Numbered by first voxel: the chain's is the volume's first voxel."""
    shape, block_shape = (8, 12, 12), (2, 3, 3)
    blocks = block_grid(shape, block_shape=block_shape)
    grid, per_block = grid_shape(blocks), int(np.prod(block_shape))
    st_blocks, st_faces = BlockState(tmp_path, "blocks"), BlockState(tmp_path, "faces")
    for b in blocks:  # two fragments per block: the first voxel (chain) and the last one
        origin = np.array([s.start for s in b.write])
        voxel = np.stack([origin, origin + np.array(b.write_shape) - 1])
        empty = RegionEdges.empty()
        st_blocks.save_records(b.id, decisions=BlockDecisions(empty, (None,) * 3, (None,) * 3, voxel))
        st_blocks.mark_done(b.id, {"n_fragments": 2})
        pairs = []
        for d in range(3):
            if b.index[d]:
                index = list(b.index)
                index[d] -= 1
                lower = int(np.ravel_multi_index(index, grid))
                pairs.append([lower * per_block + 1, b.id * per_block + 1])
        pairs = np.array(pairs, np.uint64).reshape(-1, 2)
        st_faces.save_records(b.id, edges=RegionEdges(pairs, np.zeros(len(pairs), np.float32)))
        st_faces.mark_done(b.id, {})
    assert run_union(tmp_path, blocks, shape, block_shape, per_block) == 1 + len(blocks)
    frags, segs = luts(tmp_path, blocks, shape, block_shape, per_block)
    np.testing.assert_array_equal(segs[0::2], 1)  # the chain
    # the others in raster order of their voxel: the last voxel of each block
    last = np.array([np.ravel_multi_index([s.stop - 1 for s in b.write], shape) for b in blocks])
    np.testing.assert_array_equal(segs[1::2], np.argsort(np.argsort(last)) + 2)


def test_a_resumed_union_is_bit_identical(tmp_path):
    shape, block_shape = (12, 20, 7), (4, 4, 4)
    blocks, per_block, _ = synthetic_records(tmp_path, shape, block_shape, seed=5)
    run_union(tmp_path, blocks, shape, block_shape, per_block)
    before = luts(tmp_path, blocks, shape, block_shape, per_block)
    union = tmp_path / "union_t0.5"
    (union / "segments.json").unlink()
    rng = random.Random(0)
    forgotten = 0
    for step in sorted(p for p in union.iterdir() if p.is_dir()):
        state = BlockState(tmp_path, f"union_t0.5/{step.name}")
        for i in sorted(state.done_ids()):
            if rng.random() < 0.5:
                state.forget(i)
                forgotten += 1
    assert forgotten > 10
    run_union(tmp_path, blocks, shape, block_shape, per_block)
    after = luts(tmp_path, blocks, shape, block_shape, per_block)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_root_closes_every_component_and_nodes_keep_only_crossing_pairs(tmp_path):
    """Level by level, a node's crossing pairs are exactly the merged pairs with one end inside it."""
    shape, block_shape = (12, 20, 7), (4, 4, 4)
    blocks, per_block, (_, _, merged) = synthetic_records(tmp_path, shape, block_shape, seed=3)
    run_union(tmp_path, blocks, shape, block_shape, per_block)
    tree = Octree(grid_shape(blocks), per_block)
    faces = np.concatenate(merged[len(blocks):])  # the face pairs (the inner ones never cross)
    assert tree.top == 3
    for level in range(tree.top + 1):
        st = BlockState(tmp_path, f"union_t0.5/up{level}")
        where = tree.node_of(faces.ravel(), level).reshape(-1, 2)
        for node in tree.nodes(level):
            from pipeline.segment.union import Crossing

            got = st.load_record(node, Crossing, "crossing")
            want = faces[(where == node).sum(axis=1) == 1]
            assert {tuple(p) for p in got.pairs.tolist()} == {tuple(p) for p in want.tolist()}
            assert ((got.keys >= 0).sum(axis=1) == 1).all()
    root = BlockState(tmp_path, f"union_t0.5/up{tree.top}").load_record(0, Crossing, "crossing")
    assert len(root) == 0


def test_block_and_node_union_by_hand():
    """Two blocks along x, two fragments each; block 1's fragment 1 joins block 0's fragment 2."""
    tree = Octree((1, 1, 2), per_block=10)
    # block 0: fragments 1 (voxel (0,0,0)) and 2 (voxel (0,1,0)), not merged; block 1: 11 and 12 merged
    k0, c0 = block_union(1, [[0, 0, 0], [0, 1, 0]], np.zeros((0, 2)), [[2, 11]], (1, 4, 4))
    k1, c1 = block_union(11, [[0, 0, 2], [0, 3, 3]], [[11, 12]], [[2, 11]], (1, 4, 4))
    assert k0.tolist() == [0, 4] and k1.tolist() == [2, 2]  # raster keys: min first voxel of each component
    assert c0.keys.tolist() == [[4, -1]] and c1.keys.tolist() == [[-1, 2]]
    root = node_union([c0, c1], tree, 1, 0)
    assert len(root.crossing) == 0
    assert root.merged_from.tolist() == [4] and root.merged_to.tolist() == [2]  # 2 + {11, 12}: key 2
    with pytest.raises(ValueError, match="exactly one end"):
        block_union(1, [[0, 0, 0]], np.zeros((0, 2)), [[5, 6]], (1, 4, 4))
