"""Fill the lower levels of an OME-Zarr pyramid from level 0, block by block.

The levels themselves (arrays ``1``, ``2``, ... and their multiscales entries) are created with the image
(:func:`pipeline.io.omezarr.create_image` with ``pyramid``); this module fills them once level 0 is
complete: level k block by block from level k - 1 (:func:`downsample_block`), one level after the other.
A block of level k is a chunk-aligned write region of level k; it reads the matching region of level
k - 1 (``region * factor``, clipped), so its memory is bounded by that read (about ``block_shape`` voxels
of level k - 1) and blocks of one level never share a chunk.

Where it runs: the phantom writer (:func:`pipeline.io.phantom.write_phantom`) calls
:func:`build_pyramid` serially after the last block of level 0; the segment stage fills
``fragments.zarr`` and ``segmentation.zarr`` on Dask after the relabel step, with per-block state
(:mod:`flows.stages.pyramid`).

The method is the multiscales ``type`` the image was created with: ``mode`` (labels,
:func:`pipeline.pyramid.downsample_labels`) or ``mean`` (intensities); a label image without a type uses
the mode.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from pipeline.blocks import Block, block_grid
from pipeline.errors import InputDataError
from pipeline.io.omezarr import write_region
from pipeline.pyramid import downsample_labels, downsample_mean

__all__ = ["StoredLevel", "build_pyramid", "downsample_block", "level_blocks", "stored_levels"]


@dataclass(frozen=True)
class StoredLevel:
    """A level below level 0 of a stored pyramid.

    Attributes
    ----------
    level : int
        1, 2, ...
    path : str
        Its array's path in the group (``"1"``).
    above : str
        The path of the level it is made from (``"0"`` for level 1).
    factor : tuple of 3 int
        (z, y, x) factor from the level above.
    shape, chunks : tuple of 3 int
        Its array's shape and chunks.
    method : {"mode", "mean"}
        How it is made from the level above.
    """

    level: int
    path: str
    above: str
    factor: tuple[int, int, int]
    shape: tuple[int, int, int]
    chunks: tuple[int, int, int]
    method: str


def stored_levels(image: str | Path) -> tuple[StoredLevel, ...]:
    """The levels below level 0 that the multiscales metadata of the (z, y, x) image at ``image`` lists.

    Empty for an image with level 0 only (one written by an older neurorecon, or too small for a pyramid).

    Raises
    ------
    InputDataError
        If the metadata is missing or lists a level whose scale is not the level above's times 1 or 2
        per axis, or whose array is missing or has another shape than ``ceil(above / factor)``.
    """
    path = Path(image)
    try:
        attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError) as exc:
        raise InputDataError(f"cannot read the metadata of {path}: {exc}") from None
    ome = attrs.get("ome") or {}
    multiscales = ome.get("multiscales") or []
    if not multiscales:
        raise InputDataError(f"{path} has no OME-Zarr 'multiscales' metadata")
    ms = multiscales[0]
    names = [a.get("name") if isinstance(a, dict) else a for a in ms.get("axes", [])]
    datasets = ms.get("datasets") or []
    if len(datasets) < 2:
        return ()
    if names != ["z", "y", "x"]:
        raise InputDataError(f"{path}: a pyramid of axes {names} is not supported; expected (z, y, x)")
    method = ms.get("type") or ("mode" if "image-label" in ome else "mean")
    if method not in ("mode", "mean"):
        raise InputDataError(f"{path}: multiscales type {method!r} is not one neurorecon makes (mode, mean)")
    group = zarr.open_group(str(path), mode="r")
    scales = [_scale(path, d) for d in datasets]
    above = tuple(group[datasets[0]["path"]].shape)
    out = []
    for k in range(1, len(datasets)):
        ratio = [b / a for a, b in zip(scales[k - 1], scales[k], strict=True)]
        factor = tuple(int(round(r)) for r in ratio)
        if any(f not in (1, 2) or abs(r - f) > 1e-6 for f, r in zip(factor, ratio, strict=True)):
            raise InputDataError(f"{path}: level {k}'s scale is {ratio} times level {k - 1}'s; expected 1 "
                                 "or 2 per axis")
        want = tuple(-(-s // f) for s, f in zip(above, factor, strict=True))
        try:
            arr = group[datasets[k]["path"]]
        except KeyError:
            raise InputDataError(f"{path} is missing its level-{k} array '{datasets[k]['path']}'") from None
        if tuple(arr.shape) != want:
            raise InputDataError(f"{path}: level {k} has shape {tuple(arr.shape)}; expected {want}")
        out.append(StoredLevel(k, str(datasets[k]["path"]), str(datasets[k - 1]["path"]), factor,  # type: ignore[arg-type]
                               want, tuple(arr.chunks), method))
        above = want
    return tuple(out)


def level_blocks(
    image: str | Path, level: StoredLevel, *, block_shape: Sequence[int] | None = None
) -> list[Block]:
    """The write blocks of ``level``: its chunks, or ``block_shape // factor`` rounded to whole chunks.

    ``block_shape`` is in voxels of the level above: a block then reads about that much of it.
    """
    chunks = level.chunks
    if block_shape is None:
        shape = chunks
    else:
        shape = tuple(max(c, int(b) // f // c * c)
                      for b, f, c in zip(block_shape, level.factor, chunks, strict=True))
    return block_grid(level.shape, block_shape=shape, chunks=chunks)


def downsample_block(image: str | Path, level: StoredLevel, block: Block) -> None:
    """Make ``block`` of ``level`` from the level above and write it.

    Raises
    ------
    ValueError
        If the block is not aligned to the level's chunks.
    """
    group = zarr.open_group(str(image), mode="r+")
    above = group[level.above]
    read = tuple(slice(s.start * f, min(s.stop * f, n))
                 for s, f, n in zip(block.write, level.factor, above.shape, strict=True))
    data = np.asarray(above[read])
    down = (downsample_labels if level.method == "mode" else downsample_mean)(data, level.factor)
    write_region(group[level.path], block.write, down)


def build_pyramid(image: str | Path, *, block_shape: Sequence[int] | None = None) -> int:
    """Fill every level below level 0 of ``image``, serially, block by block; return the number of levels.

    Level 0 must be complete. Idempotent: a rerun writes the same values.
    """
    levels = stored_levels(image)
    for level in levels:
        for block in level_blocks(image, level, block_shape=block_shape):
            downsample_block(image, level, block)
    return len(levels)


def _scale(path: Path, dataset: dict) -> list[float]:
    for t in dataset.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            return [float(v) for v in t["scale"]]
    raise InputDataError(f"{path}: level '{dataset.get('path')}' has no scale transformation")
