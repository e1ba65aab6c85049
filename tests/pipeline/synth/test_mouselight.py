"""Rendering real MouseLight reconstructions (../shared/data/mouselight) cropped to a small volume."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.synth import (
    PhantomParams,
    generate_phantom,
    iter_regions,
    render_region,
    render_volume,
    skeleton_lengths,
)
from tests.conftest import SHARED_DATA

pytestmark = [
    pytest.mark.data,
    pytest.mark.filterwarnings("ignore:SWC skeleton .* does not reach into the cropped volume"),
]

swc = pytest.importorskip("pipeline.io.swc", reason="pipeline.io.swc not there yet")

FILES = ("mouselight/2018-10-01_G-061_Consensus.swc", "mouselight/2018-10-01_G-016_Consensus.swc")


@pytest.fixture(scope="module")
def mouselight_files():
    paths = [SHARED_DATA / f for f in FILES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        pytest.skip(f"MouseLight SWC files absent: {', '.join(missing)} (set NEURORECON_SHARED_DATA)")
    return paths


@pytest.fixture(scope="module")
def graphs(mouselight_files):
    return [swc.read_swc(p) for p in mouselight_files]


def test_densest_crop_renders_each_file_as_one_label(mouselight_files, graphs):
    params = PhantomParams(shape=(32, 128, 128), swc_files=tuple(mouselight_files), seed=1)
    ph = generate_phantom(params, swc_graphs=graphs)
    assert ph.n_objects >= 1
    assert set(ph.labels) <= {1, 2}
    assert all(o.kind == "swc" for o in ph.objects)
    vol = render_volume(ph)
    assert set(np.unique(vol.labels).tolist()) - {0} == set(ph.labels)
    raw, labels = np.zeros_like(vol.raw), np.zeros_like(vol.labels)
    for region in iter_regions(params.shape, (7, 50, 33)):
        block = render_region(ph, region)
        raw[region], labels[region] = block.raw, block.labels
    np.testing.assert_array_equal(raw, vol.raw)
    np.testing.assert_array_equal(labels, vol.labels)
    vs = np.asarray(params.voxel_size_um)
    for obj in ph.objects:
        pos = np.array([d["pos_um"] for _, d in obj.skeleton.nodes(data=True)])
        assert np.all(pos >= -vs / 2 - 1e-9) and np.all(pos <= (np.asarray(params.shape) - 0.5) * vs + 1e-9)
        # The crop holds a good share of cable: the densest part was chosen.
    total = sum(skeleton_lengths(o.skeleton).cable_length_um for o in ph.objects)
    assert total > 100.0


def test_explicit_centre_puts_that_point_at_the_volume_centre(mouselight_files, graphs):
    _, data = next(iter(graphs[0].nodes(data=True)))
    centre = data["pos_um"]
    params = PhantomParams(shape=(16, 64, 64), swc_files=(mouselight_files[0],), swc_centre_um=centre)
    ph = generate_phantom(params, swc_graphs=graphs[:1])
    expected = (np.asarray(params.shape) - 1) / 2 * np.asarray(params.voxel_size_um)
    np.testing.assert_allclose(np.asarray(centre) - np.asarray(ph.origin_um), expected)
    positions = np.array([d["pos_um"] for _, d in ph.object(1).skeleton.nodes(data=True)])
    assert np.min(np.linalg.norm(positions - expected, axis=1)) < 1e-6


def test_write_phantom_swc_round_trip(mouselight_files, tmp_path):
    phantom_io = pytest.importorskip("pipeline.io.phantom")
    params = PhantomParams(shape=(24, 96, 96), chunks=(24, 96, 96), swc_files=tuple(mouselight_files), seed=2)
    result = phantom_io.write_phantom(tmp_path / "ml.zarr", params, progress=False)
    ph = generate_phantom(params, swc_graphs=[swc.read_swc(p) for p in mouselight_files])
    assert result.n_objects == ph.n_objects
    for obj in ph.objects:
        back = swc.read_swc(result.skeleton_dir / f"{obj.label}.swc")
        assert back.number_of_nodes() == obj.skeleton.number_of_nodes()
        assert back.number_of_edges() == obj.skeleton.number_of_edges()
        a, b = skeleton_lengths(back), skeleton_lengths(obj.skeleton)
        assert a.cable_length_um == pytest.approx(b.cable_length_um, abs=1e-3)
        assert a.path_length_um == pytest.approx(b.path_length_um, abs=1e-3)
        got = np.sort(np.array([d["pos_um"] for _, d in back.nodes(data=True)]), axis=0)
        want = np.sort(np.array([d["pos_um"] for _, d in obj.skeleton.nodes(data=True)]), axis=0)
        np.testing.assert_allclose(got, want, atol=2e-6)
