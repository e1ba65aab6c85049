"""``neurorecon evaluate`` reads both label images block by block (and each object from its box): its
``metrics.json`` holds the whole-volume metrics of :func:`pipeline.metrics.evaluate.evaluate_arrays`, number
for number, whatever the block shape, serially or on Dask, with joins and with a threshold sweep."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flows.stages.evaluate import OBJECTS_PER_TASK, evaluate_run
from flows.stages.runner import dask_client
from pipeline.config import DaskConfig
from pipeline.io.layout import RunLayout
from pipeline.io.omezarr import create_label_image, open_image
from pipeline.io.phantom import read_phantom_truth, write_phantom
from pipeline.io.report import read_metrics_json
from pipeline.io.skeletons import read_swc_folder
from pipeline.metrics.evaluate import evaluate_arrays, sweep_row
from pipeline.skeleton.config import DEFAULT_DUST_THRESHOLD_UM3 as DUST_UM3
from pipeline.synth import PhantomParams

VS = (1.5, 0.5, 0.5)
SECTIONS = ("kind", "voxel", "skeleton", "length")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _with_errors(gt: np.ndarray, seed: int) -> np.ndarray:
    """``gt`` renamed (other ids, some >= 2**32), with a split, a merge, a cut (one label in two pieces), a
    lost object and a false one: every metric has something to count."""
    rng = np.random.default_rng(seed)
    ids, counts = np.unique(gt[gt != 0], return_counts=True)
    order = ids[np.argsort(-counts)]
    pred = np.where(gt != 0, gt.astype(np.uint64) * 7919 + 2**33, 0).astype(np.uint64)
    big = np.argwhere(gt == order[0])
    half = big[:, 2] > np.median(big[:, 2])
    pred[tuple(big[half].T)] = 5  # split
    pred[gt == order[1]] = pred[np.argwhere(gt == order[2])[0][0], np.argwhere(gt == order[2])[0][1],
                                np.argwhere(gt == order[2])[0][2]]  # merge
    third = np.argwhere(gt == order[3])
    mid = np.median(third[:, 2])
    pred[tuple(third[np.abs(third[:, 2] - mid) < 3].T)] = 0  # cut: one label, two pieces
    pred[gt == order[-1]] = 0  # lost
    z, y, x = (int(rng.integers(2, n - 6)) for n in gt.shape)
    pred[z:z + 3, y:y + 5, x:x + 9] = 11  # false object (or a piece over truth)
    return pred


@pytest.fixture(scope="module", params=["neurons", "ais"])
def case(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    result = write_phantom(root / "volume.zarr", PhantomParams(kind=request.param, seed=2), progress=False)
    gt_path = result.store / "labels" / "ground_truth"
    gt = np.asarray(open_image(gt_path).array[...])
    pred = _with_errors(gt, 0)
    seg = root / "segmentation.zarr"
    create_label_image(seg, shape=pred.shape, chunks=(16, 64, 64), voxel_size_um=VS)
    open_image(seg, mode="r+").array[...] = pred
    skeletons = read_swc_folder(result.skeleton_dir)
    truth = read_phantom_truth(gt_path)
    whole = evaluate_arrays(pred, gt, voxel_size_um=VS, kind=request.param, gt_skeletons=skeletons,
                            gaps=[g for g in truth.gaps if g.label in skeletons], min_label_nodes=10)
    expected = json.loads(json.dumps({k: whole[k] for k in SECTIONS}, default=str).replace("NaN", "null"))
    return root, seg, gt_path, pred, gt, skeletons, expected


def _sections(path) -> dict:
    got = json.loads(path.read_text())
    return {k: got[k] for k in SECTIONS}


@pytest.mark.parametrize("block_shape", [(7, 40, 33), (1000, 1000, 1000)])
def test_block_by_block_gives_the_whole_volume_metrics(case, block_shape, tmp_path):
    _, seg, gt_path, pred, gt, _, expected = case
    n_blocks = int(np.prod([-(-n // min(b, n)) for n, b in zip(gt.shape, block_shape, strict=True)]))
    path = evaluate_run(seg, gt_path, out=tmp_path / "run", min_label_nodes=10,
                        dust_threshold_um3=DUST_UM3, block_shape=block_shape,
                        max_retries=0)
    assert _sections(path) == expected
    got = json.loads(path.read_text())
    assert got["parameters"]["block_shape"] == [min(b, n) for b, n in zip(block_shape, gt.shape, strict=True)]
    assert len(list((tmp_path / "run" / "state" / "evaluate").glob("[0-9]*.npz"))) == n_blocks
    # the errors were seen: the split, the merge, the cut, the lost object
    assert got["skeleton"]["merges_per_neuron"] > 0 and got["skeleton"]["splits_per_neuron"] > 0
    assert got["length"]["discontinuities_per_instance"] > 0 and got["length"]["recall"] < 1


def test_the_exact_ground_truth_scores_perfect_block_by_block(case, tmp_path):
    root, _, gt_path, _, gt, _, _ = case
    kind = root.name.rstrip("0123456789")
    path = evaluate_run(gt_path, gt_path, out=tmp_path / "run", min_label_nodes=10,
                        dust_threshold_um3=DUST_UM3, block_shape=(9, 50, 70),
                        max_retries=0)
    got = read_metrics_json(path)
    assert got["voxel"]["voi_total_bits"] == 0 and got["voxel"]["adjusted_rand_index"] == 1
    assert got["skeleton"]["splits_per_neuron"] == 0 and got["skeleton"]["merges_per_neuron"] == 0
    assert got["length"]["discontinuities_per_instance"] == 0
    lengths = got["length"]["true_lengths_um"]  # of the objects inside the volume (the neurons all leave it)
    assert lengths == got["length"]["pred_lengths_um"] and (kind == "neurons") == (not lengths)
    if lengths:
        assert got["length"]["wasserstein_um"] == 0 and got["length"]["ssmd"] == 0
    assert got["length"]["precision"] == got["length"]["recall"] == 1


def test_on_a_dask_cluster_and_rerun_the_same_numbers(case, tmp_path, monkeypatch):
    _, seg, gt_path, _, _, _, expected = case
    monkeypatch.setattr("flows.stages.evaluate.OBJECTS_PER_TASK", 2)  # several object tasks
    with dask_client(DaskConfig(n_workers=2, memory_limit="2GiB")) as client:
        path = evaluate_run(seg, gt_path, out=tmp_path / "run", min_label_nodes=10,
                            dust_threshold_um3=DUST_UM3, block_shape=(20, 60, 60),
                            max_retries=0, client=client)
        first = path.read_text()
        assert _sections(path) == expected
    assert len(list((tmp_path / "run" / "state" / "evaluate_objects").glob("jobs-*.npz"))) > 1
    serial = evaluate_run(seg, gt_path, out=tmp_path / "run", min_label_nodes=10,
                          dust_threshold_um3=DUST_UM3, block_shape=(20, 60, 60),
                          max_retries=0)
    assert serial.read_text() == first  # a rerun starts its scratch records anew and changes nothing
    assert OBJECTS_PER_TASK >= 100


def test_a_threshold_sweep_is_scored_block_by_block(case, tmp_path):
    """The swept segmentations' rows equal ``sweep_row`` on the whole volumes."""
    _, _, gt_path, pred, gt, skeletons, _ = case
    run = RunLayout(tmp_path / "run")
    rows = {}
    for t, labels in ((0.3, pred), (0.7, np.where(gt != 0, 1, 0).astype(np.uint64))):
        path = run.segmentation_at(t)
        create_label_image(path, shape=labels.shape, chunks=(16, 64, 64), voxel_size_um=VS)
        open_image(path, mode="r+").array[...] = labels
        rows[t] = sweep_row(labels, gt, voxel_size_um=VS, gt_skeletons=skeletons,
                                               min_label_nodes=10)
    assert len(run.swept_segmentations()) == 2
    got = json.loads(evaluate_run(run.segmentation_at(0.3), gt_path, out=run.root, min_label_nodes=10,
                                  dust_threshold_um3=DUST_UM3,
                                  block_shape=(11, 45, 45), max_retries=0).read_text())
    table = {round(r["threshold"], 6): r for r in got["thresholds"]}
    assert sorted(table) == sorted(rows)
    for t, row in rows.items():
        assert {k: table[t][k] for k in row} == json.loads(json.dumps(row))
    assert rows[0.3]["merges_per_neuron"] > 0  # the rows differ: each was read from its own image
    assert rows[0.7]["n_segments"] == 1
