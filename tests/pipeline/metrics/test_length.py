"""Instance matching and length-distribution metrics on hand-built volumes with known lengths."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.metrics import (
    connected_instances,
    discontinuities,
    instance_overlaps,
    length_metrics,
    length_metrics_from_overlaps,
    match_instances,
)
from tests.pipeline.metrics import tubes

VS = (1.0, 1.0, 0.5)  # (z, y, x) µm; lines run along x, so a line of n voxels is (n - 1) * 0.5 µm long


def _line(vol, z, y, x0, x1, label):
    vol[z, y, x0 : x1 + 1] = label  # voxels x0..x1 inclusive


def test_paper_example_split_instance():
    # "a correct but discontinuous AIS": one part matched, the other not -> recall 1, precision 0.5
    true = np.zeros((3, 3, 40), np.uint16)
    _line(true, 1, 1, 2, 37, 1)
    pred = np.zeros_like(true)
    _line(pred, 1, 1, 2, 20, 5)
    _line(pred, 1, 1, 22, 37, 6)  # gap at x = 21
    m = length_metrics(pred, true, voxel_size_um=VS)
    assert (m.recall, m.precision, m.overlapping_instances) == (1.0, 0.5, 2.0)
    assert m.matches[0].pred_label == 5 and m.matches[0].overlap_voxels == 19  # the larger part
    assert m.true_lengths_um == {1: pytest.approx(35 * 0.5)}
    assert m.pred_lengths_um == {5: pytest.approx(18 * 0.5), 6: pytest.approx(15 * 0.5)}


def _volumes():
    true = np.zeros((6, 8, 64), np.uint16)
    _line(true, 1, 1, 2, 42, 1)  # T1: 41 voxels, 20 µm
    _line(true, 1, 4, 2, 22, 2)  # T2: 21 voxels, 10 µm
    _line(true, 4, 2, 2, 62, 3)  # T3: 61 voxels, 30 µm
    _line(true, 4, 6, 0, 10, 4)  # T4: touches the x = 0 border
    pred = np.zeros_like(true)
    _line(pred, 1, 1, 2, 42, 11)  # P1 = T1: 20 µm
    _line(pred, 1, 4, 2, 16, 12)  # P2: T2 shortened to 15 voxels, 7 µm
    _line(pred, 4, 2, 2, 30, 13)  # P3: first part of T3, 29 voxels, 14 µm
    _line(pred, 4, 2, 32, 62, 14)  # P4: second part of T3, 31 voxels, 15 µm
    _line(pred, 4, 6, 0, 10, 15)  # P5 = T4, on the border
    _line(pred, 3, 4, 10, 20, 16)  # P6: false positive, 11 voxels, 5 µm
    return pred, true


def test_exact_numbers_on_a_hand_built_volume():
    pred, true = _volumes()
    m = length_metrics(pred, true, voxel_size_um=VS)
    # matches: T1-P1, T2-P2, T3-P4 (31 voxels beat P3's 29), T4-P5; P3 and P6 unmatched
    assert [(p.true_label, p.pred_label, p.overlap_voxels) for p in m.matches] == [
        (1, 11, 41), (2, 12, 15), (3, 14, 31), (4, 15, 11),
    ]
    assert (m.n_pred, m.n_true) == (6, 4)
    assert m.precision == pytest.approx(4 / 6)  # border instances count here
    assert m.recall == 1.0
    assert m.overlapping_instances == pytest.approx((1 + 1 + 2 + 1) / 4)
    # distributions without the border instances T4, P5
    assert m.true_lengths_um == pytest.approx({1: 20.0, 2: 10.0, 3: 30.0})
    assert m.pred_lengths_um == pytest.approx({11: 20.0, 12: 7.0, 13: 14.0, 14: 15.0, 16: 5.0})
    # Wasserstein = area between the CDFs: true {10, 20, 30} (1/3 each), pred {5, 7, 14, 15, 20} (1/5)
    #   [5,7): .2*2  [7,10): .4*3  [10,14): (.4-1/3)*4  [14,15): (.6-1/3)*1  [15,20): (.8-1/3)*5
    #   [20,30): (1-2/3)*10
    w = 0.2 * 2 + 0.4 * 3 + (0.4 - 1 / 3) * 4 + (0.6 - 1 / 3) * 1 + (0.8 - 1 / 3) * 5 + (1 - 2 / 3) * 10
    assert w == pytest.approx(7.8)
    assert m.wasserstein_um == pytest.approx(7.8, abs=1e-6)
    # SSMD with population variances: means 12.2 and 20
    var_p = (20**2 + 7**2 + 14**2 + 15**2 + 5**2) / 5 - 12.2**2  # 30.16
    var_t = (10**2 + 20**2 + 30**2) / 3 - 20**2  # 66.67
    assert m.ssmd_signed == pytest.approx((12.2 - 20) / math.sqrt(var_p + var_t), abs=1e-6)
    assert m.ssmd == pytest.approx(abs(m.ssmd_signed))
    assert m.ssmd_signed < 0  # predictions are shorter


def test_perfect_prediction():
    _, true = _volumes()
    relabelled = np.where(true > 0, true + 100, 0).astype(np.uint32)
    m = length_metrics(relabelled, true, voxel_size_um=VS)
    assert (m.precision, m.recall, m.overlapping_instances) == (1.0, 1.0, 1.0)
    assert m.wasserstein_um == 0.0 and m.ssmd == 0.0


def test_exact_ground_truth_with_touching_and_border_objects_scores_perfect():
    true = tubes.labels()  # A, B end to end and C beside A: three touching objects inside the volume
    true[5, 13:15, 0:30] = 11  # touches the x = 0 face and C along y = 6.5 µm
    true[0:2, 1, 60:90] = 12  # touches the z = 0 face
    true[6, 17, 100:140] = 13  # touches the z and y faces
    assert len(np.unique(true)) == 7
    rng = np.random.default_rng(0)
    new_ids = rng.permutation(np.arange(100, 107)).astype(np.uint32)
    ids = np.unique(true)
    pred = np.zeros(true.shape, np.uint32)
    for old, new in zip(ids[1:], new_ids, strict=False):
        pred[true == old] = new
    m = length_metrics(pred, true, voxel_size_um=tubes.VS)
    assert (m.precision, m.recall, m.overlapping_instances) == (1.0, 1.0, 1.0)
    assert m.wasserstein_um == 0.0 and m.ssmd == 0.0 and m.ssmd_signed == 0.0
    assert (m.n_pred, m.n_true, len(m.matches)) == (6, 6, 6)
    # border instances (11, 12, 13) are left out of the length distributions only
    assert sorted(m.true_lengths_um) == [tubes.A, tubes.B, tubes.C]
    assert sorted(m.pred_lengths_um.values()) == sorted(m.true_lengths_um.values())
    d = discontinuities(pred, true)
    assert (d.per_instance, d.n_matched) == (0.0, 6)


def test_discontinuities_count_connected_pieces():
    true = np.zeros((3, 6, 60), np.uint16)
    _line(true, 1, 1, 2, 41, 1)  # T1
    _line(true, 1, 4, 2, 31, 2)  # T2
    _line(true, 1, 2, 50, 57, 3)  # T3: not predicted
    pred = np.zeros_like(true)
    _line(pred, 1, 1, 2, 41, 5)
    pred[1, 1, [15, 28]] = 0  # T1 cut into 3 pieces that all keep label 5
    _line(pred, 1, 4, 2, 14, 6)
    _line(pred, 1, 4, 16, 31, 7)  # T2 cut into 2 pieces with two labels
    d = discontinuities(pred, true)
    assert d.per_true == {1: 2, 2: 1} and d.n_matched == 2
    assert d.per_instance == pytest.approx(1.5)  # T3 is unmatched: not averaged
    # labels as given, T1 overlaps one predicted label: overlapping_instances misses its cuts
    assert length_metrics(pred, true, voxel_size_um=VS).overlapping_instances == pytest.approx(1.5)
    # pieces touching diagonally are one piece with 26-connectivity, two with 6-connectivity
    diag = np.zeros((3, 3, 8), np.uint8)
    diag[1, 1, 0:4] = 1
    diag[1, 2, 4:8] = 1
    pred_diag = diag.copy()
    assert discontinuities(pred_diag, diag).per_instance == 0.0
    assert discontinuities(pred_diag, diag, connectivity=6).per_instance == 1.0
    none = discontinuities(np.zeros_like(true), true)
    assert math.isnan(none.per_instance) and none.n_matched == 0 and none.per_true == {}
    with pytest.raises(ValueError, match="connectivity"):
        discontinuities(pred, true, connectivity=4)
    with pytest.raises(ValueError, match="shape"):
        discontinuities(pred[:, :, :10], true)
    with pytest.raises(TypeError, match="true_labels has dtype bool"):
        discontinuities(pred, true > 0)


def test_empty_prediction():
    _, true = _volumes()
    m = length_metrics(np.zeros_like(true), true, voxel_size_um=VS)
    assert m.recall == 0.0 and m.n_pred == 0 and m.matches == ()
    assert math.isnan(m.precision) and math.isnan(m.overlapping_instances)
    assert math.isnan(m.wasserstein_um) and math.isnan(m.ssmd)
    both_empty = length_metrics(np.zeros_like(true), np.zeros_like(true), voxel_size_um=VS)
    assert math.isnan(both_empty.precision) and math.isnan(both_empty.recall)


def test_ssmd_special_cases():
    # one instance each: spreads 0 -> 0 if equal, signed infinity otherwise
    base = dict(pred_ids=[1], true_ids=[1], overlap_pairs=[[1, 1, 5]])
    same = length_metrics_from_overlaps(**base, pred_lengths_um={1: 4.0}, true_lengths_um={1: 4.0})
    assert same.ssmd == 0.0
    shorter = length_metrics_from_overlaps(**base, pred_lengths_um={1: 3.0}, true_lengths_um={1: 4.0})
    assert shorter.ssmd_signed == -math.inf and shorter.ssmd == math.inf


def test_from_overlaps_matches_full_computation_and_validates():
    pred, true = _volumes()
    full = length_metrics(pred, true, voxel_size_um=VS)
    again = length_metrics_from_overlaps(
        pred_ids=[11, 12, 13, 14, 15, 16],
        true_ids=[1, 2, 3, 4],
        overlap_pairs=instance_overlaps(pred, true),
        pred_lengths_um=full.pred_lengths_um,
        true_lengths_um=full.true_lengths_um,
    )
    assert again == full
    with pytest.raises(ValueError, match="not in true_ids"):
        length_metrics_from_overlaps(pred_ids=[1], true_ids=[1], overlap_pairs=[[2, 1, 3]],
                                     pred_lengths_um={}, true_lengths_um={})
    with pytest.raises(ValueError, match="unknown instances"):
        length_metrics_from_overlaps(pred_ids=[1], true_ids=[1], overlap_pairs=[],
                                     pred_lengths_um={7: 1.0}, true_lengths_um={})
    with pytest.raises(ValueError, match="invalid lengths"):
        length_metrics_from_overlaps(pred_ids=[1], true_ids=[1], overlap_pairs=[],
                                     pred_lengths_um={1: -1.0}, true_lengths_um={})


def test_instance_overlaps():
    pred = np.array([[[0, 1, 1, 2, 2, 0]]], np.uint8)
    true = np.array([[[3, 3, 3, 3, 0, 4]]], np.uint8)
    assert instance_overlaps(pred, true).tolist() == [[3, 1, 2], [3, 2, 1]]


def test_uint64_labels_from_2_63_are_matched_and_measured_as_they_are():
    """Issue 18: ids >= 2**63 turned negative through an int64 cast (and cc3d overflowed on them); they
    must give the metrics of the same labels numbered small, with the ids reported unchanged."""
    true = np.zeros((3, 3, 30), np.uint64)
    _line(true, 1, 1, 2, 11, 1)
    _line(true, 1, 1, 15, 27, 2)
    pred = true.copy()
    pred[1, 1, 7] = 0  # true 1 in two pieces of one predicted label
    pred[true == 2] = 3
    shift = np.uint64(2**63)
    big_true, big_pred = (np.where(a > 0, a + shift, np.uint64(0)) for a in (true, pred))
    small, big = (length_metrics(p, t, voxel_size_um=VS) for p, t in ((pred, true), (big_pred, big_true)))
    assert big.matches == tuple(
        type(m)(m.true_label + 2**63, m.pred_label + 2**63, m.overlap_voxels) for m in small.matches
    )
    assert big.pred_lengths_um == {k + 2**63: v for k, v in small.pred_lengths_um.items()}
    assert big.true_lengths_um == {k + 2**63: v for k, v in small.true_lengths_um.items()}
    same = ("precision", "recall", "overlapping_instances", "wasserstein_um", "ssmd_signed", "n_true")
    assert [getattr(big, k) for k in same] == [getattr(small, k) for k in same]
    assert instance_overlaps(big_pred, big_true).tolist() == [
        [t + 2**63, p + 2**63, n] for t, p, n in instance_overlaps(pred, true).tolist()
    ]
    d_small, d_big = discontinuities(pred, true), discontinuities(big_pred, big_true)
    assert d_small.per_instance == d_big.per_instance == 0.5
    assert d_big.per_true == {k + 2**63: v for k, v in d_small.per_true.items()}
    assert connected_instances(big_pred).max() == 3  # two pieces of one label, one more object


# ---------------------------------------------------------------------------------------------------------
# matching


def test_matching_maximizes_total_overlap_not_greedy():
    # greedy (largest overlap first) would take (1, 10) and match only one pair
    pairs = [[1, 10, 5], [1, 11, 4], [2, 10, 3]]
    assert [(m.true_label, m.pred_label) for m in match_instances(pairs)] == [(1, 11), (2, 10)]
    assert match_instances(np.zeros((0, 3), int)) == ()


def _brute_force_best(pairs):
    best = 0
    for k in range(len(pairs) + 1):
        for subset in itertools.combinations(pairs, k):
            ts = [p[0] for p in subset]
            ps = [p[1] for p in subset]
            if len(set(ts)) == len(ts) and len(set(ps)) == len(ps):
                best = max(best, sum(p[2] for p in subset))
    return best


@settings(max_examples=120, deadline=None)
@given(st.dictionaries(st.tuples(st.integers(1, 4), st.integers(1, 4)), st.integers(1, 20), max_size=8))
def test_matching_is_optimal_and_one_to_one(overlaps):
    pairs = [[t, p, c] for (t, p), c in sorted(overlaps.items())]
    matches = match_instances(pairs)
    assert len({m.true_label for m in matches}) == len(matches) == len({m.pred_label for m in matches})
    assert all(overlaps[(m.true_label, m.pred_label)] == m.overlap_voxels for m in matches)
    assert sum(m.overlap_voxels for m in matches) == _brute_force_best(pairs)
    assert match_instances(pairs) == matches  # deterministic


# ---------------------------------------------------------------------------------------------------------
# instances and validation


def test_connected_instances_and_bool_rejection():
    mask = np.zeros((3, 3, 12), bool)
    mask[1, 1, 1:5] = mask[1, 1, 7:11] = True
    inst = connected_instances(mask)
    assert sorted(np.unique(inst).tolist()) == [0, 1, 2]
    with pytest.raises(TypeError, match="connected_instances"):
        length_metrics(mask, inst.astype(np.uint16), voxel_size_um=VS)
    with pytest.raises(ValueError, match="connectivity"):
        connected_instances(mask, connectivity=8)
    filled = mask.copy()
    filled[1, 1, 5:7] = True  # the true object is continuous
    m = length_metrics(inst.astype(np.int32), connected_instances(filled).astype(np.int32), voxel_size_um=VS)
    assert (m.n_pred, m.n_true, m.precision, m.recall, m.overlapping_instances) == (2, 1, 0.5, 1.0, 2.0)


@pytest.mark.parametrize(
    ("pred", "true", "vs", "exc", "match"),
    [
        (np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 4), np.uint8), VS, ValueError, "shape"),
        (np.zeros((2, 3), np.uint8), np.zeros((2, 3), np.uint8), VS, ValueError, "ndim=2"),
        (np.zeros((2, 2, 3), np.float32), np.zeros((2, 2, 3), np.uint8), VS, TypeError, "dtype float32"),
        (np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 3), np.uint8), (1.0, 1.0), ValueError, "3 entries"),
    ],
)
def test_length_metrics_validation(pred, true, vs, exc, match):
    with pytest.raises(exc, match=match):
        length_metrics(pred, true, voxel_size_um=vs)
