"""Joining skeleton pieces across short gaps: hand-built skeletons whose answers are known."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest

from pipeline.skeleton import (
    concat_end_tables,
    end_table,
    gap_joins,
    join_graphs,
    join_table,
    match_ends,
    skeleton_ends,
)


def polyline(*points, step=1.0):
    """A skeleton through (z, y, x) µm points, sampled every ``step`` µm along each segment."""
    pos = [np.asarray(points[0], float)]
    for a, b in zip(points[:-1], points[1:], strict=True):
        a, b = np.asarray(a, float), np.asarray(b, float)
        n = max(1, round(np.linalg.norm(b - a) / step))
        pos += [a + (b - a) * k / n for k in range(1, n + 1)]
    g = nx.path_graph(len(pos))
    nx.set_node_attributes(g, {i: tuple(p) for i, p in enumerate(pos)}, "pos_um")
    return g


def test_ends_and_their_directions():
    # an L: along x, then along y; the direction at each end is the way the cable runs into it
    g = polyline((0, 0, 0), (0, 0, 10), (0, 10, 10))
    ends = skeleton_ends(g, label=4, tangent_um=3.0)
    assert [e.node for e in ends] == [0, 20]
    np.testing.assert_allclose(ends[0].direction, (0, 0, -1))
    np.testing.assert_allclose(ends[1].direction, (0, 1, 0))
    assert ends[1].pos_um == (0.0, 10.0, 10.0) and {e.label for e in ends} == {4}
    # a branch node stops the walk: a 1 µm twig off a straight cable points along the twig
    t = polyline((0, 0, 0), (0, 0, 10))
    t.add_node(99, pos_um=(0.0, 1.0, 5.0))
    t.add_edge(5, 99)
    twig = [e for e in skeleton_ends(t, label=1) if e.node == 99]
    np.testing.assert_allclose(twig[0].direction, (0, 1, 0))
    # a lone node has no direction and is no end
    lone = nx.Graph()
    lone.add_node(0, pos_um=(1.0, 1.0, 1.0))
    assert skeleton_ends(lone, label=1) == []


def test_collinear_pieces_across_a_gap_are_joined():
    a = polyline((0, 5, 0), (0, 5, 20))
    b = polyline((0, 5, 24), (0, 5, 40))  # a 4 µm gap along x
    (join,) = gap_joins({7: a, 3: b}, max_gap_um=6.0)
    assert (join.a.label, join.b.label) == (3, 7)
    assert join.distance_um == pytest.approx(4.0)
    assert join.angle_a_deg == pytest.approx(0.0, abs=1e-6)
    assert join.angle_b_deg == pytest.approx(0.0, abs=1e-6)
    assert join_table([join]) == {3: 3, 7: 3}
    # too long a gap, or the same label: nothing
    assert gap_joins({7: a, 3: b}, max_gap_um=3.9) == []
    same = nx.disjoint_union(a, b)
    assert gap_joins({7: same}, max_gap_um=6.0) == []


def test_the_angle_limit_is_applied_at_both_ends():
    # b is offset sideways by 2 µm over a 4 µm gap: the line between the ends is atan(2/4) = 26.6° off
    a = polyline((0, 5, 0), (0, 5, 20))
    b = polyline((0, 7, 24), (0, 7, 40))
    angle = math.degrees(math.atan2(2, 4))
    (join,) = gap_joins({1: a, 2: b}, max_gap_um=6.0, max_angle_deg=30.0)
    assert join.angle_a_deg == pytest.approx(angle) and join.angle_b_deg == pytest.approx(angle)
    assert gap_joins({1: a, 2: b}, max_gap_um=6.0, max_angle_deg=25.0) == []
    # a neurite passing by at right angles is never joined to an end that points at it
    cross = polyline((0, -10, 22), (0, 20, 22))
    assert gap_joins({1: a, 3: cross}, max_gap_um=6.0) == []
    # two parallel neurites side by side (their ends 2 µm apart, pointing the same way) are not joined
    left = polyline((0, 0, 0), (0, 0, 20))
    right = polyline((0, 2, 0), (0, 2, 20))
    assert gap_joins({1: left, 2: right}, max_gap_um=6.0) == []


def test_each_end_joins_at_most_once_and_the_nearest_wins():
    a = polyline((0, 5, 0), (0, 5, 20))
    near = polyline((0, 5, 22), (0, 5, 40))  # 2 µm ahead
    far = polyline((0, 5.5, 25), (0, 5.5, 30), (0, 30, 30))  # 5 µm ahead, also facing a
    joins = gap_joins({1: a, 2: near, 3: far}, max_gap_um=6.0)
    assert [(j.a.label, j.b.label) for j in joins] == [(1, 2)]
    # a chain: three collinear pieces join into one group with the smallest label
    c = polyline((0, 5, 44), (0, 5, 60))
    joins = gap_joins({5: a, 2: near, 9: c}, max_gap_um=6.0)
    assert sorted((j.a.label, j.b.label) for j in joins) == [(2, 5), (2, 9)]
    assert join_table(joins) == {2: 2, 5: 2, 9: 2}


def test_min_gap_and_parameter_checks():
    a = polyline((0, 5, 0), (0, 5, 20))
    b = polyline((0, 5, 21), (0, 5, 40))
    assert len(gap_joins({1: a, 2: b}, max_gap_um=6.0)) == 1
    assert gap_joins({1: a, 2: b}, max_gap_um=6.0, min_gap_um=1.5) == []
    with pytest.raises(ValueError, match="max_gap_um"):
        gap_joins({1: a}, max_gap_um=0)
    with pytest.raises(ValueError, match="max_angle_deg"):
        gap_joins({1: a}, max_angle_deg=120)
    with pytest.raises(ValueError, match="min_gap_um"):
        gap_joins({1: a}, max_gap_um=2.0, min_gap_um=3.0)
    with pytest.raises(ValueError, match="tangent_um"):
        skeleton_ends(a, label=1, tangent_um=0)
    bad = nx.path_graph(2)
    with pytest.raises(ValueError, match="pos_um"):
        skeleton_ends(bad, label=1)


def test_anisotropic_positions_are_physical():
    # a gap along z of 3 slices of 1.5 µm = 4.5 µm: joined at max_gap 5 µm, not at 4 µm
    a = polyline((0, 5, 5), (15, 5, 5), step=1.5)
    b = polyline((19.5, 5, 5), (30, 5, 5), step=1.5)
    assert len(gap_joins({1: a, 2: b}, max_gap_um=5.0)) == 1
    assert gap_joins({1: a, 2: b}, max_gap_um=4.0) == []


def test_two_labels_join_once_so_every_group_is_a_tree():
    # label 1 and label 2 each hold two rods; both pairs face each other across 3 µm gaps
    one = nx.disjoint_union(polyline((0, 0, 0), (0, 0, 10)), polyline((0, 20, 0), (0, 20, 10)))
    two = nx.disjoint_union(polyline((0, 0, 13), (0, 0, 23)), polyline((0, 20, 13), (0, 20, 23)))
    joins = gap_joins({1: one, 2: two})
    assert len(joins) == 1  # the second bridge would close a loop between the same two pieces
    pairs = [(j.a.label, j.a.pos_um, j.b.label, j.b.pos_um) for j in joins]
    (merged,) = join_graphs({1: one, 2: two}, pairs).values()
    assert nx.is_forest(merged)
    assert merged.number_of_edges() == one.number_of_edges() + two.number_of_edges() + 1
    with pytest.raises(ValueError, match="loop"):
        join_graphs({1: one, 2: two}, pairs + [(1, (0.0, 20.0, 10.0), 2, (0.0, 20.0, 13.0))])


def test_ends_matched_by_shard_are_the_joins_of_the_whole():
    rods = {label: polyline((0, 3 * label, 0), (0, 3 * label + 1, 10)) for label in range(1, 9)}
    rods.update({label + 10: polyline((0, 3 * label + 1.2, 14), (0, 3 * label + 2, 24))
                 for label in range(1, 9)})
    shards = [end_table({k: g for k, g in rods.items() if k % 3 == r}) for r in range(3)]
    table = concat_end_tables(shards)
    assert len(table) == len(end_table(rods)) == 32
    found = {tuple(sorted((int(table.labels[a]), int(table.labels[b])))) for a, b, *_ in match_ends(table)}
    assert found == {(j.a.label, j.b.label) for j in gap_joins(rods)} and len(found) == 8
    chain = join_graphs(rods, [(a, rods[a].nodes[10]["pos_um"], b, rods[b].nodes[0]["pos_um"])
                               for a, b in sorted(found)])
    assert sorted(chain) == list(range(1, 9)) and all(nx.is_tree(g) for g in chain.values())
