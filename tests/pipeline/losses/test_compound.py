"""compound_loss: the weights of the AIS paper's Table 1 and the supervoxel choice."""

from __future__ import annotations

import pytest
import torch

from pipeline.losses import (
    LOSS_KINDS,
    LOSS_WEIGHTS,
    BCELoss,
    ClDiceLoss,
    CompoundLoss,
    NegativeCenterlineLoss,
    SimplifiedTopologyLoss,
    SupervoxelLoss,
    bce_loss,
    cldice_loss,
    compound_loss,
    soft_dice_loss,
    supervoxel_loss,
)


def test_table_1_weights():
    assert LOSS_KINDS == (
        "bce_dice",
        "cldice",
        "negative_centerline",
        "simplified_topology",
        "supervoxel",
        "affinity_supervoxel",
    )
    assert LOSS_WEIGHTS["bce_dice"][:2] == (1.0, 1.0)
    assert LOSS_WEIGHTS["cldice"] == (1.0, 1.0, 3.0)
    assert LOSS_WEIGHTS["negative_centerline"] == (1.0, 1.0, 3.0)
    assert LOSS_WEIGHTS["simplified_topology"] == (1.0, 1.0, 0.8)
    assert LOSS_WEIGHTS["supervoxel"] == (1.0, 1.0, 1.0)
    assert LOSS_WEIGHTS["affinity_supervoxel"] == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("cldice", ClDiceLoss),
        ("negative_centerline", NegativeCenterlineLoss),
        ("simplified_topology", SimplifiedTopologyLoss),
        ("supervoxel", SupervoxelLoss),
    ],
)
def test_terms_and_types(kind, cls):
    loss = compound_loss(kind)
    assert list(loss.weights) == ["bce", "dice", kind]
    assert isinstance(loss.losses[kind], cls)


def test_value_is_the_weighted_sum():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 16, 16, generator=gen)
    target = (torch.rand(2, 1, 16, 16, generator=gen) > 0.6).float()
    expected = bce_loss(logits, target) + soft_dice_loss(logits, target) + 3 * cldice_loss(logits, target)
    assert compound_loss("cldice")(logits, target).item() == pytest.approx(expected.item())
    expected = bce_loss(logits, target) + soft_dice_loss(logits, target) + supervoxel_loss(
        logits, target, alpha=1.0, beta=0.5
    )
    assert compound_loss("supervoxel")(logits, target).item() == pytest.approx(expected.item())
    terms = compound_loss("supervoxel").terms(logits, target)
    assert set(terms) == {"bce", "dice", "supervoxel"}


def test_supervoxel_weight_reproduces_definition_1_ratio():
    # BCE + 1 * (critical terms, alpha=1, beta=0.5) == 2 * Definition 1 with alpha = beta = 0.5.
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 1, 20, 20, generator=gen)
    target = (torch.rand(1, 1, 20, 20, generator=gen) > 0.6).float()
    ours = compound_loss("supervoxel", weights=(1.0, 0.0, 1.0))(logits, target)
    paper = supervoxel_loss(logits, target, alpha=0.5, beta=0.5)
    assert ours.item() == pytest.approx(2 * paper.item())


def test_options_reach_the_topology_term():
    loss = compound_loss("cldice", iterations=7, smooth=2.0)
    assert loss.losses["cldice"].iterations == 7
    assert loss.losses["dice"].smooth == 2.0
    assert compound_loss("supervoxel", alpha=0.4, connectivity=4).losses["supervoxel"].alpha == 0.4
    assert compound_loss("bce_dice", weights=(2.0, 0.5, 0.0)).weights == {"bce": 2.0, "dice": 0.5}


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind='dice' is not a known loss; expected one of bce_dice, cldice"):
        compound_loss("dice")
    with pytest.raises(ValueError, match="kind='bce_dice' takes no topology options"):
        compound_loss("bce_dice", iterations=3)
    with pytest.raises(ValueError, match="expected three numbers"):
        compound_loss("cldice", weights=(1.0, 1.0))
    with pytest.raises(TypeError, match="unexpected keyword argument 'iterations'"):
        compound_loss("supervoxel", iterations=3)
    with pytest.raises(ValueError, match="terms is empty"):
        CompoundLoss({})
    with pytest.raises(ValueError, match="has weight -1"):
        CompoundLoss({"bce": (-1, BCELoss())})
    with pytest.raises(TypeError, match=r"terms\['bce'\] must be a \(weight, nn.Module\) pair"):
        CompoundLoss({"bce": (1.0, bce_loss)})


def test_zero_weight_terms_are_not_evaluated():
    class Boom(torch.nn.Module):
        def forward(self, logits, target):
            raise AssertionError("evaluated")

    loss = CompoundLoss({"bce": (1.0, BCELoss()), "boom": (0.0, Boom())})
    logits, target = torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    assert loss(logits, target).item() == pytest.approx(bce_loss(logits, target).item())
