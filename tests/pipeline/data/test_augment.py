from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from pipeline.data import (
    Augmentation,
    add_gaussian_noise,
    adjust_intensity,
    augment_patch,
    flip_transpose,
    signal_dropout,
)

VS = (1.5, 0.5, 0.5)


def _labels(shape=(4, 12, 12), seed=0):
    return np.random.default_rng(seed).integers(0, 5, shape).astype(np.uint32)


@pytest.mark.parametrize("seed", range(8))
def test_flips_and_transposes_are_applied_identically(seed):
    labels = _labels()
    raw = labels.astype(np.float32) * 10 + 0.5
    rng = np.random.default_rng(seed)
    out_raw, out_labels = flip_transpose(raw, labels, rng=rng, flip=True, transpose=True)
    np.testing.assert_array_equal(out_raw, out_labels.astype(np.float32) * 10 + 0.5)
    # z is never touched: each output slice is a flip/transpose of the same input slice
    for z in range(labels.shape[0]):
        candidates = [labels[z], labels[z, ::-1], labels[z, :, ::-1], labels[z, ::-1, ::-1]]
        candidates += [c.T for c in candidates]
        assert any(np.array_equal(out_labels[z], c) for c in candidates)
    assert out_raw.flags.c_contiguous and out_labels.flags.c_contiguous


def test_all_eight_in_plane_symmetries_occur():
    labels = np.arange(2 * 3 * 3, dtype=np.uint32).reshape(2, 3, 3)
    seen = set()
    for seed in range(64):
        rng = np.random.default_rng(seed)
        _, out = flip_transpose(labels.astype(np.float32), labels, rng=rng, transpose=True)
        seen.add(out.tobytes())
    assert len(seen) == 8


def test_transpose_refused_for_non_square_patch():
    labels = _labels((2, 6, 8))
    with pytest.raises(ValueError, match="square"):
        flip_transpose(labels.astype(np.float32), labels, rng=np.random.default_rng(0), transpose=True)


def test_intensity_and_noise():
    raw = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 8, 8)
    same = adjust_intensity(raw, rng=np.random.default_rng(0))
    np.testing.assert_allclose(same, raw)
    out = adjust_intensity(raw, rng=np.random.default_rng(0), scale=(2, 2), shift=(0.5, 0.5), gamma=(2, 2))
    np.testing.assert_allclose(out, raw**2 * 2 + 0.5, rtol=1e-6)
    noisy = add_gaussian_noise(raw, rng=np.random.default_rng(0), sigma=(0.1, 0.1))
    assert noisy.dtype == np.float32 and 0.05 < float(np.std(noisy - raw)) < 0.15


def _neurite_patch():
    """A thin straight neurite (label 3) along x and a thick soma (label 7)."""
    labels = np.zeros((5, 32, 48), np.uint32)
    labels[2, 8:10, 2:46] = 3  # 1 µm thick in y (2 voxels of 0.5 µm), 1.5 µm in z
    zz, yy, xx = np.indices(labels.shape)
    soma = ((zz - 2) * 1.5) ** 2 + ((yy - 22) * 0.5) ** 2 + ((xx - 24) * 0.5) ** 2 <= 4.0**2
    labels[soma] = 7
    raw = np.where(labels > 0, 1.0, 0.05).astype(np.float32)
    return raw, labels


@pytest.mark.parametrize("seed", range(6))
def test_dropout_changes_raw_only_in_a_gap_along_a_thin_labelled_structure(seed):
    raw, labels = _neurite_patch()
    labels_before = labels.copy()
    out = signal_dropout(
        raw, labels, rng=np.random.default_rng(seed), voxel_size_um=VS, n_gaps=1, length_um=(3.0, 3.0),
        margin_um=0.5, max_radius_um=1.5,
    )
    np.testing.assert_array_equal(labels, labels_before)  # labels untouched
    changed = out.raw != raw
    assert changed.any()
    assert not (changed & ~out.gaps).any()  # changes only inside the gap mask
    np.testing.assert_allclose(out.raw[out.gaps], 0.05)  # falls to the background level
    # the gap lies on the thin neurite (never on the soma) plus a thin halo of background around it
    assert (labels[out.gaps] != 7).all()
    assert (labels[out.gaps] == 3).any()
    near = ndimage.binary_dilation(labels == 3, iterations=2)
    assert not (out.gaps & ~near).any()
    # a gap of 3 µm along x spans about 6-7 voxels of the neurite
    gap_x = np.flatnonzero((out.gaps & (labels == 3)).any(axis=(0, 1)))
    assert 5 <= gap_x.size <= 8 and np.all(np.diff(gap_x) == 1)


def test_dropout_skips_thick_structures_and_empty_patches():
    raw, labels = _neurite_patch()
    soma_only = np.where(labels == 7, 7, 0).astype(np.uint32)
    out = signal_dropout(raw, soma_only, rng=np.random.default_rng(0), voxel_size_um=VS, max_radius_um=1.5)
    assert not out.gaps.any()
    np.testing.assert_array_equal(out.raw, raw)
    empty = signal_dropout(raw, np.zeros_like(labels), rng=np.random.default_rng(0), voxel_size_um=VS)
    assert not empty.gaps.any()


def test_augment_patch_keeps_labels_and_shape():
    raw, labels = _neurite_patch()
    raw = raw[:, :32, :32].copy()
    labels = labels[:, :32, :32].copy()
    for seed in range(5):
        r, lab = augment_patch(
            raw, labels, rng=np.random.default_rng(seed), settings=Augmentation(dropout_probability=1.0),
            voxel_size_um=VS, allow_transpose=True,
        )
        assert r.shape == raw.shape and r.dtype == np.float32
        assert sorted(np.unique(lab)) == sorted(np.unique(labels))
        assert np.count_nonzero(lab) == np.count_nonzero(labels)
    off_raw, off_lab = augment_patch(
        raw, labels, rng=np.random.default_rng(0), settings=Augmentation.off(), voxel_size_um=VS,
        allow_transpose=True,
    )
    np.testing.assert_array_equal(off_raw, raw)
    np.testing.assert_array_equal(off_lab, labels)


def test_augmentation_settings_are_checked():
    with pytest.raises(ValueError, match="gamma"):
        Augmentation(gamma=(1.2, 0.8))
    with pytest.raises(ValueError, match="dropout_probability"):
        Augmentation(dropout_probability=1.5)


@pytest.mark.parametrize("seed", range(6))
def test_dropout_gaps_are_centred_in_the_given_region(seed):
    """Gap centres only inside ``region`` (the loss region): a 2 µm gap centred at x in 38..41 of the
    neurite covers x 36..43 at most; a region without thin structure gets no gap."""
    raw, labels = _neurite_patch()
    region = (slice(None), slice(None), slice(38, 42))
    out = signal_dropout(
        raw, labels, rng=np.random.default_rng(seed), voxel_size_um=VS, n_gaps=2, length_um=(2.0, 2.0),
        margin_um=0.0, max_radius_um=1.5, region=region,
    )
    gap_x = np.flatnonzero(out.gaps.any(axis=(0, 1)))
    assert gap_x.size and gap_x.min() >= 36 and gap_x.max() <= 43, gap_x
    assert (labels[out.gaps] == 3).all()
    empty = signal_dropout(
        raw, labels, rng=np.random.default_rng(seed), voxel_size_um=VS, region=(slice(None), slice(28, 32)),
        max_radius_um=1.5,
    )
    assert not empty.gaps.any()
    r, _ = augment_patch(
        raw, labels, rng=np.random.default_rng(seed), voxel_size_um=VS, allow_transpose=False,
        settings=dataclasses.replace(Augmentation.off(), dropout_probability=1.0, dropout_margin_um=0.0,
                                     dropout_length_um=(2.0, 2.0), dropout_max_radius_um=1.5),
        gap_region=region,
    )
    changed_x = np.flatnonzero((r != raw).any(axis=(0, 1)))
    assert changed_x.size and changed_x.min() >= 36 and changed_x.max() <= 43, changed_x
