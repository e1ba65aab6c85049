"""Render any (z, y, x) region of a phantom: labels (uint32) and raw light-sheet image (uint16).

A region is rendered independently of every other, as a pure function of the phantom and the region:

1. the region is grown to whole noise tiles (:data:`~pipeline.synth.optics.NOISE_TILE`) and then by
   the PSF kernel radius (the halo) on every side — beyond the volume border too, where the geometry
   is still defined (so no boundary mode ever matters);
2. the tubes whose voxel boxes meet that box are rasterised into labels and fluorescence;
3. the fluorescence is blurred by the PSF and the halo cropped; expected photons are
   ``background + signal * blurred``;
4. Poisson-Gaussian camera noise is drawn per noise tile from a counter-based generator keyed on
   (seed, tile index), then the result is cropped to the region.

Hence block-wise rendering with any block shape is bit-identical to rendering the whole volume.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.synth.optics import NOISE_TILE, camera_image, gaussian_psf_blur
from pipeline.synth.phantom import Phantom
from pipeline.synth.segments import rasterize

__all__ = ["RenderedRegion", "border_labels", "iter_regions", "render_region", "render_volume"]

Region = tuple[slice, slice, slice]


@dataclass(frozen=True, eq=False)
class RenderedRegion:
    """One rendered region.

    Attributes
    ----------
    raw : (Z, Y, X) uint16
        The light-sheet image.
    labels : (Z, Y, X) uint32
        Ground-truth instance labels (0 = background); continuous across dropout gaps.
    region : tuple of slice
        The (z, y, x) region of the volume these arrays cover.
    """

    raw: np.ndarray
    labels: np.ndarray
    region: Region


def render_region(phantom: Phantom, region: Sequence[slice], *, noise: bool | None = None) -> RenderedRegion:
    """Render the (z, y, x) ``region`` of the volume.

    Parameters
    ----------
    phantom : Phantom
        From :func:`pipeline.synth.generate_phantom` or :func:`pipeline.synth.build_phantom`.
    region : tuple of 3 slices
        Voxel region inside the volume (``slice(start, stop)``, step 1, ``None`` ends allowed).
    noise : bool, optional
        Override ``phantom.imaging.noise`` (False: the rounded noise-free expectation).

    Returns
    -------
    RenderedRegion
        ``raw`` uint16 and ``labels`` uint32 of the region's shape.

    Raises
    ------
    TypeError
        If ``phantom`` is not a Phantom or ``region`` not three slices.
    ValueError
        If the region is empty, has a step, or lies outside the volume.

    Examples
    --------
    >>> from pipeline.synth import PhantomParams, generate_phantom
    >>> ph = generate_phantom(PhantomParams(shape=(16, 64, 64), n_neurons=0, n_ais=1))
    >>> block = render_region(ph, (slice(0, 8), slice(0, 32), slice(32, 64)))
    >>> block.raw.dtype, block.labels.dtype, block.raw.shape
    (dtype('uint16'), dtype('uint32'), (8, 32, 32))
    """
    if not isinstance(phantom, Phantom):
        raise TypeError(f"phantom must be a Phantom; got {type(phantom).__name__}")
    lo, hi = _check_region(region, phantom.shape)
    im = phantom.imaging
    tile = np.asarray(NOISE_TILE)
    t_lo = (lo // tile) * tile
    t_hi = -(-hi // tile) * tile
    halo = np.asarray(phantom.halo_voxels)
    e_lo, e_hi = t_lo - halo, t_hi + halo
    labels, fluo = rasterize(phantom.segments, e_lo, e_hi)
    crop_t = tuple(slice(int(h), int(h + n)) for h, n in zip(halo, t_hi - t_lo, strict=True))
    if fluo.any():
        blurred = gaussian_psf_blur(fluo, sigma_voxels=phantom.psf_sigma_voxels, halo=halo)[crop_t]
    else:
        blurred = fluo[crop_t]
    photons = im.background_photons + im.signal_photons * blurred.astype(np.float64)
    raw_t = camera_image(
        photons, origin=t_lo, seed=phantom.seed, gain_adu_per_photon=im.gain_adu_per_photon,
        offset_adu=im.offset_adu, read_noise_adu=im.read_noise_adu,
        noise=im.noise if noise is None else noise,
    )
    out_region = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    raw = raw_t[tuple(slice(int(a - t), int(b - t)) for a, b, t in zip(lo, hi, t_lo, strict=True))]
    lab = labels[tuple(slice(int(a - e), int(b - e)) for a, b, e in zip(lo, hi, e_lo, strict=True))]
    return RenderedRegion(
        np.ascontiguousarray(raw), np.ascontiguousarray(lab), out_region  # type: ignore[arg-type]
    )


def render_volume(phantom: Phantom, *, noise: bool | None = None) -> RenderedRegion:
    """Render the whole volume in memory (for volumes that fit; use regions otherwise)."""
    if not isinstance(phantom, Phantom):
        raise TypeError(f"phantom must be a Phantom; got {type(phantom).__name__}")
    return render_region(phantom, tuple(slice(0, n) for n in phantom.shape), noise=noise)


def iter_regions(shape: Sequence[int], block_shape: Sequence[int]) -> Iterator[Region]:
    """The regions of a regular grid of ``block_shape`` blocks over ``shape`` (C order, last ones cut)."""
    shape_t = tuple(int(s) for s in shape)
    block_t = tuple(int(b) for b in block_shape)
    if len(shape_t) != 3 or len(block_t) != 3 or min(shape_t) < 1 or min(block_t) < 1:
        raise ValueError(
            f"shape {shape!r} and block_shape {block_shape!r} must be three positive integers (z, y, x)"
        )
    for z in range(0, shape_t[0], block_t[0]):
        for y in range(0, shape_t[1], block_t[1]):
            for x in range(0, shape_t[2], block_t[2]):
                yield (
                    slice(z, min(z + block_t[0], shape_t[0])),
                    slice(y, min(y + block_t[1], shape_t[1])),
                    slice(x, min(x + block_t[2], shape_t[2])),
                )


def border_labels(labels: np.ndarray, region: Sequence[slice], shape: Sequence[int]) -> np.ndarray:
    """Non-zero labels of ``labels`` (the block at ``region``) that lie on the volume's outer voxel layer.

    Returns
    -------
    1-D uint32 array, sorted, unique.
    """
    lo, hi = _check_region(region, shape)
    if labels.shape != tuple(int(b - a) for a, b in zip(lo, hi, strict=True)):
        raise ValueError(f"labels have shape {labels.shape} but region {tuple(region)} has another")
    faces = []
    for axis in range(3):
        if lo[axis] == 0:
            faces.append(np.take(labels, 0, axis=axis).ravel())
        if hi[axis] == shape[axis]:
            faces.append(np.take(labels, labels.shape[axis] - 1, axis=axis).ravel())
    if not faces:
        return np.zeros(0, dtype=np.uint32)
    found = np.unique(np.concatenate(faces))
    return found[found != 0].astype(np.uint32)


def _check_region(region: Sequence[slice], shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(region, Sequence) or len(region) != 3 or not all(isinstance(s, slice) for s in region):
        raise TypeError(f"region must be a tuple of three slices (z, y, x); got {region!r}")
    lo, hi = [], []
    for axis, (sl, n) in enumerate(zip(region, shape, strict=True)):
        if sl.step not in (None, 1):
            raise ValueError(
                f"region {tuple(region)} has step {sl.step} along {'zyx'[axis]}; only step 1 is supported"
            )
        start = 0 if sl.start is None else int(sl.start)
        stop = int(n) if sl.stop is None else int(sl.stop)
        if not 0 <= start < stop <= n:
            raise ValueError(
                f"region {tuple(region)} along {'zyx'[axis]} is [{start}, {stop}); "
                f"expected a non-empty range within the volume [0, {n})"
            )
        lo.append(start)
        hi.append(stop)
    return np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)
