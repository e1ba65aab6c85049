"""One waterz call on a region: watershed fragments and their mean-affinity agglomeration.

:func:`waterz_merge_history` records the agglomeration once, up to a largest threshold, as the order of
its merges (:class:`~pipeline.segment.agglomerate.MergeHistory`): replayed, it gives the segments at any
threshold up to that, exactly as :func:`waterz_segment` run at that threshold does.

Background is masked before the watershed: voxels whose strongest incident affinity is below
``background_threshold`` get all their affinities set to 0, so waterz leaves them unlabelled (id 0)
instead of growing thousands of tiny basins in noise — that keeps waterz fast and its memory small.
"""

from __future__ import annotations

import numpy as np

from pipeline._checks import check_array
from pipeline.segment._quiet import quiet_stdout
from pipeline.segment.agglomerate import MergeHistory
from pipeline.segment.config import DEFAULT_BACKGROUND_THRESHOLD, DEFAULT_MAX_THRESHOLD

__all__ = ["SCORING_FUNCTION", "foreground_mask", "waterz_merge_history", "waterz_segment"]

#: waterz's scoring function: 1 - mean affinity between two regions (merge while below the threshold).
#: It is precompiled in waterz's wheels (no C++ toolchain at run time) and, unlike quantile scoring,
#: keeps no per-edge histograms, so waterz's memory stays proportional to the region graph.
SCORING_FUNCTION = "OneMinus<MeanAffinity<RegionGraphType, ScoreValue>>"


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


def waterz_segment(
    affinities: np.ndarray,
    *,
    threshold: float,
    background_threshold: float = DEFAULT_BACKGROUND_THRESHOLD,
    aff_threshold_low: float = 0.0001,
    aff_threshold_high: float = 0.9999,
) -> tuple[np.ndarray, np.ndarray]:
    """Watershed fragments and their agglomeration at ``threshold``, from one waterz call.

    Parameters
    ----------
    affinities : numpy.ndarray
        (3, Z, Y, X) float32 affinities in [0, 1]; ``aff[d][p]`` links voxel ``p`` and ``p - e_d``.
    threshold : float
        Merge while ``1 - mean affinity < threshold`` (waterz semantics), in [0, 1].
    background_threshold : float
        Voxels whose incident affinities are all below this are background (id 0). 0 disables masking.
    aff_threshold_low, aff_threshold_high : float
        waterz's watershed thresholds.

    Returns
    -------
    fragments : numpy.ndarray
        (Z, Y, X) uint64 watershed basins numbered 1..n (0 = background).
    segments : numpy.ndarray
        (Z, Y, X) uint64 segment of each voxel (any ids; 0 = background). Every segment is a union of
        fragments connected by voxel adjacencies.

    Raises
    ------
    TypeError, ValueError
        For a non-float or non-(3, Z, Y, X) array, non-finite values, or a threshold outside [0, 1].
    """
    import waterz

    affs = _masked(affinities, threshold=threshold, background_threshold=background_threshold)
    if not affs.any():
        empty = np.zeros(affs.shape[1:], np.uint64)
        return empty, empty.copy()
    with quiet_stdout():
        results = waterz.agglomerate(
            affs, [0.0, float(threshold)], aff_threshold_low=aff_threshold_low,
            aff_threshold_high=aff_threshold_high, scoring_function=SCORING_FUNCTION,
        )
        # waterz yields the same buffer for every threshold: copy each result before the next.
        fragments = np.array(next(results), dtype=np.uint64, copy=True)
        segments = np.array(next(results), dtype=np.uint64, copy=True)
    return fragments, segments


def waterz_merge_history(
    affinities: np.ndarray,
    *,
    background_threshold: float = DEFAULT_BACKGROUND_THRESHOLD,
    max_threshold: float = DEFAULT_MAX_THRESHOLD,
    aff_threshold_low: float = 0.0001,
    aff_threshold_high: float = 0.9999,
) -> tuple[np.ndarray, MergeHistory]:
    """Watershed fragments and the order in which waterz merges them, up to ``max_threshold``.

    The same waterz call as :func:`waterz_segment`, agglomerating up to ``max_threshold`` and keeping
    its merge history instead of one segmentation:
    ``replay(history, t, n_fragments=fragments.max())[fragments]`` partitions the voxels exactly as
    ``waterz_segment(affinities, threshold=t)[1]`` does, for every ``t <= max_threshold``
    (:mod:`pipeline.segment.agglomerate`).

    Parameters
    ----------
    affinities : numpy.ndarray
        (3, Z, Y, X) float32 affinities in [0, 1], waterz convention.
    background_threshold, aff_threshold_low, aff_threshold_high : float
        As in :func:`waterz_segment`.
    max_threshold : float
        The largest threshold the history must answer for, in [0, 1]. Agglomerating dense data (no
        background) up to 1.0 takes several times as long as up to 0.5: waterz's cost grows with the
        regions it merges.

    Returns
    -------
    fragments : numpy.ndarray
        (Z, Y, X) uint64 watershed basins numbered 1..n (0 = background).
    history : MergeHistory
        The merges, over fragment ids.

    Raises
    ------
    TypeError, ValueError
        As :func:`waterz_segment`.
    """
    import waterz

    affs = _masked(affinities, threshold=max_threshold, background_threshold=background_threshold)
    if not affs.any():
        return np.zeros(affs.shape[1:], np.uint64), MergeHistory(np.zeros((0, 2), np.uint64), [])
    with quiet_stdout():
        results = waterz.agglomerate(
            affs, [0.0, float(max_threshold)], aff_threshold_low=aff_threshold_low,
            aff_threshold_high=aff_threshold_high, scoring_function=SCORING_FUNCTION,
            return_merge_history=True,
        )
        # waterz yields one buffer, relabelled in place at each threshold: copy the fragments first
        first, _ = next(results)
        fragments = np.array(first, dtype=np.uint64, copy=True)
        _, merges = next(results)
    history = MergeHistory(
        np.array([(m["a"], m["b"]) for m in merges], np.uint64).reshape(-1, 2),
        np.array([m["score"] for m in merges], np.float32),
    )
    return fragments, history


def _masked(affinities: np.ndarray, *, threshold: float, background_threshold: float) -> np.ndarray:
    """The checked affinities as contiguous float32, background voxels' edges set to 0."""
    affinities = check_array(affinities, "affinities", ndim=4, kinds="f", finite=True)
    if affinities.shape[0] != 3:
        raise ValueError(f"affinities has {affinities.shape[0]} channels; expected 3 (z, y, x) first")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1] (waterz's 1 - mean affinity); got {threshold}")
    affs = np.ascontiguousarray(affinities, dtype=np.float32)
    if background_threshold > 0:
        fg = foreground_mask(affs, background_threshold=background_threshold)
        affs = affs * fg[None]  # an edge survives only if its voxel is foreground ...
        affs[0, 1:] *= fg[:-1]  # ... and so is its partner p - e_d
        affs[1, :, 1:] *= fg[:, :-1]
        affs[2, :, :, 1:] *= fg[:, :, :-1]
    return affs
