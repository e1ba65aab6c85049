"""skeletonize.dust_threshold_um3: objects of at most that volume get no skeleton and no lengths.csv row."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flows.stages.skeletonize import skeletonize_volume
from pipeline.errors import OutputError
from pipeline.io.omezarr import create_label_image, open_image
from pipeline.io.skeletons import read_lengths_csv, read_swc_folder
from pipeline.skeleton import DEFAULT_DUST_THRESHOLD_UM3
from pipeline.skeleton.config import SkeletonizeConfig

VS = (1.5, 0.5, 0.5)  # 0.375 µm³ per voxel


@pytest.fixture
def labels(tmp_path):
    """A 30 µm rod (label 3), a 2-voxel speck (7, 0.75 µm³) and a 2 x 2 x 4 voxel lump (9, 6 µm³)."""
    seg = np.zeros((8, 32, 80), np.uint32)
    seg[3:5, 10:14, 5:65] = 3
    seg[6, 25, 20:22] = 7
    seg[1:3, 25:27, 40:44] = 9
    path = tmp_path / "segmentation.zarr"
    create_label_image(path, shape=seg.shape, chunks=(8, 32, 40), voxel_size_um=VS, dtype="uint32")
    open_image(path, mode="r+").array[...] = seg
    return path


def run(labels, out, dust, **kwargs):
    settings = SkeletonizeConfig(block_shape=(8, 32, 40), dust_threshold_um3=dust)
    return skeletonize_volume(labels, out=out, settings=settings, max_retries=0, progress=False, **kwargs)


def test_specks_go_and_larger_objects_stay(labels, tmp_path):
    assert DEFAULT_DUST_THRESHOLD_UM3 == SkeletonizeConfig().dust_threshold_um3
    out = run(labels, tmp_path / "run", DEFAULT_DUST_THRESHOLD_UM3)  # 5 µm³: at most 13 voxels are dust
    rows = {r.label: r for r in read_lengths_csv(out.lengths_csv)}
    assert sorted(rows) == [3, 9] and rows[9].n_voxels == 16
    swc = read_swc_folder(out.swc_dir)
    assert 7 not in swc and 3 in swc and 9 in swc
    assert json.loads(out.params_json.read_text())["dust_threshold_um3"] == 5.0
    keep_all = run(labels, tmp_path / "all", 0.0)
    assert sorted(r.label for r in read_lengths_csv(keep_all.lengths_csv)) == [3, 7, 9]
    above = run(labels, tmp_path / "big", 6.0)  # the lump's volume exactly: dust too
    assert sorted(r.label for r in read_lengths_csv(above.lengths_csv)) == [3]
    assert sorted(read_swc_folder(above.swc_dir)) == [3]


def test_a_rerun_with_another_threshold_is_refused_unless_overwrite(labels, tmp_path):
    out = tmp_path / "run"
    run(labels, out, 2.0)
    with pytest.raises(OutputError, match="other parameters.*dust_threshold_um3"):
        run(labels, out, 1.0, replace_files=True)
    again = run(labels, out, 0.0, overwrite=True)
    assert 7 in {r.label for r in read_lengths_csv(again.lengths_csv)}
