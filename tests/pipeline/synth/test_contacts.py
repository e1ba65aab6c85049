"""Neurons kind: different neurons touch, run together and cross at the clearance; one label per neuron."""

from __future__ import annotations

import cc3d
import networkx as nx
import numpy as np
import pytest
from scipy.spatial import cKDTree

from pipeline.synth import (
    NeuronParams,
    PhantomObject,
    PhantomParams,
    build_phantom,
    generate_phantom,
    render_volume,
)

SOMA = 1


def touching_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of different labels that are 26-neighbours somewhere."""
    padded = np.pad(labels, 1)
    centre = padded[1:-1, 1:-1, 1:-1]
    pairs = set()
    for dz in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if (dz, dy, dx) <= (0, 0, 0):
                    continue
                other = padded[1 + dz : padded.shape[0] - 1 + dz, 1 + dy : padded.shape[1] - 1 + dy,
                               1 + dx : padded.shape[2] - 1 + dx]
                m = (centre > 0) & (other > 0) & (centre != other)
                for a, b in set(zip(centre[m].tolist(), other[m].tolist(), strict=True)):
                    pairs.add((min(a, b), max(a, b)))
    return pairs


def cable_samples(obj, step_um=0.2):
    """Points every ~step_um along the object's neurites (not its soma): positions, radii, unit tangents."""
    g = obj.skeleton
    pts, radii, tangents = [], [], []
    for u, v in g.edges:
        du, dv = g.nodes[u], g.nodes[v]
        if du["swc_type"] == SOMA or dv["swc_type"] == SOMA:
            continue
        a, b = np.asarray(du["pos_um"]), np.asarray(dv["pos_um"])
        length = np.linalg.norm(b - a)
        if length == 0:
            continue
        t = np.linspace(0, 1, max(2, int(length / step_um) + 1))[:, None]
        pts.append(a + t * (b - a))
        radii.append(du["radius_um"] + t[:, 0] * (dv["radius_um"] - du["radius_um"]))
        tangents.append(np.repeat(((b - a) / length)[None], len(t), axis=0))
    return np.concatenate(pts), np.concatenate(radii), np.concatenate(tangents)


def closest_approaches(ph):
    """For every pair of objects (a, b): the surface gap (µm) from each cable sample of a to b's nearest
    sample, and the angle (degrees) between the two centrelines where the gap is smallest."""
    samples = {o.label: cable_samples(o) for o in ph.objects}
    out = {}
    for a in samples:
        for b in samples:
            if a >= b:
                continue
            pa, ra, ta = samples[a]
            pb, rb, tb = samples[b]
            dist, idx = cKDTree(pb).query(pa)
            gaps = dist - ra - rb[idx]
            k = int(np.argmin(gaps))
            angle = np.degrees(np.arccos(min(1.0, abs(float(np.dot(ta[k], tb[idx[k]]))))))
            out[(a, b)] = (gaps, angle)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_different_neurons_touch_at_zero_clearance_and_never_with_a_large_one(seed):
    touching = generate_phantom(PhantomParams(seed=seed, neuron=NeuronParams(clearance_um=0.0)))
    pairs = touching_pairs(render_volume(touching, noise=False).labels)
    assert len(pairs) > 0
    # 3 µm exceeds a voxel diagonal: no two neurons' voxels can be 26-neighbours, with contacts on.
    apart = generate_phantom(PhantomParams(seed=seed, neuron=NeuronParams(clearance_um=3.0)))
    assert touching_pairs(render_volume(apart, noise=False).labels) == set()
    assert min(gaps.min() for gaps, _ in closest_approaches(apart).values()) >= 3.0 - 0.5


def test_fascicles_run_alongside_touching():
    params = PhantomParams(
        seed=1, neuron=NeuronParams(clearance_um=0.0, fasciculation_probability=1.0, crossing_probability=0.0)
    )
    ph = generate_phantom(params)
    runs = []
    for gaps, _ in closest_approaches(ph).values():
        assert gaps.min() >= -0.5  # they touch, they do not interpenetrate (to half a µm)
        runs.append(np.count_nonzero(np.abs(gaps) <= 0.3) * 0.2)  # µm of cable touching the other
    assert max(runs) >= params.neuron.fasciculation_length_um[0]
    assert touching_pairs(render_volume(ph, noise=False).labels)


def test_crossings_pass_at_the_clearance_at_an_angle():
    params = PhantomParams(
        seed=2, n_passing_axons=4,
        neuron=NeuronParams(clearance_um=1.0, fasciculation_probability=0.0, crossing_probability=1.0),
    )
    ph = generate_phantom(params)
    approaches = closest_approaches(ph)
    assert min(gaps.min() for gaps, _ in approaches.values()) >= 1.0 - 0.5
    crossings = [angle for gaps, angle in approaches.values() if gaps.min() <= 1.0 + 0.3]
    assert crossings and max(crossings) >= 30.0 - 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_neuron_is_one_26_connected_component(seed):
    ph = generate_phantom(PhantomParams(seed=seed))
    labels = render_volume(ph, noise=False).labels
    assert set(np.unique(labels).tolist()) - {0} == set(ph.labels)
    for obj in ph.objects:
        n = cc3d.connected_components(labels == obj.label, connectivity=26).max()
        assert n == 1, f"label {obj.label} ({obj.name}) has {n} components"


def test_with_many_contacts_each_neuron_is_still_one_component():
    params = PhantomParams(
        seed=5, n_neurons=6, n_ais=8, n_passing_axons=6,
        neuron=NeuronParams(clearance_um=0.0, fasciculation_probability=0.5, crossing_probability=0.5),
    )
    ph = generate_phantom(params)
    labels = render_volume(ph, noise=False).labels
    assert len(touching_pairs(labels)) >= 10
    for obj in ph.objects:
        assert cc3d.connected_components(labels == obj.label, connectivity=26).max() == 1, obj.label


def test_the_documented_exception_a_thin_tube_overlapped_within_a_voxel_is_cut_where_touched():
    # Thin A (radius 0.2 µm, voxels by the box rule) runs along x at z = 30.6 µm, off the voxel centres;
    # thick B runs along y through (z, x) = (30, 30) µm. B's centreline is nearer than A's for the
    # voxels at x = 29.5, 30, 30.5 µm on A's row (d_B <= 0.5 < d_A = 0.6), so A loses them: two pieces,
    # 1.5 µm apart, each touching B. (Generated neurons keep their clearance and do not overlap so.)
    a = _segment((30.6, 30.0, 14.0), (30.6, 30.0, 46.0), 0.2)
    b = _segment((30.0, 14.0, 30.0), (30.0, 46.0, 30.0), 1.5)
    objects = [PhantomObject(1, "neuron", a), PhantomObject(2, "neuron", b)]
    labels = render_volume(build_phantom(objects, shape=(40, 120, 120), voxel_size_um=(1.5, 0.5, 0.5)),
                           noise=False).labels
    row = labels[20, 60, :]  # z = 30 µm, y = 30 µm
    assert row[58] == 1 and row[59:62].tolist() == [2, 2, 2] and row[62] == 1
    comps = cc3d.connected_components(labels == 1, connectivity=26)
    assert comps.max() == 2
    near_b = np.zeros(labels.shape, bool)
    for axis in range(3):
        for shift in (-1, 1):
            near_b |= np.roll(labels == 2, shift, axis=axis)
    assert all(np.any((comps == k) & near_b) for k in (1, 2))


def _segment(p0, p1, r):
    g = nx.Graph()
    g.add_node(0, pos_um=tuple(map(float, p0)), radius_um=float(r), swc_type=2)
    g.add_node(1, pos_um=tuple(map(float, p1)), radius_um=float(r), swc_type=2)
    g.add_edge(0, 1)
    return g
