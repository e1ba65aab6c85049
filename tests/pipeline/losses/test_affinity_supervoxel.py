"""Instance-level affinity supervoxel loss: critical edges of decoded segments, by hand and vs a reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from pipeline.losses import (
    AffinityInstanceLoss,
    CriticalMasks,
    affinity_instance_loss,
    bce_loss,
    compound_loss,
    instance_critical_edges,
    soft_dice_loss,
)
from pipeline.targets import affinities_from_labels
from tests.pipeline.losses.helpers import BIG, manual_bce


def target_of(labels: np.ndarray) -> np.ndarray:
    """(D, *S) bool target affinities of an instance label volume."""
    return affinities_from_labels(labels).affinities.astype(bool)


def tensors(pred: np.ndarray, target: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """±BIG logits of a predicted affinity mask and the float target, with a batch axis added."""
    logits = torch.where(torch.as_tensor(pred), BIG, -BIG).float()[None]
    return logits, torch.as_tensor(target).float()[None]


def critical(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    masks = instance_critical_edges(*tensors(pred, target))
    return masks.negative[0].numpy(), masks.positive[0].numpy()


def touching_bars() -> np.ndarray:
    """Two parallel bars along x that touch along y: label 1 at y = 1, label 2 at y = 2, in (3, 6, 8)."""
    labels = np.zeros((3, 6, 8), np.int32)
    labels[:, 1, 1:7] = 1
    labels[:, 2, 1:7] = 2
    return labels


def interface() -> np.ndarray:
    """The y edges between the two touching bars: channel 1 at (z, 2, x), x in 1..6; 18 edges."""
    mask = np.zeros((3, 3, 6, 8), bool)
    mask[1, :, 2, 1:7] = True
    return mask


# --- hand-built cases -------------------------------------------------------------------------------


def test_a_perfect_prediction_has_no_critical_edges(device):
    target = target_of(touching_bars())
    logits, t = tensors(target, target)
    masks = instance_critical_edges(logits.to(device), t.to(device))
    assert isinstance(masks, CriticalMasks)
    assert masks.negative.device.type == device.type and masks.negative.dtype == torch.bool
    assert masks.negative.shape == logits.shape
    assert not masks.negative.any() and not masks.positive.any()


def test_a_merge_of_touching_objects_is_exactly_the_interface():
    target = target_of(touching_bars())
    negative, positive = critical(target | interface(), target)
    assert not negative.any()
    assert np.array_equal(positive, interface()) and positive.sum() == 18


def test_one_interface_edge_is_a_merge_too():
    target = target_of(touching_bars())
    pred = target.copy()
    pred[1, 1, 2, 4] = True
    negative, positive = critical(pred, target)
    assert not negative.any()
    assert np.argwhere(positive).tolist() == [[1, 1, 2, 4]]


def test_fattening_an_object_is_not_critical():
    target = target_of(touching_bars())
    pred = target.copy()
    pred[1, 1, 1, 3] = True  # (1, 1, 3) - (1, 0, 3): bar 1 grows by one background voxel
    pred[2, 0, 0, 3] = True  # (0, 0, 3) - (0, 0, 2): two background voxels...
    pred[1, 0, 1, 3] = True  # (0, 1, 3) - (0, 0, 3): ...attached to bar 1, a tendril
    negative, positive = critical(pred, target)
    assert not negative.any() and not positive.any()


def test_a_spurious_blob_in_the_background_is_critical():
    target = target_of(touching_bars())
    pred = target.copy()
    pred[2, 1, 4, 2:4] = True  # (1, 4, 1) - (1, 4, 2) - (1, 4, 3): background only
    pred[1, 1, 5, 2] = True  # (1, 5, 2) - (1, 4, 2)
    negative, positive = critical(pred, target)
    assert not negative.any()
    assert np.argwhere(positive).tolist() == [[1, 1, 5, 2], [2, 1, 4, 2], [2, 1, 4, 3]]


def test_a_merge_through_the_background():
    labels = np.zeros((1, 3, 8), np.int32)
    labels[0, 1, :2] = 1  # A: x = 0, 1
    labels[0, 1, 4:6] = 2  # B: x = 4, 5
    target = target_of(labels)
    pred = target.copy()
    pred[2, 0, 1, 2:5] = True  # A(x=1) - bg(x=2) - bg(x=3) - B(x=4)
    negative, positive = critical(pred, target)
    assert not negative.any()
    assert np.argwhere(positive).tolist() == [[2, 0, 1, 2], [2, 0, 1, 3], [2, 0, 1, 4]]
    pred[2, 0, 1, 4] = False  # A - bg - bg, a dead end: only fattens A
    negative, positive = critical(pred, target)
    assert not negative.any() and not positive.any()


def split_bar() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A (3, 2, 6) bar of one object with a gap of low affinities around the slab x = 4, and the 19
    target edges that touch the slab (negatively critical); the prediction also drops, in every z, the
    x edge (z, 1, 2)-(z, 1, 1), which the parallel row y = 2 bypasses (not critical)."""
    labels = np.zeros((3, 4, 8), np.int32)
    labels[:, 1:3, 1:7] = 1
    target = target_of(labels)
    gap = np.zeros_like(target)
    gap[2, :, :, 4:6] = True  # x edges (x=4)-(x=3) and (x=5)-(x=4)
    gap[1, :, :, 4] = True  # y and z edges inside the slab
    gap[0, :, :, 4] = True
    pred = target & ~gap
    pred[2, :, 1, 2] = False
    expected = np.zeros_like(target)
    expected[2, :, 1:3, 4:6] = True  # 12 x edges
    expected[1, :, 2, 4] = True  # 3 y edges
    expected[0, 1:, 1:3, 4] = True  # 4 z edges
    return pred, target, expected


def test_a_split_is_exactly_the_cut_between_the_pieces():
    pred, target, expected = split_bar()
    assert expected.sum() == 19 and not (expected & ~target).any()
    negative, positive = critical(pred, target)
    assert np.array_equal(negative, expected)
    assert not positive.any()


def test_a_deleted_object_is_negatively_critical_everywhere():
    target = target_of(touching_bars())
    negative, positive = critical(np.zeros_like(target), target)
    assert np.array_equal(negative, target) and not positive.any()


def test_edges_leaving_the_patch_are_never_critical():
    target = target_of(touching_bars())
    pred = target.copy()
    pred[0, 0] = pred[1, :, 0] = pred[2, :, :, 0] = True  # the first slice of every channel
    negative, positive = critical(pred, target)
    assert not negative.any() and not positive.any()


def test_two_dimensional_affinities_and_batch_items():
    labels = touching_bars()[0]  # (6, 8): the two bars in 2-D
    target = target_of(labels)
    merged = target | interface()[1:, 0]
    logits = torch.stack([tensors(target, target)[0][0], tensors(merged, target)[0][0]])
    t = torch.as_tensor(target).float().expand(2, 2, 6, 8)
    masks = instance_critical_edges(logits, t)
    assert masks.negative.shape == (2, 2, 6, 8)
    assert not masks.negative.any() and not masks.positive[0].any()
    assert np.array_equal(masks.positive[1].numpy(), interface()[1:, 0])
    value = affinity_instance_loss(logits, t)
    assert torch.isfinite(value)


# --- loss values and gradients ---------------------------------------------------------------------


def random_magnitude_logits(pred: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(pred, 1.0, -1.0) * rng.uniform(0.5, 3.0, pred.shape)


@pytest.mark.parametrize(("alpha", "beta"), [(0.5, 0.5), (0.3, 0.8), (1.0, 0.0), (0.0, 0.5)])
@pytest.mark.parametrize("normalization", ["volume", "mask"])
def test_value_by_hand(alpha, beta, normalization):
    pred, target, negative = split_bar()
    pred[2, 0, 0, 2:4] = True  # a background blob (0, 0, 1) - (0, 0, 2) - (0, 0, 3): positively critical
    positive = np.zeros_like(target)
    positive[2, 0, 0, 2:4] = True
    logits = random_magnitude_logits(pred)
    bce = manual_bce(logits, target)
    n = target[0].size
    expected = []
    for c in range(3):
        if normalization == "volume":
            pos, neg = bce[c][positive[c]].sum() / n, bce[c][negative[c]].sum() / n
        else:
            pos = bce[c][positive[c]].mean() if positive[c].any() else 0.0
            neg = bce[c][negative[c]].mean() if negative[c].any() else 0.0
        expected.append((1 - alpha) * bce[c].mean() + alpha * (beta * pos + (1 - beta) * neg))
    value = affinity_instance_loss(
        torch.tensor(logits)[None],
        torch.as_tensor(target).double()[None],
        alpha=alpha,
        beta=beta,
        normalization=normalization,
    )
    assert value.dtype == torch.float64
    assert value.item() == pytest.approx(float(np.mean(expected)), rel=1e-12)


def test_no_critical_edges_leaves_the_scaled_bce():
    target = target_of(touching_bars())
    logits = torch.tensor(random_magnitude_logits(target, seed=1))[None]
    t = torch.as_tensor(target).double()[None]
    assert affinity_instance_loss(logits, t, alpha=0.3).item() == pytest.approx(
        0.7 * bce_loss(logits, t).item(), rel=1e-12
    )
    assert affinity_instance_loss(logits, t, alpha=1.0).item() == 0.0


def test_precomputed_masks_are_used():
    pred, target, negative = split_bar()
    logits, t = tensors(pred, target)
    empty = CriticalMasks(torch.zeros_like(t, dtype=torch.bool), torch.zeros_like(t, dtype=torch.bool))
    assert affinity_instance_loss(logits, t, alpha=1.0, critical=empty).item() == 0.0
    assert affinity_instance_loss(logits, t, alpha=1.0).item() > 0.0
    with pytest.raises(ValueError, match="critical.negative has shape"):
        affinity_instance_loss(logits, t, critical=CriticalMasks(empty.negative[..., 1:], empty.positive))


def test_gradient_only_on_critical_edges_with_alpha_one():
    pred, target, negative = split_bar()
    logits = torch.where(torch.as_tensor(pred), 2.0, -2.0)[None].requires_grad_()
    t = torch.as_tensor(target).float()[None]
    affinity_instance_loss(logits, t, alpha=1.0, beta=0.5).backward()
    grad = logits.grad[0].numpy()
    assert np.array_equal(grad != 0, negative)
    assert (grad[negative] < 0).all()  # raising a critical edge's logit lowers the loss


def test_critical_edges_weigh_more_than_other_mistakes():
    # alpha = beta = 0.5: a negatively critical edge weighs 0.5 + 0.25, a non-critical false negative 0.5
    pred, target, negative = split_bar()
    logits = torch.where(torch.as_tensor(pred), 2.0, -2.0)[None].requires_grad_()
    affinity_instance_loss(logits, torch.as_tensor(target).float()[None]).backward()
    grad = logits.grad[0].abs().numpy()
    bypassed = target & ~pred & ~negative  # the x edges of row y = 1 that the other row bypasses
    assert bypassed.sum() == 3
    assert grad[negative] == pytest.approx(1.5 * grad[bypassed][0], rel=1e-6)


# --- slow reference ---------------------------------------------------------------------------------


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, v):
        self.parent.setdefault(v, v)
        while self.parent[v] != v:
            self.parent[v] = self.parent[self.parent[v]]
            v = self.parent[v]
        return v

    def union(self, a, b) -> None:
        self.parent[self.find(a)] = self.find(b)


def reference(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-3 of the module docstring, edge by edge, with union-find."""
    shape = target.shape[1:]
    voxels = list(itertools.product(*(range(s) for s in shape)))
    edges = []  # (channel, p, q) with q = p - e_d inside the patch
    for d, p in itertools.product(range(len(shape)), voxels):
        if p[d] > 0:
            edges.append((d, p, tuple(v - (a == d) for a, v in enumerate(p))))
    segments, truth, wrong = UnionFind(), UnionFind(), UnionFind()
    for d, p, q in edges:
        if pred[(d, *p)]:
            segments.union(p, q)
        if target[(d, *p)]:
            truth.union(p, q)
    size: dict = {}
    for v in voxels:
        size[truth.find(v)] = size.get(truth.find(v), 0) + 1
    instance = {v: truth.find(v) if size[truth.find(v)] >= 2 else None for v in voxels}
    negative = np.zeros(target.shape, bool)
    positive = np.zeros(target.shape, bool)
    false_positives = [(d, p, q) for d, p, q in edges if pred[(d, *p)] and not target[(d, *p)]]
    for d, p, q in edges:
        if target[(d, *p)] and segments.find(p) != segments.find(q):
            negative[(d, *p)] = True
    for _, p, q in false_positives:
        wrong.union(p, q)
    objects: dict = {}
    for _, p, q in false_positives:
        for v in (p, q):
            found = objects.setdefault(wrong.find(v), set())
            if instance[v] is not None:
                found.add(instance[v])
    for d, p, _ in false_positives:
        positive[(d, *p)] = len(objects[wrong.find(p)]) != 1
    return negative, positive


@pytest.mark.parametrize("seed", range(20))
def test_matches_the_slow_reference(seed):
    rng = np.random.default_rng(seed)
    shape = (4, 6, 6) if seed % 4 else (6, 7)
    coarse = rng.integers(0, 4, size=tuple((s + 1) // 2 for s in shape))
    labels = coarse.repeat(2, axis=0).repeat(2, axis=1)
    if len(shape) == 3:
        labels = labels.repeat(2, axis=2)
    labels = labels[tuple(slice(s) for s in shape)]
    labels[rng.random(shape) < 0.1] = rng.integers(0, 6)  # some noise: single voxels, new objects
    target = target_of(labels)
    flip = rng.random(target.shape) < rng.uniform(0.05, 0.4)
    pred = target ^ flip
    negative, positive = critical(pred, target)
    ref_negative, ref_positive = reference(pred, target)
    assert np.array_equal(negative, ref_negative)
    assert np.array_equal(positive, ref_positive)


# --- module, compound kind, errors -------------------------------------------------------------------


def test_module_and_repr():
    loss = AffinityInstanceLoss(alpha=0.3, beta=0.8, normalization="mask")
    assert repr(loss) == "AffinityInstanceLoss(alpha=0.3, beta=0.8, normalization='mask')"
    pred, target, _ = split_bar()
    logits, t = tensors(pred, target)
    expected = affinity_instance_loss(logits, t, alpha=0.3, beta=0.8, normalization="mask")
    assert loss(logits, t).item() == expected.item()


def test_compound_kind():
    loss = compound_loss("affinity_supervoxel")
    assert loss.weights == {"bce": 1.0, "dice": 1.0, "affinity_supervoxel": 1.0}
    term = loss.losses["affinity_supervoxel"]
    assert isinstance(term, AffinityInstanceLoss) and (term.alpha, term.beta) == (1.0, 0.5)
    pred, target, _ = split_bar()
    logits = torch.tensor(random_magnitude_logits(pred))[None]
    t = torch.as_tensor(target).double()[None]
    expected = bce_loss(logits, t) + soft_dice_loss(logits, t)
    expected = expected + affinity_instance_loss(logits, t, alpha=1.0, beta=0.5)
    assert loss(logits, t).item() == pytest.approx(expected.item(), rel=1e-12)


def test_bad_inputs():
    t = torch.zeros(1, 3, 4, 6, 6)
    with pytest.raises(ValueError, match=r"logits has 1 channels for 3 spatial dims .* expected 3"):
        affinity_instance_loss(torch.zeros(1, 1, 4, 6, 6), torch.zeros(1, 1, 4, 6, 6))
    with pytest.raises(ValueError, match=r"logits has 3 channels for 2 spatial dims .* \(B, 2, Y, X\)"):
        instance_critical_edges(torch.zeros(1, 3, 6, 6), torch.zeros(1, 3, 6, 6))
    with pytest.raises(ValueError, match="logits has ndim=3"):
        affinity_instance_loss(torch.zeros(1, 6, 6), torch.zeros(1, 6, 6))
    with pytest.raises(ValueError, match=r"but target has shape \(1, 3, 4, 6, 5\)"):
        affinity_instance_loss(torch.zeros(1, 3, 4, 6, 6), torch.zeros(1, 3, 4, 6, 5))
    bad = t.clone()
    bad[0, 0, 1, 2, 3] = 0.5
    with pytest.raises(ValueError, match="target has 1 values other than 0 and 1"):
        affinity_instance_loss(torch.zeros_like(t), bad)
    with pytest.raises(ValueError, match=r"alpha=1.5 is outside \[0, 1\]"):
        affinity_instance_loss(torch.zeros_like(t), t, alpha=1.5)
    with pytest.raises(ValueError, match=r"beta=-0.1 is outside \[0, 1\]"):
        AffinityInstanceLoss(beta=-0.1)
    with pytest.raises(ValueError, match="normalization='sum'"):
        affinity_instance_loss(torch.zeros_like(t), t, normalization="sum")
