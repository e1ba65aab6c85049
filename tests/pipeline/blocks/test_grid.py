from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.blocks import block_grid, grid_shape


def test_hand_computed_grid():
    blocks = block_grid((10, 8, 8), block_shape=(4, 8, 4), chunks=(2, 4, 4), halo=(1, 2, 3))
    assert len(blocks) == 3 * 1 * 2
    first, last = blocks[0], blocks[-1]
    assert first.index == (0, 0, 0) and first.id == 0
    assert first.write == (slice(0, 4), slice(0, 8), slice(0, 4))
    assert first.read == (slice(0, 5), slice(0, 8), slice(0, 7))
    assert first.read_pad == ((1, 0), (2, 2), (3, 0))
    assert last.index == (2, 0, 1) and last.id == 5
    assert last.write == (slice(8, 10), slice(0, 8), slice(4, 8))  # a short last block
    assert last.read == (slice(7, 10), slice(0, 8), slice(1, 8))
    assert last.read_pad == ((0, 1), (2, 2), (0, 3))
    assert last.write_in_read == (slice(1, 3), slice(0, 8), slice(3, 7))


@settings(max_examples=200, deadline=None)
@given(
    shape=st.tuples(*[st.integers(1, 40)] * 3),
    chunks=st.tuples(*[st.integers(1, 6)] * 3),
    mult=st.tuples(*[st.integers(1, 3)] * 3),
    halo=st.tuples(*[st.integers(0, 3)] * 3),
)
def test_write_regions_tile_the_volume_and_own_whole_chunks(shape, chunks, mult, halo):
    block_shape = tuple(c * m for c, m in zip(chunks, mult))
    halo = tuple(min(h, b) for h, b in zip(halo, block_shape))
    blocks = block_grid(shape, block_shape=block_shape, chunks=chunks, halo=halo)
    cover = np.zeros(shape, np.int32)
    chunk_owner: dict[tuple[int, ...], int] = {}
    for b in blocks:
        cover[b.write] += 1
        for axis in range(3):
            w, r = b.write[axis], b.read[axis]
            assert w.start % chunks[axis] == 0
            assert w.stop % chunks[axis] == 0 or w.stop == shape[axis]
            assert r.start == max(w.start - halo[axis], 0) and r.stop == min(w.stop + halo[axis], shape[axis])
            assert r.start - b.read_pad[axis][0] == w.start - halo[axis]
        # No chunk is touched by two blocks' write regions.
        ranges = [range(w.start // c, -(-w.stop // c)) for w, c in zip(b.write, chunks)]
        for cz in ranges[0]:
            for cy in ranges[1]:
                for cx in ranges[2]:
                    assert chunk_owner.setdefault((cz, cy, cx), b.id) == b.id
    assert (cover == 1).all()
    assert [b.id for b in blocks] == list(range(len(blocks)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"block_shape": (3, 4, 4), "chunks": (2, 4, 4)}, "not a multiple of the chunk shape"),
        ({"block_shape": (4, 4, 4), "halo": (5, 0, 0)}, "halo .* is larger than block_shape"),
        ({"block_shape": (0, 4, 4)}, "block_shape must be three positive integers"),
        ({"block_shape": (4, 4, 4), "halo": (-1, 0, 0)}, "halo must be three non-negative integers"),
        ({"block_shape": (4, 4)}, "block_shape must be three"),
    ],
)
def test_bad_grids_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        block_grid((8, 8, 8), **kwargs)


def test_a_grid_makes_its_blocks_on_demand_as_a_sequence():
    blocks = block_grid((10, 8, 8), block_shape=(4, 8, 4), halo=(1, 2, 3))
    listed = list(blocks)
    assert len(listed) == len(blocks) == 6 and [b.id for b in listed] == list(range(6))
    assert blocks[-1] == listed[5] and blocks[-6] == listed[0] and blocks[1:4] == listed[1:4]
    assert blocks == listed and blocks == block_grid((10, 8, 8), block_shape=(4, 8, 4), halo=(1, 2, 3))
    assert grid_shape(blocks) == grid_shape(listed) == (3, 1, 2)
    with pytest.raises(IndexError, match="outside a grid of 6 blocks"):
        blocks[6]
    # a whole-brain grid (10^6 blocks) is made in no time and no memory: only the asked blocks exist
    huge = block_grid((400, 800, 800), block_shape=(4, 8, 8))
    assert len(huge) == 10**6 and huge[-1].write == (slice(396, 400), slice(792, 800), slice(792, 800))
