"""The affinity store: (c, z, y, x) OME-Zarr images of 3 channels, and their storage encoding.

Channels are the z, y and x affinities in waterz's convention (``aff[d][p]`` links ``p`` and
``p - e_d``), values in [0, 1]. They are stored as **uint8 quantized** ``round(255 * a)`` (a quarter of
float32's size, and an error < 0.002, far below what changes a waterz merge decision), or as float16
for more precision; chunks use Blosc-LZ4, which decodes 2-3x faster than Zstandard (the block-wise
segmentation decodes every chunk up to 27 times through its halos). This module is the one place that
knows the encoding: :func:`encode_affinities` on writing, :func:`read_affinities` on reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipeline.errors import InputDataError
from pipeline.io.omezarr import OmeArray, create_image, open_image

__all__ = [
    "AFFINITY_DTYPES", "create_affinity_image", "encode_affinities", "open_affinities", "read_affinities",
]

#: Storage types of the affinity store.
AFFINITY_DTYPES = ("uint8", "float16")
AffinityDtype = Literal["uint8", "float16"]


def _check_dtype(dtype: str) -> None:
    if dtype not in AFFINITY_DTYPES:
        raise ValueError(f"affinity dtype must be one of {AFFINITY_DTYPES}; got {dtype!r}")


def create_affinity_image(
    path: str | Path, *, like: OmeArray, dtype: AffinityDtype
) -> Any:
    """Create (or reopen, to resume) the affinity image of raw image ``like``: same (z, y, x) shape, chunks
    and voxel size, 3 channels. Returns its level-0 array.

    Raises
    ------
    OutputError
        If an existing store at ``path`` differs in shape, dtype, chunks or voxel size.
    """
    _check_dtype(dtype)
    return create_image(path, shape=like.spatial_shape, dtype=dtype, chunks=like.chunks[-3:],
                        voxel_size_um=like.voxel_size_um, name="affinities", channels=3, exist_ok=True,
                        codec="lz4")


def encode_affinities(affinities: np.ndarray, dtype: AffinityDtype) -> np.ndarray:
    """Affinities in [0, 1] (float) as stored: ``round(255 a)`` as uint8, or float16.

    Examples
    --------
    >>> encode_affinities(np.array([0.0, 0.5, 1.0], np.float32), "uint8").tolist()
    [0, 128, 255]
    """
    _check_dtype(dtype)
    if dtype == "uint8":
        return np.round(affinities * 255).astype(np.uint8)
    return affinities.astype(np.float16)


def read_affinities(array: Any, region: Sequence[slice]) -> np.ndarray:
    """Read (3, *region) affinities as float32 in [0, 1] from a float or uint8-quantized array.

    Examples
    --------
    >>> stored = np.array([[[[0, 128, 255]]]] * 3, np.uint8)
    >>> read_affinities(stored, (slice(None), slice(None), slice(0, 2)))[0].ravel().tolist()
    [0.0, 0.501960813999176]
    """
    data = np.asarray(array[(slice(None), *region)])
    if data.dtype == np.uint8:
        return data.astype(np.float32) / np.float32(255)
    return data.astype(np.float32, copy=False)


def open_affinities(path: str | Path) -> OmeArray:
    """Open an affinity image and check it is (3, Z, Y, X) of floats or uint8.

    Raises
    ------
    InputDataError
        If it is not an OME-Zarr (3, Z, Y, X) image of float or uint8 values.
    """
    aff = open_image(path)
    if aff.axes != ("c", "z", "y", "x") or aff.shape[0] != 3:
        raise InputDataError(
            f"affinities {path} have axes {aff.axes} and shape {aff.shape}; expected (3, Z, Y, X)"
        )
    if aff.dtype.kind not in "fu":
        raise InputDataError(f"affinities {path} have dtype {aff.dtype}; expected float or uint8")
    return aff
