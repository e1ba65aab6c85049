"""Validation metrics of thresholded predictions: Dice and critical-component counts.

Every channel of a prediction is treated as its own binary image — one foreground channel, or each
affinity channel read as a binary image of edges exactly as the affinity supervoxel loss does
(Definition 4 of the supervoxel paper). Counts are summed over patches and channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np

from pipeline.topology import critical_components

__all__ = ["ValidationCounts", "count_critical_components", "validation_counts"]


@dataclass(frozen=True)
class ValidationCounts:
    """Sums over a validation set, from which the reported metrics follow.

    Attributes
    ----------
    true_positive, predicted, actual : int
        Voxels (edges) with pred & target, with pred, with target.
    negative_critical, positive_critical : int
        Number of negatively (split / missing) and positively (merge / spurious) critical components.
    patches : int
        Patches counted.
    """

    true_positive: int = 0
    predicted: int = 0
    actual: int = 0
    negative_critical: int = 0
    positive_critical: int = 0
    patches: int = 0

    def __add__(self, other: ValidationCounts) -> ValidationCounts:
        return ValidationCounts(
            *(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__)
        )

    @property
    def dice(self) -> float:
        """``2 |P ∩ T| / (|P| + |T|)``; 1 when both are empty."""
        denom = self.predicted + self.actual
        return 1.0 if denom == 0 else 2.0 * self.true_positive / denom


def count_critical_components(pred: np.ndarray, target: np.ndarray, *, connectivity: int) -> tuple[int, int]:
    """Number of negatively and positively critical components of ``pred`` against ``target``.

    Parameters
    ----------
    pred, target : numpy.ndarray of bool
        (Y, X) or (Z, Y, X) binary masks of the same shape.
    connectivity : int
        4 or 8 (2-D), 6, 18 or 26 (3-D).

    Examples
    --------
    >>> t = np.zeros((3, 7), bool); t[1] = True
    >>> p = t.copy(); p[1, 3] = False
    >>> count_critical_components(p, t, connectivity=4)
    (1, 0)
    """
    cc = critical_components(pred, target, connectivity=connectivity)
    counts = []
    for mask in (cc.negative, cc.positive):
        if not mask.any():
            counts.append(0)
            continue
        arr = mask if mask.ndim == 3 else mask[np.newaxis]
        conn = connectivity if mask.ndim == 3 else {4: 6, 8: 18}[connectivity]
        _, n = cc3d.connected_components(arr.astype(np.uint8), connectivity=conn, return_N=True)
        counts.append(int(n))
    return counts[0], counts[1]


def validation_counts(
    probabilities: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    threshold: float = 0.5,
    connectivity: int | None = None,
) -> ValidationCounts:
    """Dice counts and critical-component counts of a batch of predictions.

    Parameters
    ----------
    probabilities : numpy.ndarray
        (B, C, Y, X) or (B, C, Z, Y, X) floats in [0, 1].
    target : numpy.ndarray
        Same shape, binary.
    mask : numpy.ndarray, optional
        Same shape; voxels with mask 0 are ignored (the prediction is set to the target there).
    threshold : float
        Prediction = probability > threshold.
    connectivity : int, optional
        Of the critical components; None = full (8 in 2-D, 26 in 3-D).

    Returns
    -------
    ValidationCounts
    """
    if probabilities.shape != target.shape or probabilities.ndim not in (4, 5):
        raise ValueError(
            f"probabilities {probabilities.shape} and target {target.shape} must have the same "
            "(B, C, ...) shape"
        )
    spatial = probabilities.ndim - 2
    conn = connectivity if connectivity is not None else (8 if spatial == 2 else 26)
    pred = probabilities > threshold
    tgt = target > 0.5
    if mask is not None:
        known = mask > 0.5
        pred = np.where(known, pred, tgt)
    neg = pos = 0
    for b, c in np.ndindex(*pred.shape[:2]):
        n, p = count_critical_components(pred[b, c], tgt[b, c], connectivity=conn)
        neg += n
        pos += p
    return ValidationCounts(
        true_positive=int(np.count_nonzero(pred & tgt)),
        predicted=int(np.count_nonzero(pred)),
        actual=int(np.count_nonzero(tgt)),
        negative_critical=neg,
        positive_critical=pos,
        patches=int(pred.shape[0]),
    )
