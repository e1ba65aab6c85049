"""Over-segmentation of affinities into fragments with waterz's watershed.

Background is masked before the watershed: voxels whose strongest incident affinity is below
``background_threshold`` get all their affinities set to 0, so waterz leaves them unlabelled (id 0)
instead of growing thousands of tiny basins in noise — that keeps waterz fast and its memory small.
"""

from __future__ import annotations

import numpy as np

from pipeline._checks import check_array
from pipeline.segment._quiet import quiet_stdout

__all__ = ["foreground_mask", "watershed_fragments"]


def foreground_mask(affinities: np.ndarray, *, background_threshold: float) -> np.ndarray:
    """Voxels with at least one incident affinity >= ``background_threshold``.

    A voxel ``p`` is incident to the edges ``aff[d][p]`` (to ``p - e_d``) and ``aff[d][p + e_d]``
    (to ``p + e_d``), for d = z, y, x.

    Parameters
    ----------
    affinities : numpy.ndarray
        (3, Z, Y, X) float affinities, waterz convention.
    background_threshold : float
        In [0, 1].

    Returns
    -------
    numpy.ndarray
        (Z, Y, X) bool.
    """
    strong = affinities >= background_threshold
    fg = strong.any(axis=0)
    fg[:-1] |= strong[0, 1:]  # the partner p - e_d of each edge
    fg[:, :-1] |= strong[1, :, 1:]
    fg[:, :, :-1] |= strong[2, :, :, 1:]
    return fg


def watershed_fragments(
    affinities: np.ndarray,
    *,
    background_threshold: float = 0.5,
    aff_threshold_low: float = 0.0001,
    aff_threshold_high: float = 0.9999,
) -> np.ndarray:
    """Watershed fragments of an affinity volume (waterz's zwatershed, no agglomeration).

    Parameters
    ----------
    affinities : numpy.ndarray
        (3, Z, Y, X) float32 affinities in [0, 1]; ``aff[d][p]`` links voxel ``p`` and ``p - e_d``.
    background_threshold : float
        Voxels whose incident affinities are all below this are background (id 0). 0 disables masking.
    aff_threshold_low, aff_threshold_high : float
        waterz's watershed thresholds.

    Returns
    -------
    numpy.ndarray
        (Z, Y, X) uint64 fragments numbered 1..n (0 = background).

    Raises
    ------
    TypeError, ValueError
        For a non-float or non-(3, Z, Y, X) array, or non-finite values.
    """
    import waterz

    affinities = check_array(affinities, "affinities", ndim=4, kinds="f", finite=True)
    if affinities.shape[0] != 3:
        raise ValueError(f"affinities has {affinities.shape[0]} channels; expected 3 (z, y, x) first")
    affs = np.ascontiguousarray(affinities, dtype=np.float32)
    if background_threshold > 0:
        fg = foreground_mask(affs, background_threshold=background_threshold)
        affs = affs * fg[None]  # an edge survives only if its voxel is foreground ...
        affs[0, 1:] *= fg[:-1]  # ... and so is its partner p - e_d
        affs[1, :, 1:] *= fg[:, :-1]
        affs[2, :, :, 1:] *= fg[:, :, :-1]
    if not affs.any():
        return np.zeros(affs.shape[1:], np.uint64)
    with quiet_stdout():
        fragments = next(
            iter(
                waterz.agglomerate(
                    affs, [0.0], aff_threshold_low=aff_threshold_low, aff_threshold_high=aff_threshold_high
                )
            )
        )
    # waterz yields the same buffer for every threshold: copy before it changes.
    fragments = np.array(fragments, dtype=np.uint64, copy=True)
    ids, inverse = np.unique(fragments, return_inverse=True)
    if ids[0] != 0:
        inverse = inverse + 1
    return inverse.reshape(fragments.shape).astype(np.uint64)
