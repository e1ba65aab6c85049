"""Light-sheet image formation: anisotropic Gaussian PSF and Poisson-Gaussian camera noise.

Noise is drawn from Philox, a counter-based generator, keyed on the seed and on the index of a fixed
noise tile (:data:`NOISE_TILE` voxels, a grid anchored at voxel (0, 0, 0)): every tile's noise is a
pure function of (seed, tile index, expected photons in the tile), so any region rendered with whole
tiles reproduces the whole-volume noise bit for bit, whatever the block shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["NOISE_TILE", "camera_image", "gaussian_psf_blur", "psf_halo_voxels", "psf_sigma_voxels"]

#: (z, y, x) voxels of one noise tile; regions are rendered over whole tiles.
NOISE_TILE: tuple[int, int, int] = (8, 32, 32)

_NOISE_STREAM = 0x4E6F697365  # "Noise": separates the noise key from other uses of the seed


def psf_sigma_voxels(
    psf_sigma_um: Sequence[float], voxel_size_um: Sequence[float]
) -> tuple[float, float, float]:
    """The PSF's (z, y, x) standard deviations converted from µm to voxels of each axis."""
    pairs = zip(psf_sigma_um, voxel_size_um, strict=True)
    return tuple(float(s) / float(v) for s, v in pairs)  # type: ignore[return-value]


def psf_halo_voxels(
    psf_sigma_um: Sequence[float], voxel_size_um: Sequence[float], *, truncate: float
) -> tuple[int, int, int]:
    """Kernel radius per axis in voxels (``int(truncate * sigma_vox + 0.5)``, 0 where sigma is 0)."""
    return tuple(  # type: ignore[return-value]
        int(truncate * s + 0.5) if s > 0 else 0 for s in psf_sigma_voxels(psf_sigma_um, voxel_size_um)
    )


def gaussian_psf_blur(
    fluorescence: np.ndarray, *, sigma_voxels: Sequence[float], halo: Sequence[int]
) -> np.ndarray:
    """Separable Gaussian blur (z, then y, then x) with kernel radius ``halo`` per axis.

    The outer ``halo`` voxels of the result are unreliable (they see the array edge); callers render
    that margin and crop it, so the kept voxels never depend on a boundary mode.

    Returns
    -------
    (Z, Y, X) float32
    """
    out = np.asarray(fluorescence, dtype=np.float32)
    for axis, (sigma, radius) in enumerate(zip(sigma_voxels, halo, strict=True)):
        if sigma > 0 and radius > 0:
            out = ndimage.gaussian_filter1d(
                out, float(sigma), axis=axis, mode="nearest", radius=int(radius), output=np.float32
            )
    return out


def camera_image(
    photons: np.ndarray,
    *,
    origin: Sequence[int],
    seed: int,
    gain_adu_per_photon: float,
    offset_adu: float,
    read_noise_adu: float,
    noise: bool = True,
) -> np.ndarray:
    """Digitise expected photon counts: ``offset + gain * Poisson(photons) + Normal(0, read_noise)``.

    Parameters
    ----------
    photons : (Z, Y, X) float
        Expected photons per voxel (finite, >= 0) of a region made of whole noise tiles.
    origin : (3,) int
        Global (z, y, x) index of ``photons[0, 0, 0]``; a multiple of :data:`NOISE_TILE`.
    seed : int
        Non-negative seed.
    noise : bool
        False returns the rounded noise-free expectation ``offset + gain * photons``.

    Returns
    -------
    (Z, Y, X) uint16
        Rounded to the nearest integer and clipped to [0, 65535].

    Raises
    ------
    ValueError
        If the region is not made of whole noise tiles.
    """
    photons = np.asarray(photons, dtype=np.float64)
    origin_t = tuple(int(o) for o in origin)
    for axis, (o, n, t) in enumerate(zip(origin_t, photons.shape, NOISE_TILE, strict=True)):
        if o % t or n % t:
            raise ValueError(
                f"photons must cover whole noise tiles {NOISE_TILE}: axis {'zyx'[axis]} has origin {o} and "
                f"size {n}; both must be multiples of {t}"
            )
    if not noise:
        out = offset_adu + gain_adu_per_photon * photons
    else:
        key0 = int(np.random.SeedSequence([int(seed), _NOISE_STREAM]).generate_state(1, np.uint64)[0])
        out = np.empty(photons.shape, dtype=np.float64)
        tz, ty, tx = NOISE_TILE
        for iz in range(0, photons.shape[0], tz):
            for iy in range(0, photons.shape[1], ty):
                for ix in range(0, photons.shape[2], tx):
                    sl = (slice(iz, iz + tz), slice(iy, iy + ty), slice(ix, ix + tx))
                    code = (
                        ((origin_t[0] + iz) // tz) << 42
                        | ((origin_t[1] + iy) // ty) << 21
                        | ((origin_t[2] + ix) // tx)
                    )
                    gen = np.random.Generator(np.random.Philox(key=np.array([key0, code], dtype=np.uint64)))
                    counts = gen.poisson(np.ascontiguousarray(photons[sl]))
                    read = gen.standard_normal(counts.shape)
                    out[sl] = offset_adu + gain_adu_per_photon * counts + read_noise_adu * read
    np.rint(out, out=out)
    np.clip(out, 0, np.iinfo(np.uint16).max, out=out)
    return out.astype(np.uint16)
