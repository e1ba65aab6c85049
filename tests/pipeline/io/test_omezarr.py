from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import zarr

from pipeline.errors import InputDataError, OutputError
from pipeline.io.omezarr import (
    create_image,
    create_label_image,
    create_labels,
    list_labels,
    open_image,
    open_labels,
    write_image,
    write_labels,
    write_region,
)

VS = (1.5, 0.5, 0.5)


def test_image_and_labels_round_trip_with_metadata(tmp_path):
    path = tmp_path / "v.zarr"
    raw = np.arange(6 * 10 * 12, dtype=np.uint16).reshape(6, 10, 12)
    labels = (raw % 7).astype(np.uint32)
    write_image(path, raw, voxel_size_um=VS, chunks=(3, 5, 4), name="raw")
    write_labels(path, "ground_truth", labels)

    image = open_image(path)
    assert image.voxel_size_um == VS
    assert image.axes == ("z", "y", "x")
    assert image.chunks == (3, 5, 4)
    assert image.name == "raw"
    np.testing.assert_array_equal(image.array[...], raw)
    lab = open_labels(path, "ground_truth")
    np.testing.assert_array_equal(lab.array[...], labels)
    assert lab.voxel_size_um == VS
    assert list_labels(path) == ["ground_truth"]

    # A plain zarr.open sees the OME-NGFF 0.5 metadata and the arrays.
    root = zarr.open(str(path), mode="r")
    ome = dict(root.attrs)["ome"]
    assert ome["version"] == "0.5"
    axes = ome["multiscales"][0]["axes"]
    assert [a["name"] for a in axes] == ["z", "y", "x"]
    assert {a["unit"] for a in axes} == {"micrometer"}
    assert ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == list(VS)
    assert root["0"].shape == raw.shape
    lroot = zarr.open(str(path / "labels" / "ground_truth"), mode="r")
    assert dict(lroot.attrs)["ome"]["image-label"]["source"] == {"image": "../../"}
    assert json.loads((path / "zarr.json").read_text())["zarr_format"] == 3


def test_channel_axis_image(tmp_path):
    aff = np.random.default_rng(0).random((3, 4, 8, 8), dtype=np.float32)
    img = write_image(tmp_path / "aff.zarr", aff, voxel_size_um=VS, name="affinities")
    assert img.axes == ("c", "z", "y", "x")
    assert img.voxel_size_um == VS
    assert img.spatial_shape == (4, 8, 8)
    np.testing.assert_array_equal(img.array[...], aff)


def test_lazy_dask_access_reads_only_what_is_asked(tmp_path):
    path = tmp_path / "v.zarr"
    arr = create_image(path, shape=(8, 16, 16), dtype="uint16", chunks=(4, 8, 8), voxel_size_um=VS)
    arr[...] = 5
    lazy = open_image(path).to_dask()
    assert isinstance(lazy, da.Array)
    assert lazy.chunks == ((4, 4), (8, 8), (8, 8))
    assert int(lazy[4:, 8:, :8].sum().compute()) == 5 * 4 * 8 * 8


def test_nanometer_units_are_converted_to_um(tmp_path):
    path = tmp_path / "nm.zarr"
    write_image(path, np.zeros((2, 2, 2), np.uint8), voxel_size_um=VS)
    meta = json.loads((path / "zarr.json").read_text())
    ms = meta["attributes"]["ome"]["multiscales"][0]
    for a in ms["axes"]:
        a["unit"] = "nanometer"
    ms["datasets"][0]["coordinateTransformations"][0]["scale"] = [40.0, 16.0, 16.0]
    (path / "zarr.json").write_text(json.dumps(meta))
    assert open_image(path).voxel_size_um == pytest.approx((0.04, 0.016, 0.016))


def _drop_units(path, scale):
    meta = json.loads((path / "zarr.json").read_text())
    ms = meta["attributes"]["ome"]["multiscales"][0]
    for a in ms["axes"]:
        a.pop("unit", None)
    ms["datasets"][0]["coordinateTransformations"][0]["scale"] = scale
    (path / "zarr.json").write_text(json.dumps(meta))


def test_axes_without_unit_are_read_as_um_unless_the_scale_is_implausible_for_um(tmp_path):
    path = tmp_path / "unitless.zarr"
    write_image(path, np.zeros((2, 2, 2), np.uint8), voxel_size_um=VS)
    _drop_units(path, [1.5, 0.5, 0.5])
    assert open_image(path).voxel_size_um == VS  # plausible in µm: read as µm, as always
    _drop_units(path, [1500, 500, 500])  # 1.5 mm voxels: nm without a unit
    with pytest.raises(InputDataError, match=r"unitless\.zarr: axes z, y, x have no unit and the scale is "
                       r"\(1500\.0, 500\.0, 500\.0\).*\"unit\": \"nanometer\""):
        open_image(path)
    meta = json.loads((path / "zarr.json").read_text())
    for a in meta["attributes"]["ome"]["multiscales"][0]["axes"]:
        a["unit"] = "nanometer"  # the fix the message asks for
    (path / "zarr.json").write_text(json.dumps(meta))
    assert open_image(path).voxel_size_um == pytest.approx(VS)


def test_write_region_requires_chunk_alignment(tmp_path):
    arr = create_image(tmp_path / "v.zarr", shape=(8, 10, 10), dtype="uint8", chunks=(4, 4, 4),
                       voxel_size_um=VS)
    # ends at border
    write_region(arr, (slice(4, 8), slice(8, 10), slice(0, 4)), np.ones((4, 2, 4), np.uint8))
    assert arr[4:8, 8:10, 0:4].sum() == 32
    with pytest.raises(ValueError, match="not aligned to the chunk grid"):
        write_region(arr, (slice(0, 4), slice(2, 6), slice(0, 4)), np.ones((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="data has shape"):
        write_region(arr, (slice(0, 4), slice(0, 4), slice(0, 4)), np.ones((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="out of bounds"):
        write_region(arr, (slice(0, 4), slice(0, 4), slice(8, 12)), np.ones((4, 4, 4), np.uint8))


def test_existing_store_is_protected(tmp_path):
    path = tmp_path / "v.zarr"
    arr = create_image(path, shape=(4, 4, 4), dtype="uint8", chunks=(2, 2, 2), voxel_size_um=VS)
    arr[...] = 7
    with pytest.raises(OutputError, match="already exists"):
        create_image(path, shape=(4, 4, 4), dtype="uint8", chunks=(2, 2, 2), voxel_size_um=VS)
    # Compatible reuse keeps the data (resume); incompatible reuse is refused and changes nothing.
    again = create_image(path, shape=(4, 4, 4), dtype="uint8", chunks=(2, 2, 2), voxel_size_um=VS,
                         exist_ok=True)
    assert int(again[...].sum()) == 7 * 64
    with pytest.raises(OutputError, match="different metadata.*dtype"):
        create_image(path, shape=(4, 4, 4), dtype="uint16", chunks=(2, 2, 2), voxel_size_um=VS, exist_ok=True)
    assert int(open_image(path).array[...].sum()) == 7 * 64
    fresh = create_image(path, shape=(4, 4, 4), dtype="uint8", chunks=(2, 2, 2), voxel_size_um=VS,
                         overwrite=True)
    assert int(fresh[...].sum()) == 0


def test_labels_protected_and_listed(tmp_path):
    path = tmp_path / "v.zarr"
    create_image(path, shape=(4, 4, 4), dtype="uint8", chunks=(2, 2, 2), voxel_size_um=VS)
    create_labels(path, "a")
    create_labels(path, "b", dtype="uint64")
    assert sorted(list_labels(path)) == ["a", "b"]
    with pytest.raises(OutputError, match="already exists"):
        create_labels(path, "a")
    with pytest.raises(TypeError, match="integer"):
        create_labels(path, "c", dtype="float32")
    with pytest.raises(InputDataError, match="no label image 'zz'.*a, b"):
        open_labels(path, "zz")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (0, 4, 4)}, "shape must be three positive integers"),
        ({"shape": (4, 4)}, "shape must be three positive integers"),
        ({"chunks": (2, -1, 2)}, "chunks must be three positive integers"),
        ({"voxel_size_um": (1, 0, 1)}, "positive and finite"),
        ({"voxel_size_um": (1, 1)}, "3 entries"),
        ({"codec": "gzip"}, r"codec must be one of \['lz4', 'zstd'\]; got 'gzip'"),
    ],
)
def test_create_image_rejects_bad_arguments(tmp_path, kwargs, match):
    args = {"shape": (4, 4, 4), "dtype": "uint8", "chunks": (2, 2, 2), "voxel_size_um": VS} | kwargs
    with pytest.raises(ValueError, match=match):
        create_image(tmp_path / "v.zarr", **args)


def test_open_errors_are_clear(tmp_path):
    with pytest.raises(InputDataError, match="not a Zarr v3 group"):
        open_image(tmp_path / "missing.zarr")
    g = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    g.create_array("0", shape=(2, 2, 2), dtype="uint8")
    with pytest.raises(InputDataError, match="no OME-Zarr 'multiscales' metadata"):
        open_image(tmp_path / "plain.zarr")
    path = tmp_path / "v.zarr"
    write_image(path, np.zeros((2, 2, 2), np.uint8), voxel_size_um=VS)
    import shutil

    shutil.rmtree(path / "0")
    with pytest.raises(InputDataError, match="missing its level-0 array"):
        open_image(path)



_KILLED_CREATOR = """
import os, signal, sys
import pipeline.io.omezarr as omezarr

write = omezarr.write_multiscales_metadata

def write_and_die(*args, **kwargs):  # SIGKILL this process at the chosen point of the creation
    if sys.argv[2] == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    write(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

omezarr.write_multiscales_metadata = write_and_die
omezarr.create_label_image(sys.argv[1], shape=(8, 8, 8), chunks=(4, 4, 4), voxel_size_um=(1, 1, 1),
                           source="raw.zarr", exist_ok=True)
"""


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_creator_killed_mid_creation_leaves_a_store_a_rerun_can_open(tmp_path, when):
    # Regression (issue 8): a kill after the group and array were written but before the multiscales
    # metadata left a store every rerun refused ("no OME-Zarr 'multiscales' metadata").
    import signal
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "segmentation.zarr"
    repo = Path(__file__).resolve().parents[3]
    proc = subprocess.run([sys.executable, "-c", _KILLED_CREATOR, str(path), when], cwd=repo)
    assert proc.returncode == -signal.SIGKILL
    assert not path.exists() or (path / "0" / "zarr.json").is_file()
    arr = create_label_image(path, shape=(8, 8, 8), chunks=(4, 4, 4), voxel_size_um=(1, 1, 1),
                             source="raw.zarr", exist_ok=True)  # what the rerun does
    assert arr.shape == (8, 8, 8)
    ome = zarr.open_group(str(path), mode="r").attrs["ome"]
    assert ome["multiscales"] and ome["image-label"]["source"]["image"] == "raw.zarr"
    assert [p.name for p in tmp_path.iterdir()] == ["segmentation.zarr"]  # the killed one's temporary is gone

def test_creation_is_published_by_one_rename(tmp_path):
    path = tmp_path / "v.zarr"
    stale = tmp_path / ".v.zarr.12345.creating"
    stale.mkdir()  # left by a creator killed earlier
    create_image(path, shape=(4, 4, 4), dtype="uint8", chunks=(2, 2, 2), voxel_size_um=VS)
    assert open_image(path).voxel_size_um == VS
    assert not stale.exists() and [p.name for p in tmp_path.iterdir()] == ["v.zarr"]


@pytest.mark.parametrize(("codec", "cname"), [("zstd", None), ("lz4", "lz4")])
def test_codec_choice_round_trips(tmp_path, codec, cname):
    data = np.random.default_rng(0).integers(0, 255, (3, 8, 8, 8), dtype=np.uint8)
    arr = create_image(tmp_path / "a.zarr", shape=(8, 8, 8), dtype="uint8", chunks=(4, 4, 4),
                       voxel_size_um=VS, channels=3, codec=codec)
    arr[...] = data
    reopened = open_image(tmp_path / "a.zarr").array
    np.testing.assert_array_equal(reopened[...], data)
    (compressor,) = reopened.compressors
    if cname is None:
        assert type(compressor).__name__ == "ZstdCodec"  # Zarr v3's default
    else:
        assert compressor.cname.value == cname
