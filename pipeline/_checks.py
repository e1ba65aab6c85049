"""Input checks shared by the public entry points.

Each check raises with a message that names the parameter, what it received and what is expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["as_voxel_size", "check_array", "check_same_shape"]


def check_array(
    arr: Any,
    name: str,
    *,
    ndim: int | Sequence[int] | None = None,
    kinds: str | None = None,
    finite: bool = False,
) -> np.ndarray:
    """Return ``arr`` as a numpy array after checking its ndim and dtype kind.

    Parameters
    ----------
    arr : array_like
        The value to check.
    name : str
        The parameter name used in error messages.
    ndim : int or sequence of int, optional
        Allowed numbers of dimensions.
    kinds : str, optional
        Allowed numpy dtype kinds, e.g. ``"biu"`` for bool and integers, ``"f"`` for floats.
    finite : bool
        If True, reject NaN and infinite values.

    Raises
    ------
    TypeError
        If ``arr`` is not array-like or has a dtype of another kind.
    ValueError
        If the number of dimensions is not allowed or non-finite values are present.
    """
    if not hasattr(arr, "shape") or not hasattr(arr, "dtype"):
        raise TypeError(f"{name} must be a numpy array; got {type(arr).__name__}")
    a = np.asarray(arr)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if a.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} has ndim={a.ndim} (shape {a.shape}); expected a {want} array")
    if kinds is not None and a.dtype.kind not in kinds:
        names = {"b": "bool", "i": "signed integer", "u": "unsigned integer", "f": "floating point"}
        want = ", ".join(names.get(k, k) for k in kinds)
        raise TypeError(f"{name} has dtype {a.dtype}; expected {want}")
    if finite and a.dtype.kind == "f" and not np.isfinite(a).all():
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"{name} contains {bad} NaN or infinite values; expected finite values")
    return a


def check_same_shape(a: np.ndarray, a_name: str, b: np.ndarray, b_name: str) -> None:
    """Raise ValueError unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"{a_name} has shape {a.shape} but {b_name} has shape {b.shape}; they must match")


def as_voxel_size(voxel_size_um: Any, ndim: int = 3, name: str = "voxel_size_um") -> tuple[float, ...]:
    """Validate a voxel size in micrometres, (z, y, x) order, and return it as a tuple of floats.

    Raises
    ------
    ValueError
        If it has the wrong length or a non-finite, zero or negative entry.
    """
    try:
        values = tuple(float(v) for v in voxel_size_um)
    except TypeError:
        raise ValueError(
            f"{name} must be a sequence of {ndim} sizes in µm (z, y, x); got {voxel_size_um!r}"
        ) from None
    if len(values) != ndim:
        raise ValueError(f"{name} must have {ndim} entries (z, y, x) in µm; got {len(values)}: {values}")
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{name} entries must be positive and finite (µm); got {values}")
    return values
