"""Soft morphology and soft skeletons on (B, C, [Z,] Y, X) tensors, by min/max pooling.

``soft_erode`` is the minimum over the face neighbours (the cross structuring element), computed as the
minimum of one 1-D min-pool per axis; ``soft_dilate`` is a max-pool over the full 3×3(×3) window. Both
are the operators of the clDice reference implementation (Shit et al., 2021), which the AIS continuity
paper (Szustakowski et al.) also uses. Pooling pads with -inf for max and +inf for min, so the image
border is neutral: objects touching the border are not eroded from it.

Values are expected in [0, 1] (probabilities or binary masks); the functions are differentiable
(almost everywhere) with respect to their input. When no gradient is needed (a label, or inside
``torch.no_grad()``) the same operators run as element-wise minima/maxima of shifted views instead of
pooling, which gives identical values and is several times faster on CPU, where the pooling kernels are
slow; the label skeletons of clDice and of the Negative Centerline Loss take this path.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

__all__ = [
    "soft_close",
    "soft_dilate",
    "soft_erode",
    "soft_open",
    "soft_skeleton",
    "soft_skeleton_until_empty",
]


def _check_image(x: torch.Tensor, name: str = "x") -> int:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if x.ndim not in (4, 5):
        raise ValueError(
            f"{name} has ndim={x.ndim} (shape {tuple(x.shape)}); expected a 4-D (B, C, Y, X) or 5-D "
            "(B, C, Z, Y, X) tensor"
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} has dtype {x.dtype}; expected floating point")
    return x.ndim - 2


def _needs_grad(x: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and x.requires_grad


def _erode_shifted(x: torch.Tensor, nd: int) -> torch.Tensor:
    """Cross erosion as the minimum of the voxel and its 2·nd shifted copies (no autograd needed)."""
    padded = F.pad(x, (1, 1) * nd, value=float("inf"))
    core = [slice(None), slice(None)] + [slice(1, -1)] * nd
    out = padded[tuple(core)].clone()
    for axis in range(nd):
        for shifted in (slice(None, -2), slice(2, None)):
            view = list(core)
            view[2 + axis] = shifted
            torch.minimum(out, padded[tuple(view)], out=out)
    return out


def _dilate_shifted(x: torch.Tensor, nd: int) -> torch.Tensor:
    """Box dilation as one 1-D maximum of shifted copies per axis (separable; no autograd needed)."""
    for axis in range(nd):
        pad = [0, 0] * nd
        pad[2 * (nd - 1 - axis)] = pad[2 * (nd - 1 - axis) + 1] = 1  # F.pad lists the last axis first
        padded = F.pad(x, pad, value=float("-inf"))
        n = x.shape[2 + axis]
        out = torch.maximum(padded.narrow(2 + axis, 0, n), padded.narrow(2 + axis, 1, n))
        x = torch.maximum(out, padded.narrow(2 + axis, 2, n), out=out)
    return x


def soft_erode(x: torch.Tensor) -> torch.Tensor:
    """Grey-value erosion with the cross (face-neighbour) structuring element.

    Parameters
    ----------
    x : torch.Tensor
        (B, C, Y, X) or (B, C, Z, Y, X), floating point.

    Returns
    -------
    torch.Tensor
        Same shape and dtype: at each voxel the minimum of the voxel and its 2·ndim face neighbours.
    """
    nd = _check_image(x)
    if not _needs_grad(x):
        return _erode_shifted(x, nd)
    pool = F.max_pool2d if nd == 2 else F.max_pool3d
    out: torch.Tensor | None = None
    for axis in range(nd):
        kernel = [1] * nd
        pad = [0] * nd
        kernel[axis] = 3
        pad[axis] = 1
        eroded = -pool(-x, kernel_size=kernel, stride=1, padding=pad)
        out = eroded if out is None else torch.minimum(out, eroded)
    assert out is not None  # nd >= 2
    return out


def soft_dilate(x: torch.Tensor) -> torch.Tensor:
    """Grey-value dilation with the full 3×3 (3×3×3) window (max-pool, stride 1)."""
    nd = _check_image(x)
    if not _needs_grad(x):
        return _dilate_shifted(x, nd)
    pool = F.max_pool2d if nd == 2 else F.max_pool3d
    return pool(x, kernel_size=3, stride=1, padding=1)


def soft_open(x: torch.Tensor) -> torch.Tensor:
    """``soft_dilate(soft_erode(x))``."""
    return soft_dilate(soft_erode(x))


def soft_close(x: torch.Tensor) -> torch.Tensor:
    """``soft_erode(soft_dilate(x))`` (Algorithm 2's last step: minpool(maxpool(CL)))."""
    return soft_erode(soft_dilate(x))


def soft_skeleton(x: torch.Tensor, iterations: int) -> torch.Tensor:
    """Soft skeleton with a fixed number of erosions (clDice, Shit et al. 2021, Algorithm 1).

    ``skel = relu(x - open(x))``; then ``iterations`` times: ``x = erode(x)``,
    ``delta = relu(x - open(x))``, ``skel = skel + relu((1 - skel) · delta)``.

    Parameters
    ----------
    x : torch.Tensor
        (B, C, [Z,] Y, X) with values in [0, 1].
    iterations : int
        Number of erosions, >= 0; should exceed the largest object radius in voxels.

    Returns
    -------
    torch.Tensor
        Same shape, values in [0, 1]; differentiable with respect to ``x``.
    """
    _check_image(x)
    if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 0:
        raise ValueError(f"iterations={iterations!r}; expected a non-negative integer")
    skel = F.relu(x - soft_open(x))
    for _ in range(int(iterations)):
        x = soft_erode(x)
        delta = F.relu(x - soft_open(x))
        skel = skel + F.relu(delta - skel * delta)
    return skel


def soft_skeleton_until_empty(x: torch.Tensor, *, max_iterations: int = 100) -> torch.Tensor:
    """Soft skeleton eroded until the image is empty (AIS paper, Algorithm 2), then closed.

    Algorithm 2 iterates ``I_next = minpool(I)``, ``CL += relu((1 - CL) · relu(I - maxpool(I_next)))``
    while ``|I| > 0`` and ends with ``CL = minpool(maxpool(CL))``. The loop also stops when an erosion
    no longer changes ``I`` (a fixed point, e.g. foreground that touches every border: later iterations
    would add exactly 0) and after ``max_iterations`` erosions, with a ``RuntimeWarning``, since a
    non-binary ``x`` may never erode to exactly 0. Meant for binary labels (no gradient is needed).

    Parameters
    ----------
    x : torch.Tensor
        (B, C, [Z,] Y, X) with values in [0, 1], usually a binary label.
    max_iterations : int
        Safety cap on the number of erosions, >= 1.

    Returns
    -------
    torch.Tensor
        Same shape and dtype, values in [0, 1] (binary for a binary ``x``).

    Warns
    -----
    RuntimeWarning
        If the cap stopped the loop before the image was empty or at a fixed point.
    """
    _check_image(x)
    if isinstance(max_iterations, bool) or int(max_iterations) != max_iterations or max_iterations < 1:
        raise ValueError(f"max_iterations={max_iterations!r}; expected a positive integer")
    image = x
    centerline = F.relu(image - soft_open(image))
    image = soft_erode(image)
    converged = False
    for _ in range(int(max_iterations)):
        if not bool(image.any()):
            converged = True
            break
        image_next = soft_erode(image)
        if torch.equal(image_next, image):
            converged = True
            break
        opened = soft_dilate(image_next)
        centerline = centerline + F.relu((1.0 - centerline) * F.relu(image - opened))
        image = image_next
    else:
        converged = not bool(image.any())
    if not converged:
        warnings.warn(
            f"soft_skeleton_until_empty stopped after max_iterations={max_iterations} erosions before the "
            "image was empty; the centerline of the thickest objects may be incomplete "
            "(raise max_iterations)",
            RuntimeWarning,
            stacklevel=2,
        )
    return soft_close(centerline)
