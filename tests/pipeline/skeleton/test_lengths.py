"""Graph diameters, smoothing and object lengths on shapes whose length is known analytically."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.skeleton import (
    cable_length_um,
    graph_diameter_um,
    object_lengths,
    object_table,
    smooth_skeleton,
)
from tests.pipeline.skeleton.shapes import helix, helix_length, polyline_length, tubes

VS = (1.5, 0.5, 0.5)  # (z, y, x) µm
R = 1.0  # tube radius, µm: a thin neurite, as the 2 % accuracy claim requires


def _graph(positions, edges) -> nx.Graph:
    g = nx.Graph()
    for i, p in enumerate(positions):
        g.add_node(i, pos_um=tuple(float(v) for v in p))
    g.add_edges_from(edges)
    return g


def _brute_diameter(g: nx.Graph) -> float:
    for a, b in g.edges:
        g.edges[a, b]["w"] = math.dist(g.nodes[a]["pos_um"], g.nodes[b]["pos_um"])
    best = 0.0
    for _, dists in nx.all_pairs_dijkstra_path_length(g, weight="w"):
        best = max(best, max(dists.values()))
    return best


# ---------------------------------------------------------------------------------------------------------
# graph_diameter_um


def test_diameter_of_a_path_counts_z_spacing():
    # three nodes one z-step (1.5 µm) and then one x-step (0.5 µm) apart
    g = _graph([(0, 0, 0), (1.5, 0, 0), (1.5, 0, 0.5)], [(0, 1), (1, 2)])
    assert graph_diameter_um(g) == pytest.approx(2.0)
    assert cable_length_um(g) == pytest.approx(2.0)


def test_diameter_of_a_tree_is_its_longest_tip_to_tip_path():
    # Y: arms of length 3 (x), 4 (y) and 10 (z) from the origin -> diameter 10 + 4
    g = _graph([(0, 0, 0), (0, 0, 3), (0, 4, 0), (10, 0, 0)], [(0, 1), (0, 2), (0, 3)])
    assert graph_diameter_um(g) == pytest.approx(14.0)
    assert cable_length_um(g) == pytest.approx(17.0)


def test_diameter_of_a_cycle_is_exact_not_a_sweep_bound():
    # A unit-spaced ring of 12 nodes on a square 3 x 3 with a tail of 2: the two-sweep answer from a
    # bad start would miss the antipodal pair; all-pairs gives the right value.
    square = [(0, 0, x) for x in range(3)] + [(0, y, 3) for y in range(3)]
    square += [(0, 3, x) for x in range(3, 0, -1)] + [(0, y, 0) for y in range(3, 0, -1)]
    edges = [(i, (i + 1) % 12) for i in range(12)]
    g = _graph([*square, (0, -1, 0), (0, -2, 0)], [*edges, (0, 12), (12, 13)])
    assert graph_diameter_um(g) == pytest.approx(_brute_diameter(g))
    assert graph_diameter_um(g) == pytest.approx(8.0)  # tail tip (2) + half the ring (6)


def test_diameter_of_several_components_is_the_largest():
    g = _graph([(0, 0, 0), (0, 0, 5), (0, 10, 0), (0, 10, 2), (0, 20, 0)], [(0, 1), (2, 3)])
    assert graph_diameter_um(g) == pytest.approx(5.0)


def test_diameter_of_graphs_without_edges_is_zero():
    assert graph_diameter_um(nx.Graph()) == 0.0
    assert graph_diameter_um(_graph([(1, 2, 3)], [])) == 0.0


def test_diameter_with_coincident_nodes():
    g = _graph([(0, 0, 0), (0, 0, 0), (0, 0, 3)], [(0, 1), (1, 2)])
    assert graph_diameter_um(g) == pytest.approx(3.0)


def test_large_cyclic_component_warns_and_gives_a_lower_bound():
    rng = np.random.default_rng(0)
    g = nx.connected_watts_strogatz_graph(60, 4, 0.3, seed=1)
    for n in g.nodes:
        g.nodes[n]["pos_um"] = tuple(rng.uniform(0, 10, 3))
    exact = graph_diameter_um(g)
    assert exact == pytest.approx(_brute_diameter(g))
    with pytest.warns(RuntimeWarning, match="lower bound"):
        bound = graph_diameter_um(g, exact_max_nodes=10)
    assert bound <= exact + 1e-9


@st.composite
def _random_graphs(draw):
    n = draw(st.integers(1, 25))
    parents = [draw(st.integers(0, i - 1)) for i in range(1, n)]
    edges = {(p, i) for i, p in enumerate(parents, start=1)}
    extra = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=4))
    edges |= {(a, b) for a, b in extra if a != b}
    drop = draw(st.integers(0, 2))  # drop some tree edges: several components
    edges = sorted(edges)[drop:]
    coords = draw(
        st.lists(st.tuples(*[st.integers(-20, 20)] * 3), min_size=n, max_size=n),
    )
    pos = [(1.5 * z, 0.5 * y, 0.5 * x) for z, y, x in coords]
    return _graph(pos, edges)


@settings(max_examples=150, deadline=None)
@given(_random_graphs())
def test_diameter_matches_all_pairs_reference(g):
    assert graph_diameter_um(g) == pytest.approx(_brute_diameter(g), abs=1e-9)


def test_diameter_input_validation():
    with pytest.raises(TypeError, match="networkx.Graph"):
        graph_diameter_um([(0, 1)])
    with pytest.raises(TypeError, match="directed"):
        graph_diameter_um(nx.DiGraph([(0, 1)]))
    g = nx.Graph([(0, 1)])
    with pytest.raises(ValueError, match="pos_um"):
        graph_diameter_um(g)
    g.nodes[0]["pos_um"] = (0.0, 1.0)
    g.nodes[1]["pos_um"] = (0.0, 1.0, 2.0)
    with pytest.raises(ValueError, match="3 finite floats"):
        graph_diameter_um(g)


# ---------------------------------------------------------------------------------------------------------
# smooth_skeleton


def test_smoothing_leaves_straight_chains_and_key_nodes_in_place():
    pos = [(0, 0, 0.5 * i) for i in range(20)] + [(0.5 * i, 0, 5.0) for i in range(1, 8)]
    edges = [(i, i + 1) for i in range(19)] + [(10, 20)] + [(i, i + 1) for i in range(20, 26)]
    g = _graph(pos, edges)
    s = smooth_skeleton(g, sigma_um=1.5)
    assert list(s.nodes) == list(g.nodes) and set(s.edges) == set(g.edges)
    for n in g.nodes:  # every chain is straight: nothing moves
        np.testing.assert_allclose(s.nodes[n]["pos_um"], g.nodes[n]["pos_um"], atol=1e-12)
    assert g.nodes[3]["pos_um"] == (0.0, 0.0, 1.5)  # the input is not modified


def test_smoothing_removes_the_lattice_staircase():
    # A 26-connected staircase along the direction (0, 1, 2) (units of 0.5 µm): its raw length is
    # 40 * (sqrt(2) + 1) * 0.5, the straight segment between its ends is 40 * sqrt(5) * 0.5.
    pts = [(0.0, 0.0, 0.0)]
    for _ in range(40):
        z, y, x = pts[-1]
        pts.append((z, y + 0.5, x + 0.5))
        pts.append((z, y + 0.5, x + 1.0))
    g = _graph(pts, [(i, i + 1) for i in range(len(pts) - 1)])
    straight = 40 * math.sqrt(5) * 0.5
    assert cable_length_um(g) == pytest.approx(40 * (math.sqrt(2) + 1) * 0.5)
    smooth = smooth_skeleton(g, sigma_um=1.0)
    assert cable_length_um(smooth) == pytest.approx(straight, rel=0.01)
    assert smooth.nodes[0]["pos_um"] == g.nodes[0]["pos_um"]
    assert smooth.nodes[80]["pos_um"] == g.nodes[80]["pos_um"]


def test_smoothing_a_closed_ring_is_periodic():
    # A 24-gon of radius 10 µm: smoothing keeps it a ring centred at the origin, slightly shrunk.
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    pts = np.stack([np.zeros_like(t), 10 * np.cos(t), 10 * np.sin(t)], 1)
    g = _graph(pts, [(i, (i + 1) % 24) for i in range(24)])
    s = smooth_skeleton(g, sigma_um=1.0)
    radii = np.linalg.norm([s.nodes[n]["pos_um"] for n in s.nodes], axis=1)
    np.testing.assert_allclose(radii, radii[0], rtol=1e-9)  # rotational symmetry is kept
    assert 9.9 < radii[0] < 10.0
    assert smooth_skeleton(g, sigma_um=0.0).nodes[5]["pos_um"] == g.nodes[5]["pos_um"]
    with pytest.raises(ValueError, match="sigma_um"):
        smooth_skeleton(g, sigma_um=-1.0)


# ---------------------------------------------------------------------------------------------------------
# object lengths on analytic shapes (2 % tolerance)
#
# Tubes have rounded caps, so the skeleton (which TEASAR runs from surface to surface) has the
# tip-to-tip length: centreline + 2 R. Where possible the cap tips lie on voxel centres so that end
# quantization does not enter.

SHAPE = (48, 128, 128)
_Y_ARMS = [(36, 6, 6), (36, 30, 30), (36, 54, 30)], [(36, 30, 30), (36, 6, 54)]
CASES = {
    # name: (polylines, expected tip-to-tip length in µm)
    "along z": ([[(6 + R, 32, 32), (66 - R, 32, 32)]], 60.0),
    "along y": ([[(36, 4 + R, 32), (36, 60 - R, 32)]], 56.0),
    "along x": ([[(36, 32, 4 + R), (36, 32, 60 - R)]], 56.0),
    "diagonal": ([[(6, 6, 6), (60, 50, 40)]], math.dist((6, 6, 6), (60, 50, 40)) + 2 * R),
    "L in the yx plane": ([[(36, 6 + R, 12), (36, 60, 12), (36, 60, 60 - R)]], 54 + 48 + 2 * R - 2 * R),
    "L in the zy plane": ([[(6 + R, 12, 12), (54, 12, 12), (54, 60 - R, 12)]], 48 + 48 + 2 * R - 2 * R),
    "helix": ([helix(8.0, 20.0, 2.0, (6, 32, 32))], helix_length(8.0, 20.0, 2.0) + 2 * R),
    # T: bar along x (tips at x = 9 and 59), stem along y (tip at y = 51) -> bar tip to stem tip
    "T": ([[(36, 10, 9 + R), (36, 10, 59 - R)], [(36, 10, 34), (36, 51 - R, 34)]], 25.0 + 41.0),
    # Y: the longest root-to-tip path is arm a + arm c
    "Y": (list(_Y_ARMS), 2 * math.dist((36, 6, 6), (36, 30, 30)) + 2 * R),
}


@pytest.mark.parametrize("name", list(CASES))
def test_object_length_of_analytic_shapes_within_2_percent(name):
    polylines, expected = CASES[name]
    labels = tubes(SHAPE, VS, polylines, R) * 3
    lengths = object_lengths(labels, voxel_size_um=VS)
    assert set(lengths) == {3}
    assert lengths[3] == pytest.approx(expected, rel=0.02)


def test_expected_lengths_of_the_cases_are_what_the_geometry_says():
    # guard the hand-written expectations above against typos
    for name in ("along z", "along y", "along x", "L in the yx plane", "L in the zy plane"):
        polylines, expected = CASES[name]
        assert polyline_length(polylines[0]) + 2 * R == pytest.approx(expected)


@pytest.mark.parametrize("voxel_size_um", [(1.0, 1.0, 1.0), (0.5, 0.5, 0.5)])
def test_diagonal_and_helix_at_other_resolutions(voxel_size_um):
    shape = tuple(int(72 / v) for v in voxel_size_um)
    for polyline, expected in [
        ([(6, 6, 6), (60, 50, 40)], math.dist((6, 6, 6), (60, 50, 40)) + 2 * R),
        (helix(8.0, 20.0, 2.0, (6, 32, 32)), helix_length(8.0, 20.0, 2.0) + 2 * R),
    ]:
        labels = tubes(shape, voxel_size_um, [polyline], R)
        (length,) = object_lengths(labels, voxel_size_um=voxel_size_um).values()
        assert length == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize(("radius_um", "low", "high"), [(1.0, 0.0, 0.02), (3.0, 0.03, 0.10)])
def test_flat_ended_cylinder_bias(radius_um, low, high):
    # documented bias: with flat ends the tips veer to the rim of the end face; thin objects stay
    # within 2 %, thick ones are overestimated
    shape = (56, 80, 80)
    z, y, x = np.meshgrid(*[np.arange(n) * v for n, v in zip(shape, VS, strict=True)], indexing="ij")
    labels = (((y - 20) ** 2 + (x - 20) ** 2 <= radius_um**2) & (z >= 6) & (z <= 66)).astype(np.uint8)
    (length,) = object_lengths(labels, voxel_size_um=VS).values()
    assert low <= length / 60.0 - 1 <= high


def test_unsmoothed_diagonal_overestimates():
    # documents why smoothing is on by default: the raw lattice path is far too long
    labels = tubes(SHAPE, VS, [[(6, 6, 6), (60, 50, 40)]], R)
    expected = math.dist((6, 6, 6), (60, 50, 40)) + 2 * R
    (raw,) = object_table(labels, voxel_size_um=VS, smooth_sigma_um=0.0)
    assert raw.length_um > 1.1 * expected


# ---------------------------------------------------------------------------------------------------------
# object_table


def test_object_table_rows():
    labels = np.zeros((12, 40, 60), np.uint32)
    labels[6, 5, 5:50] = 1  # straight line, 45 voxels along x: 22 µm
    labels[6, 20:30, 0:30] = 2  # a plate cut by the x = 0 border
    labels[2, 35, 30] = 5  # single voxel
    labels[9, 30:38, 40] = 6  # a line of 8 voxels along y ...
    labels[9, 30, 50:55] = 6  # ... and a second piece of the same label, shorter
    rows = {r.label: r for r in object_table(labels, voxel_size_um=VS)}
    assert sorted(rows) == [1, 2, 5, 6]
    assert rows[1].length_um == pytest.approx(44 * 0.5)
    assert rows[1].cable_length_um == pytest.approx(44 * 0.5)
    assert rows[1].n_voxels == 45 and rows[1].n_endpoints == 2 and not rows[1].touches_border
    assert rows[2].touches_border and rows[2].n_voxels == 300
    assert rows[5] == type(rows[5])(label=5, length_um=0.0, cable_length_um=0.0, n_voxels=1,
                                    touches_border=False, n_endpoints=0)
    assert rows[6].length_um == pytest.approx(7 * 0.5)  # the longer of the two pieces
    assert rows[6].cable_length_um == pytest.approx(7 * 0.5 + 4 * 0.5)
    assert rows[6].n_endpoints == 4


def test_object_table_counts_tips_of_a_branched_object():
    labels = tubes(SHAPE, VS, CASES["T"][0], R)
    (row,) = object_table(labels, voxel_size_um=VS)
    assert row.n_endpoints == 3
    assert row.cable_length_um == pytest.approx(50.0 + 41.0, rel=0.03)  # bar + stem, tip to tip


def test_object_lengths_empty_volume_and_border_object():
    assert object_lengths(np.zeros((4, 5, 6), np.uint8), voxel_size_um=VS) == {}
    labels = np.zeros((4, 5, 30), np.uint8)
    labels[2, 2, :] = 1  # runs from border to border
    assert object_lengths(labels, voxel_size_um=VS) == {1: pytest.approx(29 * 0.5)}
    (row,) = object_table(labels, voxel_size_um=VS)
    assert row.touches_border


def test_object_lengths_independent_of_memory_order_and_dtype():
    labels = tubes(SHAPE, VS, CASES["Y"][0], R)
    a = object_lengths(labels, voxel_size_um=VS)
    b = object_lengths(np.asfortranarray(labels.astype(np.int64)), voxel_size_um=VS)
    c = object_lengths(labels.astype(bool), voxel_size_um=VS)
    assert a == b == c


def test_object_lengths_several_objects():
    labels = np.zeros((16, 60, 60), np.uint16)
    for i, label in enumerate([4, 9, 200]):
        labels[4 + 4 * i, 10 + 10 * i, 5 : 15 + 10 * i] = label
    lengths = object_lengths(labels, voxel_size_um=VS)
    assert lengths == {
        4: pytest.approx(9 * 0.5),
        9: pytest.approx(19 * 0.5),
        200: pytest.approx(29 * 0.5),
    }


@pytest.mark.parametrize(
    ("labels", "voxel_size_um", "exc", "match"),
    [
        (np.zeros((4, 4), np.uint8), VS, ValueError, "ndim=2"),
        (np.zeros((4, 4, 4), np.float64), VS, TypeError, "dtype float64"),
        ([[[0]]], VS, TypeError, "numpy array"),
        (np.zeros((4, 4, 4), np.uint8), (1.0, 1.0), ValueError, "3 entries"),
        (np.zeros((4, 4, 4), np.uint8), (1.0, -1.0, 1.0), ValueError, "positive"),
    ],
)
def test_object_lengths_input_validation(labels, voxel_size_um, exc, match):
    with pytest.raises(exc, match=match):
        object_lengths(labels, voxel_size_um=voxel_size_um)


def test_object_table_rejects_bad_sigma():
    with pytest.raises(ValueError, match="smooth_sigma_um"):
        object_table(np.zeros((3, 3, 3), np.uint8), voxel_size_um=VS, smooth_sigma_um=math.nan)


def test_objects_in_one_volume_match_one_at_a_time():
    # skeletonizing several objects together gives the same lengths as one at a time
    names = ["along y", "diagonal", "Y"]
    singles, blocks = {}, []
    for label, name in enumerate(names, start=1):
        one = tubes(SHAPE, VS, CASES[name][0], R)
        singles[label] = object_lengths(one, voxel_size_um=VS)[1]
        blocks.append(one * label)
    together = object_lengths(np.concatenate(blocks, axis=2), voxel_size_um=VS)  # side by side in x
    assert together == pytest.approx(singles, rel=1e-6)


def test_rerun_gives_identical_lengths():
    labels = tubes(SHAPE, VS, CASES["helix"][0], R)
    assert object_lengths(labels, voxel_size_um=VS) == object_lengths(labels, voxel_size_um=VS)
