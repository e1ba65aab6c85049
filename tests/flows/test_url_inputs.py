"""Inputs at URLs end to end: a raw image and its ground truth on a local S3 server (moto) are segmented and
scored exactly as their local copies; a missing bucket and a URL output are one clear error each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from flows.preflight import check_run
from flows.stages.evaluate import evaluate_run
from flows.stages.segment import segment_raw
from pipeline.config import NeuroreconConfig, OutputConfig
from pipeline.errors import ConfigError, OutputError
from pipeline.io.blockstate import BlockState
from pipeline.io.checkpoint import save_checkpoint
from pipeline.io.layout import RunLayout
from pipeline.io.location import URL
from pipeline.io.omezarr import open_image
from pipeline.io.phantom import write_phantom
from pipeline.metrics.config import EvaluateConfig
from pipeline.model import UNet
from pipeline.segment.config import SegmentConfig
from pipeline.skeleton.config import DEFAULT_DUST_THRESHOLD_UM3 as DUST_UM3
from pipeline.synth import PhantomParams
from tests.conftest import upload
from tests.flows.test_cli import run_cli

EVAL_BLOCK = EvaluateConfig().block_shape  # the config's default


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A small phantom (raw + labels/ground_truth) and a small affinity model, on the local disk."""
    root = tmp_path_factory.mktemp("url_inputs")
    write_phantom(root / "phantom.zarr", PhantomParams(shape=(16, 64, 64), chunks=(8, 32, 32), seed=3,
                                                       n_neurons=1, n_ais=2), progress=False)
    torch.manual_seed(0)
    arch = {"in_channels": 1, "out_channels": 3, "ndim": 3, "depth": 1, "base_features": 4,
            "downsample_factors": [[1, 2, 2]], "padding": "same", "norm": "group"}
    model = UNet(**{**arch, "downsample_factors": [(1, 2, 2)]})
    save_checkpoint(root / "model.pt", {
        "architecture": arch, "model": model.state_dict(), "step": 0,
        "metadata": {"target": "affinities", "normalization": "percentile", "percentiles": [1.0, 99.9],
                     "voxel_size_um": [1.5, 0.5, 0.5], "patch_shape": [8, 32, 32]},
    })
    return root


def test_a_raw_image_on_s3_is_segmented_and_scored_exactly_as_its_local_copy(s3, inputs, tmp_path):
    url = upload(s3, inputs / "phantom.zarr", "brains", "2026/phantom.zarr")
    results = {}
    for name, raw in [("local", inputs / "phantom.zarr"), ("s3", url)]:
        config = NeuroreconConfig(
            segment=SegmentConfig(raw=raw, out=tmp_path / name, model=inputs / "model.pt",
                                  block_shape=(16, 32, 64), halo_vx=(2, 8, 8)),  # two blocks
            evaluate=EvaluateConfig(gt_labels=f"{raw}/labels/ground_truth"),
            output=OutputConfig(root=tmp_path),
        )
        done = segment_raw(config.segment, inputs=check_run(config), max_retries=0, progress=False)
        metrics = evaluate_run(done.segmentation, config.evaluate.gt_labels, out=tmp_path / name,
                               min_label_nodes=10,
                               dust_threshold_um3=DUST_UM3, block_shape=EVAL_BLOCK, max_retries=0)
        results[name] = {
            "arrays": [open_image(p).array[...]
                       for p in (done.affinities, done.fragments, done.segmentation)],
            "raw": BlockState(RunLayout(tmp_path / name).state, "predict").recorded_params()["raw"],
            "metrics": json.loads(metrics.read_text()),
        }
    assert isinstance(config.segment.raw, URL)
    for local, remote in zip(results["local"]["arrays"], results["s3"]["arrays"], strict=True):
        np.testing.assert_array_equal(remote, local)
    assert results["s3"]["arrays"][2].max() >= 2  # a segmentation with objects, not an empty one
    # the run records the remote raw image by its content: the same record as its local copy's
    assert results["s3"]["raw"] == results["local"]["raw"] and "metadata_sha256" in results["s3"]["raw"]
    source = zarr.open_group(str(tmp_path / "s3" / "segmentation.zarr"), mode="r").attrs["ome"]
    assert source["image-label"]["source"]["image"] == url
    # the ground truth at a URL scores the same voxels the same way
    local, remote = results["local"]["metrics"], results["s3"]["metrics"]
    assert remote["inputs"]["gt_labels"] == f"{url}/labels/ground_truth"
    assert remote["voxel"] == local["voxel"] and remote["voxel"]["dice"] > 0


def test_a_missing_bucket_is_one_clear_error_on_the_command_line(s3, tmp_path):
    config = tmp_path / "seg.yaml"
    config.write_text(f"segment:\n  raw: s3://no-such-bucket/phantom.zarr\n  out: {tmp_path / 'run'}\n")
    result = run_cli("segment", str(config))
    assert result.returncode == 2, result.stderr
    assert "segment.raw s3://no-such-bucket/phantom.zarr cannot be read" in result.stderr
    assert "bucket does not exist" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "affinities.zarr").exists()


def test_a_url_output_is_refused_naming_the_setting(tmp_path):
    from flows.cli import _confined
    from pipeline.io.config import load_config

    config = tmp_path / "seg.yaml"
    config.write_text("segment:\n  raw: s3://brains/phantom.zarr\n  out: s3://brains/run\n")
    with pytest.raises(ConfigError, match="segment.out: Value error, s3://brains/run is a URL: a run directory "
                                          "must be local or mounted .*output.publish"):
        load_config(config)
    # every command's --out: typer's Path has collapsed the URL's // by then
    with pytest.raises(OutputError, match="--out s3://brains/run is a URL: a run directory must be local"):
        _confined(Path("s3://brains/run"), load_config(env={}), "--out")


def test_a_run_names_a_remote_segmentation_by_its_url(tmp_path):
    from flows.stages.skeletonize import recorded_segmentation

    assert recorded_segmentation(tmp_path, {"segmentation": "s3://b/seg.zarr"}) == URL("s3://b/seg.zarr")
    inside = recorded_segmentation(tmp_path, {"segmentation": "segmentation.zarr"})
    assert inside == tmp_path / "segmentation.zarr"
