"""Tests of ``pipeline.topology.critical_components``.

Hand-drawn cases with masks computed by hand, invariants, input errors, and thousands of random small cases
checked against ``reference.py``, a pure-Python BFS written from the supervoxel paper's Algorithms 1-2.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline.topology import CriticalComponents, critical_components
from pipeline.topology.critical import neighbour_offsets
from tests.conftest import shared_file
from tests.pipeline.topology.reference import offsets as reference_offsets
from tests.pipeline.topology.reference import reference_critical_components

CONNECTIVITIES = {2: (4, 8), 3: (6, 18, 26)}


def draw(picture: str) -> np.ndarray:
    """A 2-D int array from rows of characters: '.' = 0, a digit = that label, 'x' = 1 (for masks)."""
    rows = [line.split() for line in picture.strip().splitlines()]
    return np.array([[0 if c == "." else 1 if c == "x" else int(c) for c in row] for row in rows], np.int64)


def check(
    pred: np.ndarray, target: np.ndarray, connectivity: int, negative: str | None, positive: str | None
) -> None:
    """Assert the result equals the drawn masks (None: all False) and equals the reference."""
    cc = critical_components(pred, target, connectivity=connectivity)
    want_negative = np.zeros(target.shape, bool) if negative is None else draw(negative).astype(bool)
    want_positive = np.zeros(target.shape, bool) if positive is None else draw(positive).astype(bool)
    np.testing.assert_array_equal(cc.negative, want_negative, err_msg="negatively critical")
    np.testing.assert_array_equal(cc.positive, want_positive, err_msg="positively critical")
    ref_negative, ref_positive = reference_critical_components(pred, target, connectivity=connectivity)
    np.testing.assert_array_equal(ref_negative, want_negative, err_msg="reference, negatively critical")
    np.testing.assert_array_equal(ref_positive, want_positive, err_msg="reference, positively critical")


# --------------------------------------------------------------------------------------------------------
# Hand-drawn cases


@pytest.mark.parametrize("connectivity", [4, 8])
def test_broken_line_gap_is_negatively_critical(connectivity):
    target = draw("""
        . . . . . . .
        1 1 1 1 1 1 1
        . . . . . . .
    """)
    pred = draw("""
        . . . . . . .
        1 1 1 . 1 1 1
        . . . . . . .
    """)
    gap = """
        . . . . . . .
        . . . x . . .
        . . . . . . .
    """
    check(pred, target, connectivity, negative=gap, positive=None)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_bridge_between_two_objects_is_positively_critical(connectivity):
    target = draw("""
        1 1 . . . 1 1
        1 1 . . . 1 1
        . . . . . . .
    """)
    pred = draw("""
        1 1 . . . 1 1
        1 1 1 1 1 1 1
        . . . . . . .
    """)
    bridge = """
        . . . . . . .
        . . x x x . .
        . . . . . . .
    """
    check(pred, target, connectivity, negative=None, positive=bridge)


def test_missing_object_is_negatively_critical():
    target = draw("""
        1 1 . . . .
        1 1 . . 1 .
        . . . . 1 .
    """)
    pred = draw("""
        1 1 . . . .
        1 1 . . . .
        . . . . . .
    """)
    missing = """
        . . . . . .
        . . . . x .
        . . . . x .
    """
    check(pred, target, 4, negative=missing, positive=None)


def test_spurious_blob_is_positively_critical():
    target = draw("""
        1 1 . . . .
        1 1 . . . .
        . . . . . .
    """)
    pred = draw("""
        1 1 . . . .
        1 1 . . 1 1
        . . . . 1 1
    """)
    blob = """
        . . . . . .
        . . . . x x
        . . . . x x
    """
    check(pred, target, 8, negative=None, positive=blob)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_thinned_and_thickened_edges_are_not_critical(connectivity):
    target = draw("""
        . . . . . . . .
        1 1 1 1 1 1 1 1
        1 1 1 1 1 1 1 1
        1 1 1 1 1 1 1 1
        . . . . . . . .
    """)
    pred = draw("""
        . . 1 1 1 . . .
        1 1 1 1 1 1 1 1
        1 1 1 1 1 1 1 1
        1 1 1 1 . . . 1
        . . . . . . . .
    """)
    check(pred, target, connectivity, negative=None, positive=None)


def test_diagonal_gap_depends_on_connectivity_2d():
    target = draw("""
        1 1 . .
        . 1 1 .
        . . 1 1
    """)
    pred = draw("""
        1 1 . .
        . . 1 .
        . . 1 1
    """)
    # 4-connected: removing the corner cuts the staircase; 8-connected: its diagonal neighbours still touch.
    corner = """
        . . . .
        . x . .
        . . . .
    """
    check(pred, target, 4, negative=corner, positive=None)
    check(pred, target, 8, negative=None, positive=None)


def test_diagonal_gap_depends_on_connectivity_3d():
    target = np.zeros((2, 2, 3), np.uint8)
    for voxel in [(0, 0, 0), (0, 0, 1), (0, 1, 1), (1, 1, 1), (1, 1, 2)]:
        target[voxel] = 1
    pred = target.copy()
    pred[0, 1, 1] = 0
    gap = np.zeros(target.shape, bool)
    gap[0, 1, 1] = True
    assert np.array_equal(critical_components(pred, target, connectivity=6).negative, gap)
    for connectivity in (18, 26):  # (0, 0, 1) and (1, 1, 1) share an edge
        assert not critical_components(pred, target, connectivity=connectivity).negative.any()


def test_diagonal_pixel_is_spurious_under_4_and_a_bridge_under_8_connectivity():
    target = draw("""
        1 . .
        . . .
        . . 1
    """)
    pred = draw("""
        1 . .
        . 1 .
        . . 1
    """)
    # 4-connected: the added pixel touches nothing, a spurious object.
    check(pred, target, 4, negative=None, positive="""
        . . .
        . x .
        . . .
    """)
    # 8-connected: it merges the two objects, a bridge.
    check(pred, target, 8, negative=None, positive="""
        . . .
        . x .
        . . .
    """)


def test_instance_labels_split_where_a_binary_mask_would_not():
    target = draw("""
        1 1 1 1 1
        2 2 2 2 2
    """)
    pred = draw("""
        1 1 . 1 1
        2 2 2 2 2
    """)
    # Label 1 loses its middle: the two halves can only meet through label 2, which does not count.
    check(pred, target, 4, negative="""
        . . x . .
        . . . . .
    """, positive=None)
    # As one binary object the row below keeps it connected: not critical.
    check(pred > 0, target > 0, 4, negative=None, positive=None)


def test_predicted_labels_decide_whether_a_false_positive_merges():
    target = draw("""
        1 1 . 1 1
    """)
    merged = draw("""
        1 1 1 1 1
    """)
    check(merged, target, 4, negative=None, positive="""
        . . x . .
    """)
    # The extra pixel belongs to the left object only: it touches one part of pred-minus-FP, not critical.
    separate = draw("""
        1 1 1 2 2
    """)
    check(separate, target, 4, negative=None, positive=None)


def test_label_ids_of_pred_need_not_match_target():
    target = draw("""
        3 3 3 . 7 7
    """)
    pred = draw("""
        5 . 5 . 9 9
    """)
    check(pred, target, 4, negative="""
        . x . . . .
    """, positive=None)


@pytest.mark.parametrize("shape", [(5, 6), (3, 4, 5)])
def test_empty_inputs_have_no_critical_components(shape):
    empty = np.zeros(shape, bool)
    cc = critical_components(empty, empty, connectivity=4 if len(shape) == 2 else 26)
    assert isinstance(cc, CriticalComponents)
    assert cc.negative.shape == cc.positive.shape == shape
    assert cc.negative.dtype == cc.positive.dtype == np.dtype(bool)
    assert not cc.negative.any() and not cc.positive.any()


def test_zero_size_inputs():
    empty = np.zeros((0, 4), np.uint8)
    cc = critical_components(empty, empty, connectivity=4)
    assert cc.negative.shape == (0, 4) and cc.positive.shape == (0, 4)


@pytest.mark.parametrize("shape", [(5, 6), (3, 4, 5)])
def test_all_foreground(shape):
    ones = np.ones(shape, bool)
    zeros = np.zeros(shape, bool)
    connectivity = 8 if len(shape) == 2 else 6
    same = critical_components(ones, ones, connectivity=connectivity)
    assert not same.negative.any() and not same.positive.any()
    # Nothing predicted: the whole object is missing. Everything predicted on empty truth: spurious.
    assert critical_components(zeros, ones, connectivity=connectivity).negative.all()
    assert critical_components(ones, zeros, connectivity=connectivity).positive.all()


@pytest.mark.parametrize("shape", [(1, 1), (1, 1, 1), (3, 3), (3, 3, 3)])
def test_single_voxel(shape):
    one = np.zeros(shape, np.uint16)
    one[tuple(s // 2 for s in shape)] = 4
    none = np.zeros(shape, np.uint16)
    connectivity = 4 if len(shape) == 2 else 26
    missed = critical_components(none, one, connectivity=connectivity)
    assert np.array_equal(missed.negative, one > 0) and not missed.positive.any()
    spurious = critical_components(one, none, connectivity=connectivity)
    assert np.array_equal(spurious.positive, one > 0) and not spurious.negative.any()


def test_result_is_frozen():
    cc = critical_components(np.zeros((2, 2), bool), np.zeros((2, 2), bool), connectivity=4)
    with pytest.raises(AttributeError):
        cc.negative = cc.positive  # type: ignore[misc]


def test_neighbour_offsets_match_the_reference():
    for ndim, connectivities in CONNECTIVITIES.items():
        for connectivity in connectivities:
            offsets = neighbour_offsets(ndim, connectivity)
            assert len(offsets) == connectivity
            assert sorted(offsets) == sorted(reference_offsets(ndim, connectivity))


def test_huge_uint64_labels_are_renumbered():
    big = np.iinfo(np.uint64).max
    target = np.array([[big, big, big, 0, big - 1]], np.uint64)
    pred = np.array([[1, 0, 1, 0, 0]], np.uint64)
    cc = critical_components(pred, target, connectivity=4)
    np.testing.assert_array_equal(cc.negative, [[False, True, False, False, True]])


# --------------------------------------------------------------------------------------------------------
# Invariants


def _random_case(seed: int, shape: tuple[int, ...], n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = blobs(rng, shape, n_labels)
    return perturb(rng, target, n_labels), target


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize(("shape", "connectivity"), [((17, 23), 4), ((17, 23), 8), ((7, 9, 11), 26)])
def test_c_and_f_order_give_the_same_answer(seed, shape, connectivity):
    pred, target = _random_case(seed, shape, n_labels=3)
    expected = critical_components(pred, target, connectivity=connectivity)
    for p, t in [
        (np.asfortranarray(pred), np.asfortranarray(target)),
        (np.asfortranarray(pred), target),
        (pred, np.asfortranarray(target)),
        (np.asfortranarray(pred[::-1])[::-1], target),  # neither C- nor F-contiguous
    ]:
        got = critical_components(p, t, connectivity=connectivity)
        np.testing.assert_array_equal(got.negative, expected.negative)
        np.testing.assert_array_equal(got.positive, expected.positive)


@pytest.mark.parametrize("seed", range(10))
def test_swapping_pred_and_target_swaps_the_masks(seed):
    pred, target = _random_case(seed, (9, 10, 11), n_labels=4)
    forward = critical_components(pred, target, connectivity=18)
    backward = critical_components(target, pred, connectivity=18)
    np.testing.assert_array_equal(forward.negative, backward.positive)
    np.testing.assert_array_equal(forward.positive, backward.negative)


@pytest.mark.parametrize("seed", range(10))
def test_relabelling_and_dtype_do_not_change_the_answer(seed):
    pred, target = _random_case(seed, (30, 31), n_labels=4)
    expected = critical_components(pred, target, connectivity=8)
    assert expected.negative.shape == pred.shape
    rng = np.random.default_rng(seed)
    new_ids = np.concatenate([[0], rng.permutation(np.arange(1, 5)) * 1000 + 17])
    for p, t in [
        (new_ids[pred].astype(np.int32), target.astype(np.uint64)),
        (pred.astype(np.int8), new_ids[target].astype(np.uint16)),
        (new_ids[pred].astype(np.uint64) << 40, (target.astype(np.int64) + 2**31) * (target > 0)),
    ]:
        got = critical_components(p, t, connectivity=8)
        np.testing.assert_array_equal(got.negative, expected.negative)
        np.testing.assert_array_equal(got.positive, expected.positive)


def test_inputs_are_not_modified_and_reruns_agree():
    pred, target = _random_case(5, (8, 9, 10), n_labels=3)
    pred_copy, target_copy = pred.copy(), target.copy()
    first = critical_components(pred, target, connectivity=26)
    second = critical_components(pred, target, connectivity=26)
    np.testing.assert_array_equal(pred, pred_copy)
    np.testing.assert_array_equal(target, target_copy)
    np.testing.assert_array_equal(first.negative, second.negative)
    np.testing.assert_array_equal(first.positive, second.positive)


def test_bool_and_0_1_integer_masks_agree():
    pred, target = _random_case(3, (20, 20), n_labels=1)
    as_bool = critical_components(pred > 0, target > 0, connectivity=4)
    as_int = critical_components((pred > 0).astype(np.int64), (target > 0).astype(np.uint8), connectivity=4)
    mixed = critical_components(pred > 0, target.astype(np.uint32), connectivity=4)
    for other in (as_int, mixed):
        np.testing.assert_array_equal(other.negative, as_bool.negative)
        np.testing.assert_array_equal(other.positive, as_bool.positive)


@pytest.mark.data
@pytest.mark.parametrize("connectivity", [4, 8])
def test_matches_reference_on_real_isbi12_labels(connectivity):
    """A crop of a real ISBI12 label slice (255 = cell interior, 1-pixel membranes), perturbed."""
    from PIL import Image

    target = np.asarray(Image.open(shared_file("isbi12/train/label/0.png")))[100:180, 200:290] == 255
    rng = np.random.default_rng(0)
    pred = target ^ (rng.random(target.shape) < 0.03)  # flips: cut membranes, holes and specks in cells
    pred[:, 45] = False  # a spurious membrane across the crop splits the cells it crosses
    cc = critical_components(pred, target, connectivity=connectivity)
    assert cc.negative.any() and cc.positive.any()
    assert_matches_reference(pred, target, connectivity)


# --------------------------------------------------------------------------------------------------------
# Input errors


def test_rejects_float_input_and_suggests_thresholding():
    with pytest.raises(TypeError, match=r"pred has dtype float32.*Threshold probabilities first"):
        critical_components(np.zeros((3, 3), np.float32), np.zeros((3, 3), bool), connectivity=4)


def test_rejects_other_dtypes_and_non_arrays():
    with pytest.raises(TypeError, match=r"target has dtype complex128; expected a bool mask or non-negative"):
        critical_components(np.zeros((3, 3), bool), np.zeros((3, 3), complex), connectivity=4)
    with pytest.raises(TypeError, match=r"pred must be a numpy array; got list"):
        critical_components([[0, 1]], np.zeros((1, 2), bool), connectivity=4)


def test_rejects_shape_mismatch():
    with pytest.raises(ValueError, match=r"pred has shape \(3, 4\) but target has shape \(4, 3\)"):
        critical_components(np.zeros((3, 4), bool), np.zeros((4, 3), bool), connectivity=4)


@pytest.mark.parametrize("shape", [(5,), (2, 2, 2, 2)])
def test_rejects_wrong_ndim(shape):
    with pytest.raises(ValueError, match=rf"pred has ndim={len(shape)} .*expected a 2-D or 3-D array"):
        critical_components(np.zeros(shape, bool), np.zeros(shape, bool), connectivity=4)


@pytest.mark.parametrize(
    ("shape", "connectivity", "expected"),
    [
        ((3, 3), 6, "4 or 8"),
        ((3, 3), 26, "4 or 8"),
        ((3, 3, 3), 4, "6 or 18 or 26"),
        ((3, 3, 3), 8, "6 or 18 or 26"),
    ],
)
def test_rejects_connectivity_invalid_for_ndim(shape, connectivity, expected):
    pattern = rf"connectivity={connectivity} is not valid for {len(shape)}-D arrays; expected {expected}"
    with pytest.raises(ValueError, match=pattern):
        critical_components(np.zeros(shape, bool), np.zeros(shape, bool), connectivity=connectivity)


@pytest.mark.parametrize("connectivity", [True, 4.0, "4", None])
def test_rejects_connectivity_of_wrong_type(connectivity):
    pattern = rf"connectivity must be an int \(4 or 8 for 2-D arrays\); got {type(connectivity).__name__}"
    with pytest.raises(TypeError, match=pattern):
        critical_components(np.zeros((3, 3), bool), np.zeros((3, 3), bool), connectivity=connectivity)


def test_connectivity_is_required_and_keyword_only():
    with pytest.raises(TypeError, match="connectivity"):
        critical_components(np.zeros((3, 3), bool), np.zeros((3, 3), bool))  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        critical_components(np.zeros((3, 3), bool), np.zeros((3, 3), bool), 4)  # type: ignore[misc]


def test_rejects_negative_labels():
    target = np.array([[0, 1], [-2, 1]], np.int16)
    pattern = r"target contains negative labels \(minimum -2\); expected labels >= 0"
    with pytest.raises(ValueError, match=pattern):
        critical_components(np.zeros((2, 2), np.int16), target, connectivity=4)


# --------------------------------------------------------------------------------------------------------
# Random cases against the reference


def blobs(rng: np.random.Generator, shape: tuple[int, ...], n_labels: int) -> np.ndarray:
    """Touching random boxes and lines with labels 1..n_labels: structure where criticality is common."""
    out = np.zeros(shape, np.int64)
    for _ in range(int(rng.integers(1, 6))):
        label = int(rng.integers(1, n_labels + 1))
        if rng.random() < 0.5:  # a box
            lo = [int(rng.integers(0, s)) for s in shape]
            hi = [min(s, lo_i + int(rng.integers(1, 4))) for lo_i, s in zip(lo, shape, strict=True)]
            out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = label
        else:  # a random walk of face or diagonal steps
            pos = np.array([int(rng.integers(0, s)) for s in shape])
            for _ in range(int(rng.integers(2, 3 * max(shape)))):
                out[tuple(pos)] = label
                pos = np.clip(pos + rng.integers(-1, 2, len(shape)), 0, np.array(shape) - 1)
    return out


def perturb(rng: np.random.Generator, target: np.ndarray, n_labels: int) -> np.ndarray:
    """A prediction: voxels removed and added, labels changed, then its ids shuffled."""
    pred = target.copy()
    remove = rng.random(target.shape) < rng.uniform(0, 0.3)
    add = rng.random(target.shape) < rng.uniform(0, 0.15)
    pred[remove] = 0
    pred[add] = rng.integers(1, n_labels + 1, int(add.sum()))
    if n_labels > 1 and rng.random() < 0.3:
        relabel = rng.random(target.shape) < 0.2
        pred[relabel & (pred > 0)] = rng.integers(1, n_labels + 1, int((relabel & (pred > 0)).sum()))
    ids = np.concatenate([[0], rng.permutation(n_labels) + 1])
    return ids[pred]


@st.composite
def structured_cases(draw_, ndim: int):
    shape = draw_(st.tuples(*[st.integers(1, 12 if ndim == 2 else 6)] * ndim))
    connectivity = draw_(st.sampled_from(CONNECTIVITIES[ndim]))
    n_labels = draw_(st.integers(1, 4))
    seed = draw_(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    target = blobs(rng, shape, n_labels)
    pred = perturb(rng, target, n_labels)
    if n_labels == 1 and draw_(st.booleans()):
        pred, target = pred > 0, target > 0
    return pred, target, connectivity


@st.composite
def noise_cases(draw_, ndim: int):
    shape = draw_(st.tuples(*[st.integers(1, 12 if ndim == 2 else 6)] * ndim))
    connectivity = draw_(st.sampled_from(CONNECTIVITIES[ndim]))
    n_labels = draw_(st.integers(1, 4))
    dtype = draw_(st.sampled_from([np.uint8, np.int32, np.uint64]))
    labels = st.integers(0, n_labels)
    pred = draw_(hnp.arrays(dtype, shape, elements=labels))
    target = draw_(hnp.arrays(dtype, shape, elements=labels))
    if n_labels == 1 and draw_(st.booleans()):
        pred, target = pred > 0, target > 0
    return pred, target, connectivity


def assert_matches_reference(pred: np.ndarray, target: np.ndarray, connectivity: int) -> None:
    cc = critical_components(pred, target, connectivity=connectivity)
    ref_negative, ref_positive = reference_critical_components(pred, target, connectivity=connectivity)
    np.testing.assert_array_equal(cc.negative, ref_negative, err_msg="negatively critical")
    np.testing.assert_array_equal(cc.positive, ref_positive, err_msg="positively critical")


@settings(max_examples=3000, deadline=None)
@given(structured_cases(2))
def test_matches_reference_on_structured_2d(case):
    assert_matches_reference(*case)


@settings(max_examples=3000, deadline=None)
@given(structured_cases(3))
def test_matches_reference_on_structured_3d(case):
    assert_matches_reference(*case)


@settings(max_examples=1000, deadline=None)
@given(noise_cases(2))
def test_matches_reference_on_noise_2d(case):
    assert_matches_reference(*case)


@settings(max_examples=1000, deadline=None)
@given(noise_cases(3))
def test_matches_reference_on_noise_3d(case):
    assert_matches_reference(*case)


@settings(max_examples=500, deadline=None)
@given(structured_cases(3))
def test_paper_hash_table_rule_equals_the_count_rule(case):
    """Algorithm 2 keys its table by S(y) component; every same-label neighbour of C lies in C's S(y)
    component, so its test reduces to 'distinct S(y - mistakes) components touched != 1'."""
    pred, target, connectivity = case
    count = reference_critical_components(pred, target, connectivity=connectivity, rule="count")
    table = reference_critical_components(pred, target, connectivity=connectivity, rule="algorithm2")
    np.testing.assert_array_equal(count[0], table[0])
    np.testing.assert_array_equal(count[1], table[1])


@pytest.mark.parametrize("block", [1, 5, 64])
def test_block_size_does_not_change_the_answer(monkeypatch, block):
    """The fast path visits mistaken voxels in blocks; cut them into many small ones."""
    import pipeline.topology.critical as critical

    cases = [(_random_case(seed, (13, 14, 15), n_labels=3), 26) for seed in range(3)]
    cases += [(_random_case(seed, (40, 41), n_labels=1), 4) for seed in range(3)]
    expected = [critical_components(p, t, connectivity=c) for (p, t), c in cases]
    monkeypatch.setattr(critical, "_BLOCK", block)
    for ((p, t), c), want in zip(cases, expected, strict=True):
        got = critical_components(p, t, connectivity=c)
        np.testing.assert_array_equal(got.negative, want.negative)
        np.testing.assert_array_equal(got.positive, want.positive)


@pytest.mark.parametrize(("shape", "connectivity", "n_labels"), [((200, 210), 8, 3), ((30, 32, 34), 18, 1)])
def test_matches_reference_on_a_larger_volume(monkeypatch, shape, connectivity, n_labels):
    """Several blocks of mistaken voxels, most of them off the border."""
    import pipeline.topology.critical as critical

    monkeypatch.setattr(critical, "_BLOCK", 1000)
    rng = np.random.default_rng(7)
    target = np.zeros(shape, np.int64)
    for _ in range(300 if len(shape) == 2 else 60):  # boxes of 2-12 voxels a side, later ones on top
        lo = [int(rng.integers(0, s)) for s in shape]
        target[tuple(slice(a, a + int(rng.integers(2, 13))) for a in lo)] = rng.integers(1, n_labels + 1)
    pred = np.where(rng.random(shape) < 0.3, 0, target)  # holes, cuts and missing pieces
    added = rng.random(shape) < 0.05  # spurious voxels and bridges
    pred[added] = rng.integers(1, n_labels + 1, int(added.sum()))
    assert ((target > 0) & (pred == 0)).sum() > 3000 and ((pred > 0) & (target == 0)).sum() > 1000
    assert_matches_reference(pred, target, connectivity)


def test_random_cases_exercise_critical_and_non_critical_components():
    """Guard the generators: most structured cases must contain both kinds of components."""
    rng = np.random.default_rng(0)
    for shape, connectivity in [((10, 10), 4), ((10, 10), 8), ((6, 6, 6), 6), ((6, 6, 6), 26)]:
        kinds = {"critical": 0, "non-critical": 0}
        for _ in range(200):
            target = blobs(rng, shape, 3)
            pred = perturb(rng, target, 3)
            cc = critical_components(pred, target, connectivity=connectivity)
            mistakes = ((target > 0) & (pred == 0)) | ((pred > 0) & (target == 0))
            kinds["critical"] += bool((cc.negative | cc.positive).any())
            kinds["non-critical"] += bool((mistakes & ~(cc.negative | cc.positive)).any())
        assert kinds["critical"] > 100 and kinds["non-critical"] > 50, (shape, connectivity, kinds)
