"""The ais kind: an AnkG-like AIS immunostain, one label per AIS, unstained somata, punctate background."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from scipy.spatial import cKDTree

from pipeline.errors import ConfigError
from pipeline.synth import (
    AISParams,
    ImagingParams,
    PhantomParams,
    generate_phantom,
    render_volume,
    skeleton_lengths,
)
from pipeline.synth.geometry import edge_length_um

AIS_DEFAULT = PhantomParams(kind="ais")


@pytest.fixture(scope="module", params=[0, 1, 2])
def phantom(request):
    return generate_phantom(AIS_DEFAULT.model_copy(update={"seed": request.param}))


def _positions(obj):
    return np.array([d["pos_um"] for _, d in obj.skeleton.nodes(data=True)])


def test_default_volume_holds_8_to_15_ais_one_label_each_many_whole(phantom):
    assert phantom.kind == "ais"
    assert 8 <= phantom.n_objects <= 15
    assert {o.kind for o in phantom.objects} == {"ais"} and {o.name for o in phantom.objects} == {"ais"}
    assert sum(not o.clipped for o in phantom.objects) >= 3
    lo, hi = AIS_DEFAULT.ais.length_um
    for obj in phantom.objects:
        g = obj.skeleton
        assert set(nx.get_node_attributes(g, "swc_type").values()) == {2}
        assert max(d for _, d in g.degree) <= 2  # unbranched (a forest only if the border cuts it twice)
        length = skeleton_lengths(g).path_length_um
        if obj.clipped:
            assert length <= hi + 1e-6
        else:
            assert nx.is_tree(g) and lo - 1e-6 <= length <= hi + 1e-6
            assert obj.ais.length_um == pytest.approx(length, abs=1e-6)
        radii = np.array([d["radius_um"] for _, d in g.nodes(data=True)])
        assert np.all((radii >= AIS_DEFAULT.ais.radius_um[0]) & (radii <= AIS_DEFAULT.ais.radius_um[1]))
        stain = set(nx.get_node_attributes(g, "brightness").values())
        assert len(stain) == 1 and AIS_DEFAULT.ais.stain_brightness[0] <= stain.pop() <= 1.0


def test_each_ais_starts_3_to_16_um_from_its_unstained_soma(phantom):
    d0, d1 = AIS_DEFAULT.ais.soma_distance_um
    for obj in phantom.objects:
        span, soma = obj.ais, obj.soma
        assert span is not None and soma is not None
        # The AIS ends are skeleton nodes; its start (nearer the soma) lies 3-16 µm of axon away.
        pos = _positions(obj)
        for point in (span.start_um, span.end_um):
            assert np.min(np.linalg.norm(pos - np.asarray(point), axis=1)) == 0.0
        if not obj.clipped:
            assert d0 - 1e-6 <= span.start_path_um <= d1 + 1e-6
            a, b = np.asarray(soma.a_um), np.asarray(soma.b_um)
            start = np.asarray(span.start_um)
            t = np.clip(np.dot(start - a, b - a) / max(np.dot(b - a, b - a), 1e-12), 0, 1)
            surface_gap = np.linalg.norm(start - (a + t * (b - a))) - soma.radius_um
            assert 0 < surface_gap <= span.start_path_um + 1e-6


def test_somata_are_neither_labelled_nor_bright():
    params = AIS_DEFAULT.model_copy(
        update={"seed": 1, "ais": AISParams(puncta_per_1000um3=0.0), "imaging": ImagingParams(noise=False)}
    )
    ph = generate_phantom(params)
    vol = render_volume(ph)
    im = params.imaging
    background = round(im.offset_adu + im.gain_adu_per_photon * im.background_photons)
    vs = np.asarray(params.voxel_size_um)
    ais_tree = cKDTree(np.concatenate([_positions(o) for o in ph.objects]))
    blur_um = 1.5 + 3 * max(im.psf_sigma_um) + 0.5  # beyond the blur of any AIS (radius <= 1.5 µm)
    n_somata = n_dark = 0
    for obj in ph.objects:
        a, b, r = np.asarray(obj.soma.a_um), np.asarray(obj.soma.b_um), obj.soma.radius_um
        lo = np.maximum(np.floor((np.minimum(a, b) - r) / vs).astype(int), 0)
        hi = np.minimum(np.ceil((np.maximum(a, b) + r) / vs).astype(int) + 1, params.shape)
        if np.any(hi <= lo):
            continue
        idx = np.stack(np.meshgrid(*(np.arange(l_, h) for l_, h in zip(lo, hi, strict=True)), indexing="ij"),
                       axis=-1).reshape(-1, 3)
        centres = idx * vs
        t = np.clip((centres - a) @ (b - a) / max((b - a) @ (b - a), 1e-12), 0, 1)
        idx = idx[np.linalg.norm(centres - (a + t[:, None] * (b - a)), axis=1) <= r]
        if not len(idx):
            continue
        n_somata += 1
        assert np.all(vol.labels[tuple(idx.T)] == 0)
        dark = idx[ais_tree.query(idx * vs)[0] > blur_um]
        n_dark += len(dark)
        assert np.all(vol.raw[tuple(dark.T)] == background)
    assert n_somata >= 3 and n_dark > 1000
    labels = vol.labels.reshape(-1)
    raw = vol.raw.reshape(-1)
    # The stained AIS themselves are far above background.
    assert raw[labels > 0].mean() > background + 200


def test_puncta_are_bright_but_unlabelled():
    params = PhantomParams(
        kind="ais", shape=(32, 128, 128), seed=4, imaging=ImagingParams(noise=False),
        ais=AISParams(density_per_mm3=0.0, puncta_per_1000um3=2.0),
    )
    ph = generate_phantom(params)
    assert ph.n_objects == 0
    volume_um3 = np.prod(params.extent_um)
    assert len(ph.puncta) == round(2.0 * volume_um3 / 1000)
    vol = render_volume(ph)
    assert not vol.labels.any()
    im = params.imaging
    background = im.offset_adu + im.gain_adu_per_photon * im.background_photons
    idx = np.rint(ph.puncta[:, :3] / np.asarray(params.voxel_size_um)).astype(int)
    idx = np.clip(idx, 0, np.asarray(params.shape) - 1)
    peaks = vol.raw[tuple(idx.T)].astype(float)
    assert np.median(peaks) > background + 20
    assert np.median(vol.raw) == pytest.approx(background, abs=1)  # mostly background between puncta


def test_density_sets_the_number_of_ais_and_too_dense_is_a_config_error():
    few = generate_phantom(PhantomParams(kind="ais", seed=0, ais=AISParams(density_per_mm3=1000.0)))
    many = generate_phantom(PhantomParams(kind="ais", seed=0, ais=AISParams(density_per_mm3=8000.0)))
    assert few.n_objects < 8 < many.n_objects
    assert generate_phantom(PhantomParams(kind="ais", ais=AISParams(density_per_mm3=0.0))).n_objects == 0
    match = r"ais.density_per_mm3=10000000.0 \(\d+ neurons .*could place only .* reduce synth"
    with pytest.raises(ConfigError, match=match):
        generate_phantom(PhantomParams(kind="ais", shape=(16, 64, 64), ais=AISParams(density_per_mm3=1e7)))


def test_gaps_lie_on_ais_and_end_on_nodes(phantom):
    for gap in phantom.gaps:
        obj = phantom.object(gap.label)
        assert gap.kind == "ais"
        start, end = gap.edges[0][0], gap.edges[-1][1]
        np.testing.assert_array_equal(gap.path_um[0], obj.skeleton.nodes[start]["pos_um"])
        np.testing.assert_array_equal(gap.path_um[-1], obj.skeleton.nodes[end]["pos_um"])
        length = sum(edge_length_um(obj.skeleton, u, v) for u, v, _, _ in gap.edges)
        assert length == pytest.approx(gap.length_um, abs=1e-9)
