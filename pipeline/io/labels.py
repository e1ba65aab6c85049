"""Label images named by a path, as the commands take them, and the image a label group belongs to.

A label image is either a standalone OME-Zarr label image (``RUN/segmentation.zarr``) or a label group
inside an image store (``volume.zarr/labels/NAME``, e.g. a phantom's ``volume.zarr/labels/ground_truth``),
at a local path or a URL (:mod:`pipeline.io.location`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline._checks import as_voxel_size
from pipeline.errors import InputDataError
from pipeline.io.location import URL, Location, as_location, is_file, read_json
from pipeline.io.omezarr import OmeArray, list_labels, open_image

__all__ = ["image_of_labels", "is_label_image", "open_label_image", "voxel_size_of"]


def open_label_image(path: str | Path | URL, *, what: str = "segmentation") -> OmeArray:
    """Open an OME-Zarr label image: ``RUN/segmentation.zarr`` or ``volume.zarr/labels/NAME``, or its URL.

    ``what`` names the input in messages (e.g. ``evaluate.gt_labels``).

    Raises
    ------
    InputDataError
        If there is no OME-Zarr image at ``path`` (naming the label images of a store if ``path`` is an
        image store), or it is not a 3-D (z, y, x) integer image with label metadata; for a URL also if
        it cannot be reached or read.
    """
    p = as_location(path)
    if isinstance(p, Path) and not p.exists():
        raise InputDataError(
            f"{what} {p} does not exist; expected an OME-Zarr label image such as RUN/segmentation.zarr "
            "or volume.zarr/labels/ground_truth"
        )
    image = open_image(p, setting=what)
    names = list_labels(p) if image.axes != ("z", "y", "x") or not is_label_image(p) else []
    if image.axes != ("z", "y", "x"):
        hint = f"; its label images are {', '.join(f'{p}/labels/{n}' for n in names)}" if names else ""
        raise InputDataError(f"{what} {p} has axes {image.axes}; expected a (z, y, x) label image{hint}")
    if image.dtype.kind not in "iu" or not is_label_image(p):
        hint = (
            f" Its label images: {', '.join(f'{p}/labels/{n}' for n in names)}."
            if names
            else " Is this the raw image rather than a segmentation?"
        )
        problem = (
            f"has dtype {image.dtype}"
            if image.dtype.kind not in "iu"
            else "has no OME-Zarr image-label metadata"
        )
        raise InputDataError(f"{what} {p} {problem}; expected an integer label image.{hint}")
    return image


def is_label_image(path: str | Path | URL) -> bool:
    """Whether the group at ``path`` carries OME-Zarr ``image-label`` metadata."""
    loc = as_location(path)
    try:
        meta = read_json(loc / "zarr.json")
    except (OSError, ValueError):
        return False
    return "image-label" in meta.get("attributes", {}).get("ome", {})


def image_of_labels(labels: str | Path | URL) -> Location | None:
    """The image store a label group belongs to (``X.zarr`` for ``X.zarr/labels/NAME``), else None."""
    loc = as_location(labels)
    if isinstance(loc, URL):
        store = loc.parent.parent
        inside = loc.parent.name == "labels" and store != loc.parent
        return store if inside and is_file(store / "zarr.json") else None
    parts = loc.resolve().parts
    if len(parts) >= 3 and parts[-2] == "labels" and (Path(*parts[:-2]) / "zarr.json").is_file():
        return Path(*parts[:-2])
    return None


def voxel_size_of(
    image: OmeArray, override: Sequence[float] | None, *, what: str = "--voxel-size"
) -> tuple[float, float, float]:
    """The voxel size of ``image`` (µm, z, y, x), or ``override`` when given — with a warning if they differ.

    Raises
    ------
    InputDataError
        If ``override`` is not three positive finite numbers (named ``what``).
    """
    if override is None:
        return image.voxel_size_um
    try:
        vs = as_voxel_size(override, name=what)
    except ValueError as exc:
        raise InputDataError(str(exc)) from None
    if not np.allclose(vs, image.voxel_size_um, rtol=1e-6):
        warnings.warn(
            f"using voxel size {vs} µm instead of {image.voxel_size_um} µm recorded in {image.path}",
            UserWarning,
            stacklevel=2,
        )
    return vs  # type: ignore[return-value]
