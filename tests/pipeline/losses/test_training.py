"""Each loss trains a toy 2-D U-Net on random thick lines and lowers its value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.losses import LOSS_KINDS, AffinitySupervoxelLoss, compound_loss
from pipeline.model import UNet
from tests.pipeline.losses.helpers import affinities, random_lines

STEPS = 30


@pytest.fixture(scope="module")
def lines() -> tuple[torch.Tensor, np.ndarray]:
    """8 noisy 64×64 images of 3 random thick lines each, with signal dropouts; and their instance labels."""
    rng = np.random.default_rng(0)
    labels = np.stack([random_lines(rng, (64, 64), 3, radius=1.6) for _ in range(8)])
    signal = (labels > 0).astype(np.float32)
    for image in signal:  # dropouts: the label continues where the signal is missing
        for _ in range(2):
            y, x = rng.integers(0, 60, size=2)
            image[y : y + 4, x : x + 4] = 0
    raw = signal + rng.normal(0, 0.4, signal.shape).astype(np.float32)
    return torch.from_numpy(raw)[:, None], labels


def train(
    loss: torch.nn.Module, raw: torch.Tensor, target: torch.Tensor, out_channels: int
) -> tuple[float, float]:
    torch.manual_seed(0)
    net = UNet(1, out_channels, ndim=2, depth=2, base_features=8)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    with torch.no_grad():
        start = loss(net(raw), target).item()
    for step in range(STEPS):
        batch = slice(4 * (step % 2), 4 * (step % 2) + 4)
        optimizer.zero_grad()
        value = loss(net(raw[batch]), target[batch])
        assert torch.isfinite(value), f"step {step}: loss {value.item()}"
        value.backward()
        optimizer.step()
    with torch.no_grad():
        end = loss(net(raw), target).item()
    return start, end


@pytest.mark.parametrize("kind", [k for k in LOSS_KINDS if k != "affinity_supervoxel"])
def test_compound_loss_trains_a_toy_unet(kind, lines):
    raw, labels = lines
    target = torch.from_numpy(labels > 0).float()[:, None]
    start, end = train(compound_loss(kind), raw, target, out_channels=1)
    assert end < 0.85 * start, (start, end)


def test_affinity_supervoxel_loss_trains_a_toy_unet(lines):
    raw, labels = lines
    target = torch.from_numpy(np.stack([affinities(seg) for seg in labels])).float()  # (8, 2, 64, 64)
    start, end = train(AffinitySupervoxelLoss(), raw, target, out_channels=2)
    assert end < 0.85 * start, (start, end)


def test_instance_affinity_supervoxel_loss_trains_a_toy_unet(lines):
    """The compound kind "affinity_supervoxel" (critical edges of the decoded instances) on affinities."""
    raw, labels = lines
    target = torch.from_numpy(np.stack([affinities(seg) for seg in labels])).float()
    start, end = train(compound_loss("affinity_supervoxel"), raw, target, out_channels=2)
    assert end < 0.85 * start, (start, end)
