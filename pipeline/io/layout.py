"""The one place that knows the name of each file of a run directory.

Layout of a run directory (``segment.out`` of ``neurorecon run``, ``--out`` of the other commands)::

    affinities.zarr  fragments.zarr  segmentation.zarr   OME-Zarr images             (segment)
    skeletons/<label>.swc                                skeletons, µm               (skeletonize)
    skeletons_precomputed/                               neuroglancer skeletons, nm  (skeletonize)
    lengths.csv                                          per-object lengths          (skeletonize)
    skeletonize.json                                     its inputs and parameters   (skeletonize)
    metrics.json                                         metrics vs ground truth     (evaluate)
    report.html  report.pdf                              the report                  (report)
    state/<stage>/                                       per-block progress (resume) (every stage)
    failed_blocks.json                                   only while blocks fail      (run)
    .neurorecon.reserve                                  space kept for a failure record, while it runs (run)
    COMPLETE                                             written last by the batch flow
    .neurorecon.lock                                     held while a command writes here
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunLayout"]


@dataclass(frozen=True)
class RunLayout:
    """The paths of a run directory ``root`` (see the module docstring)."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def affinities(self) -> Path:
        return self.root / "affinities.zarr"

    @property
    def fragments(self) -> Path:
        return self.root / "fragments.zarr"

    @property
    def segmentation(self) -> Path:
        return self.root / "segmentation.zarr"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def skeletons(self) -> Path:
        return self.root / "skeletons"

    @property
    def skeletons_precomputed(self) -> Path:
        return self.root / "skeletons_precomputed"

    @property
    def lengths_csv(self) -> Path:
        return self.root / "lengths.csv"

    @property
    def skeletonize_json(self) -> Path:
        return self.root / "skeletonize.json"

    @property
    def metrics_json(self) -> Path:
        return self.root / "metrics.json"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def report_pdf(self) -> Path:
        return self.root / "report.pdf"

    @property
    def failed_blocks(self) -> Path:
        return self.root / "failed_blocks.json"

    @property
    def reserve(self) -> Path:
        return self.root / ".neurorecon.reserve"

    @property
    def complete(self) -> Path:
        return self.root / "COMPLETE"
