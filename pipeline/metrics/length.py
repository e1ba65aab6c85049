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
* **Lengths** are :func:`pipeline.skeleton.object_lengths` (skeleton graph diameter, µm), each
  measured on the instance alone in its bounding box grown by one voxel (:func:`object_length`), so a
  length never depends on how the volume is read. Instances touching the volume border are excluded
  from the length distributions (so from ``wasserstein_um`` and ``ssmd``) but **not** from precision,
  recall and overlapping_instances.
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

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cc3d
import fastremap
import numpy as np
from scipy.ndimage import find_objects
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
    "discontinuities_from_overlaps",
    "instance_overlaps",
    "length_metrics",
    "length_metrics_from_overlaps",
    "match_instances",
    "object_boxes",
    "overlap_array",
    "object_length",
    "voxel_piece_overlaps",
    "voxel_pieces",
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
    return overlap_array(t_ids, p_ids, counts)


def overlap_array(true_ids: np.ndarray, pred_ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``(true, pred, n_voxels)`` rows, int64, or uint64 when an id is >= 2**63 (it would turn negative)."""
    ids = (np.asarray(true_ids), np.asarray(pred_ids))
    big = any(i.dtype == np.uint64 and len(i) and int(i.max()) > _INT64_MAX for i in ids)
    dtype = np.uint64 if big else np.int64
    return np.stack([ids[0].astype(dtype), ids[1].astype(dtype), np.asarray(counts).astype(dtype)],
                    axis=1).reshape(-1, 3)


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
    return discontinuities_from_overlaps(instance_overlaps(pieces, t))


def discontinuities_from_overlaps(overlap_pairs: np.ndarray) -> Discontinuities:
    """:func:`discontinuities` from the overlaps of the predicted *pieces* (connected instances) with
    the true instances, rows ``(true_label, piece_id, n_voxels)`` as :func:`instance_overlaps` gives them.

    Any piece ids will do whose order is that of :func:`connected_instances` (the raster order of each
    piece's first voxel): the matching breaks ties by it. :func:`voxel_piece_overlaps` gives such ids, object
    by object.
    """
    pairs = np.asarray(overlap_pairs).reshape(-1, 3)
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


def voxel_pieces(raster: np.ndarray, volume_shape: Sequence[int], *, connectivity: int = 26) -> np.ndarray:
    """Connected pieces of a set of voxels, without an image: each voxel's piece id.

    Parameters
    ----------
    raster : ndarray, shape (N,), int64
        The voxels' raster indices in a volume of ``volume_shape`` (z, y, x), ascending, unique.
    volume_shape : sequence of 3 int
        The volume's shape.
    connectivity : {6, 18, 26}
        Voxel connectivity.

    Returns
    -------
    ndarray, shape (N,), int64
        The raster index of the first voxel of each voxel's piece (the order in which
        :func:`connected_instances` numbers the pieces of the same voxels in an image).

    Examples
    --------
    >>> voxel_pieces(np.array([0, 1, 3, 8]), (1, 3, 3)).tolist()  # (0,0),(0,1) | (1,0) touches (0,1) | (2,2)
    [0, 0, 0, 8]
    """
    if connectivity not in (6, 18, 26):
        raise ValueError(f"connectivity must be 6, 18 or 26; got {connectivity!r}")
    raster = np.asarray(raster, dtype=np.int64)
    n = len(raster)
    if n == 0:
        return raster.copy()
    shape = np.asarray(tuple(volume_shape), dtype=np.int64)
    coords = np.stack(np.unravel_index(raster, tuple(shape)), axis=1)
    order = {6: 1, 18: 2, 26: 3}[connectivity]  # non-zero offset components allowed
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=3)
               if o > (0, 0, 0) and sum(map(abs, o)) <= order]  # one of each pair of opposite offsets
    rows, cols = [], []
    for offset in offsets:
        nb = coords + np.asarray(offset)
        inside = np.flatnonzero(np.all((nb >= 0) & (nb < shape), axis=1))
        key = np.ravel_multi_index(tuple(nb[inside].T), tuple(shape))
        at = np.minimum(np.searchsorted(raster, key), n - 1)
        hit = raster[at] == key
        rows.append(inside[hit])
        cols.append(at[hit])
    a, b = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    _, first = np.unique(comp, return_index=True)  # raster is ascending: a piece's first voxel
    return raster[first][comp]


def voxel_piece_overlaps(
    raster: np.ndarray, true_values: np.ndarray, volume_shape: Sequence[int]
) -> np.ndarray:
    """The overlaps of one object's connected pieces with the true instances, from its voxels (``raster``,
    as :func:`voxel_pieces`) and the true labels at them: rows ``(true_label, piece_id, n_voxels)`` sorted,
    a piece's id the raster index of its first voxel (so ids sort as :func:`connected_instances` numbers
    the pieces of the whole volume)."""
    piece = voxel_pieces(raster, volume_shape)
    true_values = np.asarray(true_values)
    fg = true_values != 0
    p_ids, t_ids, counts = contingency_table(piece[fg], true_values[fg])
    return overlap_array(t_ids, p_ids, counts)


def _interior_lengths(labels: np.ndarray, voxel_size_um) -> dict[int, float]:
    border = set(_border_labels(labels).tolist())
    lengths = {}
    for label, box in object_boxes(labels).items():
        if label not in border:
            lengths[label] = object_length(labels[box], label, voxel_size_um=voxel_size_um)
    return lengths


def object_boxes(labels: np.ndarray) -> dict[int, tuple[slice, ...]]:
    """Each non-zero label's bounding box grown by one voxel (within the array), as slices."""
    renumbered, mapping = fastremap.renumber(labels, in_place=False)
    inverse = {v: k for k, v in mapping.items() if k != 0}
    boxes = {}
    for i, box in enumerate(find_objects(renumbered)):
        if box is not None:
            boxes[int(inverse[i + 1])] = tuple(slice(max(b.start - 1, 0), min(b.stop + 1, n))
                                               for b, n in zip(box, labels.shape, strict=True))
    return boxes


def object_length(crop: np.ndarray, label: int, *, voxel_size_um: Sequence[float]) -> float:
    """The length (:func:`pipeline.skeleton.object_lengths`, µm) of one object, from a crop around it.

    ``crop`` holds the object's bounding box grown by one voxel (:func:`object_boxes`; a box inside
    the volume, as for every object that does not touch the volume border); other labels in it are
    ignored. The length depends only on the crop's content, never on where the crop lies, so it is the
    same however the volume is read (whole or block by block).
    """
    one = np.where(crop == label, crop, 0)
    return object_lengths(one, voxel_size_um=voxel_size_um).get(int(label), 0.0)


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
