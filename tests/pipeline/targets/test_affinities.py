from __future__ import annotations

import numpy as np
import pytest

from pipeline.targets import affinities_from_labels


def test_waterz_convention_hand_computed_3d():
    labels = np.zeros((2, 2, 3), np.uint32)
    labels[0, 0, :] = [1, 1, 2]
    labels[1, 0, :] = [1, 0, 2]
    t = affinities_from_labels(labels)
    assert t.affinities.shape == (3, 2, 2, 3) and t.affinities.dtype == np.float32
    # z edges link (z, y, x) with (z-1, y, x): only z=1 has partners.
    np.testing.assert_array_equal(t.affinities[0, 1, 0], [1, 0, 1])
    np.testing.assert_array_equal(t.affinities[0, 0], 0)
    # x edges at x=1 link x=1 and x=0; at x=2 link x=2 and x=1.
    np.testing.assert_array_equal(t.affinities[2, 0, 0], [0, 1, 0])
    np.testing.assert_array_equal(t.mask[0, 0], 0)
    np.testing.assert_array_equal(t.mask[0, 1], 1)
    np.testing.assert_array_equal(t.mask[2, :, :, 0], 0)


def test_affinities_agree_with_a_slow_definition():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (4, 5, 6))
    t = affinities_from_labels(labels)
    for d, off in enumerate([(1, 0, 0), (0, 1, 0), (0, 0, 1)]):
        for p in np.ndindex(labels.shape):
            q = tuple(np.subtract(p, off))
            if min(q) < 0:
                assert t.affinities[(d, *p)] == 0 and t.mask[(d, *p)] == 0
            else:
                want = float(labels[p] == labels[q] and labels[p] != 0)
                assert t.affinities[(d, *p)] == want and t.mask[(d, *p)] == 1


def test_unlabelled_voxels_mask_their_edges():
    labels = np.ones((1, 1, 4), np.uint8)
    known = np.array([[[True, True, False, True]]])
    t = affinities_from_labels(labels, labelled=known)
    np.testing.assert_array_equal(t.mask[2, 0, 0], [0, 1, 0, 0])


def test_bad_input():
    with pytest.raises(TypeError, match="labels has dtype float64"):
        affinities_from_labels(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="ndim=1"):
        affinities_from_labels(np.zeros(4, int))
    with pytest.raises(ValueError, match="labels has shape .* but labelled has shape"):
        affinities_from_labels(np.zeros((2, 2), int), labelled=np.ones((2, 3), bool))
