"""Fixtures of the loss tests: devices (CUDA skipped without a GPU) and helpers for hand-built cases."""

from __future__ import annotations

import pytest
import torch

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")],
    ),
]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Each device the losses must run on; CUDA cases are skipped where no GPU is present."""
    return torch.device(request.param)
