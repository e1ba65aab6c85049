"""`neurorecon segment CONFIG` end to end: a phantom, a small affinity model, a LocalCluster, resume."""

from __future__ import annotations

import re

import numpy as np
import torch

from pipeline.io.checkpoint import save_checkpoint
from pipeline.io.omezarr import open_image
from pipeline.io.phantom import write_phantom
from pipeline.model import UNet
from pipeline.synth import PhantomParams
from tests.flows.test_cli import run_cli


def test_segment_command_writes_affinities_and_segmentation_and_resumes(tmp_path):
    write_phantom(tmp_path / "phantom.zarr", PhantomParams(shape=(16, 64, 64), chunks=(8, 32, 32), seed=3,
                                                          n_neurons=1, n_ais=2), progress=False)
    torch.manual_seed(0)
    arch = {"in_channels": 1, "out_channels": 3, "ndim": 3, "depth": 1, "base_features": 4,
            "downsample_factors": [[1, 2, 2]], "padding": "same", "norm": "group"}
    model = UNet(**{**arch, "downsample_factors": [(1, 2, 2)]})
    save_checkpoint(tmp_path / "model.pt", {
        "architecture": arch, "model": model.state_dict(), "step": 0,
        "metadata": {"target": "affinities", "normalization": "percentile", "percentiles": [1.0, 99.9],
                     "voxel_size_um": [1.5, 0.5, 0.5], "patch_shape": [8, 32, 32]},
    })
    cfg = tmp_path / "seg.yaml"
    cfg.write_text(
        f"segment:\n  raw: {tmp_path / 'phantom.zarr'}\n  out: {tmp_path / 'run'}\n"
        f"  model: {tmp_path / 'model.pt'}\n"
        "  block_shape: [8, 32, 32]\n  halo_vx: [2, 8, 8]\n"
        "dask:\n  n_workers: 2\n  memory_limit: 1GiB\n"
    )
    first = run_cli("segment", str(cfg))
    assert first.returncode == 0, first.stderr
    assert "segmentation:" in first.stdout
    seg = open_image(tmp_path / "run" / "segmentation.zarr")
    aff = open_image(tmp_path / "run" / "affinities.zarr")
    assert seg.spatial_shape == aff.spatial_shape == (16, 64, 64) and seg.dtype == np.uint64
    before = seg.array[...]
    # Everything is done: a rerun skips every block and leaves the result unchanged.
    again = run_cli("segment", str(cfg))
    assert again.returncode == 0, again.stderr
    np.testing.assert_array_equal(open_image(tmp_path / "run" / "segmentation.zarr").array[...], before)

    # Issue 19: a sweep, with a new segment.threshold too, redoes only union + relabel: no predict, watershed
    # or face block runs again, and nothing they wrote changes.
    run = tmp_path / "run"
    state = run / "state"
    written = [state / "predict", state / "blocks", state / "faces", run / "affinities.zarr",
               run / "fragments.zarr"]
    untouched = _mtimes(written)
    sweep = run_cli("segment", str(cfg), "--thresholds", "0.3,0.5",
                    env={"NEURORECON__SEGMENT__THRESHOLD": "0.7"})
    assert sweep.returncode == 0, sweep.stderr
    for stage in ("predict", "blocks", "faces"):
        assert f"{stage}: 8 of 8 blocks already done" in sweep.stderr, (stage, sweep.stderr)
    assert _mtimes(written) == untouched
    swept = {t: open_image(run / f"segmentation_t{t}.zarr").array[...] for t in ("0.3", "0.5")}
    np.testing.assert_array_equal(swept["0.5"], before)  # the sweep at 0.5 is the first run at 0.5
    at_07 = open_image(run / "segmentation.zarr").array[...]
    assert swept["0.3"].max() > before.max() > at_07.max() >= 1
    assert re.search(r"t=0\.3: .*segmentation_t0\.3\.zarr  \(\d+ segments at threshold 0\.3\)", sweep.stdout)
    assert "at threshold 0.7)" in sweep.stdout.splitlines()[2]
    bad = run_cli("segment", str(cfg), "--thresholds", "0.3,1.5")
    assert bad.returncode == 2 and "--thresholds must be one or more numbers in [0, 1]" in bad.stderr
    above = run_cli("segment", str(cfg), "--thresholds", "0.3,0.7",
                    env={"NEURORECON__SEGMENT__MAX_THRESHOLD": "0.6"})
    assert above.returncode == 2 and "--thresholds 0.7 above segment.max_threshold 0.6" in above.stderr


def _mtimes(folders):
    return {p: p.stat().st_mtime_ns for d in folders for p in sorted(d.rglob("*")) if p.is_file()}


def test_segment_command_without_section_is_a_clear_error(tmp_path):
    cfg = tmp_path / "empty.yaml"
    cfg.write_text("synth:\n  seed: 1\n")
    out = run_cli("segment", str(cfg))
    assert out.returncode == 2 and "has no segment: section" in out.stderr and "Traceback" not in out.stderr
