"""The reconstruct flow end to end under Prefect with the Dask task runner, and its tasks' plain logic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flows.reconstruct import reconstruct_flow, retry_on_io, run_reconstruct
from pipeline.config import DaskConfig, NeuroreconConfig, OutputConfig
from pipeline.errors import ConfigError, InputDataError
from pipeline.io.omezarr import open_image
from pipeline.io.phantom import write_phantom
from pipeline.metrics.config import EvaluateConfig
from pipeline.segment.config import SegmentConfig
from pipeline.skeleton.config import SkeletonizeConfig
from pipeline.synth import PhantomParams

pytestmark = pytest.mark.slow


class _State:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def result(self):
        raise self.exc


def test_tasks_retry_only_on_io_errors():
    assert retry_on_io(None, None, _State(OSError("stale NFS handle")))
    assert not retry_on_io(None, None, _State(InputDataError("bad input")))
    assert not retry_on_io(None, None, _State(ValueError("bug")))


def test_reconstruct_flow_writes_the_documented_run_layout(prefect_api, s3, tmp_path, monkeypatch, caplog):
    canary = "pnu_canary_secret_0123456789"  # a secret in the environment must reach no log and no output
    monkeypatch.setenv("PREFECT_API_KEY", canary)
    monkeypatch.setenv("POSTGRES_PASSWORD", canary)
    phantom = write_phantom(tmp_path / "volume.zarr",
                            PhantomParams(shape=(32, 128, 128), chunks=(32, 128, 128), seed=11),
                            progress=False)
    config = NeuroreconConfig(
        segment=SegmentConfig(raw=phantom.store, out=tmp_path / "run", block_shape=(32, 128, 128)),
        skeletonize=SkeletonizeConfig(block_shape=(32, 128, 128)),
        evaluate=EvaluateConfig(gt_labels=phantom.store / "labels" / "ground_truth",
                                gt_swc=phantom.skeleton_dir),
        dask=DaskConfig(n_workers=1, threads_per_worker=1, memory_limit="6GiB"),
        output=OutputConfig(root=tmp_path),
    )
    report = run_reconstruct(config)
    run = tmp_path / "run"
    assert report == run / "report.html" and report.is_file()
    for name in ("affinities.zarr", "fragments.zarr", "segmentation.zarr"):
        assert (run / name / "zarr.json").is_file(), name
    assert (run / "lengths.csv").is_file() and (run / "report.pdf").is_file()
    assert any((run / "skeletons").glob("*.swc"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics  # evaluated against the phantom's ground truth
    seg = open_image(run / "segmentation.zarr").array[...]
    assert seg.max() > 0 and np.count_nonzero(seg) > 1000
    # A second run resumes: every block is done, the segmentation is unchanged; a stale failure record goes.
    (run / "failed_blocks.json").write_text("{}")
    run_reconstruct(config)
    np.testing.assert_array_equal(open_image(run / "segmentation.zarr").array[...], seg)
    assert not (run / "failed_blocks.json").exists()
    # A rerun with a threshold sweep adds the sweep's segmentation and compares it; nothing else changes.
    affinities_mtime = (run / "affinities.zarr" / "zarr.json").stat().st_mtime_ns
    run_reconstruct(config, thresholds=(0.3,))
    np.testing.assert_array_equal(open_image(run / "segmentation.zarr").array[...], seg)
    assert open_image(run / "segmentation_t0.3.zarr").array[...].max() >= seg.max()  # less merged
    assert (run / "affinities.zarr" / "zarr.json").stat().st_mtime_ns == affinities_mtime
    swept = json.loads((run / "metrics.json").read_text())["thresholds"]
    assert 0.3 in [row["threshold"] for row in swept]
    assert "segmentation_t0.3.zarr" in (run / "report.html").read_text()
    # output.publish: the finished run's products go to the bucket, under the run directory's name
    s3.mkdir("flow")
    run_reconstruct(config.model_copy(update={"output": OutputConfig(root=tmp_path, publish="s3://flow/runs")}))
    s3.invalidate_cache()
    assert s3.cat_file("flow/runs/run/report.html") == (run / "report.html").read_bytes()
    assert json.loads(s3.cat_file("flow/runs/run/PUBLISHED.json"))["run"] == "run"
    np.testing.assert_array_equal(open_image("s3://flow/runs/run/segmentation_t0.3.zarr").array[...],
                                  open_image(run / "segmentation_t0.3.zarr").array[...])
    assert callable(reconstruct_flow.fn)
    assert canary not in caplog.text
    leaked = [p for p in run.rglob("*") if p.is_file() and canary.encode() in p.read_bytes()]
    assert not leaked, leaked


def test_a_bad_sweep_is_refused_before_any_work(prefect_api, tmp_path):
    config = NeuroreconConfig(
        segment=SegmentConfig(raw=tmp_path / "absent.zarr", out=tmp_path / "run", max_threshold=0.6),
        output=OutputConfig(root=tmp_path),
    )
    with pytest.raises(ConfigError, match=r"thresholds 0\.7 above segment\.max_threshold 0\.6"):
        reconstruct_flow(config, thresholds=[0.3, 0.7])
    with pytest.raises(ConfigError, match=r"thresholds must be one or more numbers in \[0, 1\].*'1\.5'"):
        reconstruct_flow(config, thresholds=[1.5])
    assert not (tmp_path / "run").exists()


def test_failed_blocks_are_listed_in_the_report_and_the_run_fails(prefect_api, tmp_path):
    """One non-finite voxel in the raw image: the predict blocks that read it fail after their retries; the
    flow raises BlockFailure (exit 3), writes failed_blocks.json and a report page listing the block ids,
    and never writes lengths or metrics."""
    from pipeline.errors import BlockFailure
    from pipeline.io.omezarr import write_image

    phantom = write_phantom(tmp_path / "p.zarr", PhantomParams(shape=(32, 64, 128), chunks=(32, 64, 64),
                                                               seed=5, n_neurons=1, n_ais=2), progress=False)
    raw = np.asarray(open_image(phantom.store).array[...]).astype(np.float32)
    raw[5, 10, 100] = np.inf  # in block 1 (x 64..128); block 0 reads it only if its context reaches x = 100
    write_image(tmp_path / "raw.zarr", raw, voxel_size_um=(1.5, 0.5, 0.5), chunks=(32, 64, 64))
    config = NeuroreconConfig(
        segment=SegmentConfig(raw=tmp_path / "raw.zarr", out=tmp_path / "run", block_shape=(32, 64, 64),
                              halo_vx=(4, 16, 16)),
        dask=DaskConfig(n_workers=1, threads_per_worker=1, memory_limit="4GiB", max_retries=1),
        output=OutputConfig(root=tmp_path),
    )
    with pytest.raises(BlockFailure) as info:
        run_reconstruct(config)
    run = tmp_path / "run"
    record = json.loads((run / "failed_blocks.json").read_text())
    assert record["stage"] == "predict" and 1 in record["block_ids"]
    assert sorted(info.value.errors) == record["block_ids"]
    page = (run / "report.html").read_text()
    assert "INCOMPLETE" in page and "infinite intensity" in page
    for block_id in record["block_ids"]:
        assert f">{block_id}</td>" in page
    assert not (run / "lengths.csv").exists() and not (run / "metrics.json").exists()
