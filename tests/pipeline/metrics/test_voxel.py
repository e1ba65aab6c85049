"""Voxel metrics on hand-made arrays, against slow references, and Betti numbers of known shapes."""

from __future__ import annotations

import itertools
import math

import cc3d
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline.metrics import (
    accuracy,
    adjusted_rand_index,
    betti_error,
    betti_numbers,
    contingency_table,
    dice,
    euler_characteristic,
    patchwise_betti_error,
    variation_of_information,
)

# ---------------------------------------------------------------------------------------------------------
# accuracy and Dice


def test_accuracy_and_dice_by_hand():
    true = np.array([[0, 1, 1, 0], [0, 2, 2, 0]], np.uint8)  # labels count as foreground
    pred = np.array([[0, 1, 0, 0], [1, 5, 5, 0]], np.uint16)
    # agreement: 6 of 8 voxels (misses at [0, 2] and [1, 0])
    assert accuracy(pred, true) == pytest.approx(6 / 8)
    # |P| = 4, |T| = 4, |P ∩ T| = 3
    assert dice(pred, true) == pytest.approx(2 * 3 / 8)


def test_accuracy_and_dice_edge_cases():
    empty = np.zeros((3, 3), bool)
    assert dice(empty, empty) == 1.0
    assert accuracy(empty, empty) == 1.0
    full = np.ones((3, 3), bool)
    assert dice(full, empty) == 0.0
    assert accuracy(full, empty) == 0.0
    assert accuracy(np.zeros(0, bool), np.zeros(0, bool)) == 1.0


@pytest.mark.parametrize("fn", [accuracy, dice, adjusted_rand_index])
def test_pair_metric_validation(fn):
    with pytest.raises(ValueError, match="shape"):
        fn(np.zeros((3, 3), np.uint8), np.zeros((3, 4), np.uint8))
    with pytest.raises(TypeError, match="dtype float64"):
        fn(np.zeros((3, 3)), np.zeros((3, 3), np.uint8))
    with pytest.raises(TypeError, match="numpy array"):
        fn([[0, 1]], np.zeros((1, 2), np.uint8))


# ---------------------------------------------------------------------------------------------------------
# contingency, ARI, VOI


def test_contingency_table():
    pred = np.array([0, 1, 1, 2, 2, 2])
    true = np.array([5, 5, 5, 7, 7, 0])
    p, t, c = contingency_table(pred, true)
    rows = list(zip(t.tolist(), p.tolist(), c.tolist(), strict=True))
    assert rows == [(0, 2, 1), (5, 0, 1), (5, 1, 2), (7, 2, 2)]


def _ari_reference(pred, true):
    """Pair counting by enumeration over the ground-truth foreground voxels."""
    fg = np.flatnonzero(true.ravel() != 0)
    p, t = pred.ravel()[fg], true.ravel()[fg]
    n = len(fg)
    if n < 2:
        return 1.0
    both = same_t = same_p = 0
    for i, j in itertools.combinations(range(n), 2):
        st_, sp_ = t[i] == t[j], p[i] == p[j]
        both += st_ and sp_
        same_t += st_
        same_p += sp_
    pairs = n * (n - 1) / 2
    expected = same_t * same_p / pairs
    denom = 0.5 * (same_t + same_p) - expected
    return 1.0 if denom == 0 else (both - expected) / denom


def test_ari_known_values():
    # scikit-learn's documented example, shifted to make every true voxel foreground
    assert adjusted_rand_index(np.array([0, 0, 1, 2]), np.array([1, 1, 2, 2])) == pytest.approx(4 / 7)
    assert adjusted_rand_index(np.array([0, 1, 2, 3]), np.array([1, 1, 1, 1])) == pytest.approx(0.0)
    # relabelling and predictions in the true background do not matter
    true = np.array([0, 0, 1, 1, 2, 2, 2])
    assert adjusted_rand_index(np.array([9, 4, 7, 7, 3, 3, 3]), true) == 1.0
    # predicted 0 inside an object is a cluster of its own: same as predicting a new label
    a = adjusted_rand_index(np.array([0, 0, 1, 0, 2, 2, 2]), true)
    b = adjusted_rand_index(np.array([0, 0, 1, 8, 2, 2, 2]), true)
    assert a == b < 1.0


def test_ari_degenerate_cases():
    assert adjusted_rand_index(np.zeros(5, np.uint8), np.zeros(5, np.uint8)) == 1.0  # no foreground
    assert adjusted_rand_index(np.array([3]), np.array([1])) == 1.0  # one voxel
    assert adjusted_rand_index(np.array([3, 3]), np.array([1, 1])) == 1.0  # both trivial, identical


label_arrays = arrays(np.uint8, st.integers(1, 40), elements=st.integers(0, 4))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_ari_matches_pair_counting_reference(data):
    true = data.draw(label_arrays)
    pred = data.draw(arrays(np.uint8, true.shape, elements=st.integers(0, 4)))
    assert adjusted_rand_index(pred, true) == pytest.approx(_ari_reference(pred, true), abs=1e-12)


def _voi_reference(pred, true, base):
    fg = true != 0
    p, t = pred[fg].tolist(), true[fg].tolist()
    n = len(p)
    split = merge = 0.0
    for tv in set(t):
        for pv in set(p):
            nij = sum(1 for a, b in zip(p, t, strict=True) if a == pv and b == tv)
            if nij == 0:
                continue
            ni, nj = t.count(tv), p.count(pv)
            split -= nij / n * math.log(nij / ni, base)
            merge -= nij / n * math.log(nij / nj, base)
    return split, merge


def test_voi_by_hand():
    true = np.array([0, 1, 1, 1, 1, 0])
    halves = variation_of_information(np.array([7, 1, 1, 2, 2, 7]), true)
    assert (halves.split, halves.merge, halves.total) == (pytest.approx(1.0), 0.0, pytest.approx(1.0))
    merged = variation_of_information(np.array([5, 5, 5, 5]), np.array([1, 1, 2, 2]))
    assert (merged.split, merged.merge) == (0.0, pytest.approx(1.0))
    nats = variation_of_information(np.array([1, 1, 2, 2]), np.array([1, 1, 1, 1]), log_base=math.e)
    assert nats.split == pytest.approx(math.log(2)) and nats.log_base == math.e
    assert variation_of_information(np.zeros(4, int), np.zeros(4, int)).total == 0.0
    with pytest.raises(ValueError, match="log_base"):
        variation_of_information(true, true, log_base=1.0)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_voi_matches_reference(data):
    true = data.draw(label_arrays)
    pred = data.draw(arrays(np.uint8, true.shape, elements=st.integers(0, 4)))
    voi = variation_of_information(pred, true)
    split, merge = _voi_reference(pred, true, 2)
    assert voi.split == pytest.approx(split, abs=1e-12)
    assert voi.merge == pytest.approx(merge, abs=1e-12)


# ---------------------------------------------------------------------------------------------------------
# Betti numbers: shapes whose topology is known


def _grid(n):
    c = np.arange(n) - (n - 1) / 2
    return np.meshgrid(c, c, c, indexing="ij")


def test_betti_of_a_2d_ring_and_two_blobs():
    ring = np.zeros((7, 7), bool)
    ring[1:6, 1:6] = True
    ring[2:5, 2:5] = False
    assert betti_numbers(ring).betti == (1, 1)
    assert betti_numbers(ring, connectivity=4).betti == (1, 1)
    blobs = np.zeros((6, 9), bool)
    blobs[1:3, 1:3] = blobs[3:5, 5:8] = True
    assert betti_numbers(blobs).betti == (2, 0)
    assert betti_numbers(blobs).euler_characteristic == 2


def test_betti_of_a_diagonal_ring_depends_on_connectivity():
    # four pixels around a centre, touching only at corners
    diamond = np.zeros((5, 5), bool)
    diamond[1, 2] = diamond[2, 1] = diamond[2, 3] = diamond[3, 2] = True
    assert betti_numbers(diamond).betti == (1, 1)  # 8-connected ring, 4-connected hole
    assert betti_numbers(diamond, connectivity=4).betti == (4, 0)  # 4 pixels, hole leaks diagonally


def test_betti_3d_ring():
    ring = np.zeros((3, 9, 9), bool)
    ring[1, 2:7, 2:7] = True
    ring[1, 3:6, 3:6] = False
    for conn in (6, 26):
        assert betti_numbers(ring, connectivity=conn).betti == (1, 1, 0)


def test_betti_hollow_sphere():
    z, y, x = _grid(21)
    r = np.sqrt(z**2 + y**2 + x**2)
    shell = (r <= 8) & (r >= 5)
    for conn in (6, 26):
        b = betti_numbers(shell, connectivity=conn)
        assert b.betti == (1, 0, 1) and b.euler_characteristic == 2


def test_betti_torus():
    z, y, x = _grid(21)
    torus = (np.hypot(y, x) - 6) ** 2 + z**2 <= 2.5**2
    for conn in (6, 26):
        b = betti_numbers(torus, connectivity=conn)
        assert b.betti == (1, 1, 0) and b.euler_characteristic == 0


def test_betti_two_disjoint_blobs_and_corner_contact():
    vol = np.zeros((10, 10, 10), bool)
    vol[1:4, 1:4, 1:4] = True
    vol[6:9, 5:9, 6:8] = True
    assert betti_numbers(vol).betti == (2, 0, 0)
    corner = np.zeros((4, 4, 4), bool)
    corner[1, 1, 1] = corner[2, 2, 2] = True
    assert betti_numbers(corner).betti == (1, 0, 0)  # 26-connected through the shared corner
    assert betti_numbers(corner, connectivity=6).betti == (2, 0, 0)


def test_betti_cavity_sealed_only_for_26_connectivity():
    # a 5^3 cube shell with one edge voxel removed: its inside touches that voxel along an edge only
    shell = np.ones((7, 7, 7), bool)
    shell[[0, -1], :, :] = shell[:, [0, -1], :] = shell[:, :, [0, -1]] = False
    shell[2:5, 2:5, 2:5] = False
    shell[1, 1, 3] = False
    assert betti_numbers(shell).betti == (1, 0, 1)  # background 6-connected: still a cavity
    assert betti_numbers(shell, connectivity=6).betti == (1, 0, 0)  # background 26: punctured


def test_betti_two_linked_rings_and_a_figure_eight():
    eight = np.zeros((3, 7, 11), bool)
    eight[1, 1:6, 1:10] = True
    eight[1, 2:5, 2:5] = eight[1, 2:5, 6:9] = False
    assert betti_numbers(eight).betti == (1, 2, 0)
    # solid block touching the array border everywhere: no cavity, no loop
    assert betti_numbers(np.ones((3, 4, 5), bool)).betti == (1, 0, 0)
    assert betti_numbers(np.zeros((3, 4, 5), bool)).betti == (0, 0, 0)
    assert betti_numbers(np.zeros((3, 4), bool)).betti == (0, 0)


def _bounded_background_2d(mask, bg_conn):
    bg = np.pad(~mask, 1, constant_values=True).astype(np.uint8)
    return cc3d.connected_components(bg, connectivity=bg_conn, return_N=True)[1] - 1


@settings(max_examples=120, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 9), st.integers(1, 9))))
def test_betti_2d_euler_formula_matches_counting_holes(mask):
    # independent check of the Euler-characteristic route: in 2-D, β1 = number of bounded holes
    for conn, bg_conn in ((8, 4), (4, 8)):
        assert betti_numbers(mask, connectivity=conn).b1 == _bounded_background_2d(mask, bg_conn)


@settings(max_examples=80, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 7), st.integers(1, 7))), st.integers(1, 3))
def test_betti_3d_of_an_extruded_2d_mask(mask, depth):
    # a 2-D mask extruded through `depth` slices (and padded in z) is a prism: same β0, β1; no cavity
    vol = np.zeros((depth + 2, *mask.shape), bool)
    vol[1:-1] = mask
    for conn2, conn3 in ((8, 26), (4, 6)):
        b0, b1 = betti_numbers(mask, connectivity=conn2).betti
        assert betti_numbers(vol, connectivity=conn3).betti == (b0, b1, 0)


@settings(max_examples=40, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6))))
def test_betti_invariant_under_axis_permutations_and_flips(vol):
    for conn in (6, 26):
        ref = betti_numbers(vol, connectivity=conn)
        assert betti_numbers(np.transpose(vol, (2, 0, 1)), connectivity=conn) == ref
        assert betti_numbers(vol[::-1, :, ::-1], connectivity=conn) == ref
        assert sum((-1) ** k * b for k, b in enumerate(ref.betti)) == ref.euler_characteristic
        assert min(ref.betti) >= 0


def test_euler_characteristic_by_hand():
    assert euler_characteristic(np.ones((1, 1), bool)) == 1
    assert euler_characteristic(np.ones((2, 2, 2), bool), connectivity=6) == 1
    two = np.zeros((1, 3), bool)
    two[0, 0] = two[0, 2] = True
    assert euler_characteristic(two) == 2


def test_betti_validation():
    with pytest.raises(ValueError, match="ndim=1"):
        betti_numbers(np.zeros(4, bool))
    with pytest.raises(ValueError, match="connectivity=18"):
        betti_numbers(np.zeros((3, 3, 3), bool), connectivity=18)
    with pytest.raises(ValueError, match="connectivity=6"):
        betti_numbers(np.zeros((3, 3), bool), connectivity=6)
    with pytest.raises(TypeError, match="dtype float"):
        betti_numbers(np.zeros((3, 3)))


# ---------------------------------------------------------------------------------------------------------
# Betti error


def test_betti_error_whole_and_patchwise():
    true = np.zeros((8, 8), bool)
    true[1:4, 1:4] = True
    true[2, 2] = False  # a ring in the top-left patch
    pred = true.copy()
    pred[2, 2] = True  # hole filled
    pred[6, 6] = True  # a spurious blob in the bottom-right patch
    err = betti_error(pred, true)
    assert err.per_dimension == (1.0, 1.0) and err.total == 2.0 and err.n_patches == 1
    tiles = patchwise_betti_error(pred, true, patch_size=4)
    assert tiles.n_patches == 4
    assert tiles.per_dimension == (0.25, 0.25) and tiles.total == 0.5
    # overlapping patches: stride 2 on an 8-wide axis -> origins 0, 2, 4 per axis
    assert patchwise_betti_error(pred, true, patch_size=4, stride=2).n_patches == 9
    # a patch size that does not divide the image adds a patch flush with the far end
    assert patchwise_betti_error(pred, true, patch_size=(3, 8)).n_patches == 3


def test_betti_error_3d_and_validation():
    true = np.zeros((4, 6, 6), bool)
    true[1:3, 1:5, 1:5] = True
    assert betti_error(true, true).per_dimension == (0.0, 0.0, 0.0)
    pred = true.copy()
    pred[1:3, 2:4, 2:4] = False  # drill a tunnel
    assert betti_error(pred, true).per_dimension == (0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="larger than the image"):
        patchwise_betti_error(pred, true, patch_size=8)
    with pytest.raises(ValueError, match="patch_size"):
        patchwise_betti_error(pred, true, patch_size=0)
    with pytest.raises(ValueError, match="shape"):
        betti_error(pred, true[:, :, :5])
