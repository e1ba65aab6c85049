from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import (
    Augmentation,
    Box,
    PatchSpec,
    foreground_index,
    intensity_range,
    make_targets,
    prepare_source,
    sample_batch,
    sample_foreground_voxel,
    sample_patch,
)
from tests.pipeline.data.volumes import GuardedArray, sparse_volume, tube_volume

VS = (1.5, 0.5, 0.5)


def _spec(**kw):
    base = dict(input_shape=(4, 16, 16), output_shape=(4, 16, 16), target="affinities")
    base.update(kw)
    return PatchSpec(**base)


def test_sampler_reads_only_patch_boxes():
    raw, labels = tube_volume((16, 64, 64), n_tubes=4, radius=2.0)
    patch_voxels = 4 * 32 * 32  # input (4, 16, 16) x downscale 2 in y/x
    cell = (4, 32, 32)
    guard_raw = GuardedArray(raw, max_voxels=max(patch_voxels, 4 * 32 * 32), chunks=cell)
    guard_lab = GuardedArray(labels, max_voxels=max(patch_voxels, 4 * 32 * 32), chunks=cell)
    assert raw.size >= 16 * guard_raw.max_voxels  # a whole-volume read would be refused
    source = prepare_source(guard_raw, guard_lab, voxel_size_um=VS, index_cell_shape=cell)
    n_setup_raw, n_setup_lab = len(guard_raw.reads), len(guard_lab.reads)
    rng = np.random.default_rng(0)
    spec = _spec(downscale_xy=2, output_shape=(4, 16, 16))
    for _ in range(20):
        sample_patch([source], spec=spec, augmentation=Augmentation(), rng=rng)
    # one raw read and one label read per patch, each exactly the patch box
    assert len(guard_raw.reads) - n_setup_raw == 20
    assert len(guard_lab.reads) - n_setup_lab == 20
    for key in guard_raw.reads[n_setup_raw:] + guard_lab.reads[n_setup_lab:]:
        assert tuple(k.stop - k.start for k in key) == (4, 32, 32)
    # the set-up passes read one index cell (one chunk) at a time
    for key in guard_lab.reads[:n_setup_lab]:
        assert all(k.start % c == 0 and k.stop - k.start <= c for k, c in zip(key, cell, strict=True))


def test_zarr_backed_source(tmp_path):
    zarr = pytest.importorskip("zarr")
    raw, labels = tube_volume((8, 48, 48), n_tubes=3, radius=2.0)
    zr = zarr.create_array(str(tmp_path / "r.zarr"), shape=raw.shape, chunks=(4, 16, 16), dtype=raw.dtype)
    zl = zarr.create_array(str(tmp_path / "l.zarr"), shape=raw.shape, chunks=(4, 16, 16), dtype=labels.dtype)
    zr[...] = raw
    zl[...] = labels
    source = prepare_source(zr, zl, voxel_size_um=VS)
    assert source.index.n_foreground == int(np.count_nonzero(labels))
    batch = sample_batch(
        [source], spec=_spec(), augmentation=Augmentation(), batch_size=2, seed=0, batch_index=0
    )
    assert batch.raw.shape == (2, 1, 4, 16, 16) and batch.raw.dtype == np.float32
    assert batch.target.shape == batch.mask.shape == (2, 3, 4, 16, 16)


@pytest.mark.parametrize("fraction", [0.0, 0.3, 1.0])
def test_foreground_fraction(fraction):
    labels = sparse_volume((8, 64, 64), n_points=12)  # 0.05 % foreground
    raw = (labels > 0).astype(np.uint16) * 1000
    source = prepare_source(raw, labels, voxel_size_um=VS)
    rng = np.random.default_rng(1)
    spec = _spec(foreground_fraction=fraction)
    n = 400
    patches = [sample_patch([source], spec=spec, augmentation=Augmentation.off(), rng=rng) for _ in range(n)]
    centred = [p for p in patches if p.focus is not None]
    if fraction in (0.0, 1.0):
        assert len(centred) == n * fraction
    else:
        sd = np.sqrt(n * fraction * (1 - fraction))
        assert abs(len(centred) - n * fraction) < 4 * sd
    for p in centred:
        assert p.focus_label != 0
        z, y, x = (p.start[i] + p.focus[i] for i in range(3))  # no downscaling: patch = volume voxels
        assert labels[z, y, x] == p.focus_label
    # random patches almost never contain the sparse foreground at their centre
    random_hits = sum(labels[tuple(np.asarray(p.start) + (2, 8, 8))] != 0 for p in patches if p.focus is None)
    assert random_hits <= 2


def test_foreground_centred_with_downscaling_keeps_focus_on_grid():
    labels = sparse_volume((8, 96, 96), n_points=30, seed=3)
    raw = (labels > 0).astype(np.uint16) * 1000
    source = prepare_source(raw, labels, voxel_size_um=VS, index_cell_shape=(8, 32, 32))
    rng = np.random.default_rng(2)
    spec = _spec(downscale_xy=3, foreground_fraction=1.0)
    patches = [sample_patch([source], spec=spec, augmentation=Augmentation.off(), rng=rng) for _ in range(60)]
    # The focus voxel is a sampled (block-centre) voxel of the downscaled labels, except for the rare
    # labelled voxel in the last column of the volume, which no block of 3 has at its centre.
    assert sum(p.focus_label != 0 for p in patches) >= 0.9 * len(patches)
    for p in patches:
        if p.focus_label:
            z = p.start[0] + p.focus[0]
            y, x = (p.start[i] + 3 * p.focus[i] + 1 for i in (1, 2))
            assert labels[z, y, x] == p.focus_label


def test_foreground_index_counts_and_candidates():
    _, labels = tube_volume((8, 40, 40), n_tubes=3, radius=2.0)
    index = foreground_index(labels, cell_shape=(4, 16, 16), candidates_per_cell=8, seed=0)
    assert index.n_foreground == int(np.count_nonzero(labels))
    assert index.n_voxels == labels.size
    for cell in range(index.counts.size):
        rows = index.candidates[cell, : index.n_candidates[cell]]
        assert np.all(labels[tuple(rows.T)] != 0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert labels[sample_foreground_voxel(index, rng)] != 0
    empty = foreground_index(np.zeros((4, 8, 8), np.uint8))
    assert empty.n_foreground == 0 and sample_foreground_voxel(empty, rng) is None


def test_foreground_index_respects_roi():
    labels = np.zeros((4, 32, 32), np.uint32)
    labels[:, :, :8] = 1
    labels[:, :, 24:] = 2
    index = foreground_index(labels, roi=Box((0, 0, 16), (4, 32, 32)), cell_shape=(4, 8, 8))
    assert index.n_foreground == 4 * 32 * 8
    assert np.all(index.candidates[index.candidates[..., 2] >= 0][:, 2] >= 24)


def test_intensity_range_matches_full_percentiles():
    raw = np.random.default_rng(0).integers(0, 1000, (8, 32, 32)).astype(np.uint16)
    r = intensity_range(raw, percentiles=(1, 99), n_blocks=1000, block_shape=(4, 16, 16))
    lo, hi = np.percentile(raw, [1, 99])
    assert r.low == pytest.approx(lo) and r.high == pytest.approx(hi)
    assert intensity_range(raw, method="dtype").high == 65535
    flat = intensity_range(np.full((2, 4, 4), 7, np.uint16))
    assert flat.high > flat.low


def test_make_targets_affinities_and_crop():
    labels = np.zeros((4, 6, 6), np.uint32)
    labels[:, 1:5, 1:5] = 5
    target, mask = make_targets(labels, kind="affinities", output_shape=(2, 4, 4))
    assert target.shape == mask.shape == (3, 2, 4, 4)
    assert mask.min() == 1.0  # the crop leaves every edge's partner inside the patch
    # x edges: in the first column of the crop the partner voxel lies outside the object
    np.testing.assert_array_equal(target[2, 0], [[0, 1, 1, 1]] * 4)
    full_t, full_m = make_targets(labels, kind="affinities")
    assert full_m[0, 0].max() == 0  # the first z plane has no partner
    fg, fm = make_targets(labels, kind="foreground")
    assert fg.shape == (1, 4, 6, 6) and fm.min() == 1 and fg.sum() == 4 * 16
    two_d, _ = make_targets(labels[:1], kind="affinities")
    assert two_d.shape == (2, 1, 6, 6)  # a single slice gets the (y, x) channels only


def test_two_d_patches_drop_z():
    raw, labels = tube_volume((3, 48, 48), n_tubes=3, radius=3.0)
    source = prepare_source(raw, labels, voxel_size_um=(1.0, 1.0, 1.0))
    spec = PatchSpec(input_shape=(1, 32, 32), output_shape=(1, 16, 16), target="foreground", ndim=2)
    batch = sample_batch(
        [source], spec=spec, augmentation=Augmentation(), batch_size=3, seed=0, batch_index=5
    )
    assert batch.raw.shape == (3, 1, 32, 32)
    assert batch.target.shape == (3, 1, 16, 16) and batch.labels.shape == (3, 16, 16)
    np.testing.assert_array_equal(batch.target[:, 0], (batch.labels != 0).astype(np.float32))


def test_two_d_readers_are_stacks():
    raw, labels = tube_volume((1, 40, 40), n_tubes=2, radius=3.0)
    source = prepare_source(raw[0], labels[0], voxel_size_um=(1, 1, 1))
    assert tuple(source.raw.shape) == (1, 40, 40)
    spec = PatchSpec(input_shape=(1, 16, 16), output_shape=(1, 16, 16), target="foreground", ndim=2)
    batch = sample_batch(
        [source], spec=spec, augmentation=Augmentation.off(), batch_size=1, seed=0, batch_index=0
    )
    z, y, x = batch.start[0]
    np.testing.assert_array_equal(batch.labels[0], labels[0, y : y + 16, x : x + 16])


def test_same_seed_same_batch_and_streams_differ():
    raw, labels = tube_volume((8, 48, 48), n_tubes=3, radius=2.0)
    source = prepare_source(raw, labels, voxel_size_um=VS)
    kw = dict(spec=_spec(), augmentation=Augmentation(), batch_size=2, seed=7)
    a = sample_batch([source], batch_index=3, **kw)
    b = sample_batch([source], batch_index=3, **kw)
    c = sample_batch([source], batch_index=4, **kw)
    d = sample_batch([source], batch_index=3, stream=1, **kw)
    for key, value in a.as_dict().items():
        np.testing.assert_array_equal(value, b.as_dict()[key])
    assert not np.array_equal(a.raw, c.raw) and not np.array_equal(a.raw, d.raw)


def test_errors_name_the_problem():
    raw, labels = tube_volume((4, 16, 16), n_tubes=1)
    source = prepare_source(raw, labels, voxel_size_um=VS)
    with pytest.raises(ValueError, match=r"smaller than the patch box \(8, 16, 16\)"):
        sample_patch([source], spec=_spec(input_shape=(8, 16, 16), output_shape=(8, 16, 16)),
                     augmentation=Augmentation(), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="must match"):
        prepare_source(raw, labels[:2], voxel_size_um=VS)
    with pytest.raises(TypeError, match="integer labels"):
        prepare_source(raw, labels.astype(np.float32), voxel_size_um=VS)
    with pytest.raises(ValueError, match="roi"):
        prepare_source(raw, labels, voxel_size_um=VS, roi=Box((0, 0, 0), (5, 16, 16)))
    with pytest.raises(ValueError, match="output_shape"):
        PatchSpec(input_shape=(4, 16, 16), output_shape=(4, 15, 16))
    with pytest.raises(ValueError, match="ndim=2 needs"):
        PatchSpec(input_shape=(4, 16, 16), output_shape=(4, 16, 16), ndim=2)
    with pytest.raises(TypeError, match="array-like"):
        prepare_source([1, 2], labels, voxel_size_um=VS)
