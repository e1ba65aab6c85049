"""The ``evaluate:`` section of a config: the ground truth a segmentation is scored against."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pipeline.settings import StrictModel

__all__ = ["EvaluateConfig"]


class EvaluateConfig(StrictModel):
    """Settings of ``neurorecon evaluate`` (whose options override them) and of the ``run`` chain.

    Metrics are computed when ``gt_labels`` is set (``neurorecon run``) or given on the command line.
    """

    gt_labels: Path | None = Field(
        None, description="ground-truth label image, e.g. X.zarr/labels/ground_truth (null: no metrics)")
    gt_swc: Path | None = Field(
        None, description="ground-truth skeletons, a folder of <label>.swc in µm "
                          "(null: the phantom's X_gt/skeletons beside the ground truth, if present)")
