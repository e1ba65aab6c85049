"""skeletonize / evaluate / report stages: the functions on a phantom, resume, and the commands' errors."""

from __future__ import annotations

import json
import math

import networkx as nx
import numpy as np
import pytest

from flows.stages.evaluate import evaluate_run
from flows.stages.report import report_run
from flows.stages.skeletonize import skeletonize_volume as _skeletonize_volume
from pipeline.errors import InputDataError, OutputError
from pipeline.io.blockstate import BlockState
from pipeline.io.layout import RunLayout
from pipeline.io.omezarr import create_label_image, open_image, write_provenance
from pipeline.io.phantom import write_phantom
from pipeline.io.skeletons import read_lengths_csv, read_precomputed_skeletons, read_swc_folder
from pipeline.metrics.config import EvaluateConfig
from pipeline.metrics.evaluate import evaluate_arrays
from pipeline.skeleton import BlockSkeletons, OnePiecePlan, object_table
from pipeline.skeleton.config import DEFAULT_DUST_THRESHOLD_UM3 as DUST_UM3
from pipeline.skeleton.config import SkeletonizeConfig
from pipeline.synth import AISParams, PhantomParams
from tests.flows.test_cli import run_cli

EVAL_BLOCK = EvaluateConfig().block_shape  # the config's default

VS = (1.5, 0.5, 0.5)
def skeletonize_volume(segmentation, *, block_shape=(128, 256, 256), **kwargs):
    """The stage with the ``skeletonize:`` defaults but ``block_shape``, serially, quietly."""
    kwargs = {"max_retries": 2, "progress": False} | kwargs
    return _skeletonize_volume(segmentation, settings=SkeletonizeConfig(block_shape=block_shape), **kwargs)


pytestmark = pytest.mark.filterwarnings("ignore:.*skeleton node.*outside the segmentation volume:UserWarning")


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    write_phantom(
        root / "volume.zarr",
        PhantomParams(  # an AIS stain: several AIS inside the volume, for the length metrics
            shape=(32, 128, 128), chunks=(16, 64, 64), seed=5, kind="ais",
            ais=AISParams(density_per_mm3=15000.0),
        ),
        progress=False,
    )
    gt_path = root / "volume.zarr" / "labels" / "ground_truth"
    gt = np.asarray(open_image(gt_path).array[...])
    # a "prediction": one object cut in two along x, two objects merged, one deleted
    labels = np.unique(gt)[1:]
    seg = gt.astype(np.uint64)
    cut = labels[2]
    xs = np.nonzero(gt == cut)[2]
    seg[(gt == cut) & (np.arange(gt.shape[2]) > np.median(xs))[None, None, :]] = 500
    seg[gt == labels[0]] = labels[1]
    seg[gt == labels[-1]] = 0
    seg_path = root / "run" / "segmentation.zarr"
    create_label_image(
        seg_path, shape=seg.shape, chunks=(16, 64, 64), voxel_size_um=VS, source=str(root / "volume.zarr")
    )
    open_image(seg_path, mode="r+").array[...] = seg
    return root, gt_path, seg_path, gt, seg


def test_skeletonize_writes_skeletons_and_a_table_matching_the_whole_volume(phantom, tmp_path):
    root, gt_path, _, gt, _ = phantom
    out = skeletonize_volume(gt_path, out=tmp_path / "run", block_shape=(16, 64, 64), progress=False)
    rows = read_lengths_csv(out.lengths_csv)
    whole = object_table(gt, voxel_size_um=VS)
    assert [(r.label, r.n_voxels, r.touches_border) for r in rows] == [
        (r.label, r.n_voxels, r.touches_border) for r in whole
    ]
    plan = BlockState(tmp_path / "run" / "state", "skeletonize").load_record("plan", OnePiecePlan, "plan")
    one_piece = set(plan.labels.tolist())
    assert one_piece, "no object crosses a seam: nothing checked"
    for b, w in zip(rows, whole, strict=True):
        if w.touches_border:
            continue
        if w.label in one_piece:  # crosses a seam, skeletonized in one piece: as in the one-block run
            assert (b.length_um, b.cable_length_um, b.n_endpoints) == pytest.approx(
                (w.length_um, w.cable_length_um, w.n_endpoints), abs=1e-4  # lengths.csv: 4 decimals
            )
        elif w.length_um >= 30:
            assert b.length_um == pytest.approx(w.length_um, rel=0.02)
    swc = read_swc_folder(out.swc_dir)
    pre = read_precomputed_skeletons(out.precomputed_dir)
    assert sorted(swc) == sorted(pre) == [r.label for r in rows if r.n_endpoints > 0]
    for label in swc:
        a = sorted(tuple(np.round(d["pos_um"], 3)) for _, d in swc[label].nodes(data=True))
        b = sorted(tuple(np.round(d["pos_um"], 3)) for _, d in pre[label].nodes(data=True))
        assert a == b and swc[label].number_of_edges() == pre[label].number_of_edges()
        assert nx.is_forest(swc[label])
    record = json.loads(out.params_json.read_text())
    assert record["voxel_size_um"] == list(VS) and record["block_shape"] == [16, 64, 64]


def _tree(directory):
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file()}


def test_objects_are_fused_by_shard_tasks_each_reading_only_its_labels(phantom, tmp_path, monkeypatch):
    """Issue 20: each shard of labels is fused and written by one task from the pieces the blocks cut by
    shard; two labels per shard gives the files of one shard for all, byte for byte, and resumes."""
    from flows.stages import skeletonize as stage

    _, gt_path, _, _, _ = phantom
    one = skeletonize_volume(gt_path, out=tmp_path / "one", block_shape=(16, 64, 64), progress=False)
    monkeypatch.setattr(stage, "LABELS_PER_SHARD", 2)
    many = skeletonize_volume(gt_path, out=tmp_path / "many", block_shape=(16, 64, 64), progress=False)
    state = BlockState(tmp_path / "many" / "state", "skeletonize")
    starts = state.load_record("shards", np.ndarray, "starts")
    labels = [r.label for r in read_lengths_csv(many.lengths_csv)]
    assert len(starts) == -(-len(labels) // 2) >= 4
    for directory in ("skeletons", "skeletons_precomputed"):
        assert _tree(tmp_path / "many" / directory) == _tree(tmp_path / "one" / directory)
    assert many.lengths_csv.read_text() == one.lengths_csv.read_text()
    # each shard's parts hold its labels only
    for shard in range(len(starts)):
        parts = BlockState(tmp_path / "many" / "state", f"skeleton_parts/{shard}")
        held = set()
        for path in parts.dir.glob("*.npz"):
            for name in ("pieces", "objects"):  # a block saves the kinds it has in the shard
                piece = parts.load_record(int(path.stem), BlockSkeletons, name, optional=True)
                held |= set(piece.vertex_labels.tolist()) if piece is not None else set()
        hi = starts[shard + 1] if shard + 1 < len(starts) else np.uint64(2**63)
        assert held and all(starts[shard] <= label < hi for label in held)
    # an interrupted fusion (half the shards undone, the files of one removed) resumes to the same files
    fuse = BlockState(tmp_path / "many" / "state", "skeleton_fuse")
    for shard in range(0, len(starts), 2):
        fuse.forget(shard)
    (tmp_path / "many" / "lengths.csv").unlink()
    (tmp_path / "many" / "skeletons" / f"{labels[0]}.swc").unlink(missing_ok=True)
    again = skeletonize_volume(gt_path, out=tmp_path / "many", block_shape=(16, 64, 64), progress=False,
                               replace_files=True)
    assert again.lengths_csv.read_text() == one.lengths_csv.read_text()
    assert _tree(tmp_path / "many" / "skeletons") == _tree(tmp_path / "one" / "skeletons")


def _remove_outputs(run):
    import shutil

    shutil.rmtree(run / "skeletons")
    shutil.rmtree(run / "skeletons_precomputed")
    (run / "lengths.csv").unlink()


def test_skeletonize_resumes_and_refuses_to_overwrite(phantom, tmp_path):
    _, gt_path, _, _, _ = phantom
    run = tmp_path / "run"
    first = skeletonize_volume(gt_path, out=run, block_shape=(16, 64, 64), progress=False)
    table = first.lengths_csv.read_text()
    with pytest.raises(OutputError, match="--overwrite"):
        skeletonize_volume(gt_path, out=run, block_shape=(16, 64, 64), progress=False)
    # outputs gone, block state kept (an interrupted run): other parameters are refused ...
    _remove_outputs(run)
    with pytest.raises(OutputError, match="other parameters"):
        skeletonize_volume(gt_path, out=run, block_shape=(32, 64, 64), progress=False)
    # ... the same ones resume from the saved blocks and give the same table
    again = skeletonize_volume(gt_path, out=run, block_shape=(16, 64, 64), progress=False)
    assert again.lengths_csv.read_text() == table
    redo = skeletonize_volume(gt_path, out=run, block_shape=(32, 64, 64), progress=False, overwrite=True)
    assert read_lengths_csv(redo.lengths_csv)[0].label == read_lengths_csv(first.lengths_csv)[0].label


def test_evaluate_finds_the_phantom_skeletons_and_sees_the_errors(phantom, tmp_path):
    root, gt_path, seg_path, gt, seg = phantom
    path = evaluate_run(seg_path, gt_path, out=tmp_path, min_label_nodes=10, dust_threshold_um3=DUST_UM3,
                        block_shape=EVAL_BLOCK, max_retries=0)
    metrics = json.loads(path.read_text())
    assert metrics["inputs"]["gt_swc"].endswith("volume_gt/skeletons")
    n_true = len(np.unique(gt)) - 1
    assert metrics["skeleton"]["n_skeletons"] == n_true
    assert metrics["skeleton"]["merged_pct"] > 0 and metrics["skeleton"]["omit_pct"] > 0
    assert metrics["skeleton"]["splits_per_neuron"] > 0
    assert metrics["length"]["n_true"] == n_true and metrics["length"]["recall"] < 1
    assert 0 < metrics["voxel"]["dice"] < 1
    perfect = evaluate_arrays(gt, gt, voxel_size_um=VS)
    assert perfect["voxel"]["dice"] == 1.0 and perfect["voxel"]["voi_total_bits"] == 0.0
    assert perfect["length"]["precision"] == perfect["length"]["recall"] == 1.0
    assert perfect["length"]["wasserstein_um"] == 0.0 and "skeleton" not in perfect


def test_report_of_a_run(phantom, tmp_path):
    root, gt_path, seg_path, gt, seg = phantom
    run = tmp_path / "run"
    skeletonize_volume(seg_path, out=run, block_shape=(32, 128, 128), progress=False)
    evaluate_run(seg_path, gt_path, out=run, min_label_nodes=10,
                 dust_threshold_um3=DUST_UM3, block_shape=EVAL_BLOCK, max_retries=0)
    written = report_run(run, raw=root / "volume.zarr", figures=False)
    page = written["html"].read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 2
    assert "Edge accuracy" in page and "segmentation.zarr" in page
    assert "Threshold sweep" not in page  # no sweep in this run
    assert written["pdf"].read_bytes().startswith(b"%PDF")

    # Issue 19: a threshold sweep in the run (as `segment --thresholds` writes it): the truth at 0.3, the
    # prediction at 0.7; without metrics the report lists the segmentations and their segments ...
    for t, labels in ((0.3, gt), (0.7, seg)):
        path = RunLayout(run).segmentation_at(t)
        create_label_image(path, shape=labels.shape, chunks=(16, 64, 64), voxel_size_um=VS)
        open_image(path, mode="r+").array[...] = labels
        write_provenance(path, {"threshold": float(np.float32(t)), "n_segments": len(np.unique(labels)) - 1})
    RunLayout(run).metrics_json.unlink()
    page = report_run(run, raw=root / "volume.zarr", figures=False)["html"].read_text(encoding="utf-8")
    assert "Threshold sweep" in page and "segmentation_t0.7.zarr" in page and "VOI split (bits)" not in page
    # ... and with ground truth each threshold's VOI, ERL, splits and merges, as the full evaluation has them
    metrics = json.loads(evaluate_run(seg_path, gt_path, out=run, min_label_nodes=10,
                                      dust_threshold_um3=DUST_UM3,
                                      block_shape=EVAL_BLOCK, max_retries=0).read_text())
    rows = {row["threshold"]: row for row in metrics["thresholds"]}
    assert sorted(rows) == [0.3, 0.7]  # as users write them, not float32's 0.30000001192092896
    truth, pred = rows[0.3], rows[0.7]
    assert truth["n_segments"] == len(np.unique(gt)) - 1 and pred["n_segments"] == len(np.unique(seg)) - 1
    assert truth["voi_split_bits"] == truth["voi_merge_bits"] == 0 and truth["splits_per_neuron"] == 0
    for key, section in (("voi_split_bits", "voxel"), ("adjusted_rand_index", "voxel"),
                         ("erl_um", "skeleton"), ("splits_per_neuron", "skeleton"),
                         ("merges_per_neuron", "skeleton")):
        assert pred[key] == pytest.approx(metrics[section][key]), key
    written = report_run(run, raw=root / "volume.zarr", figures=False)
    page = written["html"].read_text(encoding="utf-8")
    assert "Threshold sweep" in page and "VOI split (bits)" in page and "Merges / neuron" in page
    assert written["pdf"].read_bytes().startswith(b"%PDF")
    with pytest.raises(InputDataError, match="run `neurorecon skeletonize` first"):
        report_run(tmp_path, figures=False)


def test_errors_name_the_input(phantom, tmp_path):
    root, gt_path, seg_path, _, _ = phantom
    with pytest.raises(InputDataError, match="does not exist"):
        skeletonize_volume(tmp_path / "nothing.zarr", out=tmp_path / "run")
    with pytest.raises(InputDataError, match="labels/ground_truth"):
        skeletonize_volume(root / "volume.zarr", out=tmp_path / "run")  # the raw image, not labels
    small = tmp_path / "small.zarr"
    create_label_image(small, shape=(8, 64, 64), chunks=(8, 64, 64), voxel_size_um=VS)
    with pytest.raises(InputDataError, match="same \\(z, y, x\\) volume"):
        evaluate_run(small, gt_path, out=tmp_path, min_label_nodes=10,
                     dust_threshold_um3=DUST_UM3, block_shape=EVAL_BLOCK, max_retries=0)
    other = tmp_path / "other_vs.zarr"
    create_label_image(other, shape=(32, 128, 128), chunks=(16, 64, 64), voxel_size_um=(1.0, 0.5, 0.5))
    with pytest.raises(InputDataError, match="pass --voxel-size"):
        evaluate_run(other, gt_path, out=tmp_path, min_label_nodes=10,
                     dust_threshold_um3=DUST_UM3, block_shape=EVAL_BLOCK, max_retries=0)


def test_commands_run_and_fail_cleanly(phantom, tmp_path):
    root, gt_path, seg_path, _, _ = phantom
    run = tmp_path / "run"
    ok = run_cli(
        "skeletonize", str(seg_path), "--out", str(run), "--block-shape", "16,64,64", "--workers", "1"
    )
    assert ok.returncode == 0, ok.stderr
    assert "wrote" in ok.stdout and (run / "lengths.csv").is_file()
    ev = run_cli("evaluate", "-s", str(seg_path), "-g", str(gt_path), "-o", str(run))
    assert ev.returncode == 0, ev.stderr
    assert "ERL" in ev.stdout and math.isfinite(
        json.loads((run / "metrics.json").read_text())["voxel"]["dice"]
    )
    rep = run_cli("report", str(run))
    assert rep.returncode == 0, rep.stderr
    assert (run / "report.html").is_file() and (run / "report.pdf").is_file()
    for args, message in (
        (("skeletonize", str(tmp_path / "missing.zarr"), "--out", str(run)), "does not exist"),
        (
            ("skeletonize", str(root / "volume.zarr"), "--out", str(tmp_path / "r2"), "--workers", "0"),
            "expected an integer label image",
        ),
        (("skeletonize", str(seg_path), "--out", str(run), "--workers", "0"), "already exists"),
        (("report", str(tmp_path / "empty")), "does not exist"),
    ):
        out = run_cli(*args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert message in out.stderr and "Traceback" not in out.stderr
    bad = run_cli("skeletonize", str(seg_path), "--out", str(run), "--block-shape", "16,64")
    assert bad.returncode == 2 and "three integers" in bad.stderr


def test_the_report_projects_the_finest_pyramid_level_of_bounded_size(phantom, tmp_path, monkeypatch):
    """Issue 20: a whole brain's level 0 has ~10^8.5 pixels; the report projects the finest level of at
    most MAX_PROJECTION_PIXELS, tile by tile, and gives that level's projection exactly."""
    from flows.stages import report as report_stage
    from flows.stages.pyramid import pyramid_volume
    from pipeline.io.omezarr import open_levels
    from pipeline.report import z_projection

    root, _, _, _, seg = phantom
    path = tmp_path / "segmentation.zarr"
    create_label_image(path, shape=seg.shape, chunks=(16, 64, 64), voxel_size_um=VS, pyramid=True)
    open_image(path, mode="r+").array[...] = seg
    pyramid_volume(path, name="segmentation", state_dir=tmp_path / "state", block_shape=(16, 64, 64),
                   max_retries=0, client=None, progress=False)
    labels, raw = open_levels(open_image(path)), open_levels(open_image(root / "volume.zarr"))
    assert len(labels) > 1
    whole = report_stage._projection(open_image(path), open_image(root / "volume.zarr"))
    np.testing.assert_array_equal(whole.labels, z_projection(seg).labels if whole.raw is None else
                                  z_projection(seg, np.asarray(raw[0][...])).labels)
    small = labels[1].shape[-2] * labels[1].shape[-1]
    monkeypatch.setattr(report_stage, "MAX_PROJECTION_PIXELS", small)
    monkeypatch.setattr(report_stage, "PROJECTION_TILE_VOXELS", 1000)  # many tiles
    coarse = report_stage._projection(open_image(path), open_image(root / "volume.zarr"))
    raw1 = [a for a in raw if tuple(a.shape) == tuple(labels[1].shape)]
    want = z_projection(np.asarray(labels[1][...]), np.asarray(raw1[0][...]) if raw1 else None)
    assert coarse.labels.shape == labels[1].shape[-2:]
    np.testing.assert_array_equal(coarse.labels, want.labels)
    assert (coarse.raw is None) == (not raw1)
