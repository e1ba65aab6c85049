"""Exact geometry: straight tubes with anisotropic voxels, against hand counts and a slow reference."""

from __future__ import annotations

import math

import cc3d
import networkx as nx
import numpy as np
import pytest

from pipeline.synth import (
    ImagingParams,
    PhantomObject,
    build_phantom,
    crop_graph,
    render_volume,
    skeleton_lengths,
    unbranched_paths,
)

VS = (1.5, 0.5, 0.5)
SHAPE = (40, 120, 120)  # 60 x 60 x 60 µm


def _segment(p0, p1, r0, r1=None) -> nx.Graph:
    g = nx.Graph()
    g.add_node(0, pos_um=tuple(float(x) for x in p0), radius_um=float(r0))
    g.add_node(1, pos_um=tuple(float(x) for x in p1), radius_um=float(r0 if r1 is None else r1))
    g.add_edge(0, 1)
    return g


def _render_labels(graph: nx.Graph, *, shape=SHAPE, vs=VS, kind="neuron") -> np.ndarray:
    objects = [PhantomObject(1, kind, graph)]
    ph = build_phantom(objects, shape=shape, voxel_size_um=vs, imaging=ImagingParams())
    return render_volume(ph, noise=False).labels


def _reference_inside(p0, p1, r0, r1, shape, vs) -> np.ndarray:
    """Slow, straightforward reference: distance of every voxel centre to the segment (µm)."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    zz, yy, xx = np.meshgrid(*(np.arange(n) * v for n, v in zip(shape, vs, strict=True)), indexing="ij")
    pts = np.stack([zz, yy, xx], axis=-1)
    d = p1 - p0
    t = np.clip(((pts - p0) @ d) / (d @ d), 0, 1)
    dist = np.linalg.norm(pts - (p0 + t[..., None] * d), axis=-1)
    return dist <= r0 + t * (r1 - r0)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_straight_segment_along_each_axis_covers_the_expected_voxels(axis):
    length, radius = 30.0, 2.0
    centre = np.array([30.1, 29.9, 30.2])
    p0, p1 = centre.copy(), centre.copy()
    p0[axis] -= length / 2
    p1[axis] += length / 2
    graph = _segment(p0, p1, radius)
    labels = _render_labels(graph)
    mask = labels == 1
    assert labels.dtype == np.uint32
    # Same voxels as the slow reference (radius >= half the voxel diagonal: no box-hit extras).
    np.testing.assert_array_equal(mask, _reference_inside(p0, p1, radius, radius, SHAPE, VS))
    # Extent along the axis: (length + 2 r) / voxel size, within one voxel.
    idx = np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))[0]
    extent_voxels = idx.max() - idx.min() + 1
    assert abs(extent_voxels - (length + 2 * radius) / VS[axis]) <= 1
    # Cross-section through the middle: the lattice points of the disc of radius r, counted by hand.
    mid = int(round(centre[axis] / VS[axis]))
    section = np.take(mask, mid, axis=axis)
    others = [a for a in range(3) if a != axis]
    u = np.arange(SHAPE[others[0]]) * VS[others[0]] - centre[others[0]]
    w = np.arange(SHAPE[others[1]]) * VS[others[1]] - centre[others[1]]
    disc = u[:, None] ** 2 + w[None, :] ** 2 <= radius**2
    np.testing.assert_array_equal(section, disc)
    area_voxels = math.pi * radius**2 / (VS[others[0]] * VS[others[1]])
    assert abs(section.sum() - area_voxels) / area_voxels < 0.15
    # Skeleton length is the analytic length.
    lengths = skeleton_lengths(graph)
    assert lengths.path_length_um == pytest.approx(length, abs=1e-12)
    assert lengths.cable_length_um == pytest.approx(length, abs=1e-12)


def test_tapered_oblique_segment_matches_slow_reference():
    rng = np.random.default_rng(3)
    for _ in range(5):
        p0 = rng.uniform(10, 50, size=3)
        p1 = rng.uniform(10, 50, size=3)
        r0, r1 = rng.uniform(1.0, 3.0, size=2)
        labels = _render_labels(_segment(p0, p1, r0, r1))
        np.testing.assert_array_equal(labels == 1, _reference_inside(p0, p1, r0, r1, SHAPE, VS))


def test_thin_tube_stays_connected_and_contains_its_centreline():
    # Radius 0.2 µm, thinner than every voxel: the box-hit rule keeps it one 26-connected component.
    p0, p1 = np.array([7.3, 5.1, 4.2]), np.array([52.9, 51.7, 44.8])
    labels = _render_labels(_segment(p0, p1, 0.2))
    assert cc3d.connected_components(labels, connectivity=26).max() == 1
    t = np.linspace(0, 1, 5000)[:, None]
    idx = np.rint((p0 + t * (p1 - p0)) / np.asarray(VS)).astype(int)
    assert np.all(labels[tuple(idx.T)] == 1)


def test_single_node_is_a_ball():
    g = nx.Graph()
    g.add_node(0, pos_um=(30.0, 30.0, 30.0), radius_um=3.0)
    labels = _render_labels(g, kind="neuron")
    ref = _reference_inside([30.0, 30, 30], [30.0, 30, 30 + 1e-9], 3.0, 3.0, SHAPE, VS)
    np.testing.assert_array_equal(labels == 1, ref)


def _crossing_tubes(r_a=2.0, r_b=1.5, z_b=30.0):
    """Tube A (label 1) along x at z = y = 30 µm, tube B (label 2) along y at z = z_b, x = 30 µm.

    Both 32 µm long (a power of two, so the distance arithmetic is exact on the grid).
    """
    a = _segment([30.0, 30.0, 14.0], [30.0, 30.0, 46.0], r_a)
    b = _segment([z_b, 14.0, 30.0], [z_b, 46.0, 30.0], r_b)
    return [PhantomObject(1, "neuron", a), PhantomObject(2, "neuron", b)]


def test_overlap_rule_nearest_centreline_then_lower_label_on_two_crossing_tubes():
    objects = _crossing_tubes()
    ph = build_phantom(objects, shape=SHAPE, voxel_size_um=VS, imaging=ImagingParams(psf_sigma_um=(0, 0, 0)))
    labels = render_volume(ph, noise=False).labels
    # Reference: the distance of each voxel centre to each segment, written out by hand.
    z, y, x = np.meshgrid(*(np.arange(n) * v for n, v in zip(SHAPE, VS, strict=True)), indexing="ij")
    d_a = np.sqrt((z - 30.0) ** 2 + (y - 30.0) ** 2 + (x - np.clip(x, 14.0, 46.0)) ** 2)
    d_b = np.sqrt((z - 30.0) ** 2 + (x - 30.0) ** 2 + (y - np.clip(y, 14.0, 46.0)) ** 2)
    cov_a = d_a <= 2.0
    cov_b = d_b <= 1.5
    expected = np.zeros(SHAPE, np.uint32)
    expected[cov_a] = 1
    expected[cov_b & (~cov_a | (d_b < d_a))] = 2  # B only where its centreline is strictly nearer
    np.testing.assert_array_equal(labels, expected)
    # Every covered voxel has exactly one of the two labels; hand-computed voxels:
    # (z, y, x) = (30, 31, 30.5) µm: d_A = 1.0, d_B = 0.5 -> B.
    assert labels[20, 62, 61] == 2
    # (30, 31, 31) µm: d_A = d_B = 1.0, a tie -> the lower label, A.
    assert labels[20, 62, 62] == 1
    # (30, 30.5, 31) µm: d_A = 0.5, d_B = 1.0 -> A; (30, 30, 30) µm: both 0 -> A.
    assert labels[20, 61, 62] == 1 and labels[20, 60, 60] == 1
    # (30, 34, 30) µm: only B covers it (d_A = 4 > 2).
    assert labels[20, 68, 60] == 2
    # Swapping the labels swaps the tie-break only: the tie voxel now goes to B (label 1).
    swapped = [
        PhantomObject(2, "neuron", objects[0].skeleton),
        PhantomObject(1, "neuron", objects[1].skeleton),
    ]
    again = render_volume(build_phantom(swapped, shape=SHAPE, voxel_size_um=VS), noise=False).labels
    assert again[20, 62, 62] == 1 and again[20, 61, 62] == 2 and again[20, 62, 61] == 1


def test_fluorescence_is_the_brightest_covering_tube_and_puncta_have_no_label():
    imaging = ImagingParams(psf_sigma_um=(0, 0, 0), noise=False, neurite_brightness=0.5, ais_brightness=1.0)
    a = _segment([30.0, 30.0, 14.0], [30.0, 30.0, 46.0], 2.0)
    b = _segment([30.0, 14.0, 30.0], [30.0, 46.0, 30.0], 1.5)
    objects = [PhantomObject(1, "ais", a), PhantomObject(2, "neuron", b)]
    puncta = np.array([[15.0, 10.0, 10.0, 0.6, 0.75]])
    ph = build_phantom(objects, shape=SHAPE, voxel_size_um=VS, imaging=imaging, puncta=puncta)
    vol = render_volume(ph)
    im = imaging

    def adu(f):
        return round(im.offset_adu + im.gain_adu_per_photon * (im.background_photons + im.signal_photons * f))

    # B's voxel inside A: B's label, A's brightness.
    assert vol.labels[20, 62, 61] == 2 and vol.raw[20, 62, 61] == adu(1.0)
    assert vol.raw[20, 68, 60] == adu(0.5)  # B alone
    assert vol.labels[10, 20, 20] == 0 and vol.raw[10, 20, 20] == adu(0.75)  # the punctum: bright, unlabelled
    assert set(np.unique(vol.labels).tolist()) == {0, 1, 2}


def test_path_length_is_the_weighted_diameter():
    g = nx.Graph()
    pts = {0: (0, 0, 0), 1: (0, 0, 10), 2: (0, 0, 25), 3: (0, 8, 10), 4: (0, 8, 4)}
    for n, p in pts.items():
        g.add_node(n, pos_um=tuple(float(x) for x in p), radius_um=1.0)
    g.add_edges_from([(0, 1), (1, 2), (1, 3), (3, 4)])
    lengths = skeleton_lengths(g)
    assert lengths.cable_length_um == pytest.approx(10 + 15 + 8 + 6)
    assert lengths.path_length_um == pytest.approx(6 + 8 + 15)  # 4 -> 3 -> 1 -> 2
    assert lengths.n_nodes == 5
    assert sorted(map(len, unbranched_paths(g))) == [2, 2, 3]


def test_crop_graph_cuts_edges_at_the_box_faces():
    g = _segment([5.0, 5.0, -10.0], [5.0, 5.0, 30.0], 1.0, 3.0)
    out = crop_graph(g, (0, 0, 0), (10, 10, 20))
    xs = sorted(d["pos_um"][2] for _, d in out.nodes(data=True))
    assert xs == pytest.approx([0.0, 20.0])
    radii = sorted(d["radius_um"] for _, d in out.nodes(data=True))
    assert radii == pytest.approx([1.5, 2.5])
    assert skeleton_lengths(out).path_length_um == pytest.approx(20.0)
    # An edge entirely outside disappears; an inside node with no inside edges stays.
    assert crop_graph(g, (100, 100, 100), (110, 110, 110)).number_of_nodes() == 0
