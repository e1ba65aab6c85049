"""Pyramids in OME-Zarr stores: levels created with the image, filled block by block, valid OME-Zarr 0.5."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from ome_zarr_models import open_ome_zarr
from ome_zarr_models.v05.image import Image
from ome_zarr_models.v05.image_label import ImageLabel

from pipeline.errors import InputDataError
from pipeline.io.labels import open_label_image
from pipeline.io.omezarr import create_image, create_label_image, create_labels, open_image, open_labels
from pipeline.io.pyramid import build_pyramid, stored_levels
from pipeline.pyramid import downsample_labels, downsample_mean

VS = (1.5, 0.5, 0.5)
SHAPE = (8, 256, 200)
CHUNKS = (8, 64, 64)


def image_with_labels(path):
    """An image and its label image, each with two lower levels, level 0 written and the pyramid built."""
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 4000, SHAPE).astype(np.uint16)
    labels = (rng.integers(0, 3, SHAPE) * (rng.random(SHAPE) < 0.7)).astype(np.uint32)
    create_image(path, shape=SHAPE, dtype="uint16", chunks=CHUNKS, voxel_size_um=VS, name="raw",
                 pyramid="mean")[...] = raw
    create_labels(path, "ground_truth", chunks=CHUNKS, pyramid=True)[...] = labels
    return raw, labels


def test_levels_are_made_by_mean_and_mode_from_the_level_above(tmp_path):
    path = tmp_path / "v.zarr"
    raw, labels = image_with_labels(path)
    assert build_pyramid(path) == 2 and build_pyramid(path / "labels" / "ground_truth") == 2
    levels = stored_levels(path)
    assert [(lv.factor, lv.shape, lv.method) for lv in levels] == [
        ((1, 2, 2), (8, 128, 100), "mean"), ((2, 2, 2), (4, 64, 50), "mean")]
    group = zarr.open_group(str(path), mode="r")
    one = downsample_mean(raw, (1, 2, 2))
    np.testing.assert_array_equal(group["1"][...], one)
    np.testing.assert_array_equal(group["2"][...], downsample_mean(one, (2, 2, 2)))
    lgroup = zarr.open_group(str(path / "labels" / "ground_truth"), mode="r")
    assert stored_levels(path / "labels" / "ground_truth")[0].method == "mode"
    np.testing.assert_array_equal(lgroup["2"][...],
                                  downsample_labels(downsample_labels(labels, (1, 2, 2)), (2, 2, 2)))
    # every reader keeps level 0
    np.testing.assert_array_equal(open_image(path).array[...], raw)
    assert open_image(path).voxel_size_um == VS
    np.testing.assert_array_equal(open_labels(path, "ground_truth").array[...], labels)


def test_scale_and_translation_per_level_in_micrometres(tmp_path):
    path = tmp_path / "v.zarr"
    image_with_labels(path)
    ms = json.loads((path / "zarr.json").read_text())["attributes"]["ome"]["multiscales"][0]
    assert ms["type"] == "mean"
    transforms = [d["coordinateTransformations"] for d in ms["datasets"]]
    assert transforms[0] == [{"type": "scale", "scale": [1.5, 0.5, 0.5]}]
    # level-1 voxel 0 averages level-0 voxels 0 and 1 along y and x: its centre is half a voxel in
    assert transforms[1] == [{"type": "scale", "scale": [1.5, 1.0, 1.0]},
                             {"type": "translation", "translation": [0.0, 0.25, 0.25]}]
    assert transforms[2] == [{"type": "scale", "scale": [3.0, 2.0, 2.0]},
                             {"type": "translation", "translation": [0.75, 0.75, 0.75]}]


def test_blockwise_build_does_not_depend_on_the_block_shape(tmp_path):
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    image_with_labels(a)
    image_with_labels(b)
    build_pyramid(a)
    build_pyramid(b, block_shape=(8, 256, 256))
    for level in ("1", "2"):
        np.testing.assert_array_equal(zarr.open_group(str(a))[level][...],
                                      zarr.open_group(str(b))[level][...])


def test_stores_validate_as_ome_zarr_0_5(tmp_path):
    path = tmp_path / "v.zarr"
    image_with_labels(path)
    seg = tmp_path / "run" / "segmentation.zarr"
    create_label_image(seg, shape=SHAPE, chunks=CHUNKS, voxel_size_um=VS, source=path, pyramid=True,
                       attributes={"neurorecon": {"threshold": 0.5}})
    image = Image.from_zarr(zarr.open_group(str(path), mode="r"))
    assert len(image.attributes.ome.multiscales[0].datasets) == 3
    assert isinstance(open_ome_zarr(zarr.open_group(str(path / "labels" / "ground_truth"), mode="r")),
                      ImageLabel)
    label = ImageLabel.from_zarr(zarr.open_group(str(seg), mode="r"))
    # the source is relative to the label image and resolves to the raw image
    assert label.attributes.ome.image_label.source.image == "../../v.zarr"
    assert (seg / label.attributes.ome.image_label.source.image).resolve() == path.resolve()
    assert open_label_image(seg).spatial_shape == SHAPE


def test_small_images_and_channels_get_no_levels(tmp_path):
    create_image(tmp_path / "s.zarr", shape=(4, 60, 60), dtype="uint8", chunks=(4, 32, 32), voxel_size_um=VS,
                 pyramid="mean")
    assert stored_levels(tmp_path / "s.zarr") == () and build_pyramid(tmp_path / "s.zarr") == 0
    with pytest.raises(ValueError, match="pyramid must be None or one of"):
        create_image(tmp_path / "c.zarr", shape=SHAPE, dtype="uint8", chunks=CHUNKS, voxel_size_um=VS,
                     channels=3, pyramid="mean")


def test_a_damaged_level_is_reported(tmp_path):
    path = tmp_path / "v.zarr"
    image_with_labels(path)
    group = zarr.open_group(str(path), mode="r+")
    del group["2"]
    with pytest.raises(InputDataError, match="missing its level-2 array"):
        stored_levels(path)
