"""Recovery and portability (issue 17): a half-finished run directory moved elsewhere resumes where it
stopped, bit-identically; a rerun with other parameters is refused and ``--overwrite`` starts it over,
removing only what neurorecon wrote; the batch takes a config without per-volume placeholders."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from flows.cli import main
from flows.interrupt import stop_handling_signals
from pipeline.io.blockstate import BlockState
from pipeline.io.checkpoint import save_checkpoint
from pipeline.io.omezarr import open_image
from pipeline.io.phantom import write_phantom
from pipeline.model import UNet
from pipeline.synth import PhantomParams

BLOCK_STAGES = ("predict", "blocks", "faces")  # relabel is redone whenever the union table is recomputed


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A phantom (4 blocks of 16x32x32) and a small affinity model, in a folder of their own."""
    root = tmp_path_factory.mktemp("recover_inputs")
    write_phantom(root / "phantom.zarr", PhantomParams(shape=(16, 64, 64), chunks=(16, 32, 32), seed=3,
                                                      n_neurons=1, n_ais=2), progress=False)
    torch.manual_seed(0)
    arch = {"in_channels": 1, "out_channels": 3, "ndim": 3, "depth": 1, "base_features": 4,
            "downsample_factors": [[1, 2, 2]], "padding": "same", "norm": "group"}
    model = UNet(**{**arch, "downsample_factors": [(1, 2, 2)]})
    save_checkpoint(root / "model.pt", {
        "architecture": arch, "model": model.state_dict(), "step": 0,
        "metadata": {"target": "affinities", "normalization": "percentile", "percentiles": [1.0, 99.9],
                     "voxel_size_um": [1.5, 0.5, 0.5], "patch_shape": [16, 32, 32]},
    })
    return root


def _run_cli(argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """``neurorecon ARGV`` in this process: its exit status and stderr."""
    import sys

    monkeypatch.setattr(sys, "argv", ["neurorecon", *argv])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:  # the command line keeps its signal handlers for the life of its process: not pytest's
        stop_handling_signals()
    return code, capsys.readouterr().err


def _config(where: Path, raw: Path, out: Path, model: Path, **segment) -> Path:
    body = {"raw": str(raw), "out": str(out), "model": str(model), "block_shape": [16, 32, 32],
            "halo_vx": [2, 8, 8], **segment}
    path = where / "seg.yaml"
    path.write_text(json.dumps({"segment": body, "dask": {"n_workers": 1, "memory_limit": "1GiB"},
                                "output": {"root": str(where)}}))
    return path


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _markers(state: Path) -> dict[str, int]:
    return {f"{stage}/{p.name}": p.stat().st_mtime_ns
            for stage in BLOCK_STAGES for p in (state / stage).glob("*.json") if p.stem.isdigit()}


def test_a_moved_half_finished_run_resumes_without_redoing_finished_blocks(inputs, tmp_path, monkeypatch,
                                                                            capsys):
    first, second = tmp_path / "cluster_scratch", tmp_path / "home"
    first.mkdir()
    second.mkdir()
    shutil.copytree(inputs / "phantom.zarr", first / "phantom.zarr")
    config = _config(first, first / "phantom.zarr", first / "run", inputs / "model.pt")
    code, err = _run_cli(["segment", str(config)], monkeypatch, capsys)
    assert code == 0, err
    reference = {name: np.asarray(open_image(first / "run" / f"{name}.zarr").array)
                 for name in ("affinities", "fragments", "segmentation")}

    # half-finished: half of the blocks of each stage forgotten (as if it had been stopped there)
    state = first / "run" / "state"
    forgotten = {}
    for stage in BLOCK_STAGES:
        st = BlockState(state, stage)
        forgotten[stage] = sorted(st.done_ids())[::2]
        for bid in forgotten[stage]:
            st.forget(bid)
    kept = _markers(state)
    assert len(kept) == 6  # 2 of 4 blocks in each of 3 stages

    # the run directory and its input move to another parent (another machine, another mount point)
    shutil.move(first / "run", second / "run")
    shutil.move(first / "phantom.zarr", second / "phantom.zarr")
    config = _config(second, second / "phantom.zarr", second / "run", inputs / "model.pt")
    code, err = _run_cli(["segment", str(config)], monkeypatch, capsys)
    assert code == 0, err

    state = second / "run" / "state"
    assert _markers(state) | kept == _markers(state), "finished blocks were redone after the move"
    for stage in BLOCK_STAGES:
        assert BlockState(state, stage).done_ids() == {0, 1, 2, 3}
    for name, expected in reference.items():
        np.testing.assert_array_equal(np.asarray(open_image(second / "run" / f"{name}.zarr").array), expected)
    recorded = json.loads((state / "predict" / "stage.json").read_text())
    assert recorded["raw"]["metadata_sha256"] and len(recorded["checkpoint"]["sha256"]) == 64
    blocks = json.loads((state / "blocks" / "stage.json").read_text())
    assert blocks["affinities"] == {"in_run": "affinities.zarr"}
    assert str(tmp_path) not in (state / "predict" / "stage.json").read_text()


def test_a_changed_parameter_is_refused_and_overwrite_starts_over_removing_only_its_outputs(
        inputs, tmp_path, monkeypatch, capsys):
    config = _config(tmp_path, inputs / "phantom.zarr", tmp_path / "run", inputs / "model.pt")
    code, err = _run_cli(["segment", str(config)], monkeypatch, capsys)
    assert code == 0, err
    run = tmp_path / "run"
    (run / "notes.txt").write_text("mine")  # not neurorecon's: --overwrite leaves it
    (run / "mine.zarr").mkdir()
    (run / "lengths.csv").write_text("label,length_um\n")  # a later stage's: it derives from the old one
    raw_before = _hashes(inputs / "phantom.zarr")

    # (a new threshold is no parameter of the watershed: it redoes only the union and relabel, issue 19)
    changed = _config(tmp_path, inputs / "phantom.zarr", run, inputs / "model.pt", background_threshold=0.3)
    code, err = _run_cli(["segment", str(changed)], monkeypatch, capsys)
    assert code == 2
    assert "started with other parameters (differences: background_threshold)" in err and "--overwrite" in err

    code, err = _run_cli(["segment", str(changed), "--overwrite"], monkeypatch, capsys)
    assert code == 0, err
    assert (run / "notes.txt").read_text() == "mine" and (run / "mine.zarr").is_dir()
    assert not (run / "lengths.csv").exists()
    assert json.loads((run / "state" / "blocks" / "stage.json").read_text())["background_threshold"] == 0.3
    assert _hashes(inputs / "phantom.zarr") == raw_before  # the input image is never touched
    # a rerun of the new configuration resumes again
    code, err = _run_cli(["segment", str(changed)], monkeypatch, capsys)
    assert code == 0, err


def test_overwrite_removes_only_layout_paths_and_only_under_the_lock(tmp_path):
    from pipeline.errors import OutputError
    from pipeline.io.layout import RunLayout, remove_outputs
    from pipeline.io.lock import output_lock

    run = RunLayout(tmp_path / "run")
    run.state.mkdir(parents=True)
    with pytest.raises(OutputError, match="not locked by this process"):
        remove_outputs(run, [run.state])
    assert run.state.is_dir()
    with output_lock(run.root):
        with pytest.raises(ValueError, match="not an output of the run layout"):
            remove_outputs(run, [run.root / "notes.txt"])
        (run.root / "segmentation.zarr" / "labels").mkdir(parents=True)
        with pytest.raises(OutputError, match="an output that --overwrite would remove"):
            remove_outputs(run, run.run_outputs, inputs=[run.segmentation / "labels"])
        assert run.segmentation.is_dir() and run.state.is_dir()
        assert remove_outputs(run, run.run_outputs) == [run.segmentation, run.state]


def test_the_batch_config_needs_no_volume_placeholders(tmp_path):
    from pipeline.config import BatchConfig
    from pipeline.errors import ConfigError
    from pipeline.io.config import load_config

    path = tmp_path / "batch.yaml"
    path.write_text("segment:\n  block_shape: [16, 64, 64]\n  threshold: 0.4\n")
    cfg = load_config(path, model=BatchConfig, env={})
    assert cfg.segment is not None and cfg.segment.threshold == 0.4
    with pytest.raises(ConfigError, match="segment.raw"):  # one volume's commands still need them
        load_config(path, env={})
    old = tmp_path / "old.yaml"  # placeholders of an older batch config are ignored
    old.write_text("segment:\n  raw: unused\n  out: /unused\n  block_shape: [16, 64, 64]\n  threshold: 0.4\n")
    assert load_config(old, model=BatchConfig, env={}).segment == cfg.segment


def test_the_batch_runs_without_placeholders_and_its_output_root_is_the_root(prefect_api, tmp_path,
                                                                          monkeypatch):
    from flows.batch import batch_flow
    from pipeline.errors import InputDataError, OutputError
    from pipeline.io.omezarr import write_image

    # a process worker: no NEURORECON__OUTPUT__ROOT, its working directory elsewhere
    monkeypatch.delenv("NEURORECON__OUTPUT__ROOT", raising=False)
    monkeypatch.chdir(Path(__file__).parent)
    incoming, runs = tmp_path / "incoming", tmp_path / "runs"
    write_image(incoming / "coarse.zarr", np.zeros((8, 16, 16), np.uint16), voxel_size_um=(6.0, 2.0, 2.0))
    config = tmp_path / "batch.yaml"
    config.write_text("segment:\n  block_shape: [8, 16, 16]\n  halo_vx: [2, 4, 4]\ndask:\n  n_workers: 1\n")
    # the volume is reached (and refused for its voxel size): neither the config nor the root stopped it
    with pytest.raises(InputDataError, match="coarse.zarr: segment.raw .* differs from the model's training"):
        batch_flow(incoming, runs, config)
    # a configured root still confines output_root
    monkeypatch.setenv("NEURORECON__OUTPUT__ROOT", str(tmp_path / "elsewhere"))
    with pytest.raises(OutputError, match="output_root .* outside the output root"):
        batch_flow(incoming, runs, config)


@pytest.mark.slow
def test_a_moved_half_finished_reconstruction_resumes(inputs, tmp_path, monkeypatch, capsys):
    """`neurorecon run` (Prefect, Dask): the skeletons' blocks too resume after the move."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    config = _config(first, inputs / "phantom.zarr", first / "run", inputs / "model.pt")
    code, err = _run_cli(["run", str(config)], monkeypatch, capsys)
    assert code == 0, err
    lengths = (first / "run" / "lengths.csv").read_text()
    segmentation = np.asarray(open_image(first / "run" / "segmentation.zarr").array)
    state = first / "run" / "state"
    for stage in ("predict", "skeletonize"):
        st = BlockState(state, stage)
        for bid in sorted(st.done_ids())[::2]:
            st.forget(bid)
    kept = {p.relative_to(state): p.stat().st_mtime_ns for p in state.glob("*/*.json") if p.stem.isdigit()}
    shutil.move(first / "run", second / "run")
    config = _config(second, inputs / "phantom.zarr", second / "run", inputs / "model.pt")
    code, err = _run_cli(["run", str(config)], monkeypatch, capsys)
    assert code == 0, err
    state = second / "run" / "state"
    for rel, mtime in kept.items():
        if rel.parts[0] in ("predict", "blocks", "faces", "skeleton_labels", "skeletonize"):
            assert (state / rel).stat().st_mtime_ns == mtime, f"{rel} was redone after the move"
    assert (second / "run" / "lengths.csv").read_text() == lengths
    np.testing.assert_array_equal(np.asarray(open_image(second / "run" / "segmentation.zarr").array),
                                  segmentation)
    record = json.loads((second / "run" / "skeletonize.json").read_text())
    assert record["segmentation"] == "segmentation.zarr"
