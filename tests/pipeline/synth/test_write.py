"""write_phantom: OME-Zarr store, ground-truth SWC skeletons, lengths and gaps tables, completion marker."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import zarr

from pipeline.errors import OutputError
from pipeline.synth import LENGTHS_COLUMNS, PhantomParams, generate_phantom, render_volume, skeleton_lengths

omezarr = pytest.importorskip("pipeline.io.omezarr", reason="pipeline.io.omezarr not there yet")
swc = pytest.importorskip("pipeline.io.swc", reason="pipeline.io.swc not there yet")
phantom_io = pytest.importorskip("pipeline.io.phantom")

PARAMS = PhantomParams(shape=(32, 112, 96), chunks=(16, 64, 64), n_neurons=1, n_ais=2, seed=8)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    path = tmp_path_factory.mktemp("phantom") / "volume.zarr"
    result = phantom_io.write_phantom(path, PARAMS, progress=False)
    return path, result


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_store_opens_with_plain_zarr_and_matches_in_memory_render(written):
    path, result = written
    assert result.store == path
    root = zarr.open(str(path), mode="r")
    raw = root["0"][...]
    labels = root["labels/ground_truth/0"][...]
    assert raw.dtype == np.uint16 and labels.dtype == np.uint32
    assert raw.shape == labels.shape == PARAMS.shape
    assert root["0"].chunks == PARAMS.chunks
    level0 = root.attrs["ome"]["multiscales"][0]["datasets"][0]
    assert level0["coordinateTransformations"][0]["scale"] == list(PARAMS.voxel_size_um)
    whole = render_volume(generate_phantom(PARAMS))
    np.testing.assert_array_equal(raw, whole.raw)
    np.testing.assert_array_equal(labels, whole.labels)
    image = omezarr.open_labels(path, "ground_truth")
    assert image.voxel_size_um == PARAMS.voxel_size_um


def test_ground_truth_files_are_consistent(written):
    path, result = written
    assert result.gt_dir == path.with_name("volume_gt")
    assert phantom_io.phantom_complete(path)
    rows = _read_csv(result.lengths_csv)
    assert tuple(rows[0].keys()) == LENGTHS_COLUMNS
    assert len(rows) == result.n_objects == len(list(result.skeleton_dir.glob("*.swc")))
    labels = zarr.open(str(path), mode="r")["labels/ground_truth/0"][...]
    faces = np.concatenate([np.take(labels, i, axis=a).ravel() for a in range(3) for i in (0, -1)])
    on_border = set(np.unique(faces).tolist()) - {0}
    for row in rows:
        label = int(row["label"])
        assert row["kind"] in {"neuron", "ais", "swc"}
        graph = swc.read_swc(result.skeleton_dir / f"{label}.swc")
        lengths = skeleton_lengths(graph)
        assert float(row["cable_length_um"]) == pytest.approx(lengths.cable_length_um, abs=1e-3)
        assert float(row["path_length_um"]) == pytest.approx(lengths.path_length_um, abs=1e-3)
        assert int(row["n_nodes"]) == lengths.n_nodes == graph.number_of_nodes()
        assert row["touches_border"] == str(label in on_border)
        if row["kind"] == "ais" and row["touches_border"] == "False":
            assert 20.0 <= float(row["path_length_um"]) <= 60.0
    gaps = _read_csv(result.gaps_csv)
    assert len(gaps) == len(result.gaps)
    for row, gap in zip(gaps, result.gaps, strict=True):
        assert int(row["label"]) == gap.label
        assert float(row["length_um"]) == pytest.approx(gap.length_um, abs=1e-5)
        assert float(row["start_z_um"]) == pytest.approx(gap.start_um[0], abs=1e-5)
    assert (result.gt_dir / "params.json").is_file()


def test_refuses_to_overwrite_unless_asked(written, tmp_path):
    path, _ = written
    with pytest.raises(OutputError, match="already exists; pass overwrite=True"):
        phantom_io.write_phantom(path, PARAMS, progress=False)
    # Only the ground-truth folder left over also counts as existing output.
    (tmp_path / "x_gt").mkdir()
    with pytest.raises(OutputError, match="x_gt already exists"):
        phantom_io.write_phantom(tmp_path / "x.zarr", PARAMS, progress=False)


def test_interrupted_overwrite_does_not_look_complete(tmp_path, monkeypatch):
    path = tmp_path / "v.zarr"
    params = PARAMS.model_copy(update={"shape": (16, 64, 64), "chunks": (8, 32, 32)})
    phantom_io.write_phantom(path, params, progress=False)
    assert phantom_io.phantom_complete(path)
    calls = {"n": 0}
    real = phantom_io.render_region

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(phantom_io, "render_region", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        phantom_io.write_phantom(path, params, overwrite=True, progress=False)
    assert not phantom_io.phantom_complete(path)
    monkeypatch.setattr(phantom_io, "render_region", real)
    result = phantom_io.write_phantom(path, params, overwrite=True, progress=False)
    assert phantom_io.phantom_complete(path) and result.n_objects > 0


def test_raw_and_ground_truth_get_a_pyramid_from_level_0(tmp_path):
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel

    from pipeline.pyramid import downsample_labels, downsample_mean

    params = PhantomParams(shape=(16, 160, 128), chunks=(16, 64, 64), n_neurons=1, n_ais=1, seed=3)
    path = tmp_path / "volume.zarr"
    phantom_io.write_phantom(path, params, progress=False)
    root = zarr.open_group(str(path), mode="r")
    labels = root["labels/ground_truth"]
    assert root["1"].shape == labels["1"].shape == (16, 80, 64)  # y/x halved: (1.5, 1, 1) µm voxels
    np.testing.assert_array_equal(root["1"][...], downsample_mean(root["0"][...], (1, 2, 2)))
    np.testing.assert_array_equal(labels["1"][...], downsample_labels(labels["0"][...], (1, 2, 2)))
    assert len(Image.from_zarr(root).attributes.ome.multiscales[0].datasets) == 2
    assert ImageLabel.from_zarr(labels).attributes.ome.multiscales[0].type == "mode"
