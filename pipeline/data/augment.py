"""Patch augmentation: in-plane flips and transposes, intensity changes, noise, simulated signal dropout.

Every function takes (z, y, x) arrays — 2-D data are one-slice stacks (1, Y, X) — and an explicit
``numpy.random.Generator``; none keeps state. Geometric changes are applied identically to raw and
labels and only in-plane (y, x): z is the coarse light-sheet axis, so flipping or transposing it would
make patches the microscope cannot produce. A y/x transpose is only applied when the caller allows it
(same y and x voxel size and patch size).

*Signal dropout* imitates the failure mode that topology losses address: a short stretch of a
labelled neurite where the fluorescence is missing. Around a random point of a thin labelled structure,
the raw intensity of the object (and of a ``margin_um`` halo of background around it, where the PSF
would spread its light) is set to the patch's background level along ``length_um`` of cable; the labels
stay unchanged, so the network must learn to bridge the gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage

__all__ = [
    "Augmentation",
    "Dropout",
    "add_gaussian_noise",
    "adjust_intensity",
    "augment_patch",
    "flip_transpose",
    "signal_dropout",
]

FloatRange = tuple[float, float]


@dataclass(frozen=True)
class Augmentation:
    """Settings of :func:`augment_patch`; every range is (min, max), drawn uniformly per patch.

    Attributes
    ----------
    flip : bool
        Random flips along y and along x (each with probability 1/2).
    transpose : bool
        Random y/x transpose (probability 1/2) where the caller allows it.
    intensity_scale, intensity_shift : (float, float)
        ``raw * scale + shift`` on normalized intensities.
    gamma : (float, float)
        ``max(raw, 0) ** gamma``, applied before scale and shift.
    noise_sigma : (float, float)
        Standard deviation of additive Gaussian noise (normalized units), applied last.
    dropout_probability : float
        Probability that a patch gets simulated signal dropout.
    dropout_max_gaps : int
        A patch with dropout gets 1 to this many gaps.
    dropout_length_um : (float, float)
        Length of a gap along the cable, µm.
    dropout_margin_um : float
        Background halo around the object that also goes dark, µm.
    dropout_max_radius_um : float
        Gaps are centred on structures at most this thick (radius, µm): neurites and AIS, not somata.
    """

    flip: bool = True
    transpose: bool = True
    intensity_scale: FloatRange = (0.8, 1.2)
    intensity_shift: FloatRange = (-0.1, 0.1)
    gamma: FloatRange = (0.8, 1.25)
    noise_sigma: FloatRange = (0.0, 0.05)
    dropout_probability: float = 0.5
    dropout_max_gaps: int = 2
    dropout_length_um: FloatRange = (2.0, 5.0)
    dropout_margin_um: float = 1.0
    dropout_max_radius_um: float = 2.0

    def __post_init__(self) -> None:
        for name in ("intensity_scale", "intensity_shift", "gamma", "noise_sigma", "dropout_length_um"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected (min, max) with min <= max")
        if self.gamma[0] <= 0 or self.noise_sigma[0] < 0 or self.dropout_length_um[0] <= 0:
            raise ValueError("gamma and dropout_length_um must be positive and noise_sigma non-negative")
        if not 0.0 <= self.dropout_probability <= 1.0:
            raise ValueError(f"dropout_probability={self.dropout_probability!r}; expected a value in [0, 1]")
        if self.dropout_max_gaps < 1 or self.dropout_margin_um < 0 or self.dropout_max_radius_um <= 0:
            raise ValueError(
                "dropout_max_gaps must be >= 1, dropout_margin_um >= 0 and dropout_max_radius_um > 0"
            )

    @classmethod
    def off(cls) -> Augmentation:
        """No augmentation at all (validation patches)."""
        return cls(
            flip=False,
            transpose=False,
            intensity_scale=(1.0, 1.0),
            intensity_shift=(0.0, 0.0),
            gamma=(1.0, 1.0),
            noise_sigma=(0.0, 0.0),
            dropout_probability=0.0,
        )


class Dropout(NamedTuple):
    """Result of :func:`signal_dropout`: the new raw patch and the mask of voxels set to background."""

    raw: np.ndarray
    gaps: np.ndarray


def flip_transpose(
    raw: np.ndarray,
    labels: np.ndarray,
    *,
    rng: np.random.Generator,
    flip: bool = True,
    transpose: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the same random in-plane flips and y/x transpose to ``raw`` and ``labels``.

    Parameters
    ----------
    raw, labels : numpy.ndarray
        (Z, Y, X) arrays of the same shape.
    rng : numpy.random.Generator
    flip : bool
        Flip y and x, each with probability 1/2.
    transpose : bool
        Swap y and x with probability 1/2; needs a square (y, x) patch of square pixels (the caller
        checks the voxel size).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        C-contiguous copies of raw and labels.

    Raises
    ------
    ValueError
        If the shapes differ, are not 3-D, or ``transpose`` is asked for a non-square patch.
    """
    _check_pair(raw, labels)
    if transpose and raw.shape[1] != raw.shape[2]:
        raise ValueError(f"transpose=True needs a square (y, x) patch; got shape {raw.shape}")
    draws = rng.random(3)
    if flip and draws[0] < 0.5:
        raw, labels = raw[:, ::-1], labels[:, ::-1]
    if flip and draws[1] < 0.5:
        raw, labels = raw[:, :, ::-1], labels[:, :, ::-1]
    if transpose and draws[2] < 0.5:
        raw, labels = raw.transpose(0, 2, 1), labels.transpose(0, 2, 1)
    return np.ascontiguousarray(raw), np.ascontiguousarray(labels)


def adjust_intensity(
    raw: np.ndarray,
    *,
    rng: np.random.Generator,
    scale: FloatRange = (1.0, 1.0),
    shift: FloatRange = (0.0, 0.0),
    gamma: FloatRange = (1.0, 1.0),
) -> np.ndarray:
    """``max(raw, 0) ** g * s + t`` with ``g``, ``s``, ``t`` drawn from the ranges; float32 out."""
    g, s, t = rng.uniform(*gamma), rng.uniform(*scale), rng.uniform(*shift)
    out = np.asarray(raw, np.float32)
    if g != 1.0:
        out = np.power(np.maximum(out, 0.0), np.float32(g))
    return (out * np.float32(s) + np.float32(t)).astype(np.float32, copy=False)


def add_gaussian_noise(raw: np.ndarray, *, rng: np.random.Generator, sigma: FloatRange) -> np.ndarray:
    """Add N(0, σ²) noise, σ drawn from ``sigma``; float32 out."""
    s = rng.uniform(*sigma)
    out = np.asarray(raw, np.float32)
    if s <= 0:
        return out
    return (out + rng.normal(0.0, s, size=out.shape).astype(np.float32)).astype(np.float32, copy=False)


def signal_dropout(
    raw: np.ndarray,
    labels: np.ndarray,
    *,
    rng: np.random.Generator,
    voxel_size_um: Sequence[float],
    n_gaps: int = 1,
    length_um: FloatRange = (2.0, 5.0),
    margin_um: float = 1.0,
    max_radius_um: float = 2.0,
    background: float | None = None,
    region: tuple[slice, ...] | None = None,
) -> Dropout:
    """Set short stretches of thin labelled structures (and a halo around them) to background in ``raw``.

    Each gap is centred on a random labelled voxel of a thin structure (one that no voxel within
    ``max_radius_um`` is deeper inside the object than ``max_radius_um``, so somata are skipped); it
    covers the voxels of that object within ``length / 2`` µm of the centre, plus background voxels
    within ``margin_um`` of them (never voxels of other objects). Labels are not changed.

    Parameters
    ----------
    raw : numpy.ndarray
        (Z, Y, X) normalized intensities.
    labels : numpy.ndarray
        (Z, Y, X) integer instance labels, 0 = background.
    rng : numpy.random.Generator
    voxel_size_um : sequence of float
        (z, y, x) voxel size of the patch, µm.
    n_gaps : int
        Number of gaps (fewer if the patch has no thin structure).
    length_um : (float, float)
        Range of the gap length along the cable (its diameter), µm.
    margin_um : float
        Halo of background around the object that also goes dark, µm.
    max_radius_um : float
        Thickness limit of the structures that get gaps, µm.
    background : float, optional
        Value inside gaps; default the median of ``raw`` over unlabelled voxels.
    region : tuple of slice, optional
        (z, y, x) box where gap centres may lie (e.g. the region the loss applies to); default the whole
        patch. A gap may still reach out of it.

    Returns
    -------
    Dropout
        ``raw`` (float32, a copy) and ``gaps`` (bool mask of the changed voxels).

    Examples
    --------
    >>> labels = np.zeros((1, 5, 40), np.uint32); labels[0, 2, :] = 1
    >>> raw = np.where(labels > 0, 1.0, 0.0).astype(np.float32)
    >>> out = signal_dropout(raw, labels, rng=np.random.default_rng(0), voxel_size_um=(1, 1, 1),
    ...                      length_um=(4, 4), margin_um=0)
    >>> int(out.gaps.sum()), float(out.raw[out.gaps].max())
    (5, 0.0)
    """
    _check_pair(raw, labels)
    vs = np.asarray([float(v) for v in voxel_size_um], np.float64)
    if vs.shape != (3,) or not np.all(vs > 0):
        raise ValueError(f"voxel_size_um={voxel_size_um!r}; expected three positive sizes (z, y, x) in µm")
    out = np.array(raw, np.float32, copy=True)
    gaps = np.zeros(labels.shape, bool)
    fg = labels != 0
    if n_gaps < 1 or not fg.any():
        return Dropout(out, gaps)
    if background is None:
        bg = out[~fg]
        background = float(np.median(bg)) if bg.size else float(np.percentile(out, 1.0))
    depth = ndimage.distance_transform_edt(fg, sampling=vs)
    reach = np.maximum(1, np.ceil(max_radius_um / vs).astype(int))
    deepest_near = ndimage.maximum_filter(depth, size=tuple(2 * reach + 1), mode="nearest")
    candidates = fg & (deepest_near <= max_radius_um)
    if region is not None:
        inside = np.zeros(labels.shape, bool)
        inside[tuple(region)] = True
        candidates &= inside
    thin = np.flatnonzero(candidates)
    if thin.size == 0:
        return Dropout(out, gaps)
    for _ in range(int(n_gaps)):
        centre = np.unravel_index(int(rng.choice(thin)), labels.shape)
        half = rng.uniform(*length_um) / 2.0
        _mark_gap(gaps, labels, centre, half, margin_um, vs)
    out[gaps] = np.float32(background)
    return Dropout(out, gaps)


def augment_patch(
    raw: np.ndarray,
    labels: np.ndarray,
    *,
    rng: np.random.Generator,
    settings: Augmentation,
    voxel_size_um: Sequence[float],
    allow_transpose: bool,
    gap_region: tuple[slice, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Flips/transpose, then dropout, gamma/scale/shift and noise, in that order.

    Parameters
    ----------
    raw : numpy.ndarray
        (Z, Y, X) float32 normalized intensities.
    labels : numpy.ndarray
        (Z, Y, X) integer labels (changed only by the flips and transpose).
    rng : numpy.random.Generator
    settings : Augmentation
    voxel_size_um : sequence of float
        (z, y, x) voxel size of the patch (after any downscaling), µm.
    allow_transpose : bool
        Whether a y/x transpose is valid (square pixels and a square patch).
    gap_region : tuple of slice, optional
        (z, y, x) box where dropout gaps are centred (the region under the loss); default the whole patch.
        It must be symmetric under the flips and transpose (a centred box is).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        float32 raw and labels of the input shape.
    """
    raw, labels = flip_transpose(
        raw, labels, rng=rng, flip=settings.flip, transpose=settings.transpose and allow_transpose
    )
    if settings.dropout_probability > 0 and rng.random() < settings.dropout_probability:
        n = int(rng.integers(1, settings.dropout_max_gaps + 1))
        raw = signal_dropout(
            raw,
            labels,
            rng=rng,
            voxel_size_um=voxel_size_um,
            n_gaps=n,
            length_um=settings.dropout_length_um,
            margin_um=settings.dropout_margin_um,
            max_radius_um=settings.dropout_max_radius_um,
            region=gap_region,
        ).raw
    raw = adjust_intensity(
        raw, rng=rng, scale=settings.intensity_scale, shift=settings.intensity_shift, gamma=settings.gamma
    )
    raw = add_gaussian_noise(raw, rng=rng, sigma=settings.noise_sigma)
    return raw, labels


def _mark_gap(
    gaps: np.ndarray,
    labels: np.ndarray,
    centre: tuple[int, ...],
    half_um: float,
    margin_um: float,
    vs: np.ndarray,
) -> None:
    radius = np.ceil((half_um + margin_um) / vs).astype(int)
    lo = [max(0, c - r) for c, r in zip(centre, radius, strict=True)]
    hi = [min(s, c + r + 1) for c, r, s in zip(centre, radius, labels.shape, strict=True)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    grids = np.ogrid[box]
    dist2 = sum(((g - c) * v) ** 2 for g, c, v in zip(grids, centre, vs, strict=True))
    local = labels[box]
    obj = local == labels[centre]
    core = obj & (dist2 <= half_um**2)
    if margin_um > 0 and core.any():
        near = ndimage.distance_transform_edt(~core, sampling=vs) <= margin_um
        region = core | (near & (local == 0))
    else:
        region = core
    gaps[box] |= region


def _check_pair(raw: np.ndarray, labels: np.ndarray) -> None:
    if raw.ndim != 3:
        raise ValueError(f"raw has ndim={raw.ndim} (shape {raw.shape}); expected a (z, y, x) patch")
    if raw.shape != labels.shape:
        raise ValueError(f"raw has shape {raw.shape} but labels has shape {labels.shape}; they must match")
