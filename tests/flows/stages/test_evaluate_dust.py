"""The length metrics count the objects a run reports: labels of at most ``skeletonize.dust_threshold_um3``
are not objects, in either image (``skeletonize`` gives them no skeleton and no row in ``lengths.csv``).

One hand-built volume, every answer counted by hand: true rods 1 and 2 and a 2-voxel true speck 3;
predicted rod 10 (= rod 1), rod 20 (rod 2 but its last 8 voxels, which are label 21), a 2-voxel speck 30 on
the true speck and a 4-voxel speck 31 in the background. Voxels of 1.5 x 0.5 x 0.5 µm (0.375 µm³).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from flows.stages.evaluate import evaluate_run
from flows.stages.skeletonize import skeletonize_volume
from pipeline.io.omezarr import create_label_image, open_image
from pipeline.io.skeletons import read_lengths_csv
from pipeline.metrics.evaluate import evaluate_arrays
from pipeline.skeleton.config import DEFAULT_DUST_THRESHOLD_UM3, SkeletonizeConfig

VS = (1.5, 0.5, 0.5)


def volumes() -> tuple[np.ndarray, np.ndarray]:
    true = np.zeros((10, 40, 80), np.uint32)
    true[3:5, 8:10, 5:65] = 1  # 240 voxels
    true[6:8, 25:27, 5:65] = 2  # 240 voxels
    true[1, 35, 70:72] = 3  # 2 voxels: dust at 2 µm³ (5 voxels)
    pred = np.zeros_like(true)
    pred[true == 1] = 10
    pred[true == 2] = 20
    pred[6:8, 25:27, 63:65] = 21  # rod 2's end, detached: 8 voxels = 3 µm³
    pred[true == 3] = 30
    pred[2, 30, 70:74] = 31  # a 4-voxel speck in the background
    return pred, true


def write(labels: np.ndarray, path) -> str:
    create_label_image(path, shape=labels.shape, chunks=(5, 20, 40), voxel_size_um=VS, dtype="uint32")
    open_image(path, mode="r+").array[...] = labels
    return str(path)


# dust (µm³) -> (n_pred, n_true, precision, discontinuities per AIS, n_dust_pred, n_dust_true)
EXPECTED = {
    0.0: (5, 3, 3 / 5, 1 / 3, 0, 0),  # every label: 10-1, 20-2, 30-3 matched; rod 2 in 2 pieces
    2.0: (3, 2, 2 / 3, 1 / 2, 2, 1),  # 5 voxels: 30, 31 and 3 are dust
    3.0: (2, 2, 1.0, 0.0, 3, 1),  # 8 voxels: the detached end 21 is dust too
    DEFAULT_DUST_THRESHOLD_UM3: (2, 2, 1.0, 0.0, 3, 1),  # 5 µm³ = 13 voxels: as 3 µm³
}


@pytest.mark.parametrize("dust", sorted(EXPECTED))
def test_dust_is_no_object_block_by_block_and_whole(tmp_path, dust):
    pred, true = volumes()
    seg, gt = write(pred, tmp_path / "seg.zarr"), write(true, tmp_path / "gt.zarr")
    metrics = json.loads(evaluate_run(seg, gt, out=tmp_path / "run", min_label_nodes=10,
                                      dust_threshold_um3=dust, block_shape=(4, 16, 32),
                                      max_retries=0).read_text())
    length = metrics["length"]
    n_pred, n_true, precision, disc, n_dust_pred, n_dust_true = EXPECTED[dust]
    assert (length["n_pred"], length["n_true"], length["n_dust_pred"], length["n_dust_true"]) == (
        n_pred, n_true, n_dust_pred, n_dust_true)
    assert length["precision"] == pytest.approx(precision) and length["recall"] == 1.0
    assert length["discontinuities_per_instance"] == pytest.approx(disc)
    assert metrics["parameters"]["dust_threshold_um3"] == dust
    # the distributions hold the objects only (no border object here)
    assert len(length["pred_lengths_um"]) == n_pred and len(length["true_lengths_um"]) == n_true
    # the voxel metrics score the image as it is, dust included
    whole = evaluate_arrays(pred, true, voxel_size_um=VS, kind="neurons", dust_threshold_um3=dust)
    assert {k: metrics[k] for k in ("voxel", "length")} == {k: whole[k] for k in ("voxel", "length")}
    full = evaluate_arrays(pred, true, voxel_size_um=VS, kind="neurons", dust_threshold_um3=0.0)
    assert metrics["voxel"] == full["voxel"]


def test_the_truth_scores_perfect_and_dust_counts_for_neither(tmp_path):
    _, true = volumes()
    gt = write(true, tmp_path / "gt.zarr")
    for dust in EXPECTED:
        length = json.loads(evaluate_run(gt, gt, out=tmp_path / "run", min_label_nodes=10,
                                         dust_threshold_um3=dust, block_shape=(4, 16, 32),
                                         max_retries=0).read_text())["length"]
        assert length["precision"] == length["recall"] == 1.0 and length["wasserstein_um"] == 0.0
        assert length["discontinuities_per_instance"] == 0.0
        assert length["n_pred"] == length["n_true"] == (3 if dust == 0 else 2)


def test_the_objects_scored_are_the_rows_of_lengths_csv(tmp_path):
    pred, true = volumes()
    seg, gt = write(pred, tmp_path / "seg.zarr"), write(true, tmp_path / "gt.zarr")
    settings = SkeletonizeConfig(block_shape=(5, 20, 40), dust_threshold_um3=2.0)
    run = tmp_path / "run"
    csv = skeletonize_volume(seg, out=run, settings=settings, max_retries=0, progress=False).lengths_csv
    length = json.loads(evaluate_run(seg, gt, out=run, min_label_nodes=10,
                                     dust_threshold_um3=settings.dust_threshold_um3, block_shape=(4, 16, 32),
                                     max_retries=0).read_text())["length"]
    rows = sorted(r.label for r in read_lengths_csv(csv))
    assert rows == [10, 20, 21] and length["n_pred"] == len(rows)
    assert sorted(int(k) for k in length["pred_lengths_um"]) == rows
