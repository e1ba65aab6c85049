"""skeletonize.join: pieces whose skeleton ends face each other across a short gap become one object."""

from __future__ import annotations

import csv
import json

import networkx as nx
import numpy as np
import pytest
from pydantic import ValidationError

import flows.stages.skeletonize as stage
from pipeline.io.blockstate import BlockState
from pipeline.io.omezarr import create_label_image, open_image
from pipeline.io.skeletons import read_joins_csv, read_lengths_csv, read_swc_folder
from pipeline.metrics.config import EvaluateConfig
from pipeline.skeleton.config import AIS_JOIN, SkeletonizeConfig
from pipeline.skeleton.config import DEFAULT_DUST_THRESHOLD_UM3 as DUST_UM3

EVAL_BLOCK = EvaluateConfig().block_shape  # the config's default

VS = (1.5, 0.5, 0.5)


@pytest.fixture
def labels(tmp_path):
    """Rods along x: 3 (x 5-39) and 5 (x 48-89) in line across a 4.5 µm gap; 11 parallel to 3, 5 µm off
    in y (never joined: it points past the others); 9 along y, far away."""
    seg = np.zeros((8, 48, 96), np.uint32)
    seg[3:5, 10:13, 5:40] = 3
    seg[3:5, 10:13, 49:90] = 5
    seg[3:5, 20:23, 5:40] = 11
    seg[3:5, 30:46, 70:73] = 9
    path = tmp_path / "segmentation.zarr"
    create_label_image(path, shape=seg.shape, chunks=(8, 24, 48), voxel_size_um=VS, dtype="uint32")
    open_image(path, mode="r+").array[...] = seg
    return path, seg


def run(path, out, *, join=True, **kwargs):
    settings = SkeletonizeConfig(block_shape=(8, 24, 48), join={"enabled": join})
    return stage.skeletonize_volume(path, out=out, settings=settings, max_retries=0, progress=False, **kwargs)


def files(out):
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for d in ("skeletons", "skeletons_precomputed")
            for p in sorted((out / d).rglob("*")) if p.is_file()}


def test_pieces_in_line_across_a_gap_become_one_object(labels, tmp_path, monkeypatch):
    monkeypatch.setattr(stage, "LABELS_PER_SHARD", 1)  # one task per object: the ends meet in the driver
    path, seg = labels
    plain = run(path, tmp_path / "plain", join=False)
    assert sorted(r.label for r in read_lengths_csv(plain.lengths_csv)) == [3, 5, 9, 11]
    assert plain.n_joins == 0 and not (tmp_path / "plain" / "joins.csv").exists()

    out = run(path, tmp_path / "run")
    assert out.n_joins == 1 and out.n_objects == 3 and out.n_skeletons == 3
    assert read_joins_csv(tmp_path / "run" / "joins.csv") == {3: 3, 5: 3}
    with open(tmp_path / "run" / "joins.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert 4.5 <= float(row["distance_um"]) <= 6.0  # the gap, ends a little inside the rods
    assert float(row["a_x_um"]) == pytest.approx(19.5)  # the last skeleton node of each rod
    assert float(row["b_x_um"]) == pytest.approx(24.5)
    rows = {r.label: r for r in read_lengths_csv(out.lengths_csv)}
    assert sorted(rows) == [3, 9, 11]
    assert rows[3].n_voxels == int((seg == 3).sum() + (seg == 5).sum())
    before = {r.label: r for r in read_lengths_csv(plain.lengths_csv)}
    assert rows[3].length_um > before[3].length_um + before[5].length_um  # the bridge counts too
    assert rows[3].n_endpoints == 2 and rows[9] == before[9] and rows[11] == before[11]
    swc = read_swc_folder(out.swc_dir)
    assert sorted(swc) == [3, 9, 11] and nx.is_tree(swc[3])
    pieces = read_swc_folder(plain.swc_dir)
    assert swc[3].number_of_nodes() == pieces[3].number_of_nodes() + pieces[5].number_of_nodes()
    assert sorted(p.name for p in out.precomputed_dir.iterdir() if p.name.isdigit()) == ["11", "3", "9"]
    record = json.loads(out.params_json.read_text())
    assert record["n_joins"] == 1 and record["join"]["max_gap_um"] == 6.0

    # a rerun changes nothing; so does one killed after the joined skeletons were recorded and files changed
    written = files(tmp_path / "run")
    csv_before = (tmp_path / "run" / "lengths.csv").read_bytes()
    run(path, tmp_path / "run", replace_files=True)
    assert files(tmp_path / "run") == written
    BlockState(tmp_path / "run" / "state", "skeleton_join").forget(0)
    run(path, tmp_path / "run", replace_files=True)
    assert files(tmp_path / "run") == written
    assert (tmp_path / "run" / "lengths.csv").read_bytes() == csv_before

    # joins switched off: the pieces come back, joins.csv goes
    off = run(path, tmp_path / "run", join=False, replace_files=True)
    assert sorted(r.label for r in read_lengths_csv(off.lengths_csv)) == [3, 5, 9, 11]
    assert sorted(read_swc_folder(off.swc_dir)) == [3, 5, 9, 11]
    assert not (tmp_path / "run" / "joins.csv").exists()
    assert json.loads(off.params_json.read_text())["join"] is None


def test_a_gap_longer_than_max_gap_is_not_joined(labels, tmp_path):
    path, _ = labels
    settings = SkeletonizeConfig(block_shape=(8, 24, 48), join={"enabled": True, "max_gap_um": 3.0})
    out = stage.skeletonize_volume(path, out=tmp_path / "run", settings=settings, max_retries=0,
                                   progress=False)
    assert out.n_joins == 0 and sorted(read_swc_folder(out.swc_dir)) == [3, 5, 9, 11]
    assert read_joins_csv(tmp_path / "run" / "joins.csv") == {}


def test_join_settings_are_checked():
    with pytest.raises(ValidationError, match="lower skeletonize.join.min_gap_um"):
        SkeletonizeConfig(join={"min_gap_um": 7.0})
    with pytest.raises(ValidationError, match="max_angle_deg"):
        SkeletonizeConfig(join={"max_angle_deg": 120})
    assert SkeletonizeConfig().join.enabled is False


def _line(z, y, x0, x1):
    g = nx.path_graph(int(round((x1 - x0) / 0.5)) + 1)
    nx.set_node_attributes(g, {i: (z, y, x0 + 0.5 * i) for i in g}, "pos_um")
    return g


def test_evaluate_scores_the_joined_objects_and_the_joins_apart(labels, tmp_path):
    """Ground truth: 3 and 5 are one neuron through the gap; the joins remove its split."""
    from flows.stages.evaluate import evaluate_run
    from pipeline.io.skeletons import write_swc_files

    path, seg = labels
    truth = np.zeros_like(seg)
    truth[3:5, 10:13, 5:90] = 1
    truth[seg == 11], truth[seg == 9] = 2, 3
    gt = tmp_path / "truth.zarr"
    create_label_image(gt, shape=seg.shape, chunks=(8, 24, 48), voxel_size_um=VS, dtype="uint32")
    open_image(gt, mode="r+").array[...] = truth
    swc = tmp_path / "truth_swc"
    swc.mkdir()
    g9 = nx.path_graph(31)
    nx.set_node_attributes(g9, {i: (6.0, 15.0 + 0.5 * i, 35.5) for i in g9}, "pos_um")
    write_swc_files(swc, {1: _line(6.0, 5.5, 3.0, 44.5), 2: _line(6.0, 10.5, 3.0, 19.0), 3: g9})

    def score(out):
        return json.loads(evaluate_run(path, gt, out=out, min_label_nodes=2, dust_threshold_um3=DUST_UM3,
                                       block_shape=EVAL_BLOCK, max_retries=0, gt_swc=swc).read_text())

    run(path, tmp_path / "plain", join=False)
    plain = score(tmp_path / "plain")
    edges = 83 + 32 + 30  # GT skeleton edges of neurons 1-3 (0.5 µm apart): the split one weighs 83 / 145
    assert "joins" not in plain and plain["skeleton"]["splits_per_neuron"] == pytest.approx(83 / edges)
    run(path, tmp_path / "run")
    joined = score(tmp_path / "run")
    assert joined["skeleton"]["splits_per_neuron"] == 0.0 and joined["skeleton"]["merges_per_neuron"] == 0.0
    assert joined["joins"]["n_joins"] == 1 and joined["joins"]["n_pieces_joined"] == 2
    assert joined["joins"]["before"]["skeleton"] == plain["skeleton"]


def test_evaluate_applies_only_the_joins_of_the_segmentation_it_scores(labels, tmp_path):
    from flows.stages.evaluate import evaluate_run
    from pipeline.errors import InputDataError

    path, seg = labels
    run(path, tmp_path / "run")
    other = tmp_path / "other.zarr"  # another segmentation evaluated into the same run directory
    create_label_image(other, shape=seg.shape, chunks=(8, 24, 48), voxel_size_um=VS, dtype="uint32")
    open_image(other, mode="r+").array[...] = seg
    metrics = json.loads(evaluate_run(other, path, out=tmp_path / "run", min_label_nodes=2,
                                      dust_threshold_um3=DUST_UM3,
                                      block_shape=EVAL_BLOCK, max_retries=0).read_text())
    assert "joins" not in metrics and metrics["voxel"]["adjusted_rand_index"] == 1.0
    # a damaged joins.csv is named, with the command that rewrites it
    (tmp_path / "run" / "joins.csv").write_text("label_a,label_b,joined_label\n3,x,3\n")
    with pytest.raises(InputDataError, match=r"joins.csv, line 2.*neurorecon skeletonize"):
        evaluate_run(path, path, out=tmp_path / "run", min_label_nodes=2, dust_threshold_um3=DUST_UM3,
                     block_shape=EVAL_BLOCK, max_retries=0)


def test_the_ais_joins_leave_the_exact_truth_of_an_ais_phantom_alone(tmp_path):
    """Joins never touch a correct reconstruction: the ground truth of an AIS phantom (objects apart, with
    dropout gaps inside them but none between them), with the AIS settings (``AIS_JOIN``), gets no join and
    scores perfect."""
    from flows.stages.evaluate import evaluate_run
    from pipeline.io.phantom import write_phantom
    from pipeline.synth import PhantomParams

    store = write_phantom(tmp_path / "ais.zarr", PhantomParams(kind="ais", seed=2), progress=False).store
    gt = store / "labels" / "ground_truth"
    settings = SkeletonizeConfig(join=AIS_JOIN)
    stage.skeletonize_volume(gt, out=tmp_path / "run", settings=settings, max_retries=0, progress=False)
    metrics = json.loads(evaluate_run(gt, gt, out=tmp_path / "run", min_label_nodes=10,
                                      dust_threshold_um3=settings.dust_threshold_um3, block_shape=EVAL_BLOCK,
                                      max_retries=0).read_text())
    assert metrics["joins"]["n_joins"] == 0
    length, skeleton = metrics["length"], metrics["skeleton"]
    assert length["precision"] == length["recall"] == 1.0 and length["wasserstein_um"] == 0.0
    assert skeleton["gaps_bridged"] == 1.0 and skeleton["merges_per_neuron"] == 0.0
