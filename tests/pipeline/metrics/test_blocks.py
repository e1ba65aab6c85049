"""What blocks and objects contribute to the metrics (:mod:`pipeline.metrics.blocks`): summed over any tiling
they are the whole volume's, and an object's pieces read from its box are numbered as in the whole volume."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.blocks import block_grid
from pipeline.metrics.blocks import (
    NodeVoxels,
    block_counts,
    merge_contingency,
    node_voxels,
    object_summary,
    overlap_rows,
)
from pipeline.metrics.length import connected_instances, instance_overlaps, object_boxes
from pipeline.metrics.voxel import (
    accuracy,
    adjusted_rand_index,
    contingency_table,
    dice,
    partition_scores,
    variation_of_information,
)

NO_NODES = NodeVoxels(np.zeros((0, 3), np.int64), np.zeros(1, np.int64))


def _labels(rng, shape, n):
    coarse = rng.integers(0, n, size=tuple(max(1, s // 3) for s in shape))
    return np.kron(coarse, np.ones((3, 3, 3), np.int64))[: shape[0], : shape[1], : shape[2]].astype(np.uint32)


@pytest.mark.parametrize("seed", range(6))
def test_contingency_summed_over_any_tiling_is_the_whole_volumes(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(3, 14)), int(rng.integers(3, 20)), int(rng.integers(3, 20)))
    pred, true = _labels(rng, shape, 5), _labels(rng, shape, 4)
    block = tuple(int(rng.integers(1, s + 1)) for s in shape)
    tables = (block_counts(pred[b.write], true[b.write], origin=[s.start for s in b.write],
                           nodes=NO_NODES).table for b in block_grid(shape, block_shape=block))
    merged = merge_contingency(tables)
    p, t, c = contingency_table(pred, true)
    assert merged.pred.tolist() == p.tolist() and merged.true.tolist() == t.tolist()
    assert merged.counts.tolist() == c.tolist()
    acc, d, ari, voi = partition_scores(merged.pred, merged.true, merged.counts)
    assert (acc, d, ari) == (accuracy(pred, true), dice(pred, true), adjusted_rand_index(pred, true))
    assert voi == variation_of_information(pred, true)
    assert overlap_rows(merged).tolist() == instance_overlaps(pred, true).tolist()


def test_nodes_are_sampled_once_by_the_block_holding_their_voxel():
    import networkx as nx

    g = nx.path_graph(4)
    for i, pos in enumerate([(0.0, 0.0, 0.0), (0.0, 0.0, 2.6), (1.5, 0.5, 3.4), (99.0, 0.2, 0.0)]):
        g.nodes[i]["pos_um"] = pos
    nodes = node_voxels({1: g}, (2, 2, 8), voxel_size_um=(1.5, 0.5, 0.5))
    # floor(pos / voxel + 0.5), the last one outside the volume, clipped to it
    assert nodes.voxels.tolist() == [[0, 0, 0], [0, 0, 5], [1, 1, 7], [1, 0, 0]]
    pred = np.arange(32, dtype=np.uint64).reshape(2, 2, 8)
    seen = np.full(4, -1)
    for b in block_grid(pred.shape, block_shape=(1, 2, 3)):
        counts = block_counts(pred[b.write], pred[b.write], origin=[s.start for s in b.write], nodes=nodes)
        assert (seen[counts.node_index] == -1).all()
        seen[counts.node_index] = counts.node_labels
    assert seen.tolist() == [0, 5, 31, 16]


def test_an_objects_pieces_from_its_voxels_are_numbered_as_in_the_whole_volume():
    rng = np.random.default_rng(3)
    pred = _labels(rng, (9, 15, 17), 4)
    pred[:, :, 8] = 0  # cut every label in two along x
    true = _labels(rng, pred.shape, 3)
    whole = instance_overlaps(connected_instances(pred), true)
    rows = []
    for label, box in object_boxes(pred).items():
        where = tuple(w + b.start for w, b in zip(np.nonzero(pred[box] == label), box, strict=True))
        s = object_summary(np.ravel_multi_index(where, pred.shape), label, volume_shape=pred.shape,
                           voxel_size_um=(1, 1, 1), length=False, true_values=true[where])
        assert s.length_um is None
        rows.append(s.pieces)
    rows = np.concatenate(rows)
    rows = rows[np.lexsort((rows[:, 1], rows[:, 0]))]
    # the same overlaps, with piece ids in the order of the whole volume's connected components
    assert rows[:, [0, 2]].tolist() == whole[:, [0, 2]].tolist()
    rank = {v: k for k, v in enumerate(np.unique(rows[:, 1]).tolist(), start=1)}
    assert [rank[v] for v in rows[:, 1].tolist()] == whole[:, 1].tolist()


@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize("seed", range(5))
def test_voxel_pieces_are_cc3ds_components(connectivity, seed):
    """Pieces found from voxel lists alone are cc3d's components, each named by its first voxel."""
    import cc3d

    from pipeline.metrics.length import voxel_pieces

    rng = np.random.default_rng(seed)
    mask = rng.random((5, 7, 9)) < 0.3
    components = cc3d.connected_components(mask.view(np.uint8), connectivity=connectivity).ravel()
    raster = np.flatnonzero(mask.ravel())
    ids, first = np.unique(components, return_index=True)
    expected = dict(zip(ids.tolist(), first.tolist(), strict=True))
    got = voxel_pieces(raster, mask.shape, connectivity=connectivity)
    assert got.tolist() == [expected[c] for c in components[raster].tolist()]
