"""The ``evaluate:`` section of a config: the ground truth a segmentation is scored against."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from pipeline.io.location import InputLocation, LocalPath
from pipeline.settings import StrictModel

__all__ = ["MIN_LABEL_NODES", "EvaluateConfig"]

#: Nodes a predicted label must cover on a ground-truth skeleton to count there (``evaluate.min_label_nodes``;
#: :mod:`pipeline.metrics.skeleton` says why 10).
MIN_LABEL_NODES = 10


class EvaluateConfig(StrictModel):
    """Settings of ``neurorecon evaluate`` (whose options override them) and of the ``run`` chain.

    Metrics are computed when ``gt_labels`` is set (``neurorecon run``) or given on the command line.
    What is scored follows the kind of volume, read from the phantom's ground truth (``params.json``):
    ``neurons`` (ERL, splits and merges per neuron, gaps bridged) or ``ais`` (length distributions,
    discontinuities per AIS, gaps bridged); ground truth without that metadata is scored as ``neurons``.
    The label images are read block by block (``block_shape``) on the run's Dask cluster; what needs an
    object whole (its length, its connected pieces) is read from the object's bounding box.
    """

    gt_labels: InputLocation | None = Field(
        None, description="ground-truth label image, e.g. X.zarr/labels/ground_truth, or its URL (s3://, "
                          "gs://, https://) (null: no metrics)")
    gt_swc: LocalPath | None = Field(
        None, description="ground-truth skeletons, a local folder of <label>.swc in µm "
                          "(null: the phantom's X_gt/skeletons beside a local ground truth, if present)")
    min_label_nodes: int = Field(
        MIN_LABEL_NODES, ge=1,
        description="skeleton nodes a predicted label must cover on a ground-truth skeleton to count there "
                    "(as a segment, a split or a merge); 1 is the supervoxel paper's rule")
    block_shape: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(
        (128, 256, 256), description="region read per block, voxels (clipped to the volume): both label "
                                     "images are read block by block, never whole")
