"""Gap bridging on the touching tubes and on hand-built chains with gaps at known nodes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx
import numpy as np
import pytest

from pipeline.metrics import gaps_bridged
from tests.pipeline.metrics import tubes


def test_exact_ground_truth_bridges_every_gap():
    seg, skeletons = tubes.labels(), tubes.skeletons()
    r = gaps_bridged(skeletons, tubes.GAPS, seg, voxel_size_um=tubes.VS)
    assert (r.fraction, r.n_gaps, r.n_bridged) == (1.0, 2, 2)
    a_gap, b_gap = r.gaps
    # node k of A sits at x = 3 + k µm, of B at x = 42 + k µm
    assert (a_gap.before_node, a_gap.after_node) == (12 - 3, 16 - 3)
    assert (b_gap.before_node, b_gap.after_node) == (60 - 42, 64 - 42)
    assert (a_gap.before_label, a_gap.after_label, a_gap.label) == (tubes.A, tubes.A, tubes.A)
    assert a_gap.length_um == pytest.approx(3.3) and b_gap.length_um == pytest.approx(3.0)


def test_a_hole_at_the_gap_is_bridged_when_both_sides_keep_one_label():
    seg, skeletons = tubes.labels(), tubes.skeletons()
    x_um = np.arange(seg.shape[2]) * tubes.VS[2]
    seg[..., (x_um > 11.6) & (x_um < 16.4)] = 0  # the prediction leaves A's gap (and the nodes 12..16) empty
    r = gaps_bridged(skeletons, tubes.GAPS, seg, voxel_size_um=tubes.VS)
    # side nodes 12 and 16 are 0 when sampled; the misalignment correction fills the run 12..16
    # between the two runs of label 3, as the skeleton metrics do
    assert r.fraction == 1.0 and r.gaps[0].before_label == tubes.A


def test_cut_at_one_of_two_gaps():
    seg, skeletons = tubes.labels(), tubes.skeletons()
    x_um = np.arange(seg.shape[2]) * tubes.VS[2]
    seg[(seg == tubes.A) & (x_um >= 14.0)[None, None, :]] = 7
    r = gaps_bridged(skeletons, tubes.GAPS, seg, voxel_size_um=tubes.VS)
    assert (r.fraction, r.n_gaps, r.n_bridged) == (0.5, 2, 1)
    assert [(o.before_label, o.after_label, o.bridged) for o in r.gaps] == [(3, 7, False), (5, 5, True)]
    # a segment that swallows both tubes bridges both gaps
    merged = np.where(seg > 0, 1, 0).astype(np.uint8)
    assert gaps_bridged(skeletons, tubes.GAPS, merged, voxel_size_um=tubes.VS).fraction == 1.0
    # background everywhere bridges nothing
    empty = np.zeros_like(seg)
    assert gaps_bridged(skeletons, tubes.GAPS, empty, voxel_size_um=tubes.VS).fraction == 0.0


@dataclass(frozen=True)
class _Gap:  # the attributes pipeline.synth.DropoutGap offers
    label: int
    start_um: tuple[float, float, float]
    end_um: tuple[float, float, float]


def _chain(n, *, branch_at=None):
    g = nx.Graph()
    for k in range(n):
        g.add_node(k, pos_um=(0.0, 0.0, float(k)))
    g.add_edges_from((k, k + 1) for k in range(n - 1))
    if branch_at is not None:
        g.add_node("b", pos_um=(0.0, 0.4, float(branch_at)))  # a short side branch, 0.4 µm long
        g.add_edge(branch_at, "b")
    return g


def test_side_nodes_when_an_end_lies_on_a_node_or_both_on_one_edge():
    g = _chain(30)
    seg = np.ones((1, 1, 30), np.uint8)
    gaps = [
        _Gap(4, (0, 0, 10.0), (0, 0, 13.0)),  # ends on nodes 10 and 13: inside the gap, sides 9 and 14
        _Gap(4, (0, 0, 20.7), (0, 0, 20.2)),  # both on edge 20-21, reversed: sides 21 (start) and 20 (end)
        _Gap(4, (0.3, 0.2, 5.5), (0, -0.3, 7.5)),  # off the skeleton by < 1 voxel diagonal
    ]
    r = gaps_bridged({4: g}, gaps, seg, voxel_size_um=(1, 1, 1), min_label_nodes=3)
    assert [(o.before_node, o.after_node) for o in r.gaps] == [(9, 14), (21, 20), (5, 8)]
    assert [o.length_um for o in r.gaps] == pytest.approx([3.0, 0.5, 2.0])
    # at a branch node the nearest off-stretch neighbour is the side: "b" (0.4 µm) rather than node 11
    gb = _chain(30, branch_at=12)
    r = gaps_bridged({4: gb}, [_Gap(4, (0, 0, 12.0), (0, 0, 15.5))], seg, voxel_size_um=(1, 1, 1))
    assert (r.gaps[0].before_node, r.gaps[0].after_node) == ("b", 16)


def test_no_gaps_gives_nan():
    r = gaps_bridged({1: _chain(5)}, [], np.ones((1, 1, 5), np.uint8), voxel_size_um=(1, 1, 1))
    assert math.isnan(r.fraction) and (r.n_gaps, r.n_bridged, r.gaps) == (0, 0, ())


def test_validation():
    g = _chain(10)
    seg = np.ones((1, 1, 10), np.uint8)
    vs = (1, 1, 1)

    def gap(label=1, start=(0, 0, 3.5), end=(0, 0, 5.5)):
        return {"label": label, "start_um": start, "end_um": end}

    with pytest.raises(ValueError, match=r"gaps\[0\]\.label is 2, but no skeleton has that label"):
        gaps_bridged({1: g}, [gap(label=2)], seg, voxel_size_um=vs)
    with pytest.raises(ValueError, match=r"graph\.graph\['label'\]"):
        gaps_bridged([g], [gap()], seg, voxel_size_um=vs)
    with pytest.raises(ValueError, match=r"gaps\[0\] \(label 1\)\.end_um .* lies 2 µm from skeleton 1"):
        gaps_bridged({1: g}, [gap(end=(0, 2, 5.5))], seg, voxel_size_um=vs)
    with pytest.raises(ValueError, match="at an end of its skeleton"):
        gaps_bridged({1: g}, [gap(start=(0, 0, 0.0))], seg, voxel_size_um=vs)
    with pytest.raises(ValueError, match="same point"):
        gaps_bridged({1: g}, [gap(end=(0, 0, 3.5))], seg, voxel_size_um=vs)
    two = nx.disjoint_union(g, _chain(10))
    for n in range(10, 20):
        two.nodes[n]["pos_um"] = (0.0, 5.0, float(n - 10))
    with pytest.raises(ValueError, match="unconnected pieces"):
        gaps_bridged({1: two}, [gap(end=(0, 5, 5.5))], np.ones((1, 6, 10), np.uint8), voxel_size_um=vs)
    with pytest.raises(ValueError, match=r"gaps\[0\] has no 'end_um'"):
        gaps_bridged({1: g}, [{"label": 1, "start_um": (0, 0, 3.5)}], seg, voxel_size_um=vs)
    with pytest.raises(ValueError, match=r"gaps\[0\]\.start_um"):
        gaps_bridged({1: g}, [gap(start=(0, math.nan, 1))], seg, voxel_size_um=vs)
    with pytest.raises(TypeError, match=r"gaps\[0\]\.label must be an integer"):
        gaps_bridged({1: g}, [gap(label="1")], seg, voxel_size_um=vs)
    with pytest.raises(TypeError, match="gaps must be a sequence"):
        gaps_bridged({1: g}, gap(), seg, voxel_size_um=vs)
    with pytest.raises(ValueError, match="max_offset_um"):
        gaps_bridged({1: g}, [gap()], seg, voxel_size_um=vs, max_offset_um=-1.0)
    g2 = g.copy()
    g.graph["label"] = g2.graph["label"] = 1
    with pytest.raises(ValueError, match="two skeletons have ground-truth label 1"):
        gaps_bridged([g, g2], [gap()], seg, voxel_size_um=vs)


def test_unscorable_gaps_are_counted_not_scored_when_asked():
    from pipeline.metrics.gaps import UnscorableGap

    g = _chain(10)
    seg = np.ones((1, 1, 10), np.uint8)
    tip = {"label": 1, "start_um": (0, 0, 0.0), "end_um": (0, 0, 2.5)}  # cut by the border: no side before it
    good = {"label": 1, "start_um": (0, 0, 3.5), "end_um": (0, 0, 5.5)}
    with pytest.raises(UnscorableGap, match="at an end of its skeleton"):
        gaps_bridged({1: g}, [good, tip], seg, voxel_size_um=(1, 1, 1))
    r = gaps_bridged({1: g}, [good, tip], seg, voxel_size_um=(1, 1, 1), skip_unscorable=True)
    assert (r.fraction, r.n_gaps, r.n_bridged, r.n_skipped) == (1.0, 1, 1, 1) and r.gaps[0].index == 0
    none = gaps_bridged({1: g}, [tip], seg, voxel_size_um=(1, 1, 1), skip_unscorable=True)
    assert math.isnan(none.fraction) and (none.n_gaps, none.n_skipped) == (0, 1)
