"""`neurorecon segment CONFIG` end to end: a phantom, a small affinity model, a LocalCluster, resume."""

from __future__ import annotations

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
        f"segment:\n  raw: {tmp_path / 'phantom.zarr'}\n  out: {tmp_path / 'run'}\n  model: {tmp_path / 'model.pt'}\n"
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


def test_segment_command_without_section_is_a_clear_error(tmp_path):
    cfg = tmp_path / "empty.yaml"
    cfg.write_text("synth:\n  seed: 1\n")
    out = run_cli("segment", str(cfg))
    assert out.returncode == 2 and "has no segment: section" in out.stderr and "Traceback" not in out.stderr
