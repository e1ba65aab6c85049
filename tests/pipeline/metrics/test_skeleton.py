"""Skeleton metrics: the paper's worked examples, edge cases, and random cases against a slow reference."""

from __future__ import annotations

import itertools
import math

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.metrics import (
    correct_misalignment,
    sample_node_labels,
    skeleton_metrics,
    skeleton_metrics_from_node_labels,
)

VS = (1.5, 0.5, 0.5)  # (z, y, x) µm


def _chain(voxels, *, offset=0):
    """A path skeleton through the given voxel indices (z, y, x), node ids offset+1, offset+2, ..."""
    g = nx.Graph()
    for k, v in enumerate(voxels, start=offset + 1):
        g.add_node(k, pos_um=tuple(float(i * s) for i, s in zip(v, VS, strict=True)))
    g.add_edges_from((k, k + 1) for k in range(offset + 1, offset + len(voxels)))
    return g


# ---------------------------------------------------------------------------------------------------------
# the paper's worked examples


def test_figure_9_one_skeleton_misaligned_node_split_and_omits():
    # Nodes 1..8 along x at voxels x = 0, 2, ..., 14 (1 µm apart with 0.5 µm voxels): 7 edges of 1 µm.
    g = _chain([(1, 1, 2 * k) for k in range(8)])
    seg = np.zeros((3, 3, 16), np.uint16)
    seg[1, 1, 2:5] = 10  # nodes 2, 3 in segment A = 10
    # node 4 (x = 6) is "slightly misaligned": it falls on background between nodes 3 and 5
    seg[1, 1, 7:9] = 10  # node 5 in segment A
    seg[1, 1, 10:12] = 20  # node 6 in segment B = 20
    # node 7 (x = 12) on background; node 8 (x = 14) in segment C = 30
    seg[1, 1, 14] = 30
    # node 1 (x = 0) on background -> edge {1,2} omit
    labels = sample_node_labels(g, seg, voxel_size_um=VS)
    assert labels == {1: 0, 2: 10, 3: 10, 4: 0, 5: 10, 6: 20, 7: 0, 8: 30}
    assert correct_misalignment(g, labels)[4] == 10  # node 4 takes the label of nodes 3 and 5

    m = skeleton_metrics([g], seg, voxel_size_um=VS)
    # omit edges: {1,2}, {6,7}, {7,8} -> 3 of 7
    assert m.omit_pct == pytest.approx(100 * 3 / 7)
    assert m.merged_pct == 0.0
    assert m.edge_accuracy == pytest.approx(100 * 4 / 7)
    # non-zero components: {2,3,4,5} (A), {6} (B), {8} (C) -> 2 splits ({5,6} and between 6 and 8)
    assert m.splits_per_neuron == 2.0
    # pieces: A has edges {2,3}, {3,4}, {4,5} = 3 µm; B and C have no edges. len(G) = 7 µm.
    assert m.erl_um == pytest.approx(3**2 / 7)
    assert m.normalized_erl == pytest.approx(9 / 49)
    (rec,) = m.per_neuron
    assert (rec.n_edges, rec.length_um, rec.splits, rec.omit_edges, rec.merged_edges) == (7, 7.0, 2, 3, 0)
    assert rec.labels == (10, 20, 30)


def test_figure_10_two_skeletons_and_one_merged_segment():
    # G1: nodes 1-2-3 at z = 1 along y, G2: nodes 4-5-6-7 at z = 3 along y, 1 µm apart (2 voxels).
    g1 = _chain([(1, 2 * k, 1) for k in range(3)])
    g2 = _chain([(3, 2 * k, 1) for k in range(4)], offset=3)
    seg = np.zeros((5, 8, 3), np.uint8)
    seg[1:4, 2:5, 1] = 7  # one connected segment covering nodes 2, 3 of G1 and 5, 6 of G2 ...
    seg[3, 0:2, 1] = 7  # ... and node 4 of G2
    seg[3, 6, 1] = 8  # node 7 in its own segment; node 1 of G1 (z = 1, y = 0) on background
    m = skeleton_metrics([g1, g2], seg, voxel_size_um=VS)
    # G1: labels [0, 7, 7] -> edge {1,2} omit, edge {2,3} in piece of label 7, merged (7 is on G2 too)
    # G2: labels [7, 7, 7, 8] -> edges {4,5}, {5,6} merged, edge {6,7} is a split (7 vs 8)
    total_edges = 2 + 3
    assert m.omit_pct == pytest.approx(100 * 1 / total_edges)
    assert m.merged_pct == pytest.approx(100 * 3 / total_edges)
    assert m.edge_accuracy == pytest.approx(100 * 1 / total_edges)  # the split edge counts as correct
    # splits: G1 0 (one component {2,3}); G2 1 ({4,5,6} and {7}); weights 2/5 and 3/5
    assert m.splits_per_neuron == pytest.approx(3 / 5)
    # ERL: every piece is merged or has no edge -> 0
    assert m.erl_um == 0.0 and m.normalized_erl == 0.0
    assert [r.merged_edges for r in m.per_neuron] == [1, 2]


def test_perfect_segmentation():
    g1 = _chain([(1, 1, x) for x in range(0, 20, 2)])
    g2 = _chain([(3, y, 3) for y in range(0, 9)], offset=100)
    g2.add_node(200, pos_um=(3 * VS[0], 4 * VS[1], 6 * VS[2]))  # a side branch
    g2.add_edge(105, 200)
    seg = np.zeros((5, 10, 20), np.uint32)
    seg[1, 1, :] = 4
    seg[3, :, 3:7] = 9
    m = skeleton_metrics([g1, g2], seg, voxel_size_um=VS)
    assert (m.edge_accuracy, m.omit_pct, m.merged_pct, m.splits_per_neuron) == (100.0, 0.0, 0.0, 0.0)
    lengths = [r.length_um for r in m.per_neuron]
    assert lengths == [pytest.approx(9.0), pytest.approx(8 * 0.5 + 3 * 0.5)]  # branch: 3 voxels in x
    # each skeleton is one piece: ERL_i = len(G_i); erl = Σ len² / Σ len; normalized = 1
    assert m.erl_um == pytest.approx(sum(v * v for v in lengths) / sum(lengths))
    assert m.normalized_erl == pytest.approx(1.0)


def test_all_zero_segmentation():
    g = _chain([(0, 0, x) for x in range(5)])
    m = skeleton_metrics([g], np.zeros((2, 2, 6), np.uint8), voxel_size_um=VS)
    assert (m.omit_pct, m.merged_pct, m.edge_accuracy) == (100.0, 0.0, 0.0)
    assert m.splits_per_neuron == 0.0  # no non-zero node: floored at 0
    assert m.erl_um == 0.0 and m.normalized_erl == 0.0


def test_single_segment_merging_everything():
    g1 = _chain([(0, 0, x) for x in range(3)])
    g2 = _chain([(1, 1, x) for x in range(4)], offset=10)
    m = skeleton_metrics([g1, g2], np.ones((2, 2, 4), np.uint8), voxel_size_um=VS)
    assert (m.merged_pct, m.edge_accuracy, m.splits_per_neuron) == (100.0, 0.0, 0.0)
    assert m.erl_um == 0.0


def test_skeleton_without_edges_contributes_no_weight():
    lone = nx.Graph()
    lone.add_node("a", pos_um=(0.0, 0.0, 0.0))
    g = _chain([(0, 0, x) for x in range(3)])
    seg = np.full((1, 1, 3), 5, np.uint8)
    m = skeleton_metrics([g, lone], seg, voxel_size_um=VS)
    # the lone node carries label 5 too: label 5 is on two skeletons, so g's piece is merged
    assert m.merged_pct == 100.0
    assert m.per_neuron[1].n_edges == 0 and m.per_neuron[1].erl_um == 0.0


# ---------------------------------------------------------------------------------------------------------
# node sampling and misalignment correction


def test_sampling_rounds_half_up_and_clips_with_a_warning():
    g = nx.Graph()
    g.add_node(0, pos_um=(1.5, 0.25, 0.74))  # voxel (1, 0.5 -> 1, 1.48 -> 1)
    g.add_node(1, pos_um=(0.0, 0.0, 0.0))
    seg = np.arange(2 * 2 * 3, dtype=np.uint16).reshape(2, 2, 3)
    assert sample_node_labels(g, seg, voxel_size_um=VS) == {0: seg[1, 1, 1], 1: 0}
    g.add_node(2, pos_um=(100.0, -3.0, 0.5))  # outside: clipped to (1, 0, 1)
    with pytest.warns(UserWarning, match="outside the segmentation"):
        labels = sample_node_labels(g, seg, voxel_size_um=VS)
    assert labels[2] == seg[1, 0, 1]


def test_correction_fills_runs_between_equal_labels_only():
    g = nx.path_graph(9)
    labels = dict(enumerate([5, 0, 0, 5, 0, 6, 0, 0, 5]))
    fixed = correct_misalignment(g, labels)
    # run {1,2} between two 5s -> 5; run {4} between 5 and 6 -> stays 0; run {6,7} between 6 and 5 -> 0
    assert [fixed[i] for i in range(9)] == [5, 5, 5, 5, 0, 6, 0, 0, 5]


def test_correction_in_a_branched_run():
    # star: centre 0 (label 0) with arms 1..4; arms 1, 2 carry label 3, arm 3 label 4, arm 4 label 0
    g = nx.star_graph(4)
    fixed = correct_misalignment(g, {0: 0, 1: 3, 2: 3, 3: 4, 4: 0})
    assert fixed == {0: 3, 1: 3, 2: 3, 3: 4, 4: 0}  # only the path 1-0-2 is filled
    # two label pairs claim the centre: ambiguous, it stays 0
    fixed = correct_misalignment(g, {0: 0, 1: 3, 2: 3, 3: 4, 4: 4})
    assert fixed[0] == 0


def test_correction_does_not_cross_other_labels():
    g = nx.path_graph(5)
    assert correct_misalignment(g, dict(enumerate([2, 0, 7, 0, 2]))) == dict(enumerate([2, 0, 7, 0, 2]))


# ---------------------------------------------------------------------------------------------------------
# slow reference written from the definitions, on per-node labels


def _reference(skeletons, node_labels):
    corrected = []
    for g, labels in zip(skeletons, node_labels, strict=True):
        claims = {}
        nonzero = [n for n in g if labels[n] != 0]
        for u, v in itertools.combinations(nonzero, 2):
            if labels[u] != labels[v] or not nx.has_path(g, u, v):
                continue
            path = nx.shortest_path(g, u, v)  # the unique path in a tree
            interior = path[1:-1]
            if interior and all(labels[w] == 0 for w in interior):
                for w in interior:
                    claims.setdefault(w, set()).add(labels[u])
        fixed = dict(labels)
        for w, labs in claims.items():
            if len(labs) == 1:
                fixed[w] = next(iter(labs))
        corrected.append(fixed)

    owners = {}
    for i, lab in enumerate(corrected):
        for v in set(lab.values()) - {0}:
            owners.setdefault(v, set()).add(i)
    total_edges = sum(g.number_of_edges() for g in skeletons)
    records = []
    for g, lab in zip(skeletons, corrected, strict=True):

        def elen(a, b, g=g):
            return math.dist(g.nodes[a]["pos_um"], g.nodes[b]["pos_um"])

        length = sum(elen(a, b) for a, b in g.edges)
        omit = sum(1 for a, b in g.edges if lab[a] == 0 or lab[b] == 0)
        same = [(a, b) for a, b in g.edges if lab[a] == lab[b] != 0]
        h = nx.Graph()
        h.add_nodes_from(n for n in g if lab[n] != 0)
        h.add_edges_from(same)
        splits = max(0, nx.number_connected_components(h) - 1)
        merged = erl = 0.0
        for comp in nx.connected_components(h):
            edges = [(a, b) for a, b in same if a in comp]
            if len(owners[lab[next(iter(comp))]]) > 1:
                merged += len(edges)
            else:
                erl += sum(elen(a, b) for a, b in edges) ** 2
        erl = erl / length if length > 0 else 0.0
        records.append((g.number_of_edges(), length, splits, omit, merged, erl))
    total_len = sum(r[1] for r in records)
    omit_pct = 100 * sum(r[3] for r in records) / total_edges
    merged_pct = 100 * sum(r[4] for r in records) / total_edges
    return {
        "splits_per_neuron": sum(r[0] / total_edges * r[2] for r in records),
        "omit_pct": omit_pct,
        "merged_pct": merged_pct,
        "edge_accuracy": 100 - omit_pct - merged_pct,
        "erl_um": sum(r[1] * r[5] for r in records) / total_len,
        "normalized_erl": sum(r[1] * (r[5] / r[1]) for r in records if r[1] > 0) / total_len,
    }


@st.composite
def _cases(draw):
    n_skel = draw(st.integers(1, 3))
    skeletons, node_labels = [], []
    for s in range(n_skel):
        n = draw(st.integers(2, 14))
        g = nx.Graph()
        for k in range(n):
            z, y, x = draw(st.tuples(*[st.integers(0, 6)] * 3))
            g.add_node(f"{s}-{k}", pos_um=(1.5 * z, 0.5 * y + 0.01 * k, 0.5 * x))  # distinct positions
        for k in range(1, n):
            g.add_edge(f"{s}-{k}", f"{s}-{draw(st.integers(0, k - 1))}")
        skeletons.append(g)
        node_labels.append({v: draw(st.sampled_from([0, 0, 1, 2, 3])) for v in g})
    return skeletons, node_labels


@settings(max_examples=250, deadline=None)
@given(_cases())
def test_metrics_match_the_slow_reference(case):
    skeletons, node_labels = case
    got = skeleton_metrics_from_node_labels(skeletons, node_labels)
    want = _reference(skeletons, node_labels)
    for key, value in want.items():
        assert getattr(got, key) == pytest.approx(value, abs=1e-9), key


@settings(max_examples=40, deadline=None)
@given(_cases(), st.integers(0, 2**32 - 1))
def test_sampling_path_equals_the_node_label_path(case, seed):
    skeletons, _ = case
    rng = np.random.default_rng(seed)
    seg = rng.choice([0, 1, 2, 3], size=(7, 7, 7), p=[0.4, 0.2, 0.2, 0.2]).astype(np.uint8)
    sampled = [sample_node_labels(g, seg, voxel_size_um=VS) for g in skeletons]
    assert skeleton_metrics(skeletons, seg, voxel_size_um=VS) == skeleton_metrics_from_node_labels(
        skeletons, sampled
    )


# ---------------------------------------------------------------------------------------------------------
# validation


def test_validation():
    g = _chain([(0, 0, x) for x in range(3)])
    seg = np.zeros((2, 2, 4), np.uint8)
    with pytest.raises(TypeError, match="list of networkx.Graph"):
        skeleton_metrics(g, seg, voxel_size_um=VS)
    with pytest.raises(ValueError, match="empty"):
        skeleton_metrics([], seg, voxel_size_um=VS)
    with pytest.raises(TypeError, match="undirected"):
        skeleton_metrics([nx.DiGraph(g)], seg, voxel_size_um=VS)
    with pytest.raises(ValueError, match="ndim=2"):
        skeleton_metrics([g], seg[0], voxel_size_um=VS)
    with pytest.raises(TypeError, match="dtype float"):
        skeleton_metrics([g], seg.astype(float), voxel_size_um=VS)
    with pytest.raises(ValueError, match="voxel_size_um"):
        skeleton_metrics([g], seg, voxel_size_um=(1.0, 1.0))
    bad = nx.Graph([(0, 1)])
    with pytest.raises(ValueError, match="pos_um"):
        skeleton_metrics([bad], seg, voxel_size_um=VS)
    lone = nx.Graph()
    lone.add_node(0, pos_um=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="no skeleton has an edge"):
        skeleton_metrics([lone], seg, voxel_size_um=VS)
    with pytest.raises(ValueError, match="node_labels has 0 entries"):
        skeleton_metrics_from_node_labels([g], [])
    with pytest.raises(ValueError, match="no label for node"):
        skeleton_metrics_from_node_labels([g], [{1: 0}])
