"""The run directory's names for a threshold sweep: one per float32 threshold, found again, removed by
``--overwrite``."""

from __future__ import annotations

import numpy as np

from pipeline.io.layout import RunLayout, relabel_stage, remove_outputs, threshold_key, union_stage
from pipeline.io.lock import output_lock
from pipeline.io.omezarr import create_label_image, read_provenance, write_provenance


def test_thresholds_are_named_by_their_float32_value():
    assert [threshold_key(t) for t in (0.3, 0.1 + 0.2, 0.5, 1, 0, 0.123456789)] == [
        "0.3", "0.3", "0.5", "1.0", "0.0", "0.12345679"]
    assert threshold_key(0.3) != threshold_key(0.3000001)  # another float32: another segmentation
    run = RunLayout("/runs/a")
    assert run.segmentation_at(0.3).name == "segmentation_t0.3.zarr"
    assert union_stage(0.7) == "union_t0.7"
    assert (relabel_stage(0.7), relabel_stage(None)) == ("relabel_t0.7", "relabel")


def test_swept_segmentations_are_found_and_removed_with_the_run(tmp_path):
    run = RunLayout(tmp_path / "run")
    for t in (0.7, 0.3):
        create_label_image(run.segmentation_at(t), shape=(2, 4, 4), chunks=(2, 4, 4), voxel_size_um=(1, 1, 1))
    (run.root / "segmentation_tx.zarr").mkdir()  # not a threshold: not ours
    (run.root / "segmentation_t0.30.zarr").mkdir()  # not the name of 0.3
    assert run.swept_segmentations() == {float(np.float32(0.3)): run.segmentation_at(0.3),
                                         float(np.float32(0.7)): run.segmentation_at(0.7)}
    write_provenance(run.segmentation_at(0.3), {"threshold": 0.3, "n_segments": 4})
    assert read_provenance(run.segmentation_at(0.3)) == {"threshold": 0.3, "n_segments": 4}
    write_provenance(run.segmentation_at(0.3), None)
    assert read_provenance(run.segmentation_at(0.3)) == {}
    with output_lock(run.root):
        removed = remove_outputs(run, run.run_outputs)
    assert sorted(p.name for p in removed) == ["segmentation_t0.3.zarr", "segmentation_t0.7.zarr"]
    assert sorted(p.name for p in run.root.iterdir() if not p.name.startswith(".")) == [
        "segmentation_t0.30.zarr", "segmentation_tx.zarr"]
