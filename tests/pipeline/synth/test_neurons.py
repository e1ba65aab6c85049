"""Procedural geometry: AIS lengths and positions, radii, instance scheme, random walks, gap placement."""

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
)

DEFAULT = PhantomParams()


@pytest.fixture(scope="module", params=[0, 1, 2])
def phantom(request):
    return generate_phantom(DEFAULT.model_copy(update={"seed": request.param}))


def _radii(obj):
    return np.array([d["radius_um"] for _, d in obj.skeleton.nodes(data=True)])


def _positions(obj):
    return np.array([d["pos_um"] for _, d in obj.skeleton.nodes(data=True)])


def test_ais_lengths_radii_and_distance_from_soma(phantom):
    ais = [o for o in phantom.objects if o.kind == "ais"]
    assert len(ais) == DEFAULT.n_ais
    lo, hi = DEFAULT.ais.length_um
    for obj in ais:
        length = skeleton_lengths(obj.skeleton).path_length_um
        assert nx.is_tree(obj.skeleton) and max(d for _, d in obj.skeleton.degree) <= 2  # unbranched
        if obj.clipped:
            assert length <= hi + 1e-9
        else:
            assert lo - 1e-9 <= length <= hi + 1e-9
        r = _radii(obj)
        assert np.all((r >= DEFAULT.ais.radius_um[0]) & (r <= DEFAULT.ais.radius_um[1]))
        # Thicker than its axon on either side.
        axon = [o for o in phantom.objects if o.neuron == obj.neuron and o.name.startswith("axon")]
        assert all(_radii(a).max() < r.min() for a in axon)
    # Each neuron's AIS starts where its proximal axon (3-16 µm from the soma surface) ends.
    for obj in ais:
        if obj.neuron < 0:
            continue
        prox = next(o for o in phantom.objects if o.neuron == obj.neuron and o.name == "axon_proximal")
        soma = next(o for o in phantom.objects if o.neuron == obj.neuron and o.kind == "soma")
        d0, d1 = DEFAULT.ais.soma_distance_um
        assert d0 - 1e-9 <= skeleton_lengths(prox.skeleton).path_length_um <= d1 + 1e-9
        ends = {n for n in prox.skeleton if prox.skeleton.degree(n) == 1}
        start = np.asarray(obj.skeleton.nodes[0]["pos_um"])
        assert any(np.allclose(prox.skeleton.nodes[n]["pos_um"], start) for n in ends)
        a, b = _positions(soma)
        t = np.clip(np.dot(start - a, b - a) / max(np.dot(b - a, b - a), 1e-12), 0, 1)
        surface_distance = np.linalg.norm(start - (a + t * (b - a))) - soma.skeleton.nodes[0]["radius_um"]
        assert 0 < surface_distance <= d1 + 1e-6


def test_radii_and_instance_scheme(phantom):
    kinds = {o.kind for o in phantom.objects}
    assert kinds == {"soma", "neurite", "ais"}
    somata = [o for o in phantom.objects if o.kind == "soma"]
    assert len(somata) == DEFAULT.n_neurons
    for obj in phantom.objects:
        assert nx.is_tree(obj.skeleton)
        r = _radii(obj)
        if obj.kind == "soma":
            assert np.all((r >= 5.0) & (r <= 8.0)) and obj.skeleton.number_of_nodes() == 2
        elif obj.kind == "neurite":
            assert np.all((r >= 0.5 - 1e-12) & (r <= 2.0))
        # Every node inside the volume box.
        vs = np.asarray(DEFAULT.voxel_size_um)
        pos = _positions(obj)
        assert np.all(pos >= -vs / 2 - 1e-9) and np.all(pos <= (np.asarray(DEFAULT.shape) - 0.5) * vs + 1e-9)
    # Neurites of a neuron are separate instances rooted on its soma surface.
    for soma in somata:
        dendrites = [o for o in phantom.objects if o.neuron == soma.neuron and o.name == "dendrite"]
        assert len(dendrites) >= 1
        a, b = _positions(soma)
        for d in dendrites:
            root = np.asarray(d.skeleton.nodes[0]["pos_um"])
            t = np.clip(np.dot(root - a, b - a) / max(np.dot(b - a, b - a), 1e-12), 0, 1)
            dist = np.linalg.norm(root - (a + t * (b - a)))
            assert dist == pytest.approx(soma.skeleton.nodes[0]["radius_um"], abs=1e-6)


def test_some_neurites_branch():
    ph = generate_phantom(DEFAULT.model_copy(update={"seed": 4}))
    degrees = [deg for o in ph.objects if o.name == "dendrite" for _, deg in o.skeleton.degree]
    assert max(degrees) == 3


def test_standalone_ais_when_more_ais_than_neurons():
    ph = generate_phantom(PhantomParams(n_neurons=1, n_ais=3, seed=3))
    ais = [o for o in ph.objects if o.kind == "ais"]
    assert [o.neuron for o in ais] == [0, -1, -1]
    assert ph.objects[-1].kind == "ais"  # standalone AIS come last


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


def test_gap_placement_rate_lengths_and_margins():
    g = nx.path_graph(201)
    for n in g:
        g.nodes[n].update(pos_um=(0.0, 0.0, 5.0 * n), radius_um=1.0)  # a 1000 µm straight line
    rng = np.random.default_rng(1)
    counts = []
    for _ in range(40):
        gaps = place_gaps(
            g, label=1, kind="neurite", rate_per_100um=1.0, length_um=(2.0, 5.0), end_margin_um=2.0, rng=rng
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


def test_dropout_rate_zero_gives_no_gaps():
    ph = generate_phantom(PhantomParams(seed=1, dropout=DropoutParams(rate_per_100um=0.0)))
    assert ph.gaps == ()
