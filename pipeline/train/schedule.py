"""Learning-rate schedules as pure functions of the step (so they resume exactly)."""

from __future__ import annotations

import math
from typing import Literal

__all__ = ["lr_factor"]


def lr_factor(
    step: int,
    *,
    total_steps: int,
    warmup_steps: int = 0,
    kind: Literal["cosine", "step", "constant"] = "cosine",
    min_factor: float = 0.0,
    step_size: int = 1000,
    step_gamma: float = 0.5,
) -> float:
    """Multiplier of the base learning rate for optimizer step ``step`` (0-based).

    Linear warm-up from ``1 / (warmup_steps + 1)`` to 1 over the first ``warmup_steps`` steps, then
    ``"cosine"`` decay from 1 to ``min_factor`` at ``total_steps``, ``"step"`` decay by ``step_gamma``
    every ``step_size`` steps after the warm-up, or ``"constant"``.

    Examples
    --------
    >>> [round(lr_factor(s, total_steps=10, warmup_steps=2), 3) for s in (0, 1, 2, 6, 10)]
    [0.333, 0.667, 1.0, 0.5, 0.0]
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if kind == "constant":
        return 1.0
    if kind == "step":
        return step_gamma ** ((step - warmup_steps) // max(step_size, 1))
    if kind == "cosine":
        span = max(total_steps - warmup_steps, 1)
        t = min(max(step - warmup_steps, 0) / span, 1.0)
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"kind={kind!r}; expected 'cosine', 'step' or 'constant'")
