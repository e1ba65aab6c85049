"""Mode and mean downsampling against a slow reference over every window."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from pipeline.pyramid import downsample_labels, downsample_mean

FACTORS = [f for f in itertools.product((1, 2), repeat=3)]


def windows(shape, factor):
    """Each output voxel's index and its window of the input (slices)."""
    out = tuple(-(-s // f) for s, f in zip(shape, factor, strict=True))
    for idx in itertools.product(*map(range, out)):
        yield idx, tuple(slice(i * f, (i + 1) * f) for i, f in zip(idx, factor, strict=True))


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("dtype", [np.uint32, np.uint64, np.int32])
def test_mode_is_a_most_frequent_label_of_every_window(factor, dtype):
    rng = np.random.default_rng(sum(factor) * 7 + np.dtype(dtype).itemsize)
    for shape in [(3, 5, 7), (4, 6, 8), (1, 1, 3)]:
        labels = rng.integers(0, 4, shape).astype(dtype)
        labels[labels == 3] = np.iinfo(dtype).max  # large ids too (uint64 beyond 2**63)
        out = downsample_labels(labels, factor)
        assert out.dtype == labels.dtype
        assert out.shape == tuple(-(-s // f) for s, f in zip(shape, factor, strict=True))
        for idx, window in windows(shape, factor):
            counts = Counter(labels[window].ravel().tolist())
            assert counts[out[idx].item()] == max(counts.values()), (factor, shape, idx)


def test_mode_by_hand():
    big = 2**63 + 5
    labels = np.zeros((2, 2, 4), np.uint64)
    labels[0] = [[big, big, 7, 0], [big, 0, 7, 0]]  # big 3 of 4; 7 and 0 tie
    labels[1] = [[1, 2, 3, 3], [4, 5, 3, 6]]
    out = downsample_labels(labels, (1, 2, 2))
    assert out[0, 0, 0] == big and out[0, 0, 1] in (7, 0) and out[1].tolist() == [[out[1, 0, 0], 3]]
    assert downsample_labels(labels, (2, 2, 2))[0, 0, 1] == 3  # 3 of the 8 voxels


def test_mean_equals_the_window_average():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 65535, (5, 7, 9)).astype(np.uint16)
    for factor in FACTORS:
        out = downsample_mean(image, factor)
        assert out.dtype == np.uint16
        for idx, window in windows(image.shape, factor):
            assert out[idx] == np.rint(image[window].astype(np.float64).mean()), (factor, idx)
    floats = rng.random((4, 5, 6)).astype(np.float32)
    np.testing.assert_allclose(downsample_mean(floats, (2, 2, 2))[0, 0, 0], floats[:2, :2, :2].mean(),
                               rtol=1e-6)


def test_blockwise_equals_whole_volume():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 5, (8, 20, 24)).astype(np.uint32)
    whole = downsample_labels(labels, (1, 2, 2))
    parts = np.block([[[downsample_labels(labels[:, y:y + 8, x:x + 8], (1, 2, 2))
                        for x in range(0, 24, 8)] for y in range(0, 20, 8)]])
    np.testing.assert_array_equal(parts, whole)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="factor must be three values of 1 or 2"):
        downsample_labels(np.zeros((2, 2, 2), np.uint8), (1, 3, 2))
    with pytest.raises(TypeError, match="labels"):
        downsample_labels(np.zeros((2, 2, 2), np.float32), (1, 2, 2))
    with pytest.raises(ValueError, match="ndim"):
        downsample_mean(np.zeros((2, 2), np.uint8), (1, 2, 2))
