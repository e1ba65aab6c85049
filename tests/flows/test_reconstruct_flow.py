"""The reconstruct flow end to end under Prefect with the Dask task runner, and its tasks' plain logic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flows.reconstruct import reconstruct_flow, retry_on_io, run_reconstruct
from pipeline.config import DaskConfig
from pipeline.errors import InputDataError
from pipeline.io.omezarr import open_image
from pipeline.io.phantom import write_phantom
from pipeline.segment.config import SegmentConfig
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


def test_reconstruct_flow_writes_the_documented_run_layout(prefect_api, tmp_path):
    phantom = write_phantom(tmp_path / "volume.zarr",
                            PhantomParams(shape=(32, 128, 128), chunks=(32, 128, 128), seed=11), progress=False)
    segment = SegmentConfig(raw=phantom.store, out=tmp_path / "run", block_shape=(32, 128, 128),
                            gt_labels=phantom.store / "labels" / "ground_truth", gt_swc=phantom.skeleton_dir)
    report = run_reconstruct(segment, DaskConfig(n_workers=1, threads_per_worker=1, memory_limit="6GiB"))
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
    # A second run resumes: every block is done, the segmentation is unchanged.
    run_reconstruct(segment, DaskConfig(n_workers=1, threads_per_worker=1, memory_limit="6GiB"))
    np.testing.assert_array_equal(open_image(run / "segmentation.zarr").array[...], seg)
    assert callable(reconstruct_flow.fn)
