"""Input checks shared by the loss functions.

Every public loss calls :func:`check_logits_target` first, so all losses reject the same inputs with the
same messages: a ``TypeError`` for a wrong type or dtype, a ``ValueError`` for a wrong ndim, shape,
device or value.
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = [
    "Normalization",
    "check_connectivity",
    "check_connectivity_option",
    "check_logits_target",
    "check_mask",
    "check_normalization",
    "check_positive",
    "check_precomputed",
    "check_unit_interval",
]

Normalization = Literal["volume", "mask"]

_CONNECTIVITIES = {2: (4, 8), 3: (6, 18, 26)}


def check_logits_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Check a ``loss(logits, target)`` pair and return ``target`` in the dtype of ``logits``.

    Parameters
    ----------
    logits : torch.Tensor
        Raw network outputs, floating point, shape (B, C, Y, X) or (B, C, Z, Y, X).
    target : torch.Tensor
        Binary target of the same shape and on the same device: bool, integer or float with values 0 and 1.

    Returns
    -------
    torch.Tensor
        ``target`` converted to ``logits.dtype``.

    Raises
    ------
    TypeError
        If either is not a tensor, ``logits`` is not floating point or ``target`` is complex.
    ValueError
        If ``logits`` is not 4-D or 5-D or is empty, the shapes or devices differ, or ``target`` holds
        values other than 0 and 1.
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor; got {type(logits).__name__}")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor; got {type(target).__name__}")
    if not logits.is_floating_point():
        raise TypeError(
            f"logits has dtype {logits.dtype}; expected a floating-point tensor of raw network outputs "
            "(logits, before any sigmoid)"
        )
    if logits.ndim not in (4, 5):
        raise ValueError(
            f"logits has ndim={logits.ndim} (shape {tuple(logits.shape)}); expected a 4-D (B, C, Y, X) or "
            "5-D (B, C, Z, Y, X) tensor"
        )
    if target.shape != logits.shape:
        raise ValueError(
            f"logits has shape {tuple(logits.shape)} but target has shape {tuple(target.shape)}; "
            "they must match"
        )
    if logits.numel() == 0:
        raise ValueError(f"logits is empty (shape {tuple(logits.shape)}); expected at least one voxel")
    if target.device != logits.device:
        raise ValueError(
            f"target is on {target.device} but logits is on {logits.device}; move target to the device "
            "of logits"
        )
    if target.is_complex():
        raise TypeError(f"target has dtype {target.dtype}; expected bool, integer or floating point")
    if target.dtype != torch.bool:
        bad = int(((target != 0) & (target != 1)).sum())
        if bad:
            raise ValueError(
                f"target has {bad} values other than 0 and 1; expected a binary mask (bool, or integer "
                "or float with values 0 and 1)"
            )
    return target.to(logits.dtype)


def check_mask(mask: torch.Tensor, name: str, logits: torch.Tensor) -> torch.Tensor:
    """Check that ``mask`` is a tensor shaped and placed like ``logits``; return it as bool."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(mask).__name__}")
    if mask.shape != logits.shape:
        raise ValueError(
            f"{name} has shape {tuple(mask.shape)} but logits has shape {tuple(logits.shape)}; "
            "they must match"
        )
    if mask.device != logits.device:
        raise ValueError(f"{name} is on {mask.device} but logits is on {logits.device}; move it there")
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} has dtype {mask.dtype}; expected torch.bool")
    return mask


def check_precomputed(value: torch.Tensor, name: str, logits: torch.Tensor) -> torch.Tensor:
    """Check a precomputed label-derived tensor (a skeleton); return it detached, in the logits' dtype."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")
    if value.shape != logits.shape:
        raise ValueError(
            f"{name} has shape {tuple(value.shape)} but logits has shape {tuple(logits.shape)}; "
            "they must match"
        )
    if value.device != logits.device:
        raise ValueError(f"{name} is on {value.device} but logits is on {logits.device}; move it there")
    return value.detach().to(logits.dtype)


def check_connectivity(connectivity: int | None, spatial_ndim: int) -> int:
    """Return the connectivity to use for ``spatial_ndim``-D images; None means full (8 or 26)."""
    allowed = _CONNECTIVITIES[spatial_ndim]
    if connectivity is None:
        return allowed[-1]
    if isinstance(connectivity, bool) or connectivity not in allowed:
        raise ValueError(
            f"connectivity={connectivity!r} is not valid for {spatial_ndim}-D images; expected one of "
            f"{allowed} (or None for {allowed[-1]})"
        )
    return int(connectivity)


def check_connectivity_option(connectivity: int | None) -> int | None:
    """Check a loss module's ``connectivity`` option before the ndim is known (see check_connectivity)."""
    if connectivity is not None and (isinstance(connectivity, bool) or connectivity not in (4, 8, 6, 18, 26)):
        raise ValueError(
            f"connectivity={connectivity!r}; expected 4 or 8 (2-D), 6, 18 or 26 (3-D), or None for full"
        )
    return connectivity


def check_unit_interval(value: float, name: str) -> float:
    """Return ``value`` as float if it lies in [0, 1]; raise ValueError otherwise."""
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name}={value!r} is outside [0, 1]")
    return v


def check_positive(value: float, name: str) -> float:
    """Return ``value`` as float if it is finite and > 0; raise ValueError otherwise."""
    v = float(value)
    if not (v > 0.0 and v < float("inf")):
        raise ValueError(f"{name}={value!r} must be positive and finite")
    return v


def check_normalization(normalization: str) -> Normalization:
    """Return ``normalization`` if it is ``"volume"`` or ``"mask"``; raise ValueError otherwise."""
    if normalization not in ("volume", "mask"):
        raise ValueError(f"normalization={normalization!r}; expected 'volume' or 'mask'")
    return normalization  # type: ignore[return-value]
