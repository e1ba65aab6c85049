"""Rendering, both kinds: determinism, block-wise == whole volume, signal dropout, noise model."""

from __future__ import annotations

import cc3d
import networkx as nx
import numpy as np
import pytest
from scipy.spatial import cKDTree

from pipeline.synth import (
    NOISE_TILE,
    AISParams,
    DropoutParams,
    ImagingParams,
    PhantomParams,
    generate_phantom,
    iter_regions,
    render_region,
    render_volume,
)

SMALL = {
    # One neuron inside, one axon entering from a soma outside, one passing axon; touching allowed.
    "neurons": PhantomParams(
        shape=(32, 96, 96), chunks=(16, 48, 48), n_neurons=1, n_ais=2, n_passing_axons=1, seed=5,
        dropout=DropoutParams(rate_per_100um=3.0),
    ),
    # A dense AIS stain (small volume), with puncta.
    "ais": PhantomParams(
        kind="ais", shape=(32, 96, 96), chunks=(16, 48, 48), seed=5,
        ais=AISParams(density_per_mm3=40000.0, puncta_per_1000um3=2.0),
        dropout=DropoutParams(rate_per_100um=3.0),
    ),
}


@pytest.fixture(scope="module", params=sorted(SMALL))
def small(request):
    params = SMALL[request.param]
    phantom = generate_phantom(params)
    return params, phantom, render_volume(phantom)


def test_same_seed_gives_identical_volumes_and_different_seed_differs(small):
    params, _, volume = small
    again = render_volume(generate_phantom(params))
    np.testing.assert_array_equal(again.raw, volume.raw)
    np.testing.assert_array_equal(again.labels, volume.labels)
    other = render_volume(generate_phantom(params.model_copy(update={"seed": 6})))
    assert not np.array_equal(other.labels, volume.labels)
    assert not np.array_equal(other.raw, volume.raw)


def test_dtypes_and_ranges(small):
    params, phantom, volume = small
    assert phantom.kind == params.kind and phantom.n_objects >= 3
    assert volume.raw.dtype == np.uint16 and volume.labels.dtype == np.uint32
    assert volume.raw.shape == volume.labels.shape == params.shape
    present = set(np.unique(volume.labels).tolist()) - {0}
    assert present == set(phantom.labels)
    assert phantom.labels == tuple(range(1, phantom.n_objects + 1))
    assert phantom.gaps


@pytest.mark.parametrize("block_shape", [(8, 32, 32), (7, 50, 33), (5, 17, 96), (32, 96, 96), (16, 48, 48)])
def test_blockwise_rendering_is_bit_identical_to_whole_volume(small, block_shape):
    params, phantom, volume = small
    raw = np.zeros_like(volume.raw)
    labels = np.zeros_like(volume.labels)
    for region in iter_regions(params.shape, block_shape):
        block = render_region(phantom, region)
        raw[region] = block.raw
        labels[region] = block.labels
    np.testing.assert_array_equal(labels, volume.labels)
    np.testing.assert_array_equal(raw, volume.raw)


def test_every_object_in_one_piece_is_one_connected_component(small):
    _, phantom, volume = small
    for obj in phantom.objects:
        if not nx.is_tree(obj.skeleton):
            continue  # the volume border cuts it in pieces
        n = cc3d.connected_components(volume.labels == obj.label, connectivity=26).max()
        assert n == 1, f"label {obj.label} ({obj.name}) has {n} components"


def test_noise_is_poisson_gaussian_around_the_expectation():
    params = PhantomParams(shape=(16, 64, 64), n_neurons=0, n_ais=0, n_passing_axons=0, seed=2)
    ph = generate_phantom(params)
    im = params.imaging
    clean = render_volume(ph, noise=False).raw.astype(float)
    noisy = render_volume(ph).raw.astype(float)
    expected_mean = im.offset_adu + im.gain_adu_per_photon * im.background_photons
    expected_var = im.gain_adu_per_photon**2 * im.background_photons + im.read_noise_adu**2 + 1 / 12
    assert np.all(clean == round(expected_mean))
    n = noisy.size
    assert abs(noisy.mean() - expected_mean) < 5 * np.sqrt(expected_var / n)
    assert noisy.var() == pytest.approx(expected_var, rel=0.05)
    # Neighbouring noise tiles are independent streams, not copies.
    tz, ty, tx = NOISE_TILE
    assert not np.array_equal(noisy[:tz, :ty, :tx], noisy[:tz, :ty, tx : 2 * tx])


@pytest.fixture(scope="module")
def dropout_case():
    params = PhantomParams(
        kind="ais", shape=(48, 192, 192), seed=11,
        ais=AISParams(length_um=(40.0, 60.0), density_per_mm3=6000.0, puncta_per_1000um3=0.0),
        dropout=DropoutParams(rate_per_100um=8.0, length_um=(12.0, 14.0), kinds=("ais",)),
    )
    ph = generate_phantom(params)
    return params, ph, render_volume(ph), render_volume(ph, noise=False)


def _gap_core_voxels(ph, gap, labels, vs, psf_margin_um):
    """Voxels of the gap's label within r of the gap centreline, >= psf_margin_um + 2 r from its ends."""
    path = gap.path_um
    seg = np.diff(path, axis=0)
    cum = np.concatenate([[0], np.cumsum(np.linalg.norm(seg, axis=1))])
    r = max(d["radius_um"] for _, d in ph.object(gap.label).skeleton.nodes(data=True))
    s = np.arange(psf_margin_um + 2 * r, cum[-1] - psf_margin_um - 2 * r, 0.05)  # voxel to bright surface
    if len(s) == 0:
        return None
    core = np.stack([np.interp(s, cum, path[:, a]) for a in range(3)], axis=1)
    idx = np.argwhere(labels == gap.label)
    centres = idx * np.asarray(vs)
    near = cKDTree(core).query(centres, distance_upper_bound=r)[0] < np.inf
    sel = idx[near]
    # Keep away from every other object (their blur would leak in).
    others = np.array(
        [d["pos_um"] for o in ph.objects if o.label != gap.label for _, d in o.skeleton.nodes(data=True)]
    )
    if len(others):
        ok = cKDTree(others).query(sel * np.asarray(vs))[0] > 1.5 + psf_margin_um
        sel = sel[ok]
    return sel


def test_dropout_gaps_are_dark_in_raw_but_labels_stay_continuous(dropout_case):
    params, ph, noisy, clean = dropout_case
    im = params.imaging
    background = im.offset_adu + im.gain_adu_per_photon * im.background_photons
    assert len(ph.gaps) >= 3
    psf_margin = 3 * max(im.psf_sigma_um)  # 3.6 µm: the blur of the bright ends is negligible beyond
    gap_vox = []
    for gap in ph.gaps:
        assert params.dropout.length_um[0] <= gap.length_um <= params.dropout.length_um[1]
        # Labels continue through the gap: every centreline point inside it lies in a labelled voxel.
        idx = np.rint(gap.path_um / np.asarray(params.voxel_size_um)).astype(int)
        assert np.all(clean.labels[tuple(idx.T)] == gap.label)
        sel = _gap_core_voxels(ph, gap, clean.labels, params.voxel_size_um, psf_margin)
        if sel is not None and len(sel):
            gap_vox.append(sel)
    gap_vox = np.concatenate(gap_vox)
    assert len(gap_vox) > 50
    # Noise-free: exactly the background level (to rounding).
    np.testing.assert_allclose(clean.raw[tuple(gap_vox.T)], background, atol=1.0)
    # With noise: the mean is background within 5 standard errors.
    values = noisy.raw[tuple(gap_vox.T)].astype(float)
    sd = np.sqrt(im.gain_adu_per_photon**2 * im.background_photons + im.read_noise_adu**2)
    assert abs(values.mean() - background) < 5 * sd / np.sqrt(len(values)) + 0.5
    # The bright parts of the same objects are far above background.
    ais_mask = clean.labels > 0
    assert clean.raw[ais_mask].astype(float).mean() > background + 100
    # One connected component per object despite the gaps.
    for obj in ph.objects:
        assert cc3d.connected_components(clean.labels == obj.label, connectivity=26).max() == 1


def test_render_region_rejects_bad_regions(small):
    _, phantom, _ = small
    with pytest.raises(ValueError, match="within the volume"):
        render_region(phantom, (slice(0, 8), slice(0, 200), slice(0, 8)))
    with pytest.raises(ValueError, match="step"):
        render_region(phantom, (slice(0, 8, 2), slice(0, 8), slice(0, 8)))
    with pytest.raises(TypeError, match="three slices"):
        render_region(phantom, (0, 8, 8))
    with pytest.raises(TypeError, match="Phantom"):
        render_region("not a phantom", (slice(0, 8),) * 3)  # type: ignore[arg-type]


def test_imaging_without_psf_or_noise_gives_flat_objects():
    params = PhantomParams(
        kind="ais", shape=(24, 96, 96), seed=3, dropout=DropoutParams(rate_per_100um=0.0),
        ais=AISParams(density_per_mm3=20000.0, puncta_per_1000um3=0.0, stain_brightness=(1.0, 1.0)),
        imaging=ImagingParams(psf_sigma_um=(0.0, 0.0, 0.0), noise=False),
    )
    ph = generate_phantom(params)
    assert ph.n_objects >= 2
    vol = render_volume(ph)
    im = params.imaging
    photons = im.background_photons + im.signal_photons * im.ais_brightness
    bright = im.offset_adu + im.gain_adu_per_photon * photons
    np.testing.assert_array_equal(vol.raw[vol.labels > 0], round(bright))
    np.testing.assert_array_equal(vol.raw[vol.labels == 0], round(im.offset_adu + 2 * im.background_photons))
