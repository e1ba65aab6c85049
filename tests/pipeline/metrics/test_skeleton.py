"""Skeleton metrics: the paper's worked examples, edge cases, and random cases against a slow reference."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from fractions import Fraction

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.metrics import (
    MIN_LABEL_NODES,
    correct_misalignment,
    resolve_node_labels,
    sample_node_labels,
    skeleton_metrics,
    skeleton_metrics_from_node_labels,
)
from tests.pipeline.metrics import tubes

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


@pytest.mark.parametrize("min_label_nodes", [1, MIN_LABEL_NODES])
def test_figure_9_one_skeleton_misaligned_node_split_and_omits(min_label_nodes):
    # The paper's rule is min_label_nodes=1. With the default the numbers are the same: the skeleton
    # has 8 < 2 * 10 nodes (short) and is the only one, so it is the home of every label on it.
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

    m = skeleton_metrics([g], seg, voxel_size_um=VS, min_label_nodes=min_label_nodes)
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
    m = skeleton_metrics([g1, g2], seg, voxel_size_um=VS, min_label_nodes=1)  # the paper's rule
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
    assert [r.merged_with for r in m.per_neuron] == [(1,), (0,)]

    # The default rule: both skeletons are short (< 20 nodes). Label 7 lies on 3 nodes of G2 and 2 of
    # G1, so its home is G2; on G1 its nodes are stray with only background next to them, so they
    # become 0: G1 is omitted, not merged (a short skeleton inside a longer one's segment).
    d = skeleton_metrics([g1, g2], seg, voxel_size_um=VS)
    assert d.omit_pct == pytest.approx(100 * 2 / total_edges)  # both edges of G1
    assert d.merged_pct == 0.0
    assert d.splits_per_neuron == pytest.approx(3 / 5)  # G2: 7 | 8, as before
    # G2 (3 µm): one non-merged piece of label 7 over edges {4,5}, {5,6} = 2 µm
    assert d.erl_um == pytest.approx((3 * 2**2 / 3) / 5)
    assert d.normalized_erl == pytest.approx(3 * (4 / 9) / 5)
    assert [r.stray_nodes for r in d.per_neuron] == [2, 0]


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
    seg = np.ones((2, 2, 4), np.uint8)
    m = skeleton_metrics([g1, g2], seg, voxel_size_um=VS, min_label_nodes=1)  # the paper's rule
    assert (m.merged_pct, m.edge_accuracy, m.splits_per_neuron) == (100.0, 0.0, 0.0)
    assert m.erl_um == 0.0
    # default rule: both are short; label 1 covers 4 nodes of g2 and 3 of g1, so only g2 is its home:
    # g1 (2 of 5 edges) is omitted, g2 keeps the label unmerged
    d = skeleton_metrics([g1, g2], seg, voxel_size_um=VS)
    assert (d.omit_pct, d.merged_pct, d.splits_per_neuron) == (40.0, 0.0, 0.0)
    # long skeletons (>= 10 nodes each) in one segment are merged under the default rule too
    h1 = _chain([(0, 0, x) for x in range(12)])
    h2 = _chain([(1, 1, x) for x in range(10)], offset=20)
    d = skeleton_metrics([h1, h2], np.ones((2, 2, 12), np.uint8), voxel_size_um=VS)
    assert (d.merged_pct, d.edge_accuracy, d.erl_um) == (100.0, 0.0, 0.0)
    assert [r.merges for r in d.per_neuron] == [1, 1]


def test_skeleton_without_edges_contributes_no_weight():
    lone = nx.Graph()
    lone.add_node("a", pos_um=(0.0, 0.0, 0.0))
    g = _chain([(0, 0, x) for x in range(3)])
    seg = np.full((1, 1, 3), 5, np.uint8)
    m = skeleton_metrics([g, lone], seg, voxel_size_um=VS, min_label_nodes=1)
    # paper's rule: the lone node carries label 5 too: label 5 is on two skeletons, g's piece is merged
    assert m.merged_pct == 100.0
    assert m.per_neuron[1].n_edges == 0 and m.per_neuron[1].erl_um == 0.0
    # default rule: 5 covers 3 nodes of g and 1 of the lone skeleton, so g is its home and the lone
    # node's sample does not count: nothing is merged
    d = skeleton_metrics([g, lone], seg, voxel_size_um=VS)
    assert d.merged_pct == 0.0 and d.normalized_erl == 1.0
    assert d.per_neuron[1].labels == () and d.per_neuron[1].stray_nodes == 1


# ---------------------------------------------------------------------------------------------------------
# the coverage rule (step 2): touching tubes, threshold edges, short skeletons


def test_exact_ground_truth_of_touching_tubes_scores_perfect():
    seg, skeletons = tubes.labels(), tubes.skeletons()
    m = skeleton_metrics(skeletons, seg, voxel_size_um=tubes.VS)
    assert (m.omit_pct, m.merged_pct, m.edge_accuracy, m.splits_per_neuron) == (0.0, 0.0, 100.0, 0.0)
    assert m.normalized_erl == pytest.approx(1.0)
    lengths = [40.0, 40.0, tubes.LENGTH_C_UM]
    assert m.erl_um == pytest.approx(sum(v * v for v in lengths) / sum(lengths))
    assert [r.label for r in m.per_neuron] == [tubes.A, tubes.B, tubes.C]
    assert [r.labels for r in m.per_neuron] == [(tubes.A,), (tubes.B,), (tubes.C,)]
    assert [r.stray_nodes for r in m.per_neuron] == [1, 1, 1]  # A's tip in B, B's tip in A, C's border node
    assert [r.matched_label for r in m.per_neuron] == [tubes.A, tubes.B, tubes.C]
    assert [r.matched_cable_um for r in m.per_neuron] == pytest.approx(lengths)
    assert [r.merges for r in m.per_neuron] == [0, 0, 0]
    # the paper's rule (every sampled label counts) on the same input: the tips and the border node
    # merge A and B (3 on A, B, C; 5 on A, B): A's and B's 39 edges between own-label nodes are merged,
    # 75 % of the edges of a perfect segmentation
    paper = skeleton_metrics(skeletons, seg, voxel_size_um=tubes.VS, min_label_nodes=1)
    assert paper.merged_pct == pytest.approx(100 * 78 / 104)
    assert paper.normalized_erl < 0.5
    # relabelled and as a list with graph labels: the same numbers
    renumbered = np.where(seg > 0, seg.astype(np.uint64) + 2**40, 0).astype(np.uint64)
    graphs = []
    for label, g in skeletons.items():
        g = g.copy()
        g.graph["label"] = label
        graphs.append(g)
    again = skeleton_metrics(graphs, renumbered, voxel_size_um=tubes.VS)
    assert (again.merged_pct, again.splits_per_neuron, again.normalized_erl) == (
        m.merged_pct, m.splits_per_neuron, m.normalized_erl,
    )
    assert [r.label for r in again.per_neuron] == [tubes.A, tubes.B, tubes.C]


def test_tube_cut_in_two_at_a_gap():
    seg, skeletons = tubes.labels(), tubes.skeletons()
    x_um = np.arange(seg.shape[2]) * tubes.VS[2]
    seg[(seg == tubes.A) & (x_um >= 14.0)[None, None, :]] = 7  # A's nodes x = 3..13 keep 3, 14..43 get 7
    m = skeleton_metrics(skeletons, seg, voxel_size_um=tubes.VS)
    a, b, c = m.per_neuron
    # A: pieces 3 (nodes 3..13: 10 edges, 10 µm) and 7 (nodes 14..43, its tip in B absorbed: 29 µm);
    # the split edge 13-14 (1 µm) counts as correct
    assert (a.splits, a.omit_edges, a.merged_edges, a.labels) == (1, 0, 0, (3, 7))
    assert a.erl_um == pytest.approx((10**2 + 29**2) / 40)
    assert a.normalized_erl == pytest.approx(941 / 1600)
    assert (a.matched_label, a.matched_cable_um) == (7, pytest.approx(29.0))
    assert b.normalized_erl == c.normalized_erl == pytest.approx(1.0)  # their samples of 7 are stray
    total_edges = 40 + 40 + 24
    assert m.splits_per_neuron == pytest.approx(40 / total_edges)
    assert (m.omit_pct, m.merged_pct) == (0.0, 0.0)
    length_c = tubes.LENGTH_C_UM
    assert m.normalized_erl == pytest.approx((40 * 941 / 1600 + 40 + length_c) / (80 + length_c))


def test_two_touching_tubes_in_one_segment_are_merged():
    seg, skeletons = tubes.labels(), tubes.skeletons()
    seg[seg == tubes.B] = tubes.A
    m = skeleton_metrics(skeletons, seg, voxel_size_um=tubes.VS)
    a, b, c = m.per_neuron
    # A and B: one piece of label 3 each (40 edges), 3 counts on both -> merged; C's border sample stray
    assert (a.merged_edges, b.merged_edges, c.merged_edges) == (40, 40, 0)
    assert m.merged_pct == pytest.approx(100 * 80 / 104)
    assert m.edge_accuracy == pytest.approx(100 * 24 / 104)
    assert (a.merged_with, b.merged_with, c.merged_with) == ((1,), (0,), ())
    assert (a.erl_um, b.erl_um) == (0.0, 0.0)
    assert m.normalized_erl == pytest.approx(tubes.LENGTH_C_UM / (80 + tubes.LENGTH_C_UM))


def _line(n, *, offset=0):
    return _chain([(0, 0, x) for x in range(n)], offset=offset)


@pytest.mark.parametrize("k", [3, MIN_LABEL_NODES])
def test_threshold_edges(k):
    # skeleton 1: 30 nodes (>= 2k, so no short-skeleton clause), label 1 then m nodes of label 2 at its
    # tip; skeleton 2: 30 nodes, all label 2
    g1, g2 = _line(30), _line(30, offset=100)
    for m_nodes, counts in ((k - 1, False), (k, True)):
        labels1 = {n: (2 if n > 30 - m_nodes else 1) for n in g1}
        labels2 = {n: 2 for n in g2}
        got = skeleton_metrics_from_node_labels([g1, g2], [labels1, labels2], min_label_nodes=k)
        r1, r2 = got.per_neuron
        if not counts:  # k - 1 nodes: stray, absorbed into label 1
            assert (r1.labels, r1.splits, r1.merged_edges, r1.stray_nodes) == ((1,), 0, 0, k - 1)
            assert got.merged_pct == 0.0 and got.normalized_erl == pytest.approx(1.0)
        else:  # k nodes: counts, so a split on 1 and a merge of both pieces of label 2
            assert (r1.labels, r1.splits, r1.merged_edges, r1.stray_nodes) == ((1, 2), 1, k - 1, 0)
            assert r2.merged_edges == 29
            assert got.merged_pct == pytest.approx(100 * (k - 1 + 29) / 58)
            # non-merged: skeleton 1's piece of label 1 over 30 - k nodes, edges of 0.5 µm
            assert r1.erl_um == pytest.approx((0.5 * (29 - k)) ** 2 / (0.5 * 29))


def test_stray_runs_between_two_labels_and_chains_of_stray_runs():
    g = _line(40)
    k = 5
    # 1 x 15, stray 8 x 2, 0, 2 x 20, stray 9 at the tip: the 8-run touches only label 1 (the 0 is
    # ignored), the tip touches only 2
    labels = [1] * 15 + [8, 8, 0] + [2] * 21 + [9]
    fixed = resolve_node_labels([g], [dict(enumerate(labels, start=1))], min_label_nodes=k)[0]
    assert [fixed[n] for n in range(1, 41)] == [1] * 17 + [0] + [2] * 22
    # a stray run between two counted labels becomes background; a chain of two stray runs next to
    # 1 on one side: the run touching 1 joins it, the run touching only strays becomes 0
    labels = [1] * 15 + [8, 8] + [2] * 15 + [3, 3, 4, 4, 4] + [0, 0, 0]
    fixed = resolve_node_labels([g], [dict(enumerate(labels, start=1))], min_label_nodes=k)[0]
    assert [fixed[n] for n in range(1, 41)] == [1] * 15 + [0, 0] + [2] * 17 + [0] * 6


def test_short_skeletons_keep_their_own_label():
    # a 4-node branch whose first 2 nodes lie in its parent's segment (label 1 on 25 nodes of the
    # parent): label 2's home is the branch, label 1's home the parent -> perfect
    parent, branch = _line(25), _line(4, offset=50)
    got = skeleton_metrics_from_node_labels(
        [parent, branch], [{n: 1 for n in parent}, {51: 1, 52: 1, 53: 2, 54: 2}]
    )
    assert (got.merged_pct, got.omit_pct, got.splits_per_neuron) == (0.0, 0.0, 0.0)
    assert got.per_neuron[1].labels == (2,) and got.per_neuron[1].stray_nodes == 2
    # two short skeletons wholly in one label tie (same count, same fraction): both are homes, merged
    s1, s2 = _line(3), _line(3, offset=10)
    got = skeleton_metrics_from_node_labels([s1, s2], [{n: 4 for n in s1}, {n: 4 for n in s2}])
    assert got.merged_pct == 100.0
    # same count, larger fraction wins: 3 of 3 nodes beats 3 of 5
    s3 = _line(5, offset=20)
    labels3 = {21: 4, 22: 4, 23: 4, 24: 0, 25: 0}
    got = skeleton_metrics_from_node_labels([s1, s3], [{n: 4 for n in s1}, labels3])
    assert got.per_neuron[0].labels == (4,) and got.per_neuron[1].labels == ()


def test_coverage_rule_with_uint64_labels():
    big = 2**64 - 5  # does not fit int64
    g = _line(25)
    labels = {n: (big if n < 25 else big + 1) for n in g}  # a stray tip node of another huge label
    assert resolve_node_labels([g], [labels])[0][25] == big
    rec = skeleton_metrics_from_node_labels([g], [labels]).per_neuron[0]
    assert (rec.labels, rec.matched_label, rec.normalized_erl) == ((big,), big, 1.0)


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


def _reference_coverage(skeletons, node_labels, k):
    """Step 2 from its definition: which labels count, stray runs, absorbed or zeroed."""
    counts = [Counter(v for v in labels.values() if v != 0) for labels in node_labels]
    sizes = [g.number_of_nodes() for g in skeletons]

    def counts_on(i, label):
        if counts[i][label] >= k:
            return True
        if sizes[i] >= 2 * k:
            return False

        def key(j):
            return (counts[j][label], Fraction(counts[j][label], sizes[j]))

        return all(key(i) >= key(j) for j in range(len(skeletons)) if counts[j][label] > 0)

    out = []
    for i, (g, labels) in enumerate(zip(skeletons, node_labels, strict=True)):
        stray = {n for n in g if labels[n] != 0 and not counts_on(i, labels[n])}
        runs = nx.Graph()
        runs.add_nodes_from(stray)
        runs.add_edges_from((a, b) for a, b in g.edges if {a, b} <= stray and labels[a] == labels[b])
        fixed = dict(labels)
        for run in nx.connected_components(runs):
            around = {labels[w] for v in run for w in g[v] if w not in stray and labels[w] != 0}
            new = next(iter(around)) if len(around) == 1 else 0
            for v in run:
                fixed[v] = new
        out.append((fixed, len(stray)))
    return out


def _reference(skeletons, node_labels, k=1):
    """All metrics from the definitions, by brute force (paths, components, label sets)."""
    corrected, strays = [], []
    for g, (labels, n_stray) in zip(skeletons, _reference_coverage(skeletons, node_labels, k), strict=True):
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
        strays.append(n_stray)

    owners = {}
    for i, lab in enumerate(corrected):
        for v in set(lab.values()) - {0}:
            owners.setdefault(v, set()).add(i)
    total_edges = sum(g.number_of_edges() for g in skeletons)
    records = []
    for i, (g, lab) in enumerate(zip(skeletons, corrected, strict=True)):

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
        present = set(lab.values()) - {0}
        others = set().union(*(owners[v] for v in present)) - {i} if present else set()
        cable = {}
        for a, b in same:
            cable[lab[a]] = cable.get(lab[a], 0.0) + elen(a, b)
        best = min(cable, key=lambda v: (-cable[v], v)) if cable else 0
        records.append(
            dict(
                n_edges=g.number_of_edges(), length_um=length, splits=splits, omit_edges=omit,
                merged_edges=merged, erl_um=erl, labels=tuple(sorted(present)), merges=len(others),
                merged_with=tuple(sorted(others)), matched_label=best,
                matched_cable_um=cable.get(best, 0.0), stray_nodes=strays[i],
            )
        )
    total_len = sum(r["length_um"] for r in records)
    omit_pct = 100 * sum(r["omit_edges"] for r in records) / total_edges
    merged_pct = 100 * sum(r["merged_edges"] for r in records) / total_edges
    summary = {
        "splits_per_neuron": sum(r["n_edges"] / total_edges * r["splits"] for r in records),
        "omit_pct": omit_pct,
        "merged_pct": merged_pct,
        "edge_accuracy": 100 - omit_pct - merged_pct,
        "erl_um": sum(r["length_um"] * r["erl_um"] for r in records) / total_len,
        "normalized_erl": sum(r["erl_um"] for r in records if r["length_um"] > 0) / total_len,
    }
    return summary, records


@st.composite
def _cases(draw, max_nodes=14):
    n_skel = draw(st.integers(1, 3))
    skeletons, node_labels = [], []
    for s in range(n_skel):
        n = draw(st.integers(2, max_nodes))
        g = nx.Graph()
        for k in range(n):
            z, y, x = draw(st.tuples(*[st.integers(0, 6)] * 3))
            g.add_node(f"{s}-{k}", pos_um=(1.5 * z, 0.5 * y + 0.01 * k, 0.5 * x))  # distinct positions
        for k in range(1, n):
            g.add_edge(f"{s}-{k}", f"{s}-{draw(st.integers(0, k - 1))}")
        skeletons.append(g)
        node_labels.append({v: draw(st.sampled_from([0, 0, 1, 2, 3])) for v in g})
    return skeletons, node_labels


def _check_against_reference(skeletons, node_labels, k):
    got = skeleton_metrics_from_node_labels(skeletons, node_labels, min_label_nodes=k)
    summary, records = _reference(skeletons, node_labels, k)
    for key, value in summary.items():
        assert getattr(got, key) == pytest.approx(value, abs=1e-9), key
    for rec, want in zip(got.per_neuron, records, strict=True):
        for key, value in want.items():
            assert getattr(rec, key) == pytest.approx(value, abs=1e-9), key


@settings(max_examples=250, deadline=None)
@given(_cases(), st.integers(1, 6))
def test_metrics_match_the_slow_reference(case, min_label_nodes):
    skeletons, node_labels = case
    _check_against_reference(skeletons, node_labels, min_label_nodes)


@pytest.mark.parametrize("seed", range(30))
def test_metrics_match_the_slow_reference_on_long_skeletons(seed):
    # numpy rng: longer trees (up to 60 nodes) with runs of labels, default and small thresholds
    rng = np.random.default_rng(seed)
    skeletons, node_labels = [], []
    for s in range(int(rng.integers(1, 4))):
        n = int(rng.integers(2, 61))
        g = nx.Graph()
        for k in range(n):
            g.add_node((s, k), pos_um=tuple(rng.uniform(0, 20, 3)))
            if k:
                g.add_edge((s, k), (s, int(rng.integers(max(0, k - 3), k))))  # mostly chains
        labels, current = {}, 0
        for k in range(n):
            if rng.random() < 0.15:
                current = int(rng.choice([0, 1, 2, 3, 4]))
            labels[(s, k)] = current if rng.random() > 0.05 else int(rng.choice([0, 1, 2, 3, 4]))
        skeletons.append(g)
        node_labels.append(labels)
    for k in (1, 3, MIN_LABEL_NODES):
        _check_against_reference(skeletons, node_labels, k)


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
    with pytest.raises(TypeError, match="min_label_nodes must be an int"):
        skeleton_metrics([g], seg, voxel_size_um=VS, min_label_nodes=2.5)
    with pytest.raises(TypeError, match="min_label_nodes must be an int"):
        skeleton_metrics([g], seg, voxel_size_um=VS, min_label_nodes=True)
    with pytest.raises(ValueError, match="min_label_nodes must be >= 1"):
        skeleton_metrics_from_node_labels([g], [{1: 0, 2: 0, 3: 0}], min_label_nodes=0)
    with pytest.raises(TypeError, match="keys must be integer ground-truth labels"):
        skeleton_metrics({"a": g}, seg, voxel_size_um=VS)
    with pytest.raises(ValueError, match=r"skeletons\[7\] node 0 has no 'pos_um'"):
        skeleton_metrics({7: bad}, seg, voxel_size_um=VS)
    with pytest.raises(TypeError, match="list of mappings"):
        resolve_node_labels([g], {1: 0})
