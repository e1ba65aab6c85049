"""The one place that knows the name of each file of a run directory.

Layout of a run directory (``segment.out`` of ``neurorecon run``, ``--out`` of the other commands)::

    affinities.zarr  fragments.zarr  segmentation.zarr   OME-Zarr images             (segment)
    segmentation_t<threshold>.zarr                       one per swept threshold     (segment --thresholds)
    skeletons/<label>.swc                                skeletons, µm               (skeletonize)
    skeletons_precomputed/                               neuroglancer skeletons, nm  (skeletonize)
    skeletons_precomputed/segment_properties/            their names and lengths     (skeletonize)
    lengths.csv                                          per-object lengths          (skeletonize)
    joins.csv                                            pieces joined across gaps   (skeletonize.join)
    skeletonize.json                                     its inputs and parameters   (skeletonize)
    metrics.json                                         metrics vs ground truth     (evaluate)
    report.html  report.pdf                              the report                  (report)
    state/<stage>/                                       per-block progress (resume) (every stage;
                                                         pyramid/<image>/<level>/ for segment's pyramids)
    state/union_t<threshold>/  state/relabel[_t<threshold>]/  the segmentation per threshold (segment)
    failed_blocks.json                                   only while blocks fail      (run)
    .neurorecon.reserve                                  space kept for a failure record, while it runs (run)
    COMPLETE                                             written last by the batch flow
    .neurorecon.lock                                     held while a command writes here

A threshold is written as the shortest decimal of its float32 value (:func:`threshold_key`: ``0.3``,
``1.0``), the precision at which waterz compares it: two thresholds with one key give one segmentation.

Paths that a run records for itself (stage parameters in ``state/<stage>/stage.json``, the segmentation
named in ``skeletonize.json``) are relative to the run directory when they lie inside it
(:meth:`RunLayout.relative`), so a run directory can be moved or copied (to a cluster's scratch) and
resumed there.

``--overwrite`` of a command removes what that command wrote here before (:func:`remove_outputs`),
holding the output lock: only the paths named above, never an input image or any other file.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import OutputError
from pipeline.io.location import URL, is_url

__all__ = ["REPORT_FIGURES", "THRESHOLD_STAGES", "RunLayout", "relabel_stage", "remove_outputs",
           "threshold_key", "threshold_value", "union_stage"]

#: The figures a report writes beside it with ``report.figures`` (``report_<name>.png``).
REPORT_FIGURES = ("lengths", "projection")


#: Glob patterns of the block-state stages (``state/<stage>``) that depend on the agglomeration threshold:
#: the union and relabel of each segmentation (:func:`union_stage`, :func:`relabel_stage`).
THRESHOLD_STAGES = ("union_t*", "relabel", "relabel_t*")
_SWEEP_PREFIX = "segmentation_t"


def threshold_key(threshold: float) -> str:
    """How a threshold is written in file and state names: the shortest decimal of its float32 value.

    Examples
    --------
    >>> threshold_key(0.3), threshold_key(0.1 + 0.2), threshold_key(1), threshold_key(0.123456789)
    ('0.3', '0.3', '1.0', '0.12345679')
    """
    return np.format_float_positional(np.float32(threshold), trim="0")


def threshold_value(threshold: float) -> float:
    """A threshold as users write it and records show it: the number :func:`threshold_key` writes
    (``0.3``, not float32's ``0.30000001192092896``).

    Examples
    --------
    >>> threshold_value(np.float32(0.3)), threshold_value(0.1 + 0.2)
    (0.3, 0.3)
    """
    return float(threshold_key(threshold))


def union_stage(threshold: float) -> str:
    """The block-state stage holding the fragment -> segment table at ``threshold`` (``union_t0.3``)."""
    return f"union_t{threshold_key(threshold)}"


def relabel_stage(threshold: float | None) -> str:
    """The block-state stage of the relabel of ``segmentation_t<threshold>.zarr``; of ``segmentation.zarr``
    (at the run's threshold, whichever it is) with None."""
    return "relabel" if threshold is None else f"relabel_t{threshold_key(threshold)}"


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

    def segmentation_at(self, threshold: float) -> Path:
        """The segmentation of a sweep at ``threshold`` (``segmentation_t0.3.zarr``)."""
        return self.root / f"{_SWEEP_PREFIX}{threshold_key(threshold)}.zarr"

    def swept_segmentations(self) -> dict[float, Path]:
        """The segmentations of sweeps present here, by threshold (the float32 value), in increasing order."""
        found = {}
        for path in self.root.glob(f"{_SWEEP_PREFIX}*.zarr"):
            try:
                t = float(np.float32(path.name[len(_SWEEP_PREFIX):-len(".zarr")]))
            except ValueError:
                continue
            if path.is_dir() and path == self.segmentation_at(t):
                found[t] = path
        return dict(sorted(found.items()))

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
    def joins_csv(self) -> Path:
        return self.root / "joins.csv"

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

    @property
    def report_figures(self) -> tuple[Path, ...]:
        return tuple(self.root / f"report_{name}.png" for name in REPORT_FIGURES)

    # -- what each command writes (what its --overwrite removes) ---------------------------------------
    @property
    def report_outputs(self) -> tuple[Path, ...]:
        """What ``neurorecon report`` writes."""
        return (self.report_html, self.report_pdf, *self.report_figures)

    @property
    def skeletonize_state(self) -> tuple[Path, ...]:
        """The block state of ``neurorecon skeletonize`` (``state/<stage>``)."""
        return (self.state / "skeleton_labels", self.state / "skeletonize", self.state / "skeleton_join",
                self.state / "skeleton_shards")

    @property
    def skeletonize_outputs(self) -> tuple[Path, ...]:
        """What ``neurorecon skeletonize`` writes, its block state included."""
        return (self.skeletons, self.skeletons_precomputed, self.lengths_csv, self.joins_csv,
                self.skeletonize_json, *self.skeletonize_state)

    @property
    def run_outputs(self) -> tuple[Path, ...]:
        """Everything a run writes here (``segment``, ``run``, the batch flow): every later stage derives
        from the segmentation, so restarting the segmentation restarts them all."""
        return (self.affinities, self.fragments, self.segmentation, *self.swept_segmentations().values(),
                self.state, *self.skeletonize_outputs[:5],
                self.metrics_json, *self.report_outputs, self.failed_blocks, self.complete)

    def relative(self, path: str | Path | URL) -> str | None:
        """``path`` relative to the run directory (POSIX), if it lies inside it; else None (a URL, too).

        Symbolic links and ``..`` are resolved first.

        Examples
        --------
        >>> RunLayout("/data/runs/a").relative("/data/runs/a/segmentation.zarr")
        'segmentation.zarr'
        >>> RunLayout("/data/runs/a").relative("/data/raw.zarr") is None
        True
        >>> RunLayout("/data/runs/a").relative("s3://bucket/raw.zarr") is None
        True
        """
        if is_url(path):
            return None
        resolved = Path(path).expanduser().resolve()
        root = self.root.expanduser().resolve()
        if resolved != root and root not in resolved.parents:
            return None
        return resolved.relative_to(root).as_posix()

    def identify(self, path: str | Path | URL, fingerprint: Callable[[], Any]) -> Any:
        """How the run records ``path`` in its stage parameters: relative to the run directory if it lies
        inside (:meth:`relative`), else by what it holds, ``fingerprint()`` (an image's
        :func:`~pipeline.io.omezarr.image_fingerprint`, a checkpoint's sha256): neither changes when the
        run directory, or the input, moves. An input at a URL is always identified by its fingerprint (a
        copy of it on a local disk is the same input)."""
        inside = self.relative(path)
        return {"in_run": inside} if inside is not None else fingerprint()


def remove_outputs(
    run: RunLayout, paths: Iterable[Path], *, inputs: Iterable[str | Path | URL] = ()
) -> list[Path]:
    """Remove the outputs ``paths`` of the run directory ``run`` (a command's ``--overwrite``); return those
    that existed.

    Call only while holding the run's output lock (:func:`pipeline.io.lock.output_lock`). Only paths of
    :class:`RunLayout` directly inside ``run.root`` are accepted (anything else is left alone), and nothing
    is removed if an input lies at or inside one of them.

    Raises
    ------
    OutputError
        If the lock is not held, or an input (the raw image, a segmentation) lies in an output to remove.
    ValueError
        If a path is not an output of the run layout.
    """
    from pipeline.io.lock import holds_lock

    if not holds_lock(run.root):
        raise OutputError(f"{run.root} is not locked by this process; its outputs are removed only under "
                          "its lock")
    known = set(run.run_outputs) | set(run.skeletonize_outputs)
    targets = [Path(p) for p in paths]
    for p in targets:
        if p not in known:
            raise ValueError(f"{p} is not an output of the run layout of {run.root}; it is never removed")
    resolved = [p.resolve() for p in targets]
    for given in inputs:
        if is_url(given):  # a remote input lies in no local output
            continue
        source = Path(given).expanduser().resolve()
        for p, r in zip(targets, resolved, strict=True):
            if source == r or r in source.parents:
                raise OutputError(
                    f"input {given} lies in {p}, an output that --overwrite would remove; inputs are only "
                    "ever read: move the input out of the run directory, or write to another output directory"
                )
    removed = []
    for p in targets:
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p)
        else:
            continue
        removed.append(p)
    return removed
