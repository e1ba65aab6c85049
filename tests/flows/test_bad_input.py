"""The bad-input catalogue (issue 8): each kind of bad input gets one clear message, a non-zero exit, and
leaves every existing output byte for byte as it was.

Each case runs the real ``neurorecon`` entry point (``flows.cli.main``) in this process on real files:
an OME-Zarr phantom, a finished run directory (``existing_run/``) and copies broken in one way. Before and
after, every file under the case's folder is hashed; a case passes only if the exit status is non-zero,
stderr carries one ``error:`` message matching what names the problem and its fix, and no file that
existed before was changed or removed (new files — a lock, a fresh run's state — may appear). A case marked
``before_cluster`` must be refused by the preflight: starting Prefect or Dask fails it (issue 18).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from flows.cli import main
from flows.interrupt import stop_handling_signals
from pipeline.io.checkpoint import save_checkpoint
from pipeline.io.omezarr import create_label_image, open_image, write_image, write_labels
from pipeline.io.phantom import write_phantom
from pipeline.io.skeletons import read_swc_folder
from pipeline.io.swc import write_swc
from pipeline.model import DEMO_MODEL, UNet
from pipeline.synth import PhantomParams

SHAPE = (16, 64, 64)
CHUNKS = (16, 32, 32)
VS = (1.5, 0.5, 0.5)


@dataclass
class Case:
    argv: list[str]
    match: str  # regex searched in stderr
    env: dict[str, str] = field(default_factory=dict)
    code: int = 2
    before_cluster: bool = False  # refused by the preflight, before Prefect or Dask starts


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A phantom, a raw-only copy and a finished run directory, built once and copied per case."""
    root = tmp_path_factory.mktemp("bad_input_base")
    phantom = write_phantom(
        root / "phantom.zarr",
        PhantomParams(shape=SHAPE, chunks=CHUNKS, seed=2, n_neurons=1, n_ais=2),
        progress=False,
    )
    run = root / "existing_run"
    seg = create_label_image(run / "segmentation.zarr", shape=SHAPE, chunks=CHUNKS, voxel_size_um=VS)
    seg[...] = np.asarray(open_image(phantom.store / "labels" / "ground_truth").array)
    (run / "lengths.csv").write_text("label,length_um\n1,10.0\n")
    (run / "report.html").write_text("<html>finished report</html>")
    return root


@pytest.fixture
def case_dir(base, tmp_path) -> Path:
    work = tmp_path / "case"
    shutil.copytree(base, work)
    return work


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _run_cli(argv: list[str], env: dict[str, str], monkeypatch, capsys) -> tuple[int, str]:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(sys, "argv", ["neurorecon", *argv])
    capsys.readouterr()
    for handler in [h for h in logging.root.handlers if type(h) is logging.StreamHandler]:
        logging.root.removeHandler(handler)  # of an earlier case, on its captured (closed) stderr
    try:
        with pytest.raises(SystemExit) as info:
            main()
    finally:  # the command line keeps its signal handlers for the life of its process: not pytest's
        stop_handling_signals()
    return int(info.value.code or 0), capsys.readouterr().err


def _segment_config(work: Path, name: str = "seg.yaml", **keys) -> Path:
    """A config with a segment: section (``gt_labels`` goes to evaluate:, ``max_retries`` to dask:)."""
    keys = {k: (str(v) if isinstance(v, Path) else v) for k, v in keys.items()}
    evaluate = {k: keys.pop(k) for k in ("gt_labels", "gt_swc") if k in keys}
    dask = {"n_workers": 1, **({"max_retries": keys.pop("max_retries")} if "max_retries" in keys else {})}
    body = {"raw": str(work / "phantom.zarr"), "out": str(work / "existing_run"), "block_shape": [16, 32, 32],
            "halo_vx": [2, 8, 8], **keys}
    path = work / name
    path.write_text(json.dumps({"segment": body, "evaluate": evaluate, "dask": dask}))  # JSON is YAML
    return path


def _image(work: Path, name: str, data: np.ndarray, vs=VS) -> Path:
    write_image(work / name, data, voxel_size_um=vs, chunks=CHUNKS)
    return work / name


def _raw(work: Path) -> np.ndarray:
    return np.asarray(open_image(work / "phantom.zarr").array)


# -- the catalogue: name -> builder(work) -> Case ------------------------------------------------------------


def raw_wrong_ndim(work):
    raw = _image(work, "two_channel.zarr", np.stack([_raw(work)] * 2))
    return Case(["segment", str(_segment_config(work, raw=raw))],
                r"segment\.raw .* axes \('c', 'z', 'y', 'x'\).*split channels")


def raw_wrong_dtype(work):
    raw = _image(work, "bool.zarr", _raw(work) > 100)
    return Case(["segment", str(_segment_config(work, raw=raw))],
                r"segment\.raw .* dtype bool; expected .*integers or floats")


def raw_nan(work):
    data = _raw(work).astype(np.float32)
    data[:, :40] = np.nan
    raw = _image(work, "nan.zarr", data)
    cfg = _segment_config(work, raw=raw, out=work / "nan_run")
    return Case(["segment", str(cfg)], r"NaN or infinite intensities.*replace them")


def raw_inf_in_one_block(work):
    """One non-finite voxel that the intensity sample may miss: the block that holds it fails, by id."""
    data = _raw(work).astype(np.float32)
    data[3, 40, 50] = np.inf
    raw = _image(work, "inf.zarr", data)
    cfg = _segment_config(work, raw=raw, out=work / "inf_run", max_retries=0)
    return Case(["segment", str(cfg)], r"(NaN or infinite intensit|block ids \[\d).*", code=-1)


def empty_volume(work):
    raw = work / "empty.zarr"
    write_image(raw, np.zeros((1, 8, 8), np.uint16), voxel_size_um=VS)
    meta = raw / "0" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["shape"] = [0, 8, 8]
    meta.write_text(json.dumps(doc))
    return Case(["segment", str(_segment_config(work, raw=raw))], r"(empty|shape).*")


def all_zero_labels_training(work):
    store = _image(work, "unlabelled.zarr", _raw(work))
    write_labels(store, "ground_truth", np.zeros(SHAPE, np.uint32))
    cfg = work / "train.yaml"
    cfg.write_text(json.dumps({"train": {
        "model": {"ndim": 3, "depth": 2, "base_features": 4, "downsample_factors": [[1, 2, 2], [1, 2, 2]]},
        "data": {"volumes": [{"path": str(store), "labels": "ground_truth"}], "patch_shape": [8, 32, 32],
                 "batch_size": 1, "num_workers": 0},
        "schedule": {"pretrain_steps": 2, "finetune_steps": 0}}}))
    return Case(["train", str(cfg), "--out", str(work / "existing_run")],
                r"no (labelled|foreground|non-zero).*label")


def all_zero_ground_truth(work):
    store = work / "phantom.zarr"
    write_labels(store, "empty_truth", np.zeros(SHAPE, np.uint32))
    return Case(["evaluate", "-s", str(work / "existing_run" / "segmentation.zarr"), "-g",
                 str(store / "labels" / "empty_truth"), "--out", str(work / "existing_run")],
                r"empty_truth.*no (objects|labelled)")


def missing_level0_array(work):
    shutil.rmtree(work / "phantom.zarr" / "0")
    return Case(["segment", str(_segment_config(work))], r"missing its level-0 array '0'")


def missing_label_image(work):
    cfg = _segment_config(work, gt_labels=work / "phantom.zarr" / "labels" / "truth")
    return Case(["run", str(cfg)], r"evaluate\.gt_labels .*truth.*(does not exist|label images)")


def raw_label_shape_mismatch(work):
    other = _image(work, "small.zarr", _raw(work)[:, :32])
    write_labels(other, "ground_truth", np.ones((16, 32, 64), np.uint32))
    cfg = _segment_config(work, gt_labels=other / "labels" / "ground_truth")
    return Case(["run", str(cfg)],
                r"evaluate\.gt_labels .* shape \(16, 32, 64\) but segment\.raw has \(16, 64, 64\)")


def zero_voxel_size(work):
    meta = work / "phantom.zarr" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] = [
        0, 0.5, 0.5
    ]
    meta.write_text(json.dumps(doc))
    return Case(["segment", str(_segment_config(work))],
                r"voxel size .*phantom\.zarr.*(positive|> 0|greater)")


def negative_voxel_size_config(work):
    cfg = work / "synth.yaml"
    cfg.write_text("synth:\n  voxel_size_um: [-1.5, 0.5, 0.5]\n")
    return Case(["synth", "--config", str(cfg), "--out", str(work / "phantom.zarr"), "--overwrite"],
                r"synth\.voxel_size_um\.0: .*greater than 0")


def unknown_config_section(work):
    cfg = work / "bad.yaml"
    cfg.write_text("segmentation:\n  threshold: 0.3\n")
    return Case(["segment", str(cfg)], r"unknown key 'segmentation'; did you mean 'segment'\?")


def misspelt_config_key(work):
    cfg = _segment_config(work, treshold=0.3)
    return Case(["segment", str(cfg)], r"unknown key 'segment\.treshold'; did you mean 'threshold'\?")


def bad_env_override(work):
    return Case(["segment", str(_segment_config(work))], r"segment\.threshold: .*(number|float).*'abc'",
                env={"NEURORECON__SEGMENT__THRESHOLD": "abc"})


def threshold_out_of_range(work):
    return Case(["segment", str(_segment_config(work, threshold=1.5))],
                r"segment\.threshold: .*less than or equal to 1")


def config_file_missing(work):
    return Case(["segment", str(work / "nope.yaml")], r"config file .*nope\.yaml does not exist")


def config_not_yaml(work):
    cfg = work / "broken.yaml"
    cfg.write_text("segment:\n  raw: [\n")
    return Case(["segment", str(cfg)], r"not valid YAML at line")


def raw_missing(work):
    return Case(["segment", str(_segment_config(work, raw=work / "absent.zarr"))],
                r"no OME-Zarr image at .*absent\.zarr")


def not_ome_zarr(work):
    zarr.create_array(str(work / "plain.zarr"), shape=SHAPE, chunks=CHUNKS, dtype="uint16")
    return Case(["segment", str(_segment_config(work, raw=work / "plain.zarr"))],
                r"plain\.zarr is a plain Zarr array, not an OME-Zarr image")


def corrupt_chunk(work):
    store = work / "phantom_copy.zarr"
    shutil.copytree(work / "phantom.zarr", store)
    chunk = next(p for p in sorted((store / "0").rglob("*")) if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(b"\x00garbage" * 7)
    cfg = _segment_config(work, raw=store, out=work / "corrupt_run", max_retries=0)
    return Case(["segment", str(cfg)],
                r"cannot read .*phantom_copy\.zarr.*chunk indices.*corrupt or unreadable", code=-1)


def block_smaller_than_halo(work):
    cfg = _segment_config(work, block_shape=[16, 32, 32], halo_vx=[2, 40, 8])
    return Case(["segment", str(cfg)],
                r"segment\.block_shape \(16, 32, 32\) is smaller than segment\.halo_vx")


def block_not_multiple_of_chunks(work):
    cfg = _segment_config(work, block_shape=[16, 48, 32])
    return Case(["segment", str(cfg)],
                r"segment\.block_shape \(16, 48, 32\) is not a multiple of the raw chunks")


def checkpoint_wrong_architecture(work):
    data = torch.load(DEMO_MODEL, map_location="cpu", weights_only=False)
    data["architecture"]["base_features"] = 8
    torch.save(data, work / "wrong.pt")
    return Case(["segment", str(_segment_config(work, model=work / "wrong.pt"))],
                r"wrong\.pt.*(architecture|do not fit)")


def checkpoint_truncated(work):
    (work / "truncated.pt").write_bytes(DEMO_MODEL.read_bytes()[:5000])
    return Case(["segment", str(_segment_config(work, model=work / "truncated.pt"))], r"truncated\.pt")


def corrupt_swc(work):
    swc = work / "swc"
    swc.mkdir()
    (swc / "1.swc").write_text("1 0 0.0 0.0 0.0 1.0 -1\n2 0 1.0 zero 0.0 1.0 1\n")
    return Case(["evaluate", "-s", str(work / "existing_run" / "segmentation.zarr"), "-g",
                 str(work / "phantom.zarr" / "labels" / "ground_truth"), "--gt-swc", str(swc),
                 "--out", str(work / "existing_run")], r"1\.swc:2: non-numeric field")


def float_ground_truth(work):
    store = work / "float_gt.zarr"
    write_image(store, _raw(work).astype(np.float32), voxel_size_um=VS, chunks=CHUNKS)
    cfg = _segment_config(work, gt_labels=store)
    return Case(["run", str(cfg)], r"float_gt\.zarr.*(integer|dtype)")


def output_outside_root(work):
    return Case(["segment", str(_segment_config(work))], r"segment\.out .* outside the output root",
                env={"NEURORECON__OUTPUT__ROOT": str(work / "runs")})


def output_inside_input(work):
    return Case(["segment", str(_segment_config(work, out=work / "phantom.zarr" / "run"))],
                r"segment\.out .*phantom\.zarr/run lies inside the input image .*phantom\.zarr")


def output_is_a_file(work):
    (work / "a_file").write_text("not a directory")
    return Case(["segment", str(_segment_config(work, out=work / "a_file"))],
                r"segment\.out .*a_file exists and is not a directory")


def synth_zero_shape(work):
    return Case(["synth", "--out", str(work / "phantom.zarr"), "--shape", "0,64,64", "--overwrite"],
                r"shape.*greater than 0")


# -- issue 18: refused early, by the preflight of run / segment (or by evaluate, which starts no cluster) --


def _truth_at(work: Path, vs) -> Path:
    """The phantom's ground truth in a store of voxel size ``vs``."""
    store = _image(work, "other_grid.zarr", _raw(work), vs=vs)
    truth = np.asarray(open_image(work / "phantom.zarr" / "labels" / "ground_truth").array)
    write_labels(store, "ground_truth", truth)
    return store / "labels" / "ground_truth"


def gt_other_voxel_size(work):
    cfg = _segment_config(work, gt_labels=_truth_at(work, (1.0, 0.5, 0.5)))
    return Case(["run", str(cfg)],
                r"evaluate\.gt_labels .*other_grid\.zarr/labels/ground_truth has voxel size "
                r"\(1\.0, 0\.5, 0\.5\) µm but segment\.raw .*phantom\.zarr has \(1\.5, 0\.5, 0\.5\) µm"
                r".*resample",
                before_cluster=True)


def gt_other_voxel_size_evaluate(work):
    return Case(["evaluate", "-s", str(work / "existing_run" / "segmentation.zarr"), "-g",
                 str(_truth_at(work, (1.0, 0.5, 0.5))), "--out", str(work / "existing_run")],
                r"ground-truth labels .*other_grid\.zarr/labels/ground_truth has voxel size "
                r"\(1\.0, 0\.5, 0\.5\) µm but segmentation .*segmentation\.zarr has \(1\.5, 0\.5, 0\.5\) "
                r"µm.*resample")


def _swc_in_nm(work: Path) -> Path:
    """The phantom's ground-truth skeletons written in nm (coordinates x 1000), as a folder."""
    folder = work / "swc_nm"
    for label, graph in read_swc_folder(work / "phantom_gt" / "skeletons").items():
        for _, node in graph.nodes(data=True):
            node["pos_um"] = tuple(1000 * v for v in node["pos_um"])
        write_swc(folder / f"{label}.swc", graph)
    return folder


_NM_SWC = (r"swc_nm: \d+ of \d+ nodes lie outside the volume; their coordinates span z .* µm but the volume "
           r"spans z 0\.\.24, y 0\.\.32, x 0\.\.32 µm .*SWC coordinates must be in µm; these look like nm")


def gt_swc_in_nm_evaluate(work):
    return Case(["evaluate", "-s", str(work / "existing_run" / "segmentation.zarr"), "-g",
                 str(work / "phantom.zarr" / "labels" / "ground_truth"), "--gt-swc", str(_swc_in_nm(work)),
                 "--out", str(work / "existing_run")], r"ground-truth skeletons .*" + _NM_SWC)


def gt_swc_in_nm(work):
    cfg = _segment_config(work, gt_labels=work / "phantom.zarr" / "labels" / "ground_truth",
                          gt_swc=_swc_in_nm(work))
    return Case(["run", str(cfg)], r"evaluate\.gt_swc .*" + _NM_SWC, before_cluster=True)


def _checkpoint(work: Path, name: str, **arch) -> Path:
    """A small untrained affinity checkpoint (as tests/flows/stages/test_predict.py builds one)."""
    arch = {"in_channels": 1, "out_channels": 3, "ndim": 3, "depth": 1, "base_features": 4,
            "downsample_factors": [[1, 2, 2]], "padding": "same", "norm": "group", **arch}
    model = UNet(**{**arch, "downsample_factors": [tuple(f) for f in arch["downsample_factors"]]})
    save_checkpoint(work / name, {
        "architecture": arch, "model": model.state_dict(), "step": 0,
        "metadata": {"target": "affinities", "normalization": "dtype", "voxel_size_um": list(VS),
                     "downscale_xy": 1},
    })
    return work / name


def model_two_input_channels(work):
    cfg = _segment_config(work, model=_checkpoint(work, "two_channels.pt", in_channels=2))
    return Case(["segment", str(cfg)],
                r"model .*two_channels\.pt expects 2-channel 3-D \(z, y, x\) input .*segment\.raw "
                r".*phantom\.zarr is a single-channel 3-D \(z, y, x\) image", before_cluster=True)


def model_2d(work):
    cfg = _segment_config(work, model=_checkpoint(work, "flat.pt", ndim=2, downsample_factors=[[2, 2]]))
    return Case(["run", str(cfg)],
                r"model .*flat\.pt expects 1-channel 2-D \(y, x\) input .*segment\.raw .*phantom\.zarr is a "
                r"single-channel 3-D \(z, y, x\) image", before_cluster=True)


def raw_unitless_nm_scale(work):
    meta = work / "phantom.zarr" / "zarr.json"
    doc = json.loads(meta.read_text())
    ms = doc["attributes"]["ome"]["multiscales"][0]
    for axis in ms["axes"]:
        axis.pop("unit", None)
    ms["datasets"][0]["coordinateTransformations"][0]["scale"] = [1500, 500, 500]
    meta.write_text(json.dumps(doc))
    return Case(["run", str(_segment_config(work))],
                r"phantom\.zarr: axes z, y, x have no unit and the scale is \(1500\.0, 500\.0, 500\.0\).*"
                r"probably in nanometres.*\"unit\": \"nanometer\"", before_cluster=True)


def memory_limit_not_a_size(work):
    return Case(["segment", str(_segment_config(work))],
                r"dask\.memory_limit.*must be a size such as '4GiB'.*'lots'",
                env={"NEURORECON__DASK__MEMORY_LIMIT": "lots"}, before_cluster=True)


def dask_address_unreachable(work):  # Dask's own timeout is 30 s, then a traceback
    return Case(["segment", str(_segment_config(work))],
                r"dask\.address 'tcp://127\.0\.0\.1:9': no Dask scheduler answered within 5 s.*"
                r"dask\.address: null", env={"NEURORECON__DASK__ADDRESS": "tcp://127.0.0.1:9"},
                before_cluster=True)


def skeletonize_record_truncated(work):
    run = work / "existing_run"
    (run / "lengths.csv").write_text("label,length_um,cable_length_um,n_voxels,touches_border,n_endpoints\n"
                                     "1,10.0,10.0,100,False,2\n")
    (run / "skeletonize.json").write_text('{"segmentation": "/runs/a/segm')
    return Case(["report", str(run)],
                r"existing_run/skeletonize\.json is damaged \(JSONDecodeError.*"
                r"rerun `neurorecon skeletonize`")


CASES: dict[str, Callable[[Path], Case]] = {f.__name__: f for f in (
    raw_wrong_ndim, raw_wrong_dtype, raw_nan, raw_inf_in_one_block, empty_volume, all_zero_labels_training,
    all_zero_ground_truth, missing_level0_array, missing_label_image, raw_label_shape_mismatch,
    zero_voxel_size, negative_voxel_size_config, unknown_config_section, misspelt_config_key,
    bad_env_override, threshold_out_of_range, config_file_missing, config_not_yaml, raw_missing, not_ome_zarr,
    corrupt_chunk, block_smaller_than_halo, block_not_multiple_of_chunks, checkpoint_wrong_architecture,
    checkpoint_truncated, corrupt_swc, float_ground_truth, output_outside_root, output_inside_input,
    output_is_a_file, synth_zero_shape, gt_other_voxel_size, gt_other_voxel_size_evaluate, gt_swc_in_nm,
    gt_swc_in_nm_evaluate, model_two_input_channels, model_2d, raw_unitless_nm_scale, memory_limit_not_a_size,
    dask_address_unreachable, skeletonize_record_truncated,
)}
# they start a Dask cluster and run blocks (an all-zero ground truth is found by reading it, block by block)
SLOW_CASES = {"raw_inf_in_one_block", "corrupt_chunk", "all_zero_ground_truth"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_CASES else n for n in CASES]
)
def test_bad_input_is_refused_clearly_and_changes_nothing(name, case_dir, monkeypatch, capsys):
    case = CASES[name](case_dir)
    if case.before_cluster:
        _refuse_to_start_a_cluster(monkeypatch)
    before = _snapshot(case_dir)
    code, err = _run_cli(case.argv, case.env, monkeypatch, capsys)
    if case.code == -1:
        assert code in (2, 3), err
    else:
        assert code == case.code, err
    assert len(re.findall(r"(?:^|[\r\n])error: ", err)) == 1, err  # one message (after any progress bar)
    assert "Traceback" not in err
    assert re.search(case.match, err, re.S), f"message does not match {case.match!r}:\n{err}"
    after = _snapshot(case_dir)
    changed = sorted(k for k, v in before.items() if after.get(k) != v)
    assert not changed, f"existing files changed or removed: {changed}"


def _refuse_to_start_a_cluster(monkeypatch) -> None:
    """Make starting the Prefect server, the flow's Dask task runner or a stage's Dask client fail a test."""
    import flows.reconstruct
    import flows.stages.runner

    def started(*args, **kwargs):
        raise AssertionError("a Prefect server or Dask cluster started before the input was refused")

    monkeypatch.setattr(flows.reconstruct, "shared_prefect_api", started)
    monkeypatch.setattr(flows.reconstruct, "dask_task_runner", started)
    monkeypatch.setattr(flows.stages.runner, "dask_client", started)


def test_catalogue_has_at_least_20_kinds():
    assert len(CASES) >= 20


# -- cases that need another process -------------------------------------------------------------------------


def _lock_holder(out: Path) -> subprocess.Popen:
    """Another process holding the output lock of ``out`` (it prints ``locked`` once it holds it)."""
    return subprocess.Popen(
        [sys.executable, "-c",
         "import time\nfrom pipeline.io.lock import output_lock\n"
         f"with output_lock({str(out)!r}):\n"
         "    print('locked', flush=True)\n    time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )


def test_second_run_on_the_same_output_is_refused(case_dir, monkeypatch, capsys):
    """A run holding the output lock (another process) makes a second run fail at once, naming the holder."""
    holder = _lock_holder(case_dir / "existing_run")
    try:
        assert holder.stdout.readline().strip() == "locked"
        cfg = _segment_config(case_dir)
        before = _snapshot(case_dir)
        code, err = _run_cli(["segment", str(cfg)], {}, monkeypatch, capsys)
        assert code == 2
        assert re.search(rf"in use by another neurorecon run \(pid {holder.pid} on ", err), err
        assert _snapshot(case_dir) == before
        # every writing command holds the lock: a phantom written into the run's folder is refused too
        argv = ["synth", "--out", str(case_dir / "existing_run" / "segmentation.zarr"), "--overwrite",
                "--shape", "32,128,128"]
        code, err = _run_cli(argv, {}, monkeypatch, capsys)
        assert code == 2 and re.search(rf"in use by another neurorecon run \(pid {holder.pid} on ", err), err
        assert _snapshot(case_dir) == before
    finally:
        holder.kill()
        holder.wait()
    # The holder died (as if by kill -9): the lock is free again, nothing stale is left to clean up.
    from pipeline.io.lock import output_lock

    with output_lock(case_dir / "existing_run"):
        pass


def test_the_lock_is_taken_before_the_model_is_read(case_dir, monkeypatch, capsys):
    """With the output held by another process, a run whose model is broken is refused for the lock: the
    lock came first (it used to come after loading the model, 10-26 s)."""
    holder = _lock_holder(case_dir / "existing_run")
    try:
        assert holder.stdout.readline().strip() == "locked"
        (case_dir / "broken.pt").write_bytes(b"not a checkpoint")
        cfg = _segment_config(case_dir, model=case_dir / "broken.pt")
        before = _snapshot(case_dir)
        for command in ("segment", "run"):
            env = {"NEURORECON__OUTPUT__ROOT": str(case_dir)}
            code, err = _run_cli([command, str(cfg)], env, monkeypatch, capsys)
            assert code == 2, err
            assert re.search(rf"in use by another neurorecon run \(pid {holder.pid} on ", err), err
        assert _snapshot(case_dir) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_prefect_home_that_is_a_file_is_refused_before_the_server_starts(case_dir):
    """The temporary Prefect server used to be waited for 180 s, then a traceback. In a process of its
    own: in this one a test's Prefect API may be configured, and then no temporary server starts."""
    (case_dir / "not_a_dir").write_text("")
    cfg = _segment_config(case_dir, out=case_dir / "new_run")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "NEURORECON__"))}
    env.update(PREFECT_HOME=str(case_dir / "not_a_dir"), NEURORECON__OUTPUT__ROOT=str(case_dir))
    before = _snapshot(case_dir)
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(cfg)], capture_output=True,
                            text=True, env=env, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 2, result.stderr[-3000:]
    assert time.monotonic() - start < 60
    assert re.search(r"^error: PREFECT_HOME .*not_a_dir exists and is not a directory.*set PREFECT_HOME to a "
                     r"writable directory", result.stderr, re.M | re.S), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    after = _snapshot(case_dir)
    assert [k for k, v in before.items() if after.get(k) != v] == []


def test_read_only_output_location_is_refused(tmp_path):
    """The output directory's parent is not writable by the user running neurorecon."""
    work = Path(tempfile.mkdtemp(prefix="neurorecon_ro_"))
    try:
        os.chmod(work, 0o755)
        raw = work / "raw.zarr"
        write_image(raw, np.zeros(SHAPE, np.uint16), voxel_size_um=VS, chunks=CHUNKS)
        locked = work / "locked"
        (locked / "done").mkdir(parents=True)
        (locked / "done" / "report.html").write_text("finished")
        cfg = _segment_config(work, raw=raw, out=locked / "new_run")
        os.chmod(locked, 0o555)
        for p in [work, *work.rglob("*")]:
            if p != locked:
                os.chmod(p, 0o755 if p.is_dir() else 0o644)
        before = _snapshot(work)
        env = {**os.environ, "NEURORECON__OUTPUT__ROOT": str(work)}
        cmd = [sys.executable, "-m", "flows.cli", "segment", str(cfg)]
        if os.geteuid() == 0:  # root ignores permissions: run as nobody, for whom they apply
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
            env["HOME"] = str(work)
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300,
                                cwd=Path(__file__).resolve().parents[2])
        assert result.returncode == 2, result.stderr
        assert re.search(
            r"segment\.out .*new_run is not writable .*read-only for this user", result.stderr
        ), result.stderr
        assert _snapshot(work) == before
        assert not (locked / "new_run").exists()
    finally:
        os.chmod(locked, 0o755)
        shutil.rmtree(work, ignore_errors=True)

