"""Procedural neurons (neurons kind): one object per neuron, its AIS, entering and passing axons, gaps."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from pipeline.synth import (
    DropoutParams,
    PhantomParams,
    generate_phantom,
    persistent_walk,
    place_gaps,
    skeleton_lengths,
    split_at_gaps,
)
from pipeline.synth.geometry import edge_length_um

DEFAULT = PhantomParams()
SOMA, AXON, DENDRITE = 1, 2, 3


@pytest.fixture(scope="module", params=[0, 1, 2])
def phantom(request):
    return generate_phantom(DEFAULT.model_copy(update={"seed": request.param}))


def _nodes(obj, swc_type=None):
    return [n for n, d in obj.skeleton.nodes(data=True) if swc_type is None or d["swc_type"] == swc_type]


def _pos(obj, n):
    return np.asarray(obj.skeleton.nodes[n]["pos_um"])


def _radius(obj, n):
    return obj.skeleton.nodes[n]["radius_um"]


def _node_at(obj, point, tol=1e-9):
    hits = [n for n in obj.skeleton if np.linalg.norm(_pos(obj, n) - np.asarray(point)) <= tol]
    assert len(hits) == 1, f"{point} is not exactly one node of label {obj.label}"
    return hits[0]


def _weighted(graph):
    g = nx.Graph()
    g.add_edges_from((u, v, {"w": edge_length_um(graph, u, v)}) for u, v in graph.edges)
    return g


def _in_box(points, params):
    vs = np.asarray(params.voxel_size_um)
    lo, hi = -vs / 2 - 1e-9, (np.asarray(params.shape) - 0.5) * vs + 1e-9
    return np.all((points >= lo) & (points <= hi), axis=-1)


def test_one_object_per_neuron_soma_dendrites_and_axon_in_one_tree(phantom):
    names = [o.name for o in phantom.objects]
    assert names == ["neuron"] * DEFAULT.n_neurons + ["passing_axon"] * DEFAULT.n_passing_axons
    assert phantom.labels == tuple(range(1, phantom.n_objects + 1))
    assert {o.kind for o in phantom.objects} == {"neuron"}
    for obj in phantom.objects:
        assert nx.is_tree(obj.skeleton)
        points = np.array([_pos(obj, n) for n in obj.skeleton])
        assert np.all(_in_box(points, DEFAULT))
        if obj.name != "neuron":
            assert set(nx.get_node_attributes(obj.skeleton, "swc_type").values()) == {AXON}
            continue
        types = nx.get_node_attributes(obj.skeleton, "swc_type")
        assert set(types.values()) == {SOMA, AXON, DENDRITE}
        soma = _nodes(obj, SOMA)
        assert 0 in soma  # the SWC root is a soma node
        a, b = np.asarray(obj.soma.a_um), np.asarray(obj.soma.b_um)
        r_soma = obj.soma.radius_um
        assert 5.0 <= r_soma <= 8.0
        assert all(_radius(obj, n) == r_soma for n in soma)
        # Soma nodes lie on the capsule axis; every neurite root on the capsule surface, joined to
        # the soma node nearest to it.
        for n in soma:
            p = _pos(obj, n)
            assert np.linalg.norm(np.cross(p - a, b - a)) <= 1e-9 * max(np.linalg.norm(b - a), 1)
        roots = [(s, n) for s in soma for n in obj.skeleton[s] if types[n] != SOMA]
        assert len(roots) >= 2  # the axon and at least one dendrite
        for s, n in roots:
            t = np.clip(np.dot(_pos(obj, n) - a, b - a) / np.dot(b - a, b - a), 0, 1)
            assert np.linalg.norm(_pos(obj, n) - (a + t * (b - a))) == pytest.approx(r_soma, abs=1e-6)
            assert np.allclose(_pos(obj, s), a + t * (b - a))
        assert sum(types[n] == AXON for _, n in roots) == 1  # one axon
        for n in _nodes(obj, DENDRITE):
            assert 0.5 - 1e-12 <= _radius(obj, n) <= 2.0


def test_each_neurons_ais_is_where_ais_csv_says(phantom):
    lo, hi = DEFAULT.ais.length_um
    d0, d1 = DEFAULT.ais.soma_distance_um
    with_ais = [o for o in phantom.objects if o.ais is not None]
    assert [o.name for o in with_ais] == ["neuron"] * min(DEFAULT.n_ais, DEFAULT.n_neurons)
    for obj in with_ais:
        span = obj.ais
        assert span.soma_in_volume
        start, end = _node_at(obj, span.start_um), _node_at(obj, span.end_um)
        soma = set(_nodes(obj, SOMA))
        root = next(n for s in soma for n in obj.skeleton[s] if obj.skeleton.nodes[n]["swc_type"] == AXON)
        dist = nx.single_source_dijkstra_path_length(_weighted(obj.skeleton), root, weight="w")
        # Path distances along the axon from its root on the soma surface.
        assert dist[start] == pytest.approx(span.start_path_um, abs=1e-6)
        assert dist[end] == pytest.approx(span.end_path_um, abs=1e-6)
        assert d0 - 1e-6 <= span.start_path_um <= d1 + 1e-6
        if span.clipped:
            assert span.length_um <= hi + 1e-6
        else:
            assert lo - 1e-6 <= span.length_um <= hi + 1e-6
        # The AIS is thicker than the axon on either side of it.
        path = nx.shortest_path(obj.skeleton, start, end)
        ais_r = np.array([_radius(obj, n) for n in path[1:-1]])
        assert np.all((ais_r >= DEFAULT.ais.radius_um[0]) & (ais_r <= DEFAULT.ais.radius_um[1]))
        axon = [n for n in _nodes(obj, AXON) if n not in path]
        assert max(_radius(obj, n) for n in axon) < ais_r.min()


def test_some_dendrites_branch():
    ph = generate_phantom(DEFAULT.model_copy(update={"seed": 4}))
    degrees = [ph.objects[0].skeleton.degree(n) for n in _nodes(ph.objects[0], DENDRITE)]
    assert max(degrees) == 3


def test_axons_entering_from_somata_outside_the_volume():
    params = PhantomParams(n_neurons=1, n_ais=3, n_passing_axons=0, seed=3)
    ph = generate_phantom(params)
    assert [o.name for o in ph.objects] == ["neuron", "entering_axon", "entering_axon"]
    extent = np.asarray(params.extent_um)
    for obj in ph.objects[1:]:
        assert obj.kind == "neuron" and obj.clipped
        assert set(nx.get_node_attributes(obj.skeleton, "swc_type").values()) == {AXON}
        assert nx.is_tree(obj.skeleton)
        # The soma lies outside the volume (its whole capsule), the axon starts on the border.
        a, b = np.asarray(obj.soma.a_um), np.asarray(obj.soma.b_um)
        vs = np.asarray(params.voxel_size_um)
        centre = (a + b) / 2
        outside = np.maximum(-vs / 2 - centre, centre - (extent - vs / 2))
        assert outside.max() >= obj.soma.radius_um + np.linalg.norm(b - a) / 2
        ends = [n for n in obj.skeleton if obj.skeleton.degree(n) == 1]
        end_points = np.array([_pos(obj, n) for n in ends])
        on_face = np.isclose(end_points, -vs / 2) | np.isclose(end_points, extent - vs / 2)
        assert on_face.any()
        # Its AIS reaches into the volume; the distances count from the soma outside.
        assert obj.ais is not None and not obj.ais.soma_in_volume
        _node_at(obj, obj.ais.start_um)
        _node_at(obj, obj.ais.end_um)
        assert 0 < obj.ais.length_um <= params.ais.length_um[1] + 1e-6


def test_passing_axons_cross_the_volume_from_a_face():
    params = PhantomParams(n_neurons=1, n_ais=1, n_passing_axons=3, seed=2)
    ph = generate_phantom(params)
    passing = [o for o in ph.objects if o.name == "passing_axon"]
    assert len(passing) == 3
    vs = np.asarray(params.voxel_size_um)
    extent = np.asarray(params.extent_um)
    for obj in passing:
        assert obj.soma is None and obj.ais is None and obj.clipped
        start = _pos(obj, 0)
        assert np.any(np.isclose(start, -vs / 2) | np.isclose(start, extent - vs / 2))
        radii = [_radius(obj, n) for n in obj.skeleton]
        assert min(radii) >= params.ais.axon_radius_um[0] and max(radii) <= params.ais.axon_radius_um[1]
        assert skeleton_lengths(obj.skeleton).cable_length_um >= 20.0


def test_gaps_lie_on_neurites_and_end_on_skeleton_nodes(phantom):
    assert phantom.gaps
    for gap in phantom.gaps:
        obj = phantom.object(gap.label)
        assert gap.kind == "neuron"
        nodes = [u for u, _, _, _ in gap.edges] + [gap.edges[-1][1]]
        assert all(obj.skeleton.nodes[n]["swc_type"] != SOMA for n in nodes)
        assert all((t0, t1) == (0.0, 1.0) for _, _, t0, t1 in gap.edges)
        np.testing.assert_array_equal(gap.path_um[0], _pos(obj, nodes[0]))
        np.testing.assert_array_equal(gap.path_um[-1], _pos(obj, nodes[-1]))
        assert DEFAULT.dropout.length_um[0] - 1e-6 <= gap.length_um <= DEFAULT.dropout.length_um[1] + 1e-6
        assert all(obj.skeleton.degree(n) == 2 for n in nodes)  # inside one unbranched stretch


def test_persistent_walk_has_exact_length_and_persistence():
    rng = np.random.default_rng(0)
    pts = persistent_walk((0, 0, 0), (0, 0, 1), length_um=100.0, step_um=1.5, persistence_um=50.0, rng=rng)
    steps = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    assert steps.sum() == pytest.approx(100.0, abs=1e-9)
    assert np.allclose(steps, steps[0]) and steps[0] <= 1.5
    # <cos theta(s)> = exp(-s / P) for a worm-like chain: check at s = 50 µm over many walks.
    cosines = []
    for _ in range(300):
        p = persistent_walk((0, 0, 0), (0, 0, 1), length_um=50.0, step_um=1.0, persistence_um=50.0, rng=rng)
        d = p[-1] - p[-2]
        cosines.append(d[2] / np.linalg.norm(d))
    assert np.mean(cosines) == pytest.approx(np.exp(-1.0), abs=0.08)


def _line(n_nodes, spacing):
    g = nx.path_graph(n_nodes)
    for n in g:
        g.nodes[n].update(pos_um=(0.0, 0.0, spacing * n), radius_um=1.0, swc_type=AXON)
    return g


def test_gap_placement_rate_lengths_and_margins():
    g = _line(201, 5.0)  # a 1000 µm straight line
    rng = np.random.default_rng(1)
    counts = []
    for _ in range(40):
        gaps = place_gaps(
            g, label=1, kind="neuron", rate_per_100um=1.0, length_um=(2.0, 5.0), end_margin_um=2.0, rng=rng
        )
        counts.append(len(gaps))
        spans = sorted((gap.path_um[0, 2], gap.path_um[-1, 2]) for gap in gaps)
        for (s0, s1), gap in zip(spans, sorted(gaps, key=lambda x: x.path_um[0, 2]), strict=True):
            assert 2.0 <= gap.length_um <= 5.0
            assert s1 - s0 == pytest.approx(gap.length_um)
            assert s0 >= 2.0 and s1 <= 1000.0 - 2.0
        for (_, e0), (s1, _) in zip(spans[:-1], spans[1:], strict=True):
            assert s1 - e0 >= 2.0  # separated by the margin
    assert np.mean(counts) == pytest.approx(10.0, rel=0.2)


def test_split_at_gaps_makes_gap_ends_nodes_of_the_same_line():
    g = _line(11, 5.0)  # 0, 5, ..., 50 µm along x
    gaps = place_gaps(
        g, label=1, kind="neuron", rate_per_100um=20.0, length_um=(2.0, 3.0), end_margin_um=1.0,
        rng=np.random.default_rng(4),
    )
    assert len(gaps) >= 2 and any(gap.edges[0][2] > 0 for gap in gaps)
    split, new = split_at_gaps(g, gaps)
    assert nx.is_tree(split) and split.number_of_nodes() > g.number_of_nodes()
    assert skeleton_lengths(split).cable_length_um == pytest.approx(50.0)
    xs = {d["pos_um"][2]: n for n, d in split.nodes(data=True)}
    for old, gap in zip(gaps, new, strict=True):
        assert gap.length_um == pytest.approx(old.length_um, abs=1e-9)
        assert xs[gap.path_um[0][2]] == gap.edges[0][0] and xs[gap.path_um[-1][2]] == gap.edges[-1][1]
        np.testing.assert_allclose(gap.path_um[[0, -1]], old.path_um[[0, -1]], atol=1e-12)
    assert split_at_gaps(g, [])[0].number_of_nodes() == g.number_of_nodes()


def test_dropout_rate_zero_gives_no_gaps():
    ph = generate_phantom(PhantomParams(seed=1, dropout=DropoutParams(rate_per_100um=0.0)))
    assert ph.gaps == ()
