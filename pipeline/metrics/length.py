"""Instance matching and length-distribution metrics (AIS continuity paper, sections 2.4–2.5).

Definitions
-----------
* **Instances** are the non-zero labels of each volume, as given (a label made of several pieces is
  one instance). To turn a binary mask into instances use :func:`connected_instances` first.
* **Overlap** of a true and a predicted instance = number of voxels carrying both labels.
* **Matching**: one-to-one, maximum total overlap (maximum-weight bipartite matching,
  ``scipy.optimize.linear_sum_assignment`` on the overlap counts, solved separately on each connected
  component of the overlap graph so it stays fast). Only overlapping pairs can be matched. Ties are
  resolved deterministically by the solver on labels in increasing order.
* **precision** = matched predicted instances / predicted instances; **recall** = matched true
  instances / true instances; **overlapping_instances** = mean, over *matched* true instances, of the
  number of predicted instances overlapping it (ideal: 1). Ratios with a zero denominator are NaN.
* **Lengths** are :func:`pipeline.skeleton.object_lengths` (skeleton graph diameter, µm).
  Instances touching the volume border are excluded from the length distributions (so from
  ``wasserstein_um`` and ``ssmd``) but **not** from precision, recall and overlapping_instances.
* **wasserstein_um** = 1-D Wasserstein (earth mover's) distance between the predicted and true length
  distributions (``scipy.stats.wasserstein_distance``), µm; NaN if either is empty.
* **ssmd** = |μ_pred − μ_true| / sqrt(σ_pred² + σ_true²) with population standard deviations (ddof=0):
  reported as an absolute value (the paper's table lists positive values); the signed value
  (negative when predictions are shorter) is ``ssmd_signed``. 0 when both means are equal and both
  spreads are 0, ±inf when only the spreads are 0, NaN if either distribution is empty.
* **discontinuities** (:func:`discontinuities`): the *predicted instances* are the connected
  components of the predicted labels (:func:`connected_instances`, 26-connectivity by default: a
  label in two pieces is two instances); true instances are the true labels as given (one per AIS).
  Per true instance t matched one-to-one to a predicted instance (the matching above, on the
  predicted instances), d_t = (number of predicted instances overlapping t) − 1;
  ``per_instance`` = mean of d_t over matched true instances (NaN if none). The exact ground truth
  gives 0; a true instance cut into 3 gives 2. It is the paper's "average number of prediction
  instances each label instance overlaps with" (``overlapping_instances``) minus 1, on connected
  predicted instances.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cc3d
import fastremap
import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.stats import wasserstein_distance

from pipeline._checks import as_voxel_size, check_array, check_same_shape
from pipeline.metrics.voxel import contingency_table
from pipeline.skeleton import object_lengths

__all__ = [
    "Discontinuities",
    "LengthMetrics",
    "MatchedPair",
    "connected_instances",
    "discontinuities",
    "instance_overlaps",
    "length_metrics",
    "length_metrics_from_overlaps",
    "match_instances",
]


@dataclass(frozen=True)
class MatchedPair:
    """A matched (true, predicted) instance pair and its overlap in voxels."""

    true_label: int
    pred_label: int
    overlap_voxels: int


@dataclass(frozen=True)
class LengthMetrics:
    """Instance and length-distribution metrics (see the module docstring for the definitions).

    Attributes
    ----------
    precision, recall : float
        Fractions of predicted / true instances that are matched (NaN without instances).
    overlapping_instances : float
        Mean number of predicted instances overlapping each matched true instance (NaN if none).
    wasserstein_um : float
        Wasserstein distance between the length distributions, µm.
    ssmd : float
        Absolute strictly standardized mean difference of the length distributions.
    ssmd_signed : float
        (μ_pred − μ_true) / sqrt(σ_pred² + σ_true²).
    n_pred, n_true : int
        Numbers of predicted and true instances (all, border ones included).
    matches : tuple of MatchedPair
        The one-to-one matching, sorted by true label.
    pred_lengths_um, true_lengths_um : dict of int to float
        The lengths (µm) that form the distributions: instances not touching the border.
    """

    precision: float
    recall: float
    overlapping_instances: float
    wasserstein_um: float
    ssmd: float
    ssmd_signed: float
    n_pred: int
    n_true: int
    matches: tuple[MatchedPair, ...]
    pred_lengths_um: dict[int, float] = field(default_factory=dict)
    true_lengths_um: dict[int, float] = field(default_factory=dict)


#: Labels above this (uint64 ids >= 2**63) turn negative through an int64 cast: they are never cast.
_INT64_MAX = np.iinfo(np.int64).max


def connected_instances(mask: np.ndarray, *, connectivity: int = 26) -> np.ndarray:
    """Label the connected components of a mask or label volume as instances.

    Parameters
    ----------
    mask : ndarray, shape (Z, Y, X), bool or integer
        Non-zero is foreground; with integer labels, different labels are never joined and a label
        with several pieces becomes several instances.
    connectivity : {6, 18, 26}
        Voxel connectivity.

    Returns
    -------
    ndarray, shape (Z, Y, X), unsigned integer
        Instances numbered 1..N, background 0.
    """
    m = check_array(mask, "mask", ndim=3, kinds="biu")
    if connectivity not in (6, 18, 26):
        raise ValueError(f"connectivity must be 6, 18 or 26; got {connectivity!r}")
    if m.dtype == bool:
        m = m.view(np.uint8)
    elif m.dtype == np.uint64 and m.size and m.max() > _INT64_MAX:
        # cc3d overflows on uint64 labels >= 2**63: number the labels densely first (0 stays 0)
        m, _ = fastremap.renumber(m, preserve_zero=True, in_place=False)
    return cc3d.connected_components(np.ascontiguousarray(m), connectivity=connectivity)


def instance_overlaps(pred_labels: np.ndarray, true_labels: np.ndarray) -> np.ndarray:
    """Voxel overlaps between true and predicted instances.

    Parameters
    ----------
    pred_labels, true_labels : ndarray, same shape, integer or bool
        Instance labels; 0 is background.

    Returns
    -------
    ndarray, shape (K, 3), int64 (uint64 when a label is >= 2**63)
        Rows ``(true_label, pred_label, n_voxels)`` for every pair of non-zero labels that share at
        least one voxel, sorted by (true, pred).
    """
    p = check_array(pred_labels, "pred_labels", kinds="biu")
    t = check_array(true_labels, "true_labels", kinds="biu")
    check_same_shape(p, "pred_labels", t, "true_labels")
    both = (p != 0) & (t != 0)
    p_ids, t_ids, counts = contingency_table(p[both], t[both])
    big = any(ids.dtype == np.uint64 and len(ids) and ids.max() > _INT64_MAX for ids in (p_ids, t_ids))
    dtype = np.uint64 if big else np.int64  # a uint64 id >= 2**63 would turn negative as int64
    return np.stack([t_ids.astype(dtype), p_ids.astype(dtype), counts.astype(dtype)], axis=1).reshape(-1, 3)


def _overlap_columns(overlap_pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True labels, predicted labels and voxel counts (int64) of ``(true, pred, n_voxels)`` rows.

    Labels keep their integer type, so uint64 labels >= 2**63 stay unsigned (never cast to int64).
    """
    pairs = np.asarray(overlap_pairs)
    if pairs.dtype.kind not in "iu":
        pairs = np.asarray(overlap_pairs, dtype=np.int64)
    pairs = pairs.reshape(-1, 3)
    return pairs[:, 0], pairs[:, 1], pairs[:, 2].astype(np.int64)


def match_instances(overlap_pairs: np.ndarray) -> tuple[MatchedPair, ...]:
    """One-to-one matching of true and predicted instances with maximum total overlap.

    Parameters
    ----------
    overlap_pairs : array_like, shape (K, 3), integer
        Rows ``(true_label, pred_label, n_voxels)`` with ``n_voxels > 0``, each pair at most once.

    Returns
    -------
    tuple of MatchedPair
        Sorted by true label. Each label appears at most once; only overlapping pairs are matched.

    Examples
    --------
    >>> # true 1 overlaps pred 10 (5 voxels) and pred 11 (4); true 2 overlaps only pred 10 (3)
    >>> [(m.true_label, m.pred_label) for m in match_instances([[1, 10, 5], [1, 11, 4], [2, 10, 3]])]
    [(1, 11), (2, 10)]
    """
    true_col, pred_col, counts = _overlap_columns(overlap_pairs)
    if len(counts) == 0:
        return ()
    # dense indices of the labels (np.unique's inverse): no arithmetic on the labels themselves
    t_ids, t_idx = np.unique(true_col, return_inverse=True)
    p_ids, p_idx = np.unique(pred_col, return_inverse=True)
    nt, n_p = len(t_ids), len(p_ids)
    # connected components of the bipartite overlap graph: true nodes 0..nt-1, pred nodes nt..
    graph = coo_matrix((np.ones(len(counts)), (t_idx, nt + p_idx)), shape=(nt + n_p, nt + n_p))
    _, comp = connected_components(graph, directed=False)
    pair_comp = comp[t_idx]
    order = np.argsort(pair_comp, kind="stable")
    bounds = np.flatnonzero(np.r_[True, np.diff(pair_comp[order]) != 0, True])
    matches = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        sel = order[lo:hi]
        rows, row_inv = np.unique(t_idx[sel], return_inverse=True)
        cols, col_inv = np.unique(p_idx[sel], return_inverse=True)
        if len(rows) == 1 or len(cols) == 1:
            best = sel[np.lexsort((p_idx[sel], t_idx[sel], -counts[sel]))[0]]
            matches.append(MatchedPair(int(true_col[best]), int(pred_col[best]), int(counts[best])))
            continue
        weight = np.zeros((len(rows), len(cols)))
        weight[row_inv, col_inv] = counts[sel]
        r, c = linear_sum_assignment(weight, maximize=True)
        for i, j in zip(r, c, strict=True):
            if weight[i, j] > 0:
                matches.append(MatchedPair(int(t_ids[rows[i]]), int(p_ids[cols[j]]), int(weight[i, j])))
    return tuple(sorted(matches, key=lambda m: m.true_label))


@dataclass(frozen=True)
class Discontinuities:
    """Result of :func:`discontinuities` (see the module docstring for the definition).

    Attributes
    ----------
    per_instance : float
        Mean over matched true instances of (overlapping predicted instances − 1); NaN if none.
    n_matched : int
        Number of matched true instances.
    per_true : dict of int to int
        True label → overlapping predicted instances − 1, for the matched true instances.
    """

    per_instance: float
    n_matched: int
    per_true: dict[int, int]


def discontinuities(
    pred_labels: np.ndarray, true_labels: np.ndarray, *, connectivity: int = 26
) -> Discontinuities:
    """Discontinuities per instance: predicted pieces overlapping each matched true instance, minus one.

    Parameters
    ----------
    pred_labels : ndarray, shape (Z, Y, X), integer or bool
        Predicted labels; each connected piece of a label is one predicted instance.
    true_labels : ndarray, shape (Z, Y, X), integer
        True instances (labels as given); 0 is background.
    connectivity : {6, 18, 26}
        Voxel connectivity of the predicted pieces.

    Returns
    -------
    Discontinuities

    Raises
    ------
    TypeError
        If a volume is not an integer (``pred_labels``: or bool) array.
    ValueError
        If a volume is not 3-D, the shapes differ or ``connectivity`` is not 6, 18 or 26.

    Examples
    --------
    >>> true = np.zeros((3, 3, 30), np.uint8); true[1, 1, 2:28] = 1
    >>> pred = true.copy(); pred[1, 1, [10, 20]] = 0  # cut into 3 pieces, all labelled 1
    >>> d = discontinuities(pred, true)
    >>> d.per_instance, d.per_true
    (2.0, {1: 2})
    """
    t = check_array(true_labels, "true_labels", ndim=3, kinds="iu")
    p = check_array(pred_labels, "pred_labels", ndim=3, kinds="biu")
    check_same_shape(p, "pred_labels", t, "true_labels")
    pieces = connected_instances(p, connectivity=connectivity)
    pairs = instance_overlaps(pieces, t)
    matches = match_instances(pairs)
    if not matches:
        return Discontinuities(per_instance=math.nan, n_matched=0, per_true={})
    t_with, n_with = np.unique(pairs[:, 0], return_counts=True)
    count = dict(zip(t_with.tolist(), n_with.tolist(), strict=True))
    per_true = {m.true_label: count[m.true_label] - 1 for m in matches}
    return Discontinuities(
        per_instance=float(np.mean(list(per_true.values()))), n_matched=len(matches), per_true=per_true
    )


def _ssmd(pred: np.ndarray, true: np.ndarray) -> float:
    if len(pred) == 0 or len(true) == 0:
        return math.nan
    diff = float(pred.mean() - true.mean())
    spread = math.sqrt(float(pred.var() + true.var()))
    if spread == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / spread


def length_metrics_from_overlaps(
    *,
    pred_ids: Sequence[int],
    true_ids: Sequence[int],
    overlap_pairs: np.ndarray,
    pred_lengths_um: Mapping[int, float],
    true_lengths_um: Mapping[int, float],
) -> LengthMetrics:
    """Length metrics from precomputed instances, overlaps and lengths (no skeletonization).

    Parameters
    ----------
    pred_ids, true_ids : sequence of int
        All predicted / true instance labels (border instances included): the denominators of
        precision and recall.
    overlap_pairs : array_like, shape (K, 3), integer
        ``(true_label, pred_label, n_voxels)`` rows, as from :func:`instance_overlaps`.
    pred_lengths_um, true_lengths_um : mapping of int to float
        Lengths (µm) forming the two distributions; leave out the instances to exclude (the ones
        touching the border).

    Returns
    -------
    LengthMetrics

    Raises
    ------
    ValueError
        If an overlap or length refers to an unknown instance, or a length is negative or not finite.
    """
    pred_set = {int(v) for v in pred_ids}
    true_set = {int(v) for v in true_ids}
    true_col, pred_col, _ = _overlap_columns(overlap_pairs)
    unknown_t = set(true_col.tolist()) - true_set
    unknown_p = set(pred_col.tolist()) - pred_set
    if unknown_t or unknown_p:
        raise ValueError(
            f"overlap_pairs refers to instances not in true_ids/pred_ids: true {sorted(unknown_t)[:5]}, "
            f"pred {sorted(unknown_p)[:5]}"
        )
    for name, lengths, ids in (("pred_lengths_um", pred_lengths_um, pred_set),
                               ("true_lengths_um", true_lengths_um, true_set)):
        extra = set(map(int, lengths)) - ids
        if extra:
            raise ValueError(f"{name} has lengths for unknown instances {sorted(extra)[:5]}")
        bad = [v for v in lengths.values() if not (math.isfinite(v) and v >= 0)]
        if bad:
            raise ValueError(f"{name} contains invalid lengths {bad[:5]}; expected finite values >= 0 (µm)")

    matches = match_instances(overlap_pairs)
    n_pred, n_true = len(pred_set), len(true_set)
    precision = len(matches) / n_pred if n_pred else math.nan
    recall = len(matches) / n_true if n_true else math.nan
    if matches:
        t_with, n_with = np.unique(true_col, return_counts=True)
        overlap_count = dict(zip(t_with.tolist(), n_with.tolist(), strict=True))
        overlapping = float(np.mean([overlap_count[m.true_label] for m in matches]))
    else:
        overlapping = math.nan
    # sorted, so that equal distributions give bit-identical means and spreads (SSMD exactly 0)
    pl = np.sort(np.array([float(v) for v in pred_lengths_um.values()]))
    tl = np.sort(np.array([float(v) for v in true_lengths_um.values()]))
    wasserstein = float(wasserstein_distance(pl, tl)) if len(pl) and len(tl) else math.nan
    ssmd_signed = _ssmd(pl, tl)
    return LengthMetrics(
        precision=float(precision),
        recall=float(recall),
        overlapping_instances=overlapping,
        wasserstein_um=wasserstein,
        ssmd=abs(ssmd_signed),
        ssmd_signed=ssmd_signed,
        n_pred=n_pred,
        n_true=n_true,
        matches=matches,
        pred_lengths_um={int(k): float(v) for k, v in sorted(pred_lengths_um.items())},
        true_lengths_um={int(k): float(v) for k, v in sorted(true_lengths_um.items())},
    )


def _border_labels(arr: np.ndarray) -> np.ndarray:
    faces = [np.take(arr, i, axis=ax).ravel() for ax in range(arr.ndim) for i in (0, -1)]
    ids = np.unique(np.concatenate(faces))
    return ids[ids != 0]


def _interior_lengths(labels: np.ndarray, voxel_size_um) -> dict[int, float]:
    border = _border_labels(labels)
    interior = np.where(np.isin(labels, border), 0, labels) if len(border) else labels
    return object_lengths(interior, voxel_size_um=voxel_size_um)


def length_metrics(
    pred_labels: np.ndarray,
    true_labels: np.ndarray,
    *,
    voxel_size_um: Sequence[float],
) -> LengthMetrics:
    """Precision, recall, overlapping instances and length-distribution distances of a prediction.

    See the module docstring for the definitions. Instances are the labels as given; lengths come
    from :func:`pipeline.skeleton.object_lengths`; instances touching the volume border are excluded
    from the length distributions only.

    Parameters
    ----------
    pred_labels, true_labels : ndarray, shape (Z, Y, X), integer
        Instance labels; 0 is background. Label a binary mask with :func:`connected_instances`.
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x).

    Returns
    -------
    LengthMetrics

    Raises
    ------
    TypeError
        If a volume is not an integer array (a bool mask must be labelled into instances first).
    ValueError
        If a volume is not 3-D, the shapes differ, or ``voxel_size_um`` is invalid.

    Examples
    --------
    >>> true = np.zeros((3, 3, 30), np.uint8); true[1, 1, 2:28] = 1
    >>> pred = true.copy(); pred[1, 1, 15:28] = 2  # the object is split in two
    >>> m = length_metrics(pred, true, voxel_size_um=(1, 1, 1))
    >>> m.precision, m.recall, m.overlapping_instances
    (0.5, 1.0, 2.0)
    """
    for name, arr in (("pred_labels", pred_labels), ("true_labels", true_labels)):
        if getattr(arr, "dtype", None) == np.bool_:
            raise TypeError(
                f"{name} is a boolean mask; expected integer instance labels. "
                "Label its connected components first: connected_instances(mask)"
            )
    p = check_array(pred_labels, "pred_labels", ndim=3, kinds="iu")
    t = check_array(true_labels, "true_labels", ndim=3, kinds="iu")
    check_same_shape(p, "pred_labels", t, "true_labels")
    vs = as_voxel_size(voxel_size_um)
    pred_ids = np.unique(p)
    true_ids = np.unique(t)
    pairs = instance_overlaps(p, t)
    return length_metrics_from_overlaps(
        pred_ids=pred_ids[pred_ids != 0].tolist(),
        true_ids=true_ids[true_ids != 0].tolist(),
        overlap_pairs=pairs,
        pred_lengths_um=_interior_lengths(p, vs),
        true_lengths_um=_interior_lengths(t, vs),
    )
