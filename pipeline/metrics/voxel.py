"""Voxel-wise segmentation metrics: accuracy, Dice, ARI, VOI and Betti-number error.

Argument order is always ``(pred, true)``. Arrays may be 2-D (y, x) or 3-D (z, y, x) (accuracy, Dice,
ARI and VOI accept any shape); ``pred`` and ``true`` must have the same shape.

Definitions
-----------
* **Foreground** is every non-zero voxel; accuracy, Dice and the Betti numbers see only the binary
  foreground masks, so label volumes are accepted too.
* **ARI and VOI** compare the *partitions* of the ground-truth foreground: they are computed over the
  voxels with ``true != 0`` only (ground-truth background is unannotated territory, as in CREMI).
  On those voxels a predicted 0 is one more predicted cluster (the "background" cluster): predicting
  background inside an object is penalized like a split into a separate segment. Contingency tables
  are built with ``np.unique`` on combined keys; no scikit-learn.
* **VOI** in bits by default (``log_base=2``, as CREMI): ``split = H(pred | true)`` (one true object
  spread over several predicted segments), ``merge = H(true | pred)``; ``total = split + merge``.
* **Betti numbers** of the foreground with a complementary pair of digital connectivities. Default:
  foreground 8-connected in 2-D / 26-connected in 3-D with background 4 / 6 — the union of closed
  pixel squares / voxel cubes. ``connectivity=4`` / ``6`` selects the other pair (foreground 4 / 6,
  background 8 / 26). β0 = foreground components (cc3d); in 3-D β2 = bounded background components
  (cavities, counted in the volume padded by one background voxel); β1 from the Euler characteristic,
  β1 = β0 + β2 − χ (3-D) or β1 = β0 − χ (2-D). χ = V − E + F (− C) counts the cells of the cubical
  complex that realizes the chosen connectivity: for the 8 / 26 pair the closed squares / cubes of the
  foreground voxels and all their faces, for the 4 / 6 pair the complex with a vertex per voxel, an
  edge per pair of face-adjacent voxels, a square per 2×2 block and a cube per 2×2×2 block.
* **Betti error** = |β_k(pred) − β_k(true)| per dimension k, and their sum. The patch-wise variant
  averages the error over patches (as the TopoLoss / supervoxel papers report it for 2-D images).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cc3d
import numpy as np

from pipeline._checks import check_array, check_same_shape

__all__ = [
    "BettiError",
    "BettiNumbers",
    "VariationOfInformation",
    "accuracy",
    "adjusted_rand_index",
    "betti_error",
    "betti_numbers",
    "contingency_table",
    "dice",
    "euler_characteristic",
    "partition_scores",
    "patchwise_betti_error",
    "variation_of_information",
]


def _pair(pred, true, *, ndim=None) -> tuple[np.ndarray, np.ndarray]:
    p = check_array(pred, "pred", ndim=ndim, kinds="biu")
    t = check_array(true, "true", ndim=ndim, kinds="biu")
    check_same_shape(p, "pred", t, "true")
    return p, t


# --------------------------------------------------------------------------------------------------------
# binary overlap metrics


def accuracy(pred: np.ndarray, true: np.ndarray) -> float:
    """Fraction of voxels whose foreground/background state agrees.

    Parameters
    ----------
    pred, true : ndarray, same shape, bool or integer
        Masks or label volumes; non-zero is foreground.

    Returns
    -------
    float
        ``mean((pred != 0) == (true != 0))`` in [0, 1]; 1.0 for empty arrays.

    Raises
    ------
    TypeError
        If an input is not a bool or integer array.
    ValueError
        If the shapes differ.

    Examples
    --------
    >>> accuracy(np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1]))
    0.75
    """
    p, t = _pair(pred, true)
    if p.size == 0:
        return 1.0
    return float(np.count_nonzero((p != 0) == (t != 0)) / p.size)


def dice(pred: np.ndarray, true: np.ndarray) -> float:
    """Dice coefficient of the foreground masks, ``2 |P ∩ T| / (|P| + |T|)``.

    Parameters
    ----------
    pred, true : ndarray, same shape, bool or integer
        Masks or label volumes; non-zero is foreground.

    Returns
    -------
    float
        In [0, 1]; 1.0 when both masks are empty (perfect agreement on nothing).

    Raises
    ------
    TypeError
        If an input is not a bool or integer array.
    ValueError
        If the shapes differ.

    Examples
    --------
    >>> dice(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
    0.6666666666666666
    """
    p, t = _pair(pred, true)
    pm, tm = p != 0, t != 0
    denom = np.count_nonzero(pm) + np.count_nonzero(tm)
    if denom == 0:
        return 1.0
    return float(2 * np.count_nonzero(pm & tm) / denom)


# --------------------------------------------------------------------------------------------------------
# partition metrics


def contingency_table(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse contingency table of two label arrays of the same shape.

    Parameters
    ----------
    pred, true : ndarray, same shape, bool or integer

    Returns
    -------
    pred_ids, true_ids, counts : ndarray, shape (K,)
        The K label pairs that co-occur and how many voxels carry each pair (int64), sorted by
        (true, pred).
    """
    p, t = _pair(pred, true)
    p, t = p.ravel(), t.ravel()
    if p.size == 0:
        empty = np.zeros(0, np.int64)
        return p[:0], t[:0], empty
    p_ids, p_inv = np.unique(p, return_inverse=True)
    t_ids, t_inv = np.unique(t, return_inverse=True)
    keys = t_inv.astype(np.int64) * len(p_ids) + p_inv.astype(np.int64)
    pairs, counts = np.unique(keys, return_counts=True)
    return p_ids[pairs % len(p_ids)], t_ids[pairs // len(p_ids)], counts.astype(np.int64)


def _foreground_contingency(pred, true) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contingency counts over the ground-truth foreground: (counts, pred_inverse, true_inverse)."""
    p, t = _pair(pred, true)
    fg = t != 0
    return _foreground_of(*contingency_table(p[fg], t[fg]))


def _foreground_of(p_ids: np.ndarray, t_ids: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, ...]:
    """(counts, pred_inverse, true_inverse) of the rows of a contingency table with ``true != 0``."""
    fg = t_ids != 0
    _, pi = np.unique(p_ids[fg], return_inverse=True)
    _, ti = np.unique(t_ids[fg], return_inverse=True)
    return counts[fg].astype(np.float64), pi, ti


def partition_scores(
    pred_ids: np.ndarray, true_ids: np.ndarray, counts: np.ndarray
) -> tuple[float, float, float, VariationOfInformation]:
    """Accuracy, Dice, ARI and VOI (bits) of two label images from their contingency table alone.

    Parameters
    ----------
    pred_ids, true_ids, counts : ndarray, shape (K,)
        Every (pred, true) label pair of the two images, background pairs included, and its voxel
        count, sorted by (true, pred) as :func:`contingency_table` returns them (a table summed over
        blocks, e.g. :func:`pipeline.metrics.blocks.merge_contingency`).

    Returns
    -------
    tuple
        ``(accuracy, dice, adjusted_rand_index, variation_of_information)``, exactly as
        :func:`accuracy`, :func:`dice`, :func:`adjusted_rand_index` and :func:`variation_of_information`
        give them on the images.

    Examples
    --------
    >>> pred, true = np.array([0, 1, 1, 2]), np.array([0, 5, 5, 5])
    >>> acc, d, ari, voi = partition_scores(*contingency_table(pred, true))
    >>> acc, d, round(voi.split, 3)
    (1.0, 1.0, 0.918)
    """
    counts = np.asarray(counts, dtype=np.int64)
    p_fg, t_fg = np.asarray(pred_ids) != 0, np.asarray(true_ids) != 0
    n = int(counts.sum())
    acc = float(counts[p_fg == t_fg].sum() / n) if n else 1.0
    denom = int(counts[p_fg].sum() + counts[t_fg].sum())
    d = float(2 * counts[p_fg & t_fg].sum() / denom) if denom else 1.0
    fg = _foreground_of(np.asarray(pred_ids), np.asarray(true_ids), counts)
    return acc, d, _ari(*fg), _voi(*fg, log_base=2.0)


def adjusted_rand_index(pred: np.ndarray, true: np.ndarray) -> float:
    """Adjusted Rand index of two segmentations over the ground-truth foreground.

    Only voxels with ``true != 0`` are compared; there, predicted label 0 is an ordinary cluster.
    With ``n_ij`` the contingency counts, ``a_i``/``b_j`` its row/column sums and ``n`` their total::

        index    = Σ C(n_ij, 2)
        expected = Σ C(a_i, 2) · Σ C(b_j, 2) / C(n, 2)
        ARI      = (index − expected) / (½ (Σ C(a_i, 2) + Σ C(b_j, 2)) − expected)

    Parameters
    ----------
    pred, true : ndarray, same shape, bool or integer
        Label arrays; 0 in ``true`` is ignored background.

    Returns
    -------
    float
        At most 1 (identical partitions), about 0 for chance. 1.0 in the degenerate cases where the
        formula is 0/0 (fewer than 2 foreground voxels, or both partitions trivial and identical),
        following scikit-learn's convention.

    Raises
    ------
    TypeError
        If an input is not a bool or integer array.
    ValueError
        If the shapes differ.

    Examples
    --------
    >>> true = np.array([0, 1, 1, 2, 2])
    >>> adjusted_rand_index(np.array([5, 3, 3, 4, 4]), true)  # relabelled, background ignored
    1.0
    """
    return _ari(*_foreground_contingency(pred, true))


def _ari(counts: np.ndarray, pi: np.ndarray, ti: np.ndarray) -> float:
    n = counts.sum()
    if n < 2:
        return 1.0
    a = np.bincount(ti, weights=counts)
    b = np.bincount(pi, weights=counts)

    def comb2(x):
        return x * (x - 1) / 2

    index = comb2(counts).sum()
    sum_a, sum_b = comb2(a).sum(), comb2(b).sum()
    expected = sum_a * sum_b / comb2(n)
    denom = 0.5 * (sum_a + sum_b) - expected
    if denom == 0:
        return 1.0
    return float((index - expected) / denom)


@dataclass(frozen=True)
class VariationOfInformation:
    """Variation of information split into its two conditional entropies.

    Attributes
    ----------
    split : float
        ``H(pred | true)``: how much a true object is spread over predicted segments (over-segmentation).
    merge : float
        ``H(true | pred)``: how much a predicted segment mixes true objects (under-segmentation).
    total : float
        ``split + merge``.
    log_base : float
        Base of the logarithm (2: bits).
    """

    split: float
    merge: float
    total: float
    log_base: float


def variation_of_information(
    pred: np.ndarray, true: np.ndarray, *, log_base: float = 2.0
) -> VariationOfInformation:
    """Variation of information over the ground-truth foreground, split into split and merge parts.

    With ``p_ij`` the joint distribution of (true, pred) labels over the voxels with ``true != 0``
    (predicted 0 counts as a cluster) and ``p_i``, ``q_j`` its marginals::

        split = H(pred | true) = − Σ p_ij log(p_ij / p_i)
        merge = H(true | pred) = − Σ p_ij log(p_ij / q_j)

    Parameters
    ----------
    pred, true : ndarray, same shape, bool or integer
        Label arrays; 0 in ``true`` is ignored background.
    log_base : float
        Logarithm base: 2 (default, bits, as CREMI), ``math.e`` for nats.

    Returns
    -------
    VariationOfInformation
        ``split``, ``merge`` and ``total`` (all 0.0 when ``true`` has no foreground).

    Raises
    ------
    TypeError
        If an input is not a bool or integer array.
    ValueError
        If the shapes differ or ``log_base`` is not > 0 and != 1.

    Examples
    --------
    >>> true = np.array([1, 1, 1, 1])
    >>> variation_of_information(np.array([1, 1, 2, 2]), true).split  # one object cut in halves: 1 bit
    1.0
    """
    if not (math.isfinite(log_base) and log_base > 0 and log_base != 1):
        raise ValueError(f"log_base must be a finite number > 0 and != 1; got {log_base!r}")
    return _voi(*_foreground_contingency(pred, true), log_base=log_base)


def _voi(counts: np.ndarray, pi: np.ndarray, ti: np.ndarray, *, log_base: float) -> VariationOfInformation:
    n = counts.sum()
    if n == 0:
        return VariationOfInformation(0.0, 0.0, 0.0, float(log_base))
    p_ij = counts / n
    p_i = np.bincount(ti, weights=p_ij)[ti]
    q_j = np.bincount(pi, weights=p_ij)[pi]
    log = np.log(log_base)
    split = float(max(0.0, -(p_ij * np.log(p_ij / p_i)).sum() / log))
    merge = float(max(0.0, -(p_ij * np.log(p_ij / q_j)).sum() / log))
    return VariationOfInformation(split, merge, split + merge, float(log_base))


# --------------------------------------------------------------------------------------------------------
# Betti numbers


@dataclass(frozen=True)
class BettiNumbers:
    """Betti numbers of a binary 2-D or 3-D image.

    Attributes
    ----------
    betti : tuple of int
        (β0, β1) in 2-D, (β0, β1, β2) in 3-D: components, independent loops (tunnels / holes),
        cavities.
    euler_characteristic : int
        χ = Σ (−1)^k β_k.
    connectivity : int
        The foreground connectivity used (4 or 8 in 2-D, 6 or 26 in 3-D).
    """

    betti: tuple[int, ...]
    euler_characteristic: int
    connectivity: int

    @property
    def b0(self) -> int:
        return self.betti[0]

    @property
    def b1(self) -> int:
        return self.betti[1]

    @property
    def b2(self) -> int:
        """β2 (0 for 2-D images)."""
        return self.betti[2] if len(self.betti) > 2 else 0


@dataclass(frozen=True)
class BettiError:
    """Absolute Betti-number differences between a prediction and the ground truth.

    Attributes
    ----------
    per_dimension : tuple of float
        |Δβ_k| for k = 0 .. ndim−1 (means over patches for :func:`patchwise_betti_error`).
    total : float
        Sum over dimensions.
    n_patches : int
        Number of patches averaged (1 for a whole-image error).
    """

    per_dimension: tuple[float, ...]
    total: float
    n_patches: int


_FG_CONNECTIVITIES = {2: (4, 8), 3: (6, 26)}


def _connectivity(ndim: int, connectivity: int | None) -> int:
    allowed = _FG_CONNECTIVITIES[ndim]
    if connectivity is None:
        return allowed[1]
    if connectivity not in allowed:
        raise ValueError(
            f"connectivity={connectivity!r} is not supported for a {ndim}-D mask; expected one of {allowed} "
            "(complementary digital-topology pairs; 18 has no cubical-complex Euler formula here)"
        )
    return int(connectivity)


def _pairs_along(a: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    lo = [slice(None)] * a.ndim
    hi = [slice(None)] * a.ndim
    lo[axis], hi[axis] = slice(0, -1), slice(1, None)
    return a[tuple(lo)], a[tuple(hi)]


def _closed_cells(m: np.ndarray, span: tuple[int, ...]) -> np.ndarray:
    """k-cells spanning ``span`` of the union of closed voxel cubes (a cell is in it if any voxel
    around it is foreground): pad the other axes by one and OR over 2-windows along them."""
    other = [a for a in range(m.ndim) if a not in span]
    out = np.pad(m, [(1, 1) if a in other else (0, 0) for a in range(m.ndim)])
    for ax in other:
        out = np.logical_or(*_pairs_along(out, ax))
    return out


def _block_cells(m: np.ndarray, span: tuple[int, ...]) -> np.ndarray:
    """k-cells spanning ``span`` of the voxel-vertex complex: 2^k blocks of foreground voxels."""
    out = m
    for ax in span:
        out = np.logical_and(*_pairs_along(out, ax))
    return out


def euler_characteristic(mask: np.ndarray, *, connectivity: int | None = None) -> int:
    """Euler characteristic of a binary 2-D or 3-D mask for a foreground connectivity.

    * 8 (2-D) / 26 (3-D), the default: the union of closed unit squares / cubes, one per foreground
      voxel. A k-cell of the lattice belongs to it if any of the 2^(ndim−k) voxels around it is
      foreground; χ = Σ_k (−1)^k #k-cells.
    * 4 (2-D) / 6 (3-D): the complex with a vertex per foreground voxel and a k-cell for every 2^k
      block of foreground voxels spanning k axes.

    Parameters
    ----------
    mask : ndarray, 2-D or 3-D, bool or integer
        Non-zero is foreground.
    connectivity : int, optional
        Foreground connectivity: 4 or 8 (2-D), 6 or 26 (3-D). Default the larger.

    Returns
    -------
    int
        χ = β0 − β1 (2-D) or β0 − β1 + β2 (3-D).

    Examples
    --------
    >>> ring = np.ones((3, 3), bool); ring[1, 1] = False
    >>> euler_characteristic(ring)  # one component, one hole
    0
    """
    m = check_array(mask, "mask", ndim=(2, 3), kinds="biu") != 0
    conn = _connectivity(m.ndim, connectivity)
    cells = _closed_cells if conn == _FG_CONNECTIVITIES[m.ndim][1] else _block_cells
    chi = 0
    for k in range(m.ndim + 1):
        for span in itertools.combinations(range(m.ndim), k):
            chi += (-1) ** k * int(np.count_nonzero(cells(m, span)))
    return chi


def betti_numbers(mask: np.ndarray, *, connectivity: int | None = None) -> BettiNumbers:
    """Betti numbers of a binary 2-D or 3-D mask.

    β0 = number of foreground components (cc3d, ``connectivity``); β2 (3-D) = number of background
    components, with the complementary connectivity, that do not reach the array border (cavities);
    β1 = β0 + β2 − χ (3-D) or β0 − χ (2-D) with χ from :func:`euler_characteristic`.

    Parameters
    ----------
    mask : ndarray, 2-D (y, x) or 3-D (z, y, x), bool or integer
        Non-zero is foreground.
    connectivity : int, optional
        Foreground connectivity: 4 or 8 (2-D), 6 or 26 (3-D); default 8 / 26. The background uses
        the complementary 4 / 6 (or 8 / 26).

    Returns
    -------
    BettiNumbers

    Raises
    ------
    TypeError
        If ``mask`` is not a bool or integer array.
    ValueError
        If ``mask`` is not 2-D or 3-D or ``connectivity`` is not supported.

    Examples
    --------
    >>> ring = np.zeros((5, 5), bool); ring[1:4, 1:4] = True; ring[2, 2] = False
    >>> betti_numbers(ring).betti
    (1, 1)
    """
    m = check_array(mask, "mask", ndim=(2, 3), kinds="biu") != 0
    conn = _connectivity(m.ndim, connectivity)
    lo, hi = _FG_CONNECTIVITIES[m.ndim]
    bg_conn = lo if conn == hi else hi
    chi = euler_characteristic(m, connectivity=conn)
    if m.any():
        _, b0 = cc3d.connected_components(np.ascontiguousarray(m, dtype=np.uint8), connectivity=conn,
                                          return_N=True)
    else:
        b0 = 0
    if m.ndim == 3:
        background = np.pad(~m, 1, constant_values=True)
        _, n_bg = cc3d.connected_components(background.astype(np.uint8), connectivity=bg_conn, return_N=True)
        b2 = int(n_bg) - 1
        b1 = int(b0) + b2 - chi
        betti = (int(b0), b1, b2)
    else:
        betti = (int(b0), int(b0) - chi)
    return BettiNumbers(betti=betti, euler_characteristic=int(chi), connectivity=conn)


def betti_error(pred: np.ndarray, true: np.ndarray, *, connectivity: int | None = None) -> BettiError:
    """Absolute Betti-number error |β_k(pred) − β_k(true)| per dimension, and the total.

    Parameters
    ----------
    pred, true : ndarray, same shape, 2-D or 3-D, bool or integer
        Non-zero is foreground.
    connectivity : int, optional
        Foreground connectivity, see :func:`betti_numbers`.

    Returns
    -------
    BettiError
        ``per_dimension`` (2 or 3 floats), ``total``, ``n_patches=1``.

    Raises
    ------
    TypeError, ValueError
        As :func:`betti_numbers`, or if the shapes differ.

    Examples
    --------
    >>> true = np.zeros((5, 5), bool); true[1:4, 1:4] = True; true[2, 2] = False
    >>> pred = true.copy(); pred[2, 2] = True  # hole filled
    >>> betti_error(pred, true).per_dimension
    (0.0, 1.0)
    """
    p, t = _pair(pred, true, ndim=(2, 3))
    bp = betti_numbers(p, connectivity=connectivity).betti
    bt = betti_numbers(t, connectivity=connectivity).betti
    diff = tuple(float(abs(a - b)) for a, b in zip(bp, bt, strict=True))
    return BettiError(per_dimension=diff, total=float(sum(diff)), n_patches=1)


def _patch_starts(n: int, size: int, stride: int) -> list[int]:
    starts = list(range(0, n - size + 1, stride))
    if starts[-1] != n - size:
        starts.append(n - size)
    return starts


def patchwise_betti_error(
    pred: np.ndarray,
    true: np.ndarray,
    *,
    patch_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    connectivity: int | None = None,
) -> BettiError:
    """Betti error averaged over patches, as reported for 2-D images in the TopoLoss line of papers.

    Patches of ``patch_size`` are placed every ``stride`` voxels along each axis (default: the patch
    size, i.e. tiles), plus one patch flush with the far end when the tiles do not reach it, so every
    patch is full-size and together they cover the whole image. The Betti numbers of each patch are
    computed on the patch alone (cutting an object at the patch border counts its pieces).

    Parameters
    ----------
    pred, true : ndarray, same shape, 2-D or 3-D, bool or integer
        Non-zero is foreground.
    patch_size : int or sequence of int
        Patch edge length in voxels (one per axis or the same for all); at most the image size.
    stride : int or sequence of int, optional
        Step between patch origins; default ``patch_size``.
    connectivity : int, optional
        Foreground connectivity, see :func:`betti_numbers`.

    Returns
    -------
    BettiError
        Mean |Δβ_k| over patches per dimension, the mean total, and the number of patches.

    Raises
    ------
    ValueError
        If the patch size or stride is not positive or a patch is larger than the image.

    Examples
    --------
    >>> true = np.zeros((8, 8), bool); true[1:4, 1:4] = True; true[2, 2] = False
    >>> pred = true.copy(); pred[2, 2] = True
    >>> patchwise_betti_error(pred, true, patch_size=4).total  # 1 error in 1 of 4 patches
    0.25
    """
    p, t = _pair(pred, true, ndim=(2, 3))
    size = _per_axis(patch_size, p.ndim, "patch_size")
    step = size if stride is None else _per_axis(stride, p.ndim, "stride")
    for s, n in zip(size, p.shape, strict=True):
        if s > n:
            raise ValueError(f"patch_size {size} is larger than the image shape {p.shape}")
    grids = [_patch_starts(n, s, st) for n, s, st in zip(p.shape, size, step, strict=True)]
    errors = []
    for origin in itertools.product(*grids):
        sl = tuple(slice(o, o + s) for o, s in zip(origin, size, strict=True))
        errors.append(betti_error(p[sl], t[sl], connectivity=connectivity).per_dimension)
    mean = np.mean(np.array(errors, dtype=np.float64), axis=0)
    per = tuple(float(v) for v in mean)
    return BettiError(per_dimension=per, total=float(sum(per)), n_patches=len(errors))


def _per_axis(value, ndim: int, name: str) -> tuple[int, ...]:
    values = (value,) * ndim if isinstance(value, int | np.integer) else tuple(value)
    if len(values) != ndim or not all(isinstance(v, int | np.integer) and v > 0 for v in values):
        raise ValueError(f"{name} must be a positive int or {ndim} positive ints; got {value!r}")
    return tuple(int(v) for v in values)
